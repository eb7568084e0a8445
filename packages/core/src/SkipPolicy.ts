/**
 * The batch error policy: under `fail` an extractor error fails the run; under `skip` the batch is committed empty,
 * with its error and the usage of its failed attempts, and the run goes on. `retrySkipped` extracts the skipped
 * batches of a run again.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import type { ExtractorError, PersistenceError, RunLocked } from "./Errors.js"
import type { BatchOutput } from "./Extractor.js"
import type * as Lease from "./Lease.js"
import type { BatchErrorPolicy } from "./Run.js"
import { RunStore } from "./RunStore.js"

/**
 * A batch's result: its output, and its error when it was skipped.
 *
 * @since 0.1.0
 * @category models
 */
export interface Extracted {
  readonly output: BatchOutput
  readonly skipped: { readonly error: string } | undefined
}

const emptyOutput: BatchOutput = { entities: [], relations: [] }

/**
 * Applies the policy to one batch's extraction: under `skip`, an `ExtractorError` becomes a skipped batch whose
 * output is empty but for the failed attempts' usage (part of the run's usage, not lost spend).
 *
 * @since 0.1.0
 * @category combinators
 */
export const apply =
  (policy: BatchErrorPolicy) =>
  <E, R>(self: Effect.Effect<BatchOutput, E | ExtractorError, R>): Effect.Effect<Extracted, E | ExtractorError, R> =>
    self.pipe(
      Effect.map((output): Extracted => ({ output, skipped: undefined })),
      Effect.catchIf(
        (error): error is ExtractorError => policy === "skip" && isExtractorError(error),
        (error) =>
          Effect.as(Effect.logWarning(`skipping batch ${error.batchIndex}: ${error.message}`), {
            output: error.usage === undefined ? emptyOutput : { ...emptyOutput, usage: error.usage },
            skipped: { error: error.message }
          })
      )
    )

const isExtractorError = (u: unknown): u is ExtractorError =>
  typeof u === "object" && u !== null && "_tag" in u && u._tag === "ExtractorError"

/**
 * The number of extractor attempts a batch took: an LLM extractor reports one request per HTTP attempt.
 *
 * @since 0.1.0
 * @category utils
 */
export const attemptsOf = (output: BatchOutput): number => Math.max(1, output.usage?.requests ?? 1)

/**
 * Extracts every skipped batch of the run again, one after the other, and replaces it with the result, also when it
 * failed again: its usage and its latest error are recorded with the batch.
 *
 * @since 0.1.0
 * @category operations
 */
export const retrySkipped = <E, R>(
  lease: Lease.Lease,
  extract: (batchIndex: number) => Effect.Effect<Extracted & { readonly durationMs: number }, E, R>
): Effect.Effect<void, E | RunLocked | PersistenceError, R | RunStore> =>
  Effect.gen(function*() {
    const store = yield* RunStore
    for (const { batchIndex } of yield* store.skippedBatches(lease.runId)) {
      const retried = yield* extract(batchIndex)
      yield* store.replaceSkipped({
        runId: lease.runId,
        holder: lease.holder,
        batchIndex,
        output: retried.output,
        attempts: attemptsOf(retried.output),
        durationMs: retried.durationMs,
        skipped: retried.skipped
      })
    }
  })
