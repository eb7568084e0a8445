/**
 * The `RunStore` on SQL: one store for SQLite and PostgreSQL. Every statement of Quarry is in its parts
 * (`internal/store/`: runs, leases, commits, skipped batches, reads, compensation, admission queue, merge
 * workspace); where the dialects differ, a statement branches with `sql.onDialectOrElse`.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Database from "./Database.js"
import type { PersistenceError } from "./Errors.js"
import * as Commits from "./internal/store/commits.js"
import * as Compensation from "./internal/store/compensation.js"
import * as Context from "./internal/store/context.js"
import * as Details from "./internal/store/details.js"
import * as Leases from "./internal/store/leases.js"
import * as Queue from "./internal/store/queue.js"
import * as Reads from "./internal/store/reads.js"
import * as Runs from "./internal/store/runs.js"
import * as Skipped from "./internal/store/skipped.js"
import * as Workspace from "./internal/store/workspace.js"
import type * as RunStore from "./RunStore.js"
import { RunStore as RunStoreTag } from "./RunStore.js"

/**
 * Outputs larger than this many bytes of JSON are stored deflated (mention JSON deflates to about a fifth).
 *
 * @since 0.1.0
 * @category constants
 */
export const compressAbove = Commits.compressAbove

/**
 * Test-only hooks into the commit transaction, to inject a failure or an interruption between its writes.
 *
 * @since 0.1.0
 * @category models
 */
export interface Hooks {
  readonly beforeCheckpoint?: ((commit: RunStore.BatchCommit) => Effect.Effect<void, PersistenceError>) | undefined
}

/**
 * Builds the store on the validated, migrated `Database` in context (`Database.layer`, `Database.layerEphemeral`
 * or `PgDatabase.layer`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (hooks: Hooks = {}) =>
  Effect.gen(function*() {
    const { sql } = yield* Database.Database
    const ctx = Context.make(sql, hooks)
    return RunStoreTag.of({
      ...Runs.make(ctx),
      ...Leases.make(ctx),
      ...Commits.make(ctx),
      ...Skipped.make(ctx),
      ...Reads.make(ctx),
      ...Compensation.make(ctx),
      ...Details.make(ctx),
      ...Queue.make(ctx),
      ...Workspace.make(ctx)
    })
  })

/**
 * The store as a layer over the validated `Database` in context.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<RunStoreTag, never, Database.Database> = Layer.effect(RunStoreTag, make())
