import { assert, describe, it } from "@effect/vitest"
import * as ChatCompletions from "@quarry/llm/ChatCompletions"

const now = Date.parse("2026-12-07T12:00:00Z")

const delay = (headers: Record<string, string>) => ChatCompletions.retryAfterMillis(headers, now)

describe("ChatCompletions.retryAfterMillis", () => {
  it("reads delay-seconds, retry-after-ms and an HTTP date in the future", () => {
    assert.strictEqual(delay({ "retry-after": "20" }), 20_000)
    assert.strictEqual(delay({ "retry-after": " 1.5 " }), 1_500)
    assert.strictEqual(delay({ "retry-after-ms": "250", "retry-after": "20" }), 250)
    assert.strictEqual(delay({ "retry-after": "Mon, 07 Dec 2026 12:00:30 GMT" }), 30_000)
  })

  it("an HTTP date in the past asks for no wait", () => {
    assert.strictEqual(delay({ "retry-after": "Wed, 21 Oct 2015 07:28:00 GMT" }), 0)
  })

  it("a negative, malformed or empty value is no request to wait: the caller's own backoff applies", () => {
    for (const value of ["-5", "-0.5", "abc", "", "  ", "1e3", "0x10", "Infinity", "NaN", "20 seconds"]) {
      assert.isUndefined(delay({ "retry-after": value }), `Retry-After: ${value}`)
    }
    // A malformed retry-after-ms leaves Retry-After to decide.
    assert.strictEqual(delay({ "retry-after-ms": "-1", "retry-after": "3" }), 3_000)
  })

  it("a huge value stays a finite number of milliseconds", () => {
    for (const value of ["99999999999999999999", "9".repeat(400)]) {
      const millis = delay({ "retry-after": value })
      assert.isTrue(millis !== undefined && Number.isSafeInteger(millis), `Retry-After: ${value.slice(0, 30)}`)
      const ms = delay({ "retry-after-ms": value })
      assert.isTrue(ms !== undefined && Number.isSafeInteger(ms), `retry-after-ms: ${value.slice(0, 30)}`)
    }
  })
})
