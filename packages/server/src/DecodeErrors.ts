/**
 * The platform answers a request whose path or query does not match the API's schemas with its own body
 * (`{"_tag":"HttpApiDecodeError","issues":[...],"message":"<tree>"}`) before any handler runs. This rewrites that
 * body into the API's error shape, `{ "error": { "tag": "InvalidRequest", "message" } }`, with one line per issue, so
 * that clients (and the dashboard) read every error the same way.
 *
 * @since 0.1.0
 */
import type * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { unsafeJson } from "@effect/platform/HttpServerResponse"
import * as Schema from "effect/Schema"

const DecodeError = Schema.parseJson(Schema.Struct({
  _tag: Schema.Literal("HttpApiDecodeError"),
  issues: Schema.Array(Schema.Struct({ path: Schema.Array(Schema.Unknown), message: Schema.String }))
}))

const decode = Schema.decodeUnknownOption(DecodeError)

const literal = /^Expected (.+), actual (.+)$/

/** `expected one of "a", "b", got "c"` for the alternatives of a union of literals; else the messages joined. */
const summarize = (messages: ReadonlyArray<string>) => {
  const matches = messages.map((m) => literal.exec(m))
  if (messages.length < 2 || matches.some((m) => m === null)) return messages.join("; ")
  const expected = matches.flatMap((m) => m === null || m[1] === "undefined" ? [] : [m[1]])
  return `expected one of ${expected.join(", ")}, got ${matches[0]?.[2] ?? "?"}`
}

/**
 * The response in the API's error shape when it is the platform's decode error, else unchanged.
 *
 * @since 0.1.0
 * @category responses
 */
export const normalize = (response: HttpServerResponse.HttpServerResponse): HttpServerResponse.HttpServerResponse => {
  if (response.status !== 400 || response.body._tag !== "Uint8Array") return response
  const parsed = decode(new TextDecoder().decode(response.body.body))
  if (parsed._tag === "None") return response
  // One message per place: a union reports each alternative it tried ("Expected X, actual Y" for each literal).
  const byPath = new Map<string, Array<string>>()
  for (const issue of parsed.value.issues) {
    const where = issue.path.map(String).join(".") || "request"
    byPath.set(where, [...(byPath.get(where) ?? []), issue.message])
  }
  const message = [...byPath].map(([where, messages]) => `${where}: ${summarize(messages)}`).join("; ")
  return unsafeJson({ error: { tag: "InvalidRequest", message } }, { status: 400, headers: response.headers })
}
