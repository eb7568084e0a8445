/**
 * The PostgreSQL database layer: a pool on `@effect/sql-pg`, migrations under an advisory lock, and the same
 * durability validation as SQLite before anything uses it.
 *
 * @since 0.1.0
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Migrator from "@effect/sql/Migrator"
import type * as SqlClient from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import pg from "pg"
import { Database } from "./Database.js"
import * as DatabaseUrl from "./DatabaseUrl.js"
import * as Durability from "./Durability.js"
import { DurabilityError } from "./Errors.js"
import { validated } from "./internal/database.js"
import { migratePg } from "./internal/migrations.js"

/**
 * Options of `layer`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Pool size (default 10). */
  readonly maxConnections?: number | undefined
  /** The sessions' `application_name` (default `quarry`), as `pg_stat_activity` shows it. */
  readonly applicationName?: string | undefined
  /**
   * How long the server lets a session sit idle inside an open transaction before it ends the session (default 5 s;
   * `idle_in_transaction_session_timeout`). A process frozen mid-commit (SIGSTOP, a paused VM) holds the run's row
   * lock; without this, the runner taking its run over would wait on that lock until the frozen process woke.
   */
  readonly idleInTransactionTimeoutMs?: number | undefined
}

/** The default of `idleInTransactionTimeoutMs`: below the cluster's lease (8 s), far above any commit's idle gaps. */
export const defaultIdleInTransactionTimeoutMs = 5_000

// BIGINT (milliseconds, counters) and NUMERIC (sums) arrive as strings by default; every value Quarry stores in
// them is far below 2^53, so numbers are exact. A BIGINT beyond 2^53 stays a string: `@effect/cluster`'s tables on
// the same pool hold 64-bit snowflake ids, and a rounded id matches no row (its replies were stored under ids that
// no message had, so no `Execute` was ever marked processed).
const bigint = (text: string) => {
  const value = Number(text)
  return Number.isSafeInteger(value) ? value : text
}
const numeric = (text: string) => Number(text)
const types: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    format === "binary" ?
      pg.types.getTypeParser(oid, format) :
      oid === 20 ?
      bigint :
      oid === 1700 ?
      numeric :
      pg.types.getTypeParser(oid, format ?? "text")) as pg.CustomTypesConfig["getTypeParser"]
}

const refuse = (filename: string) => (reason: string) => new DurabilityError({ filename, reasons: [reason] })

/**
 * A durable PostgreSQL database at `url`: connected, checked (`fsync`, `synchronous_commit`, `full_page_writes`,
 * schema version) and migrated. Fails with a `DurabilityError` listing every reason when it cannot be trusted.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  url: string,
  options: Options = {}
): Layer.Layer<Database | SqlClient.SqlClient, DurabilityError> => {
  const filename = DatabaseUrl.redact(url)
  const client = PgClient.layerFromPool({ acquire: connect(url, options), types }).pipe(
    Layer.mapError((error) => refuse(filename)(`it cannot be reached as a PostgreSQL database (${describe(error)})`))
  )
  const prepare = Effect.gen(function*() {
    // Refuse unsafe settings and a newer schema before migrating anything.
    yield* Durability.validate(filename)
    yield* migratePg.pipe(Effect.catchSomeDefect(failedMigration(filename)))
    return Database.of({ [validated]: true, filename, sql: yield* PgClient.PgClient })
  }).pipe(
    Effect.catchTags({
      SqlError: (error) => refuse(filename)(`it cannot be used: ${describe(error)}`),
      MigrationError: (error) => refuse(filename)(`migration failed: ${error.message}`)
    })
  )
  return Layer.effect(Database, prepare).pipe(Layer.provideMerge(client))
}

/** The pool, checked by one query: a server that cannot be reached fails here, before anything else. */
const connect = (url: string, options: Options) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const pool = new pg.Pool({
        connectionString: url,
        types,
        max: options.maxConnections ?? 10,
        application_name: options.applicationName ?? "quarry",
        connectionTimeoutMillis: 5_000,
        idle_in_transaction_session_timeout: options.idleInTransactionTimeoutMs ?? defaultIdleInTransactionTimeoutMs
      })
      // A pooled session ended by the server (idle timeout, pg_terminate_backend) must not crash the process.
      pool.on("error", () => {})
      return pool
    }),
    // Interruptible within the (uninterruptible) release, so that the timeout can end the wait: around it, the
    // timeout waited for `end`, which waits for a connection still opening (5 s against a server that never
    // answers, so a Ctrl-C took 5 s).
    (pool) => Effect.promise(() => pool.end()).pipe(Effect.interruptible, Effect.timeoutOption(1_000))
  ).pipe(
    Effect.tap((pool) =>
      Effect.tryPromise({
        try: () => pool.query("SELECT 1"),
        catch: (cause) => new SqlError({ cause, message: "PgClient: Failed to connect" })
      })
    )
  )

/**
 * The migrator dies when a migration's statement fails, e.g. `relation "runs" already exists` in a database that
 * holds another application's tables: a refusal that says so, not an internal error.
 */
const failedMigration = (filename: string) => (defect: unknown) =>
  defect instanceof Migrator.MigrationError ?
    Option.some(Effect.fail(refuse(filename)(`migration failed: ${defect.message} (${describe(defect.cause)})`))) :
    Option.none()

const describe = (error: unknown): string => {
  const cause = typeof error === "object" && error !== null && "cause" in error ? error.cause : error
  return cause instanceof Error ? cause.message : String(cause)
}
