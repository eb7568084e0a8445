/**
 * Opening the database for a command: the durable database layer, the run store (with the test-only commit hooks)
 * and the extractor registry.
 *
 * @since 0.1.0
 */
import type * as Database from "@quarry/core/Database"
import type { DurabilityError } from "@quarry/core/Errors"
import * as RunStore from "@quarry/core/RunStore"
import type * as Workflow from "@quarry/core/Workflow"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Extractors from "./Extractors.js"
import type { Settings } from "./Settings.js"
import * as TestHooks from "./TestHooks.js"

/**
 * Everything a command needs from the database.
 *
 * @since 0.1.0
 * @category models
 */
export type Services = Workflow.ExecuteRequirements

/**
 * The services over the database at `db`; fails with a `DurabilityError` when it cannot be trusted. `start` and
 * `resume` keep the default `quickCheck` (after an unclean shutdown); the commands that only read or flag a run pass
 * `never`, and `doctor` passes `always`. The SQLite driver (a native module) and the store are loaded when a command
 * opens the database, not by `quarry --version` or `--help`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  db: string,
  settings: Settings["Type"],
  options: Database.Options = {}
): Layer.Layer<Services, DurabilityError> =>
  Layer.unwrapEffect(
    Effect.promise(() => Promise.all([import("@quarry/core/Database"), import("@quarry/core/SqliteRunStore")])).pipe(
      Effect.map(([Database, SqliteRunStore]) =>
        Layer.mergeAll(
          Layer.effect(RunStore.RunStore, SqliteRunStore.make(TestHooks.storeHooks(settings.testHooks))),
          Extractors.layer(settings),
          TestHooks.layer(settings.testHooks)
        ).pipe(Layer.provideMerge(Database.layer(db, options)))
      )
    )
  )
