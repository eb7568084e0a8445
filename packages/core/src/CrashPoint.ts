/**
 * Named crash points: the places in the engine where a crash is most likely to break a guarantee (inside a write
 * transaction, between a commit and what follows it, around the artifact's rename). The engine announces each one
 * with `hit`; by default nothing happens. Crash tests provide an implementation that kills the process at a chosen
 * point (the CLI does so only when a `QUARRY_TEST_*` variable asks for it), so that a kill lands exactly there.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"

/**
 * The crash points, in the order a run meets them.
 *
 * - `createRun.transaction`: inside `createRun`'s transaction, after its writes.
 * - `extract.beforeCommit`: a batch is extracted, its commit not yet begun.
 * - `commitBatch.transaction`: inside a commit transaction, after every write of its batch (of its group of batches
 *   under group commit, named by the group's first batch).
 * - `commit.beforeEvent`: the batch is committed, its event not yet emitted.
 * - `merge.beforeRename`: the merged artifact is written to its temp file, not yet renamed into place.
 * - `merge.afterRename`: the artifact is in place, the run not yet `complete`.
 * - `replaceSkipped.transaction`: inside `replaceSkipped`'s transaction, after its writes.
 *
 * @since 0.1.0
 * @category models
 */
export const Point = Schema.Literal(
  "createRun.transaction",
  "extract.beforeCommit",
  "commitBatch.transaction",
  "commit.beforeEvent",
  "merge.beforeRename",
  "merge.afterRename",
  "replaceSkipped.transaction"
)

/**
 * @since 0.1.0
 * @category models
 */
export type Point = typeof Point.Type

/**
 * Every crash point.
 *
 * @since 0.1.0
 * @category constants
 */
export const points: ReadonlyArray<Point> = Point.literals

/**
 * What happens at a crash point: nothing, unless a test provides otherwise. `batchIndex` names the batch at the
 * points that have one.
 *
 * @since 0.1.0
 * @category tags
 */
export class CrashPoint extends Context.Reference<CrashPoint>()("@quarry/core/CrashPoint", {
  defaultValue: (): { readonly hit: (point: Point, batchIndex: number | undefined) => Effect.Effect<void> } => ({
    hit: () => Effect.void
  })
}) {}

/**
 * Announces that execution reached `point`.
 *
 * @since 0.1.0
 * @category operations
 */
export const hit = (point: Point, batchIndex?: number): Effect.Effect<void> =>
  Effect.flatMap(CrashPoint, (crash) => crash.hit(point, batchIndex))
