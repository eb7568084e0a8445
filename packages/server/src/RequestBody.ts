/**
 * A request body read whole, up to a limit. Past the limit the rest is read and dropped as it arrives: the platform's
 * own limit destroys the request, and with it the connection, so a client still sending a chunked body got no answer
 * at all instead of its `413`. A JSON body must say so in its `Content-Type`, and is checked for its nesting depth
 * before any schema sees it.
 *
 * @since 0.1.0
 */
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"

/**
 * The body is larger than the limit.
 *
 * @since 0.1.0
 * @category errors
 */
export class BodyTooLarge extends Data.TaggedError("BodyTooLarge")<{ readonly maxBytes: number }> {}

/**
 * The body could not be read (the client went away).
 *
 * @since 0.1.0
 * @category errors
 */
export class BodyUnreadable extends Data.TaggedError("BodyUnreadable")<{ readonly cause: unknown }> {}

/**
 * The request's body, or `BodyTooLarge` as soon as it passes `maxBytes`.
 *
 * @since 0.1.0
 * @category reading
 */
export const read = (
  request: HttpServerRequest.HttpServerRequest,
  maxBytes: number
): Effect.Effect<Uint8Array, BodyTooLarge | BodyUnreadable> =>
  Effect.async((resume) => {
    const incoming = NodeHttpServerRequest.toIncomingMessage(request)
    const chunks: Array<Buffer> = []
    let bytes = 0
    let settled = false
    const settle = (effect: Effect.Effect<Uint8Array, BodyTooLarge | BodyUnreadable>) => {
      settled = true
      chunks.length = 0
      resume(effect)
    }
    // Stays attached after the answer, so that the rest of a body too large flows and is dropped.
    incoming.on("data", (chunk: Buffer) => {
      if (settled) return
      bytes += chunk.length
      if (bytes > maxBytes) settle(Effect.fail(new BodyTooLarge({ maxBytes })))
      else chunks.push(chunk)
    })
    incoming.once("end", () => {
      if (!settled) settle(Effect.succeed(Buffer.concat(chunks)))
    })
    incoming.once("error", (cause) => {
      if (!settled) settle(Effect.fail(new BodyUnreadable({ cause })))
    })
  })

/**
 * How deeply a JSON body may nest arrays and objects. A submission needs 2; Schema's decoding and its error messages
 * recurse through the value, and a few thousand levels (6 KB of brackets) overflowed the stack: a 500.
 *
 * @since 0.1.0
 * @category constants
 */
export const maxJsonDepth = 64

const isContainer = (value: unknown): value is object => typeof value === "object" && value !== null

/**
 * Whether a parsed JSON value nests arrays and objects deeper than `levels`; walked without recursion, so that any
 * depth can be measured.
 *
 * @since 0.1.0
 * @category reading
 */
export const nestsDeeperThan = (value: unknown, levels: number): boolean => {
  const pending: Array<{ readonly value: object; readonly level: number }> = isContainer(value)
    ? [{ value, level: 1 }]
    : []
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    if (next.level > levels) return true
    for (const child of Object.values(next.value)) {
      if (isContainer(child)) pending.push({ value: child, level: next.level + 1 })
    }
  }
  return false
}

/**
 * Whether a `Content-Type` is JSON (`application/json`, with parameters such as `charset=utf-8` or not). A form or
 * `text/plain` is what a page of another site can send without a CORS preflight: never taken as JSON.
 *
 * @since 0.1.0
 * @category reading
 */
export const isJson = (contentType: string | undefined): boolean =>
  contentType !== undefined && /^application\/json\s*(;|$)/i.test(contentType.trim())
