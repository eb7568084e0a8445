/**
 * Opening the database for a command: the durable database layer, the run store (with the test-only commit hooks)
 * and the extractor registry.
 *
 * @since 0.1.0
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type * as Database from "@quarry/core/Database"
import * as DatabaseUrl from "@quarry/core/DatabaseUrl"
import type { DurabilityError } from "@quarry/core/Errors"
import * as RunStore from "@quarry/core/RunStore"
import type * as Workflow from "@quarry/core/Workflow"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Extractors from "./Extractors.js"
import type { Settings } from "./Settings.js"
import * as TestHooks from "./TestHooks.js"

/**
 * Everything a command needs from the database: what executing a run needs, and the SQL client itself, which
 * `doctor`'s inspection (`Durability.inspect`) and `serve` (its health checks, the cluster's storage) use.
 *
 * @since 0.1.0
 * @category models
 */
export type Services = Workflow.ExecuteRequirements | SqlClient.SqlClient

/** The database layer: PostgreSQL for a `postgres://` URL, else the SQLite file. Drivers load only when used. */
const database = (db: string, options: Options) =>
  DatabaseUrl.isPostgres(db) ?
    Effect.promise(() => import("@quarry/core/PgDatabase")).pipe(
      Effect.map((PgDatabase) => PgDatabase.layer(db, { applicationName: options.applicationName }))
    ) :
    Effect.promise(() => import("@quarry/core/Database")).pipe(Effect.map((Database) => Database.layer(db, options)))

/**
 * How to open the database: SQLite's options, and the PostgreSQL sessions' `application_name` (a cluster runner
 * names itself, so that an operator can tell its sessions apart in `pg_stat_activity`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends Database.Options {
  readonly applicationName?: string | undefined
}

/**
 * The services over the database at `db` (a SQLite file, or a PostgreSQL URL); fails with a `DurabilityError` when it cannot be trusted. `start` and
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
  options: Options = {}
): Layer.Layer<Services, DurabilityError> =>
  Layer.unwrapEffect(
    Effect.all([database(db, options), Effect.promise(() => import("@quarry/core/SqlRunStore"))]).pipe(
      Effect.map(([database, SqlRunStore]) =>
        Layer.mergeAll(
          Layer.effect(RunStore.RunStore, SqlRunStore.make(TestHooks.storeHooks(settings.testHooks))),
          Extractors.layer(settings),
          TestHooks.layer(settings.testHooks)
        ).pipe(Layer.provideMerge(database))
      )
    )
  )
