/**
 * A request's `Range` over a file of known size (RFC 9110, section 14), so that a client whose download of a large
 * artifact broke asks for the rest instead of starting over. One range only: a request for several is answered with
 * the whole file, which the RFC allows, as it allows ignoring a `Range` that does not parse.
 *
 * @since 0.1.0
 */

/**
 * What to send: the whole file, bytes `start` to `end` (inclusive), or nothing (`416`: no byte of the range exists).
 *
 * @since 0.1.0
 * @category models
 */
export type Selection =
  | { readonly _tag: "Whole" }
  | { readonly _tag: "Part"; readonly start: number; readonly end: number }
  | { readonly _tag: "Unsatisfiable" }

const whole: Selection = { _tag: "Whole" }

const spec = /^bytes=(\d*)-(\d*)$/

/**
 * The selection of a `Range` header; `ifRange` and `etag` apply `If-Range`: a range of another version of the file
 * (an ETag that is not the current one, or a date, which a strong ETag makes unneeded) gets the whole file.
 *
 * @since 0.1.0
 * @category parsing
 */
export const select = (
  range: string | undefined,
  size: number,
  ifRange: string | undefined,
  etag: string
): Selection => {
  if (range === undefined || (ifRange !== undefined && ifRange.trim() !== etag)) return whole
  const match = spec.exec(range.trim())
  if (match === null || (match[1] === "" && match[2] === "")) return whole
  // An empty file has no byte to select.
  if (size === 0) return { _tag: "Unsatisfiable" }
  const [, first = "", last = ""] = match
  if (first === "") {
    // `bytes=-N`: the last N bytes.
    const suffix = Number(last)
    return suffix === 0 ? { _tag: "Unsatisfiable" } : { _tag: "Part", start: Math.max(0, size - suffix), end: size - 1 }
  }
  const start = Number(first)
  const end = last === "" ? size - 1 : Math.min(Number(last), size - 1)
  if (last !== "" && Number(last) < start) return whole
  return start >= size ? { _tag: "Unsatisfiable" } : { _tag: "Part", start, end }
}
