/**
 * One call to an OpenAI-compatible Chat Completions endpoint (`POST {baseUrl}/chat/completions`), with every failure
 * classified into a `ChatError` whose `reason` says whether a retry can help. No retries here: see `LlmExtractor`.
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as DecodeIssues from "@quarry/core/DecodeIssues"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Json from "./internal/json.js"

/**
 * Why a call failed. `network`, `timeout`, `rate_limited`, `server` and `bad_response` are transient; the others
 * fail the same way on every retry.
 *
 * @since 0.1.0
 * @category errors
 */
export const ChatErrorReason = Schema.Literal(
  "network",
  "timeout",
  "rate_limited",
  "server",
  "bad_response",
  "auth",
  "quota",
  "not_found",
  "bad_request",
  "too_large",
  "circuit_open"
)

/**
 * @since 0.1.0
 * @category errors
 */
export type ChatErrorReason = typeof ChatErrorReason.Type

/**
 * A failed Chat Completions call. Holds only sanitised text (the API key is scrubbed from anything the server sent
 * back), never the HTTP request, so it is safe to log and to store.
 *
 * @since 0.1.0
 * @category errors
 */
export class ChatError extends Schema.TaggedError<ChatError>()("ChatError", {
  reason: ChatErrorReason,
  endpoint: Schema.String,
  detail: Schema.String,
  status: Schema.optional(Schema.Int),
  retryAfterMillis: Schema.optional(Schema.Number)
}) {
  /**
   * True when the same call may succeed later.
   *
   * @since 0.1.0
   */
  get retryable(): boolean {
    return isRetryable(this.reason)
  }

  /**
   * What went wrong, without the endpoint: `server error (HTTP 500): ...`.
   *
   * @since 0.1.0
   */
  get problem(): string {
    const status = this.status === undefined ? "" : ` (HTTP ${this.status})`
    return `${describe[this.reason]}${status}: ${this.detail}`
  }

  override get message() {
    return `${this.endpoint}: ${this.problem}`
  }
}

const describe: Record<ChatErrorReason, string> = {
  network: "network error",
  timeout: "no response within the call timeout",
  rate_limited: "rate limited by the server",
  server: "server error",
  bad_response: "the response is not a Chat Completions response",
  auth: "the server rejected the credentials; check QUARRY_LLM_API_KEY",
  quota: "the account has no quota left; check the provider's billing",
  not_found: "model or URL not found; check QUARRY_LLM_BASE_URL (usually ends in /v1) and QUARRY_LLM_MODEL",
  bad_request: "the server rejected the request",
  too_large: "the request is larger than the configured tokens-per-minute limit",
  circuit_open: "circuit breaker open after repeated failures"
}

/**
 * Whether a failure of this kind is worth retrying.
 *
 * @since 0.1.0
 * @category errors
 */
export const isRetryable = (reason: ChatErrorReason): boolean =>
  reason === "network" || reason === "timeout" || reason === "rate_limited" || reason === "server" ||
  reason === "bad_response"

/**
 * A chat message.
 *
 * @since 0.1.0
 * @category models
 */
export interface Message {
  readonly role: "system" | "user" | "assistant"
  readonly content: string
}

/**
 * How the reply's format is requested: a strict JSON schema, any JSON object, or only by the prompt.
 *
 * @since 0.1.0
 * @category models
 */
export type ResponseFormat =
  | { readonly type: "json_schema"; readonly name: string; readonly schema: unknown }
  | { readonly type: "json_object" }
  | { readonly type: "text" }

/**
 * Where to send requests. `baseUrl` includes the API version path (`https://api.openai.com/v1`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Endpoint {
  readonly baseUrl: string
  readonly apiKey: Option.Option<Redacted.Redacted<string>>
}

/**
 * One completion request.
 *
 * @since 0.1.0
 * @category models
 */
export interface Request {
  readonly model: string
  readonly messages: ReadonlyArray<Message>
  readonly temperature?: number | undefined
  readonly maxTokens?: number | undefined
  /** OpenAI's newer models only accept `max_completion_tokens`; local servers know `max_tokens`. */
  readonly maxTokensParameter?: "max_tokens" | "max_completion_tokens" | undefined
  readonly seed?: number | undefined
  readonly responseFormat: ResponseFormat
}

/**
 * Token counts the server reported for one call.
 *
 * @since 0.1.0
 * @category models
 */
export interface ReportedUsage {
  readonly promptTokens: number
  readonly completionTokens: number
}

/**
 * A successful reply.
 *
 * @since 0.1.0
 * @category models
 */
export interface Completion {
  readonly content: string
  readonly finishReason: string | null
  readonly refusal: string | null
  readonly usage: Option.Option<ReportedUsage>
}

const Count = Schema.Number.pipe(Schema.nonNegative())

const ResponseBody = Schema.Struct({
  choices: Schema.NonEmptyArray(Schema.Struct({
    message: Schema.Struct({
      content: Schema.optionalWith(Schema.NullOr(Schema.String), { default: () => null }),
      refusal: Schema.optionalWith(Schema.NullOr(Schema.String), { default: () => null })
    }),
    finish_reason: Schema.optionalWith(Schema.NullOr(Schema.String), { default: () => null })
  })),
  usage: Schema.optional(Schema.NullOr(Schema.Struct({ prompt_tokens: Count, completion_tokens: Count })))
})

const ErrorBody = Schema.Struct({
  error: Schema.Union(
    Schema.String,
    Schema.Struct({
      message: Schema.optional(Schema.NullOr(Schema.String)),
      type: Schema.optional(Schema.NullOr(Schema.String)),
      code: Schema.optional(Schema.NullOr(Schema.Union(Schema.String, Schema.Number)))
    })
  )
})

const decodeResponse = Schema.decodeUnknownEither(Schema.parseJson(ResponseBody))
const decodeError = Schema.decodeUnknownEither(Schema.parseJson(ErrorBody))

/**
 * The endpoint's base URL without credentials, query or trailing slash: safe to log and to use as a key.
 *
 * @since 0.1.0
 * @category endpoints
 */
export const sanitizeBaseUrl = (baseUrl: string): string => {
  try {
    const url = new URL(baseUrl)
    return `${url.protocol}//${url.host}${url.pathname.replace(/\/+$/, "")}`
  } catch {
    return baseUrl.replace(/[?#].*$/, "").replace(/\/+$/, "")
  }
}

/**
 * Replaces every occurrence of the API key in text from the outside world (error bodies can echo it).
 *
 * @since 0.1.0
 * @category endpoints
 */
export const scrub = (text: string, apiKey: Option.Option<Redacted.Redacted<string>>): string => {
  if (Option.isNone(apiKey)) return text
  const key = Redacted.value(apiKey.value)
  return key.length === 0 ? text : text.split(key).join("[redacted]")
}

const truncate = (text: string, max = 500) => text.length > max ? `${text.slice(0, max)}…` : text

/**
 * The delay a response asks for: `retry-after-ms` (OpenAI), else `Retry-After` in seconds or as an HTTP date (one in
 * the past asks for none). A value that is none of these (negative, `1e3`, junk) is no request to wait: `undefined`,
 * so the caller's own backoff applies. A huge one stays finite (at most `Number.MAX_SAFE_INTEGER`); the caller decides
 * how long it will actually wait.
 *
 * @since 0.1.0
 * @category endpoints
 */
export const retryAfterMillis = (
  headers: Readonly<Record<string, string | undefined>>,
  now: number
): number | undefined => {
  const ms = decimal(headers["retry-after-ms"])
  if (ms !== undefined) return safeMillis(ms)
  const value = headers["retry-after"]?.trim()
  if (value === undefined || value === "") return undefined
  const seconds = decimal(value)
  if (seconds !== undefined) return safeMillis(seconds * 1000)
  // An HTTP date names its day and month: without a letter, `Date.parse` would read "-5" as a year.
  const date = /[a-z]/i.test(value) ? Date.parse(value) : Number.NaN
  return Number.isNaN(date) ? undefined : safeMillis(date - now)
}

/** A plain non-negative decimal number (`20`, `1.5`), as the headers write delays. */
const decimal = (text: string | undefined): number | undefined =>
  text !== undefined && /^\s*\d+(\.\d+)?\s*$/.test(text) ? Number(text) : undefined

const safeMillis = (millis: number) => Math.min(Number.MAX_SAFE_INTEGER, Math.max(0, Math.round(millis)))

const requestBody = (request: Request): Record<string, unknown> => {
  const body: Record<string, unknown> = {
    model: request.model,
    messages: request.messages,
    stream: false
  }
  if (request.temperature !== undefined) body.temperature = request.temperature
  if (request.maxTokens !== undefined) body[request.maxTokensParameter ?? "max_tokens"] = request.maxTokens
  if (request.seed !== undefined) body.seed = request.seed
  switch (request.responseFormat.type) {
    case "json_schema":
      body.response_format = {
        type: "json_schema",
        json_schema: { name: request.responseFormat.name, strict: true, schema: request.responseFormat.schema }
      }
      break
    case "json_object":
      body.response_format = { type: "json_object" }
      break
    case "text":
      break
  }
  return body
}

const classifyStatus = (status: number, code: string | undefined): ChatErrorReason => {
  if (status === 401 || status === 403) return "auth"
  if (status === 402 || (status === 429 && code === "insufficient_quota")) return "quota"
  if (status === 429) return "rate_limited"
  if (status === 404) return "not_found"
  if (status === 408 || status === 409 || status === 425 || status >= 500) return "server"
  return "bad_request"
}

const failure = (
  endpoint: Endpoint,
  reason: ChatErrorReason,
  detail: string,
  extra: { readonly status?: number; readonly retryAfterMillis?: number | undefined } = {}
) =>
  new ChatError({
    reason,
    endpoint: sanitizeBaseUrl(endpoint.baseUrl),
    detail: truncate(scrub(detail, endpoint.apiKey)),
    ...(extra.status === undefined ? {} : { status: extra.status }),
    ...(extra.retryAfterMillis === undefined ? {} : { retryAfterMillis: extra.retryAfterMillis })
  })

// Scrubbed before parsing, so no excerpt of the body (e.g. in a JSON parse error) can carry a piece of the key.
const readBody = (endpoint: Endpoint, response: HttpClientResponse.HttpClientResponse) =>
  response.text.pipe(
    Effect.map((text) => scrub(text, endpoint.apiKey)),
    Effect.mapError((error) => failure(endpoint, "network", `reading the response body failed: ${error.reason}`))
  )

const errorFromResponse = (endpoint: Endpoint, response: HttpClientResponse.HttpClientResponse, text: string) =>
  Effect.map(Clock.currentTimeMillis, (now) => {
    const parsed = decodeError(text)
    let detail = text.trim() === "" ? "(empty body)" : text
    let code: string | undefined
    if (Either.isRight(parsed)) {
      const error = parsed.right.error
      if (typeof error === "string") {
        detail = error
      } else {
        detail = error.message ?? detail
        code = error.code === undefined || error.code === null ? error.type ?? undefined : String(error.code)
      }
    }
    return failure(endpoint, classifyStatus(response.status, code), detail, {
      status: response.status,
      retryAfterMillis: retryAfterMillis(response.headers, now)
    })
  })

/**
 * Sends one request and waits at most `timeout` for the whole reply. Fails with a classified `ChatError`.
 *
 * @since 0.1.0
 * @category calls
 */
export const complete = (
  client: HttpClient.HttpClient,
  endpoint: Endpoint,
  request: Request,
  timeout: Duration.DurationInput
): Effect.Effect<Completion, ChatError> => {
  const url = `${endpoint.baseUrl.replace(/\/+$/, "")}/chat/completions`
  let httpRequest = HttpClientRequest.post(url).pipe(
    HttpClientRequest.acceptJson,
    HttpClientRequest.bodyUnsafeJson(requestBody(request))
  )
  if (Option.isSome(endpoint.apiKey)) httpRequest = HttpClientRequest.bearerToken(httpRequest, endpoint.apiKey.value)
  return client.execute(httpRequest).pipe(
    Effect.mapError((error) =>
      failure(
        endpoint,
        "network",
        error._tag === "RequestError" ?
          `${error.reason}: ${error.cause instanceof Error ? error.cause.message : String(error.cause)}` :
          error.reason
      )
    ),
    Effect.flatMap((response) =>
      Effect.flatMap(readBody(endpoint, response), (text) => {
        if (response.status < 200 || response.status >= 300) {
          return Effect.flatMap(errorFromResponse(endpoint, response, text), Effect.fail)
        }
        const decoded = decodeResponse(text)
        if (Either.isLeft(decoded)) {
          const syntax = Json.notJson(text)
          const body = text.trim() === "" ? "the body is empty" : `body: ${truncate(text, 200)}`
          return Effect.fail(failure(
            endpoint,
            "bad_response",
            `${syntax === undefined ? DecodeIssues.describe(decoded.left) : `not JSON (${syntax})`}; ${body}`,
            { status: response.status }
          ))
        }
        const body = decoded.right
        const choice = body.choices[0]
        const usage = body.usage
        return Effect.succeed<Completion>({
          content: choice.message.content ?? "",
          finishReason: choice.finish_reason,
          refusal: choice.message.refusal,
          usage: usage === undefined || usage === null ?
            Option.none() :
            Option.some({
              promptTokens: Math.round(usage.prompt_tokens),
              completionTokens: Math.round(usage.completion_tokens)
            })
        })
      })
    ),
    Effect.timeoutFail({
      duration: timeout,
      onTimeout: () => failure(endpoint, "timeout", `no complete reply within ${Duration.format(timeout)}`)
    })
  )
}
