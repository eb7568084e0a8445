/**
 * The SQLite database layer: durable pragmas, migrations, and validation before anything uses it.
 *
 * @since 0.1.0
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as FileSystem from "@effect/platform/FileSystem"
import * as SqlClient from "@effect/sql/SqlClient"
import type * as SqlConnection from "@effect/sql/SqlConnection"
import * as Statement from "@effect/sql/Statement"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as fs from "node:fs"
import * as path from "node:path"
import * as DatabaseUrl from "./DatabaseUrl.js"
import * as Durability from "./Durability.js"
import { DurabilityError, PersistenceError } from "./Errors.js"
import { validated } from "./internal/database.js"
import { migrate } from "./internal/migrations.js"
import * as SqliteConnection from "./internal/sqliteConnection.js"
import { failOnSqlDefect } from "./internal/transaction.js"

/**
 * How long a statement waits for another process's write lock before failing.
 *
 * @since 0.1.0
 * @category constants
 */
export const busyTimeoutMs = 10_000

/**
 * When opening a database runs `PRAGMA quick_check`, a read of the whole file: `always`; `never` (for callers that
 * only read, which SQLite's own checks protect well enough); or `afterUncleanShutdown` (the default): when a
 * write-ahead log is left beside the file, that is when a process died with the database open (SQLite deletes the
 * log when the last connection closes), or another process has it open.
 *
 * @since 0.1.0
 * @category models
 */
export type QuickCheck = "always" | "afterUncleanShutdown" | "never"

/**
 * A database that passed durability validation and is migrated; the store requires it, so that an in-memory,
 * unmigrated or `synchronous=NORMAL` client cannot be used by accident. Only `layer`, `layerEphemeral` and
 * `PgDatabase.layer` provide it.
 *
 * @since 0.1.0
 * @category tags
 */
export class Database extends Context.Tag("@quarry/core/Database")<Database, {
  readonly [validated]: true
  /** The SQLite file, or the PostgreSQL URL without its password. */
  readonly filename: string
  /** The client of this database: every statement holds the connection while it runs. */
  readonly sql: SqlClient.SqlClient
}>() {}

/**
 * Options of `layer`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly quickCheck?: QuickCheck | undefined
  /** How long a statement waits for another process's write lock (default `busyTimeoutMs`). */
  readonly busyTimeoutMs?: number | undefined
}

/** Decided before the file is opened: opening it in WAL mode creates the log. */
const wantsQuickCheck = (filename: string, mode: QuickCheck): boolean => {
  if (mode !== "afterUncleanShutdown") return mode === "always"
  try {
    return fs.statSync(`${filename}-wal`).size > 0
  } catch {
    return false
  }
}

/**
 * The client over the connection: a statement outside a transaction reserves the connection until it is done, as a
 * transaction does (released early, such a statement could run inside another fiber's open transaction and vanish
 * with its rollback). Transactions begin IMMEDIATE: they take the write lock first (waiting on `busy_timeout`)
 * instead of failing with SQLITE_BUSY when a read snapshot has to be upgraded.
 */
const serialised = (connection: { readonly reserve: Effect.Effect<SqlConnection.Connection, never, Scope.Scope> }) =>
  SqlClient.make({
    acquirer: connection.reserve,
    transactionAcquirer: connection.reserve,
    compiler: Statement.makeCompilerSqlite(),
    spanAttributes: [["db.system.name", "sqlite"]],
    beginTransaction: "BEGIN IMMEDIATE"
  })

const isBusy = (u: unknown): boolean =>
  u instanceof Error && "code" in u && typeof u.code === "string" && u.code.startsWith("SQLITE_BUSY")

/**
 * Why opening failed. A missing native module is not the file's fault: npm 11.19+ skips dependencies' install
 * scripts in global installs and `npx` unless allowed, which leaves better-sqlite3 unbuilt.
 */
const openFailure = (message: string): string =>
  message.includes("Could not locate the bindings file") ?
    `the SQLite driver's native module (better-sqlite3) is not built, so no database can be opened; build it with ` +
    `\`npm rebuild better-sqlite3\` where quarry is installed, or install with ` +
    `\`npm install -g --allow-scripts=better-sqlite3 @quarry/cli\` (${message.split("\n")[0]})` :
    `it cannot be opened as a SQLite database (${message})`

const open = (filename: string) =>
  Layer.unwrapEffect(Effect.gen(function*() {
    const reasons = Durability.checkLocation(filename)
    if (reasons.length > 0) return yield* new DurabilityError({ filename, reasons })
    return Layer.scoped(
      SqlClient.SqlClient,
      SqliteConnection.open(filename).pipe(
        // The driver throws while opening a file that is not a database (SQLITE_NOTADB): a finding, not a defect.
        Effect.catchAllDefect(Effect.fail),
        // Opening switches the file to WAL, which needs it alone for a moment: when another process opens the same
        // new file at that moment, opening fails with SQLITE_BUSY without waiting. Wait for it as busy_timeout would.
        Effect.retry({ while: isBusy, schedule: Schedule.spaced("20 millis").pipe(Schedule.upTo(busyTimeoutMs)) }),
        Effect.mapError((defect) =>
          new DurabilityError({
            filename,
            reasons: [openFailure(defect instanceof Error ? defect.message : String(defect))]
          })
        ),
        Effect.flatMap(serialised)
      )
    ).pipe(Layer.provide(Reactivity.layer))
  }))

/** Writes Quarry's application id into the file's header, once (the CLI reads it to tell Quarry's files apart). */
const markAsQuarrys = (sql: SqlClient.SqlClient) =>
  Effect.gen(function*() {
    const rows = yield* sql<{ application_id: number }>`PRAGMA application_id`
    if (rows[0]?.application_id === DatabaseUrl.sqliteApplicationId) return
    yield* sql.unsafe(`PRAGMA application_id = ${DatabaseUrl.sqliteApplicationId}`)
  })

const prepare = (filename: string, options: Options, quickCheck: boolean) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`PRAGMA synchronous = FULL`
    yield* sql`PRAGMA foreign_keys = ON`
    yield* sql.unsafe(`PRAGMA busy_timeout = ${options.busyTimeoutMs ?? busyTimeoutMs}`)
    // Refuse a newer schema or a damaged file before migrating anything.
    yield* Durability.validate(filename, { quickCheck })
    // A failed ROLLBACK dies inside the migrator's transaction (see internal/transaction.ts): still a finding.
    yield* migrate.pipe(failOnSqlDefect((defect) =>
      new DurabilityError({
        filename,
        reasons: [`migration failed: ${new PersistenceError({ operation: "migrate", cause: defect }).message}`]
      })
    ))
    yield* markAsQuarrys(sql)
    return Database.of({ [validated]: true, filename, sql })
  }).pipe(
    Effect.catchTags({
      SqlError: (error) => new DurabilityError({ filename, reasons: [`it cannot be used: ${error.message}`] }),
      MigrationError: (error) => new DurabilityError({ filename, reasons: [`migration failed: ${error.message}`] })
    })
  )

/**
 * A durable database at `filename`: WAL, `synchronous=FULL`, foreign keys on, migrated, validated (`quick_check` as
 * `options.quickCheck` says). Fails with a `DurabilityError` listing every reason when the database cannot be trusted.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  filename: string,
  options: Options = {}
): Layer.Layer<Database | SqlClient.SqlClient, DurabilityError> =>
  Layer.unwrapEffect(Effect.sync(() => {
    const quickCheck = wantsQuickCheck(filename, options.quickCheck ?? "afterUncleanShutdown")
    return Layer.effect(Database, prepare(filename, options, quickCheck)).pipe(Layer.provideMerge(open(filename)))
  }))

/**
 * A database in a fresh temporary directory that is deleted when the layer's scope closes. For tests and
 * throw-away work only: it is a real file with the same pragmas, but it does not outlive the scope.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerEphemeral: Layer.Layer<Database | SqlClient.SqlClient, DurabilityError> = Layer.unwrapScoped(
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const directory = yield* fs.makeTempDirectoryScoped({ prefix: "quarry-" })
    return layer(path.join(directory, "quarry.db"))
  }).pipe(Effect.orDie, Effect.provide(NodeFileSystem.layer))
)
