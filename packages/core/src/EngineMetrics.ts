/**
 * The engine's metrics, measured where the work happens (batch extraction and commit in `Workflow`). They are
 * Effect `Metric`s in the process-wide registry: a command that exports nothing pays a few map updates per batch;
 * `quarry serve` exports them (with its own) through OpenTelemetry's Prometheus exporter.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as MetricKey from "effect/MetricKey"
import type { ExtractorError } from "./Errors.js"

/**
 * Batches committed (skipped batches included: they are committed empty).
 *
 * @since 0.1.0
 * @category metrics
 */
export const batchesCommitted = Metric.counter("quarry_batches_committed_total", {
  description: "Batches committed with their checkpoint",
  incremental: true
})

/**
 * Batches committed empty because their extraction failed under the `skip` policy.
 *
 * @since 0.1.0
 * @category metrics
 */
export const batchesSkipped = Metric.counter("quarry_batches_skipped_total", {
  description: "Batches skipped (committed empty) after an extractor error under onBatchError=skip",
  incremental: true
})

const extractionSecondsKey = MetricKey.histogram(
  "quarry_batch_extraction_seconds",
  MetricBoundaries.exponential({ start: 0.005, factor: 2, count: 18 }),
  "Time to extract one batch (successful extractions)"
)

/**
 * How long one batch's extraction took, in seconds, by extractor (from 5 ms to about 20 minutes: an LLM batch with
 * retries can take minutes).
 *
 * @since 0.1.0
 * @category metrics
 */
export const batchExtractionSeconds = Metric.fromMetricKey(extractionSecondsKey)

/**
 * How long one commit transaction took (one batch, or a group of batches under group commit), in seconds (from 0.5 ms
 * to about 4 s).
 *
 * @since 0.1.0
 * @category metrics
 */
export const batchCommitSeconds = Metric.histogram(
  "quarry_batch_commit_seconds",
  MetricBoundaries.exponential({ start: 0.0005, factor: 2, count: 14 }),
  "Time of one commit transaction: a batch with its checkpoint, or a group of them under group commit"
)

/**
 * Extractor errors by extractor and reason (`reasonOf`), counted whatever the batch policy then does with them.
 *
 * @since 0.1.0
 * @category metrics
 */
export const extractorErrors = Metric.counter("quarry_extractor_errors_total", {
  description: "Batch extractions that failed, by extractor and reason",
  incremental: true
})

/** Reasons are label values: a misbehaving extractor must not create a series per message. */
const maxReasons = 32
const seenReasons = new Set<string>()
const reasonPattern = /^[a-z][a-z0-9_]{0,31}$/

/**
 * The label value of an extractor error: the `reason` code of its cause when it has one (the `llm` extractor's
 * `LlmBatchFailure`: `rate_limited`, `timeout`, `invalid_output`, ...), else `transient` or `permanent`. At most 32
 * distinct values per process; later new ones are `other`.
 *
 * @since 0.1.0
 * @category utils
 */
export const reasonOf = (error: ExtractorError): string => {
  const cause: unknown = error.cause
  const code = typeof cause === "object" && cause !== null && "reason" in cause && typeof cause.reason === "string" &&
      reasonPattern.test(cause.reason) ?
    cause.reason :
    error.retryable ?
    "transient" :
    "permanent"
  if (seenReasons.has(code)) return code
  if (seenReasons.size >= maxReasons) return "other"
  seenReasons.add(code)
  return code
}

const isExtractorError = (u: unknown): u is ExtractorError =>
  typeof u === "object" && u !== null && "_tag" in u && u._tag === "ExtractorError"

// The histogram of each extractor, built once from its tagged key. (`Metric.tagged` builds and looks up a new tagged
// key on every update, since its tags are a new array each time; with commitBatch's span below, 1% to 8% of a
// batch's CPU time, pnpm bench section 1.)
const extractionSeconds = new Map<string, Metric.Metric.Histogram<number>>()
const extractionSecondsOf = (extractor: string) => {
  let metric = extractionSeconds.get(extractor)
  if (metric === undefined) {
    metric = Metric.fromMetricKey(MetricKey.tagged(extractionSecondsKey, "extractor", extractor))
    extractionSeconds.set(extractor, metric)
  }
  return metric
}

/**
 * Measures a batch extraction: its duration when it succeeds, its error's reason when it fails.
 *
 * @since 0.1.0
 * @category combinators
 */
export const trackExtraction = (extractor: string) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.timed(self).pipe(
    Effect.flatMap(([elapsed, a]) => Effect.as(Metric.update(extractionSecondsOf(extractor), seconds(elapsed)), a)),
    Effect.tapError((error) =>
      isExtractorError(error) ?
        Metric.increment(
          Metric.tagged(Metric.tagged(extractorErrors, "extractor", extractor), "reason", reasonOf(error))
        ) :
        Effect.void
    )
  )

/**
 * Measures a commit transaction of `batches` batches (more than one under group commit), `skipped` of them skipped:
 * its duration, and the batches committed (and skipped) when it succeeds.
 *
 * @since 0.1.0
 * @category combinators
 */
export const trackCommit =
  (batches: number, skipped: number) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.timed(self).pipe(
      Effect.flatMap(([elapsed, a]) =>
        Effect.as(
          Effect.all([
            Metric.update(batchCommitSeconds, seconds(elapsed)),
            Metric.incrementBy(batchesCommitted, batches),
            skipped > 0 ? Metric.incrementBy(batchesSkipped, skipped) : Effect.void
          ], { discard: true }),
          a
        )
      )
    )

const seconds = (elapsed: Duration.Duration): number => Duration.toSeconds(elapsed)
