/**
 * The platform answers a request whose path or query does not match the API's schemas with its own body
 * (`{"_tag":"HttpApiDecodeError","issues":[...],"message":"<tree>"}`) before any handler runs. This rewrites that
 * body into the API's error shape, `{ "error": { "tag": "InvalidRequest", "message" } }`, with one line per issue, so
 * that clients (and the dashboard) read every error the same way.
 *
 * @since 0.1.0
 */
import type * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Schema from "effect/Schema"
import * as ApiError from "./ApiError.js"

const DecodeError = Schema.parseJson(Schema.Struct({
  _tag: Schema.Literal("HttpApiDecodeError"),
  issues: Schema.Array(Schema.Struct({ path: Schema.Array(Schema.Unknown), message: Schema.String }))
}))

const decode = Schema.decodeUnknownOption(DecodeError)

const literal = /^Expected (.+), actual (.+)$/
const undefinedAlternative = /^Expected undefined, actual /

/** `expected one of "a", "b", got "c"` for the alternatives of a union of literals; else the messages joined. */
const summarize = (messages: ReadonlyArray<string>) => {
  const matches = messages.map((m) => literal.exec(m))
  if (messages.length < 2 || matches.some((m) => m === null)) return messages.join("; ")
  return `expected one of ${matches.map((m) => m?.[1]).join(", ")}, got ${matches[0]?.[2] ?? "?"}`
}

/**
 * One line per place of a request's schema issues: `budget.maxTokens: Expected an integer, actual 1.5`. An optional
 * field reports its `undefined` alternative besides the real failure, so that alternative is left out.
 *
 * @since 0.1.0
 * @category formatting
 */
export const describe = (
  issues: ReadonlyArray<{ readonly path: ReadonlyArray<unknown>; readonly message: string }>,
  whole: string
): string => {
  const kept = issues.filter((issue) => !undefinedAlternative.test(issue.message))
  const byPath = new Map<string, Array<string>>()
  for (const issue of kept.length > 0 ? kept : issues) {
    const where = issue.path.map(String).join(".") || whole
    byPath.set(where, [...(byPath.get(where) ?? []), issue.message])
  }
  return [...byPath].map(([where, messages]) => `${where}: ${summarize(messages)}`).join("; ")
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
  const message = describe(parsed.value.issues, "request")
  return ApiError.response(400, "InvalidRequest", message, response.headers)
}
