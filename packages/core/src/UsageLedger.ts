/**
 * The usage ledger: every extractor attempt's usage (and the extractor's reported status) written to the store as
 * soon as it is known, so that spend on attempts lost to a crash still counts against budgets.
 *
 * A write that fails is retried with backoff; one that still fails is kept and written again before the batch
 * commits (`flush`). A batch whose usage cannot be written fails instead of committing: a committed batch never
 * leaves spend uncounted.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import { randomUUID } from "node:crypto"
import type { PersistenceError } from "./Errors.js"
import type { Usage } from "./Extractor.js"
import type { RunId } from "./Run.js"
import { RunStore } from "./RunStore.js"

/**
 * The ledger of one execution.
 *
 * @since 0.1.0
 * @category models
 */
export interface UsageLedger {
  /** Writes one attempt's usage; never fails (what cannot be written now is kept for `flush`). */
  readonly record: (batchIndex: number, usage: Usage) => Effect.Effect<void>
  /** Writes the extractor's status; never fails (what cannot be written now is kept for `flush`). */
  readonly reportStatus: (status: Readonly<Record<string, string>>) => Effect.Effect<void>
  /** Writes what is still kept for the batch (and the latest status); fails when storage still refuses. */
  readonly flush: (batchIndex: number) => Effect.Effect<void, PersistenceError>
}

/** One extractor attempt's usage with its key (`RunStore.recordAttempt`). */
interface Attempt {
  readonly id: string
  readonly usage: Usage
}

/**
 * How often a failed write is tried again before it is kept for `flush`, and again within `flush`: 4 more times,
 * 10 ms apart doubling (150 ms in all), enough for a write lock held by another process's commit.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultRetry: Schedule.Schedule<unknown, PersistenceError> = Schedule.exponential("10 millis").pipe(
  Schedule.intersect(Schedule.recurs(4))
)

/**
 * A ledger writing to the `RunStore` in context.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  runId: RunId,
  options: { readonly retry?: Schedule.Schedule<unknown, PersistenceError> | undefined } = {}
): Effect.Effect<UsageLedger, never, RunStore> =>
  Effect.gen(function*() {
    const store = yield* RunStore
    const retry = options.retry ?? defaultRetry
    const unwritten = yield* Ref.make<ReadonlyMap<number, ReadonlyArray<Attempt>>>(new Map())
    const unwrittenStatus = yield* Ref.make<Readonly<Record<string, string>> | undefined>(undefined)

    const writeAttempt = (batchIndex: number, attempt: Attempt) =>
      Effect.retry(store.recordAttempt(runId, batchIndex, attempt.usage, attempt.id), retry)
    const writeStatus = (status: Readonly<Record<string, string>>) =>
      Effect.retry(store.setExtractorStatus(runId, status), retry)
    const keep = (batchIndex: number, attempt: Attempt) =>
      Ref.update(unwritten, (map) => new Map(map).set(batchIndex, [...(map.get(batchIndex) ?? []), attempt]))

    // One key per attempt, kept with it: every later write of it (a retry, the flush) is the same row.
    const record = (batchIndex: number, usage: Usage) =>
      Effect.gen(function*() {
        const attempt: Attempt = { id: randomUUID(), usage }
        yield* writeAttempt(batchIndex, attempt).pipe(
          Effect.catchAll((error) =>
            Effect.zipRight(
              Effect.logWarning(
                `could not record usage of batch ${batchIndex} yet; trying again before it commits`,
                error
              ),
              keep(batchIndex, attempt)
            )
          )
        )
      })

    const reportStatus = (status: Readonly<Record<string, string>>) =>
      writeStatus(status).pipe(
        Effect.zipRight(Ref.set(unwrittenStatus, undefined)),
        Effect.catchAll((error) =>
          Effect.zipRight(
            Effect.logWarning(
              `could not store the extractor status yet (${error.message}); trying again before the next commit`
            ),
            Ref.set(unwrittenStatus, status)
          )
        )
      )

    // Writes one kept attempt at a time, forgetting it only once written, so that a failed flush loses nothing.
    const flushAttempts = (batchIndex: number): Effect.Effect<void, PersistenceError> =>
      Effect.gen(function*() {
        const [first] = (yield* Ref.get(unwritten)).get(batchIndex) ?? []
        if (first === undefined) return
        yield* writeAttempt(batchIndex, first)
        yield* Ref.update(unwritten, (map) => {
          const rest = (map.get(batchIndex) ?? []).slice(1)
          const next = new Map(map)
          return rest.length === 0 ? (next.delete(batchIndex), next) : next.set(batchIndex, rest)
        })
        yield* flushAttempts(batchIndex)
      })

    const flush = (batchIndex: number): Effect.Effect<void, PersistenceError> =>
      Effect.gen(function*() {
        yield* flushAttempts(batchIndex)
        const status = yield* Ref.get(unwrittenStatus)
        if (status === undefined) return
        yield* writeStatus(status)
        // A newer status reported meanwhile stays kept.
        yield* Ref.update(unwrittenStatus, (current) => current === status ? undefined : current)
      })

    return { record, reportStatus, flush }
  })
