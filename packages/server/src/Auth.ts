/**
 * Bearer tokens for the `/v1` routes: compared in constant time (SHA-256 digests of equal length through
 * `timingSafeEqual`), never logged, never echoed. A refusal names the scheme to use (`WWW-Authenticate: Bearer`).
 *
 * @since 0.1.0
 */
import * as HttpApp from "@effect/platform/HttpApp"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { createHash, timingSafeEqual } from "node:crypto"
import { Authorization } from "./Api.js"
import { ApiError } from "./ApiError.js"

const digest = (token: string) => createHash("sha256").update(token, "utf8").digest()

/**
 * Whether `given` equals one of `tokens`, in time independent of where they differ. Every token is compared, so the
 * time does not say which one matched either.
 *
 * @since 0.1.0
 * @category predicates
 */
export const matches = (tokens: ReadonlyArray<Redacted.Redacted<string>>, given: string): boolean => {
  const candidate = digest(given)
  let found = false
  for (const token of tokens) found = timingSafeEqual(digest(Redacted.value(token)), candidate) || found
  return found
}

const unauthorized = new ApiError({
  status: 401,
  tag: "Unauthorized",
  message: "missing or wrong bearer token: send Authorization: Bearer <token> with one of QUARRY_API_TOKENS"
})

/** A 401 names the scheme it wants (RFC 9110): the platform's error response carries no header of its own. */
const refuse = Effect.zipRight(
  HttpApp.appendPreResponseHandler((_, response) =>
    Effect.succeed(HttpServerResponse.setHeader(response, "www-authenticate", "Bearer"))
  ),
  Effect.fail(unauthorized)
)

/**
 * The authorization middleware. Without tokens every request passes (the CLI allows that only on a loopback host
 * or with `--insecure-no-auth`).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (tokens: ReadonlyArray<Redacted.Redacted<string>>): Layer.Layer<Authorization> =>
  Layer.succeed(
    Authorization,
    Authorization.of({
      bearer: (given) => tokens.length === 0 || matches(tokens, Redacted.value(given)) ? Effect.void : refuse
    })
  )
