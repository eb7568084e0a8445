/**
 * Pure chunking: a document becomes windows (chunks) with exact document offsets, and chunks become batches.
 * Nothing here throws; invalid parameters are `ChunkingError`s.
 *
 * @since 0.1.0
 */
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"

/**
 * Bumped whenever the same text and parameters could give different chunks; stored with every run so that resume
 * refuses to re-plan a run with a different chunker.
 *
 * @since 0.1.0
 * @category constants
 */
export const chunkerVersion = "2"

/**
 * How the text is cut: `chars` (windows of at most `windowSize` UTF-16 units, cut at word boundaries) or
 * `sentences` (windows of whole sentences).
 *
 * @since 0.1.0
 * @category models
 */
export const Strategy = Schema.Literal("chars", "sentences")

/**
 * @since 0.1.0
 * @category models
 */
export type Strategy = typeof Strategy.Type

/**
 * Chunking parameters as stored with a run.
 *
 * @since 0.1.0
 * @category models
 */
export class ChunkingParams extends Schema.Class<ChunkingParams>("@quarry/core/Chunking/ChunkingParams")({
  strategy: Strategy,
  windowSize: Schema.Number,
  overlap: Schema.Number,
  batchSize: Schema.Number
}) {}

/**
 * The defaults (window 1000, overlap 200, batch 10, `chars`), as in the reference system.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaults: ChunkingParams = new ChunkingParams({
  strategy: "chars",
  windowSize: 1000,
  overlap: 200,
  batchSize: 10
})

/**
 * Why chunking parameters were refused.
 *
 * @since 0.1.0
 * @category errors
 */
export class ChunkingError extends Schema.TaggedError<ChunkingError>()("ChunkingError", {
  parameter: Schema.Literal("strategy", "windowSize", "overlap", "batchSize"),
  value: Schema.Unknown,
  reason: Schema.String
}) {
  override get message() {
    return this.reason
  }
}

const flagName = { strategy: "chunking", windowSize: "window", overlap: "overlap", batchSize: "batch-size" } as const

const positiveInteger = (parameter: "windowSize" | "batchSize", value: number) =>
  Number.isSafeInteger(value) && value > 0 ?
    Either.right(value) :
    Either.left(
      new ChunkingError({
        parameter,
        value,
        reason: `${flagName[parameter]} (${value}) must be a whole number greater than 0`
      })
    )

/**
 * Checks parameters; the first problem found is returned as a `ChunkingError` whose message names the fix. Missing
 * values take the defaults, except that a window given without an overlap gets a fifth of itself (at most 200).
 *
 * @since 0.1.0
 * @category validation
 */
export const validate = (params: {
  readonly strategy?: string | undefined
  readonly windowSize?: number | undefined
  readonly overlap?: number | undefined
  readonly batchSize?: number | undefined
}): Either.Either<ChunkingParams, ChunkingError> => {
  const strategy = params.strategy ?? defaults.strategy
  if (strategy !== "chars" && strategy !== "sentences") {
    return Either.left(
      new ChunkingError({
        parameter: "strategy",
        value: strategy,
        reason: `chunking strategy "${strategy}" is unknown; use "chars" or "sentences"`
      })
    )
  }
  return Either.gen(function*() {
    const windowSize = yield* positiveInteger("windowSize", params.windowSize ?? defaults.windowSize)
    const batchSize = yield* positiveInteger("batchSize", params.batchSize ?? defaults.batchSize)
    // Without an explicit overlap, a window gets a fifth of itself (at most the default 200): a fixed 200 would make
    // a window of 250 repeat 80% of the previous one, and would be an error for a window of 200.
    const overlap = params.overlap ?? Math.min(defaults.overlap, Math.floor(windowSize / 5))
    if (!Number.isSafeInteger(overlap) || overlap < 0) {
      return yield* Either.left(
        new ChunkingError({
          parameter: "overlap",
          value: overlap,
          reason: `overlap (${overlap}) must be a whole number of 0 or more`
        })
      )
    }
    if (overlap >= windowSize) {
      return yield* Either.left(
        new ChunkingError({
          parameter: "overlap",
          value: overlap,
          reason: `overlap (${overlap}) must be smaller than window (${windowSize})`
        })
      )
    }
    // `+ 0` turns -0 into 0, so that stored parameters compare equal.
    return new ChunkingParams({ strategy, windowSize: windowSize + 0, overlap: overlap + 0, batchSize: batchSize + 0 })
  })
}

/**
 * A window of the document: `text === input.slice(start, end)`.
 *
 * @since 0.1.0
 * @category models
 */
export class Chunk extends Schema.Class<Chunk>("@quarry/core/Chunking/Chunk")({
  index: Schema.Int,
  start: Schema.Int,
  end: Schema.Int,
  text: Schema.String
}) {}

/**
 * A group of consecutive chunks handed to one extractor call.
 *
 * @since 0.1.0
 * @category models
 */
export interface Batch {
  readonly index: number
  readonly chunks: ReadonlyArray<Chunk>
}

const isSpace = (code: number) =>
  code === 0x20 || (code >= 0x09 && code <= 0x0d) || code === 0xa0 || code === 0x1680 ||
  (code >= 0x2000 && code <= 0x200a) || code === 0x2028 || code === 0x2029 || code === 0x202f || code === 0x205f ||
  code === 0x3000 || code === 0xfeff

/** True when a cut at `i` would separate the two halves of a surrogate pair. */
const splitsPair = (text: string, i: number) => {
  const low = text.charCodeAt(i)
  const high = text.charCodeAt(i - 1)
  return low >= 0xdc00 && low <= 0xdfff && high >= 0xd800 && high <= 0xdbff
}

/** A cut at `i` separates two words (or touches whitespace), so it never splits a surrogate pair. */
const isWordBoundary = (text: string, i: number) =>
  i <= 0 || i >= text.length || isSpace(text.charCodeAt(i)) || isSpace(text.charCodeAt(i - 1))

/** True when the text has no non-whitespace character: such input has no chunks at all. */
const isBlank = (text: string) => {
  for (let i = 0; i < text.length; i++) {
    if (!isSpace(text.charCodeAt(i))) return false
  }
  return true
}

/**
 * Where a window starting at `start` and allowed to reach `limit` (< end of its range) ends: the last word boundary
 * after its first word; before that word when leading whitespace leaves it no room; inside it only when the word
 * alone is longer than the window, and then never inside a surrogate pair.
 */
const windowEnd = (text: string, start: number, limit: number) => {
  let wordStart = start
  while (wordStart < limit && isSpace(text.charCodeAt(wordStart))) wordStart++
  if (wordStart === limit) return limit
  let cut = limit
  while (cut > wordStart && !isWordBoundary(text, cut)) cut--
  if (cut > wordStart) return cut
  if (wordStart > start) return wordStart
  // A window of 1 cannot hold a surrogate pair; it gets the whole pair rather than half of it.
  return splitsPair(text, limit) ? (limit - 1 > start ? limit - 1 : limit + 1) : limit
}

/** Windows over `[from, to)` of at most `windowSize` units, cut at word boundaries, overlapping by up to `overlap`. */
const charWindows = (
  text: string,
  from: number,
  to: number,
  windowSize: number,
  overlap: number
): Array<readonly [number, number]> => {
  const spans: Array<readonly [number, number]> = []
  let start = from
  let previousEnd = from
  while (start < to) {
    const end = start + windowSize < to ? windowEnd(text, start, start + windowSize) : to
    if (end <= previousEnd) {
      // The overlap left no room for anything new (a long word follows it): this window starts where the last ended.
      start = previousEnd
      continue
    }
    spans.push([start, end])
    if (end >= to) break
    previousEnd = end
    // Back up by at most `overlap` units, then forward to the start of a word, so the overlap holds whole words.
    let next = Math.max(start + 1, end - overlap)
    while (next < end && !isWordBoundary(text, next)) next++
    while (next < end && isSpace(text.charCodeAt(next))) next++
    start = next
  }
  return spans
}

const titles =
  "Mr|Mrs|Ms|Messrs|Mme|Mlle|Dr|Prof|St|Mt|Ft|Gen|Col|Maj|Capt|Cmdr|Adm|Lt|Sgt|Cpl|Rev|Fr|Hon|Gov|Sen|Rep|Pres"

/** Abbreviations that never end a sentence: titles, dotted initialisms, single initials other than "I". */
const alwaysContinues = new RegExp(
  `(?:^|[\\s("'\u201c\u2018\\[])(?:${titles}|U\\.S|U\\.K|U\\.N|e\\.g|i\\.e|vs|cf|viz|[A-HJ-Z])\\.\\s*$`
)

/** Abbreviations that continue a sentence only before a number ("Jan. 5", "No. 7"): "No." alone is an answer. */
const continuesBeforeNumber =
  /(?:^|[\s(])(?:No|Nos|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec|Vol|Ch|Fig|pp?|A\.D|B\.C)\.\s*$/

const startsWithDigit = /^[0-9]/

/** Paragraph breaks (a blank line, also with CRLF, or U+2029): sentences never continue across them. */
const paragraphBreak = /(?:\n[ \t\r\v\f]*\n|\u2029)\s*/g

/** Line breaks inside a paragraph are hard wraps; `Intl.Segmenter` would end a sentence at each of them. */
const lineBreak = /[\n\r\v\f\u0085\u2028]/g

/** At most this much text is given to `Intl.Segmenter` at once: it is quadratic on long strings in Node 20. */
const maxSegmentInput = 4096

let sentenceSegmenter: Intl.Segmenter | undefined

/**
 * Sentence spans that partition `text` (each sentence keeps its trailing whitespace). Segments each paragraph in
 * slices of at most `maxSegmentInput` units, re-reading the last (possibly cut) sentence of a slice in the next one,
 * and rejoins sentences that `Intl.Segmenter` ended after an abbreviation such as "Dr." or "U.S.".
 */
const sentenceSpans = (text: string): Array<readonly [number, number]> => {
  const segmenter = sentenceSegmenter ??= new Intl.Segmenter("en", { granularity: "sentence" })
  const spans: Array<[number, number]> = []
  const segmentParagraph = (from: number, to: number) => {
    let previous: string | undefined
    const push = (start: number, end: number) => {
      const sentence = text.slice(start, end)
      const last = spans[spans.length - 1]
      if (
        last !== undefined && previous !== undefined &&
        (alwaysContinues.test(previous) ||
          (startsWithDigit.test(sentence) && continuesBeforeNumber.test(previous)))
      ) {
        last[1] = end
      } else {
        spans.push([start, end])
      }
      previous = sentence
    }
    let position = from
    while (position < to) {
      const limit = position + maxSegmentInput < to ? windowEnd(text, position, position + maxSegmentInput) : to
      const segments = Array.from(segmenter.segment(text.slice(position, limit).replace(lineBreak, " ")))
      // The last sentence of a slice that ends before the paragraph does may be cut short: read it again next time.
      const keep = limit < to && segments.length > 1 ? segments.length - 1 : segments.length
      for (let k = 0; k < keep; k++) {
        const segment = segments[k]!
        push(position + segment.index, position + segment.index + segment.segment.length)
      }
      position = keep < segments.length ? position + segments[keep]!.index : limit
    }
  }
  let paragraphStart = 0
  paragraphBreak.lastIndex = 0
  for (let match = paragraphBreak.exec(text); match !== null; match = paragraphBreak.exec(text)) {
    const end = match.index + match[0].length
    segmentParagraph(paragraphStart, end)
    paragraphStart = end
  }
  if (paragraphStart < text.length) segmentParagraph(paragraphStart, text.length)
  return spans
}

const sentenceWindows = (text: string, windowSize: number, overlap: number): Array<readonly [number, number]> => {
  // Sentences longer than the window are cut like `chars` windows, without overlap inside them.
  const units = sentenceSpans(text).flatMap(([a, b]) =>
    b - a > windowSize ? charWindows(text, a, b, windowSize, 0) : [[a, b] as const]
  )
  const spans: Array<readonly [number, number]> = []
  let first = 0
  while (first < units.length) {
    let last = first
    while (last + 1 < units.length && units[last + 1]![1] - units[first]![0] <= windowSize) last++
    spans.push([units[first]![0], units[last]![1]])
    if (last === units.length - 1) break
    // Repeat trailing sentences of this window in the next one, up to `overlap` units in total, as long as the next
    // window still has room for the sentence after this window (otherwise it would add nothing new).
    const after = units[last + 1]![1]
    let next = last + 1
    while (
      next - 1 > first && units[last]![1] - units[next - 1]![0] <= overlap &&
      after - units[next - 1]![0] <= windowSize
    ) next--
    first = next
  }
  return spans
}

/**
 * Cuts the text into chunks. Chunks cover the whole input in order, each one starting after the previous start, at
 * or before the previous end, and ending after the previous end; consecutive chunks overlap by at most `overlap`.
 * Every chunk is an exact slice of the input at its offsets. A blank input has no chunks.
 *
 * @since 0.1.0
 * @category chunking
 */
export const chunk = (text: string, params: ChunkingParams): ReadonlyArray<Chunk> => {
  if (isBlank(text)) return []
  const spans = params.strategy === "chars" ?
    charWindows(text, 0, text.length, params.windowSize, params.overlap) :
    sentenceWindows(text, params.windowSize, params.overlap)
  return spans.map(([start, end], index) => new Chunk({ index, start, end, text: text.slice(start, end) }))
}

/**
 * Groups chunks into batches of `batchSize` consecutive chunks.
 *
 * @since 0.1.0
 * @category chunking
 */
export const batches = (chunks: ReadonlyArray<Chunk>, batchSize: number): ReadonlyArray<Batch> => {
  const out: Array<Batch> = []
  for (let i = 0; i < chunks.length; i += batchSize) {
    out.push({ index: out.length, chunks: chunks.slice(i, i + batchSize) })
  }
  return out
}

/**
 * The batches of a document under the given parameters.
 *
 * @since 0.1.0
 * @category chunking
 */
export const plan = (text: string, params: ChunkingParams): ReadonlyArray<Batch> =>
  batches(chunk(text, params), params.batchSize)
