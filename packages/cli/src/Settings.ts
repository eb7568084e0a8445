/**
 * The environment the CLI reads: the default database (`QUARRY_DATABASE_URL`, else `QUARRY_DB`), the lease length (`QUARRY_LEASE_MS`) and the
 * test-only hooks. Read once, through `Config`, so tests can set them with a `ConfigProvider`. An extractor reads its
 * own settings (`QUARRY_OFFLINE_*`, `QUARRY_LLM_*`) when a command builds it.
 *
 * @since 0.1.0
 */
import * as Workflow from "@quarry/core/Workflow"
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as TestHooks from "./TestHooks.js"

/**
 * The database used without `--db` and `QUARRY_DB`.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultDatabase = "./quarry.db"

/**
 * The settings read from the environment.
 *
 * @since 0.1.0
 * @category config
 */
export const config = Config.all({
  // A server URL wins over a file: a deployment sets QUARRY_DATABASE_URL and every command follows it.
  database: Config.string("QUARRY_DATABASE_URL").pipe(
    Config.withDescription("the PostgreSQL URL used without --db"),
    Config.orElse(() => Config.string("QUARRY_DB")),
    Config.withDescription("the database used without --db"),
    Config.withDefault(defaultDatabase)
  ),
  leaseMs: Config.integer("QUARRY_LEASE_MS").pipe(
    Config.withDescription("how long a run's lease lasts without a heartbeat (milliseconds)"),
    Config.validate({
      message: "QUARRY_LEASE_MS must be a whole number of milliseconds greater than 0",
      validation: (ms) => ms > 0
    }),
    Config.withDefault(Workflow.defaultLeaseMs)
  ),
  testHooks: TestHooks.config
})

/**
 * The settings of this process.
 *
 * @since 0.1.0
 * @category tags
 */
export class Settings extends Context.Tag("@quarry/cli/Settings")<Settings, Config.Config.Success<typeof config>>() {}
