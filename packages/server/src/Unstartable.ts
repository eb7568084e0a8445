/**
 * Executions that stop before their claim for a reason no retry changes: the run's extractor is not registered on
 * this node, the stored plan does not match it (its settings, the chunker, the ontology), or the stored input does
 * not match its digest. Nothing was written. `quarry start` says so and exits 2, but a server has nobody to say it
 * to: the run stayed `pending` (or as it was) with its execution spent, for good in a cluster and until the next
 * restart on one node. So the server records it `failed` with the reason, which its view and `quarry status` show;
 * a resume tries it again, and so does the next start of a single node (its queued execution stays stored).
 *
 * @since 0.1.0
 */
import type { InputMismatch, PersistenceError, PlanMismatch, UnknownExtractor } from "@quarry/core/Errors"
import type { RunId } from "@quarry/core/Run"
import { RunStore } from "@quarry/core/RunStore"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"

/**
 * A failure before the claim that the same node would meet again.
 *
 * @since 0.1.0
 * @category models
 */
export type Unstartable = UnknownExtractor | PlanMismatch | InputMismatch

const tags: ReadonlySet<string> = new Set(["UnknownExtractor", "PlanMismatch", "InputMismatch"])

/**
 * The execution's failure when it could not start. `Workflow.execute` fails with these only in its checks before
 * the claim.
 *
 * @since 0.1.0
 * @category utils
 */
export const errorOf = (cause: Cause.Cause<unknown>): Unstartable | undefined =>
  Option.getOrUndefined(
    Option.filter(
      Cause.failureOption(cause),
      (error): error is Unstartable =>
        Predicate.hasProperty(error, "_tag") && typeof error._tag === "string" && tags.has(error._tag)
    )
  )

/**
 * Records the run `failed` with the reason it could not start, unless it moved on meanwhile (a cancel, another
 * execution). A run deleted meanwhile has nothing to record. In a cluster, `where` names the runner, and `dequeue`
 * ends the request (see `RunStore.UnstartedOutcome`).
 *
 * @since 0.1.0
 * @category utils
 */
export const record = (
  runId: RunId,
  error: Unstartable,
  cluster?: { readonly where: string; readonly dequeue: boolean }
): Effect.Effect<void, PersistenceError, RunStore> =>
  Effect.gen(function*() {
    const store = yield* RunStore
    const run = yield* store.getRun(runId)
    const message = cluster === undefined ? error.message : `${error.message} (on ${cluster.where})`
    const outcome = { reason: error._tag, error: message, dequeue: cluster?.dequeue }
    if (yield* store.failUnstarted(runId, run.statusVersion, outcome)) {
      yield* Effect.logError(`the run cannot start here, recorded failed: ${message}`)
    }
  }).pipe(Effect.catchTag("RunNotFound", () => Effect.void))
