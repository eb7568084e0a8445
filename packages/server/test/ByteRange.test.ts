import { assert, describe, it } from "@effect/vitest"
import * as ByteRange from "@quarry/server/ByteRange"

const etag = "\"abc\""
const select = (range: string | undefined, ifRange?: string) => ByteRange.select(range, 100, ifRange, etag)

describe("ByteRange.select", () => {
  it("a range from a byte, between two, or the last bytes", () => {
    assert.deepStrictEqual(select("bytes=10-"), { _tag: "Part", start: 10, end: 99 })
    assert.deepStrictEqual(select("bytes=10-19"), { _tag: "Part", start: 10, end: 19 })
    assert.deepStrictEqual(select("bytes=90-500"), { _tag: "Part", start: 90, end: 99 })
    assert.deepStrictEqual(select("bytes=-10"), { _tag: "Part", start: 90, end: 99 })
    assert.deepStrictEqual(select("bytes=-500"), { _tag: "Part", start: 0, end: 99 })
  })

  it("no byte of the file in the range: unsatisfiable", () => {
    assert.deepStrictEqual(select("bytes=100-"), { _tag: "Unsatisfiable" })
    assert.deepStrictEqual(select("bytes=-0"), { _tag: "Unsatisfiable" })
    assert.deepStrictEqual(ByteRange.select("bytes=0-", 0, undefined, etag), { _tag: "Unsatisfiable" })
    assert.deepStrictEqual(ByteRange.select("bytes=-10", 0, undefined, etag), { _tag: "Unsatisfiable" })
  })

  it("the whole file without a range, for a range it ignores, or one of another version (If-Range)", () => {
    for (const range of [undefined, "bytes=0-9,20-29", "items=0-9", "bytes=9-3", "bytes=-", "bytes=a-"]) {
      assert.deepStrictEqual(select(range), { _tag: "Whole" }, String(range))
    }
    assert.deepStrictEqual(select("bytes=10-", "\"other\""), { _tag: "Whole" })
    assert.deepStrictEqual(select("bytes=10-", "Sun, 06 Dec 2026 21:00:00 GMT"), { _tag: "Whole" })
    assert.deepStrictEqual(select("bytes=10-", etag), { _tag: "Part", start: 10, end: 99 })
  })
})
