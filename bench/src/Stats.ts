/**
 * Small statistics and formatting helpers shared by the benchmarks.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"

/**
 * Min, median and max (and mean) of repeated measurements.
 *
 * @since 0.1.0
 * @category models
 */
export interface Summary {
  readonly n: number
  readonly min: number
  readonly median: number
  readonly max: number
  readonly mean: number
}

/**
 * Summarises measurements; an empty list gives NaNs so that a missing figure is visible, never zero.
 *
 * @since 0.1.0
 * @category statistics
 */
export const summarize = (values: ReadonlyArray<number>): Summary => {
  if (values.length === 0) return { n: 0, min: NaN, median: NaN, max: NaN, mean: NaN }
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  const median = sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
  return {
    n: sorted.length,
    min: sorted[0]!,
    median,
    max: sorted[sorted.length - 1]!,
    mean: sorted.reduce((a, b) => a + b, 0) / sorted.length
  }
}

/**
 * The nearest-rank percentile `p` (0..100) of already sorted values.
 *
 * @since 0.1.0
 * @category statistics
 */
export const percentile = (sorted: ReadonlyArray<number>, p: number): number => {
  if (sorted.length === 0) return NaN
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length))
  return sorted[Math.min(rank, sorted.length) - 1]!
}

/**
 * A monotonic timestamp in milliseconds.
 *
 * @since 0.1.0
 * @category timing
 */
export const now: Effect.Effect<number> = Effect.sync(() => performance.now())

/**
 * Runs an effect and returns its result with the elapsed milliseconds.
 *
 * @since 0.1.0
 * @category timing
 */
export const timed = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<readonly [A, number], E, R> =>
  Effect.gen(function*() {
    const start = performance.now()
    const result = yield* effect
    return [result, performance.now() - start] as const
  })

/**
 * Asks V8 for a full collection between measurements when `--expose-gc` is on; a no-op otherwise.
 *
 * @since 0.1.0
 * @category timing
 */
export const collectGarbage: Effect.Effect<void> = Effect.sync(() => {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc !== undefined) gc()
})

/**
 * Asks V8 for a young-generation collection (a scavenge) when `--expose-gc` is on; a no-op otherwise. Unlike a full
 * collection it leaves optimized code alone: a forced full collection also discards the optimized code that had
 * embedded objects of finished runs (V8's "weak objects" deoptimization), so the next run re-pays the JIT's warm-up.
 *
 * @since 0.1.0
 * @category timing
 */
export const collectYoungGarbage: Effect.Effect<void> = Effect.sync(() => {
  const gc = (globalThis as { gc?: (options: { readonly type: "minor" }) => void }).gc
  if (gc !== undefined) gc({ type: "minor" })
})

const digits = (value: number) => Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : 2

/**
 * A number with a precision that fits its size.
 *
 * @since 0.1.0
 * @category formatting
 */
export const num = (value: number, fractionDigits?: number): string =>
  Number.isFinite(value) ?
    value.toLocaleString("en-US", {
      maximumFractionDigits: fractionDigits ?? digits(value),
      minimumFractionDigits: fractionDigits ?? digits(value)
    }) :
    "n/a"

/**
 * A whole count with thousands separators.
 *
 * @since 0.1.0
 * @category formatting
 */
export const int = (value: number): string => Number.isFinite(value) ? Math.round(value).toLocaleString("en-US") : "n/a"

/**
 * Milliseconds, or microseconds when small.
 *
 * @since 0.1.0
 * @category formatting
 */
export const ms = (value: number): string =>
  !Number.isFinite(value) ? "n/a" : value < 1 ? `${num(value * 1000)} µs` : value >= 10_000 ?
    `${num(value / 1000)} s` :
    `${num(value)} ms`

/**
 * `min / median / max` of a summary, each formatted by `format`.
 *
 * @since 0.1.0
 * @category formatting
 */
export const range = (summary: Summary, format: (value: number) => string = ms): string =>
  `${format(summary.min)} / ${format(summary.median)} / ${format(summary.max)}`

/**
 * Bytes in B, KB, MB or GB (binary multiples).
 *
 * @since 0.1.0
 * @category formatting
 */
export const bytes = (value: number): string => {
  if (!Number.isFinite(value)) return "n/a"
  const units = ["B", "KB", "MB", "GB"]
  let v = value
  let unit = 0
  while (Math.abs(v) >= 1024 && unit < units.length - 1) {
    v /= 1024
    unit++
  }
  return unit === 0 ? `${Math.round(v)} B` : `${num(v)} ${units[unit]}`
}

/**
 * A ratio such as `1.23x`.
 *
 * @since 0.1.0
 * @category formatting
 */
export const ratio = (value: number): string => Number.isFinite(value) ? `${num(value, 2)}x` : "n/a"
