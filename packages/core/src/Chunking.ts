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
export const chunkerVersion = "1"

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
 * Checks parameters; the first problem found is returned as a `ChunkingError` whose message names the fix.
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
    // An explicit window smaller than the default overlap gets no overlap rather than an error.
    const overlap = params.overlap ?? (params.windowSize !== undefined && windowSize <= defaults.overlap ?
      0 :
      defaults.overlap)
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
    return new ChunkingParams({ strategy, windowSize, overlap, batchSize })
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

const isLowSurrogate = (code: number) => code >= 0xdc00 && code <= 0xdfff

/** A cut at `i` separates two words (or touches whitespace) and never splits a surrogate pair. */
const isWordBoundary = (text: string, i: number) =>
  i <= 0 || i >= text.length || isSpace(text.charCodeAt(i)) || isSpace(text.charCodeAt(i - 1))

/** Moves `i` forward off the second half of a surrogate pair. */
const safeCut = (text: string, i: number) => i < text.length && isLowSurrogate(text.charCodeAt(i)) ? i + 1 : i

/** True when the text has no non-whitespace character: such input has no chunks at all. */
const isBlank = (text: string) => {
  for (let i = 0; i < text.length; i++) {
    if (!isSpace(text.charCodeAt(i))) return false
  }
  return true
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
  while (start < to) {
    let end = Math.min(start + windowSize, to)
    if (end < to) {
      let cut = end
      while (cut > start && !isWordBoundary(text, cut)) cut--
      // One word longer than the window: cut inside it, but never inside a surrogate pair.
      end = cut > start ? cut : isLowSurrogate(text.charCodeAt(end)) ? (end - 1 > start ? end - 1 : end + 1) : end
    }
    spans.push([start, end])
    if (end >= to) break
    let next = Math.max(start + 1, end - overlap)
    while (next < end && !isWordBoundary(text, next)) next++
    start = safeCut(text, next)
  }
  return spans
}

const abbreviation =
  /(?:^|[\s(])(?:Mr|Mrs|Ms|Dr|Prof|Sr|Jr|St|Mt|Gen|Col|Capt|Lt|Sgt|Rev|Hon|Gov|Sen|Rep|Inc|Ltd|Co|Corp|vs|etc|e\.g|i\.e|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec|No|U\.S|U\.K|[A-Z])\.\s*$/

/** Paragraphs longer than this are pre-cut at whitespace: `Intl.Segmenter` is quadratic on long strings in Node 20. */
const maxSegmentInput = 4096

let sentenceSegmenter: Intl.Segmenter | undefined

/**
 * Sentence spans that partition `text` (each sentence keeps its trailing whitespace). Segments per paragraph, and
 * rejoins a sentence that `Intl.Segmenter` ended after an abbreviation such as "Dr." or "U.S.".
 */
const sentenceSpans = (text: string): Array<readonly [number, number]> => {
  sentenceSegmenter ??= new Intl.Segmenter("en", { granularity: "sentence" })
  const spans: Array<[number, number]> = []
  const pieces = /\n[ \t]*\n\s*/g
  let pieceStart = 0
  const segmentPiece = (from: number, to: number) => {
    for (const [a, b] of charWindows(text, from, to, maxSegmentInput, 0)) {
      for (const segment of sentenceSegmenter!.segment(text.slice(a, b))) {
        const start = a + segment.index
        const end = start + segment.segment.length
        const last = spans[spans.length - 1]
        if (last !== undefined && last[1] === start && abbreviation.test(text.slice(last[0], last[1]))) {
          last[1] = end
        } else {
          spans.push([start, end])
        }
      }
    }
  }
  for (let match = pieces.exec(text); match !== null; match = pieces.exec(text)) {
    const end = match.index + match[0].length
    segmentPiece(pieceStart, end)
    pieceStart = end
  }
  if (pieceStart < text.length) segmentPiece(pieceStart, text.length)
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
    // Repeat trailing sentences of this window in the next one, up to `overlap` units in total.
    let next = last + 1
    while (next - 1 > first && units[last]![1] - units[next - 1]![0] <= overlap) next--
    first = next
  }
  return spans
}

/**
 * Cuts the text into chunks. Chunks cover the whole input in order (`chars`) and every chunk is an exact slice of
 * the input at its offsets. A blank input has no chunks.
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
