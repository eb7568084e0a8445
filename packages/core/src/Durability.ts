/**
 * Durability validation: is this database able to keep every committed transaction?
 *
 * @since 0.1.0
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as fs from "node:fs"
import * as path from "node:path"
import { DurabilityError } from "./Errors.js"
import {
  entityTypesWithNul,
  foreignPgMigrations,
  latestPgSchemaVersion,
  latestSchemaVersion
} from "./internal/migrations.js"

/**
 * PostgreSQL's settings that decide whether a committed transaction survives a crash.
 *
 * @since 0.1.0
 * @category models
 */
export class PgSettings extends Schema.Class<PgSettings>("@quarry/core/Durability/PgSettings")({
  fsync: Schema.String,
  synchronousCommit: Schema.String,
  fullPageWrites: Schema.String,
  serverVersion: Schema.String
}) {}

/**
 * What `validate` found; `reasons` is empty when the database is durable.
 *
 * @since 0.1.0
 * @category models
 */
export class DurabilityReport extends Schema.Class<DurabilityReport>("@quarry/core/Durability/DurabilityReport")({
  filename: Schema.String,
  journalMode: Schema.String,
  synchronous: Schema.String,
  foreignKeys: Schema.Boolean,
  quickCheck: Schema.String,
  schemaVersion: Schema.Int,
  supportedSchemaVersion: Schema.Int,
  sqliteVersion: Schema.String,
  /** Set on PostgreSQL, where the SQLite fields say what PostgreSQL guarantees by itself. */
  postgres: Schema.optional(PgSettings),
  reasons: Schema.Array(Schema.String)
}) {
  /** True when nothing stands in the way of durable commits. */
  get durable(): boolean {
    return this.reasons.length === 0
  }
}

/**
 * Checks that can be made before the file is opened: in-memory and temporary databases, missing or read-only
 * directories. Opening such a database would either lose everything or fail later with a worse message.
 *
 * @since 0.1.0
 * @category validation
 */
export const checkLocation = (filename: string): ReadonlyArray<string> => {
  if (filename === ":memory:" || filename.startsWith("file::memory:") || /[?&]mode=memory\b/.test(filename)) {
    return ["it is an in-memory database, which is lost when the process exits; pass a file path"]
  }
  if (filename.trim() === "") {
    return ["an empty file name opens a temporary database that is deleted on close; pass a file path"]
  }
  const directory = path.dirname(path.resolve(filename))
  try {
    if (!fs.statSync(directory).isDirectory()) return [`${directory} is not a directory`]
  } catch {
    return [`the directory ${directory} does not exist; create it first`]
  }
  try {
    fs.accessSync(directory, fs.constants.W_OK)
  } catch {
    return [`the directory ${directory} is not writable, so SQLite cannot create its journal files there`]
  }
  if (fs.existsSync(filename) && fs.statSync(filename).isDirectory()) {
    return [`${filename} is a directory, not a database file`]
  }
  return readOnlyCompanions(filename)
}

const writable = (file: string) => {
  try {
    fs.accessSync(file, fs.constants.W_OK)
    return true
  } catch {
    return false
  }
}

/**
 * SQLite creates `-wal` and `-shm` with the database file's mode: opened while the file was read-only, they stay
 * read-only after the file is made writable again, and every write then fails (as "cannot rollback").
 */
const readOnlyCompanions = (filename: string): Array<string> => {
  if (!fs.existsSync(filename) || !writable(filename)) return []
  const stuck = ["-wal", "-shm"].map((suffix) => `${filename}${suffix}`)
    .filter((file) => fs.existsSync(file) && !writable(file))
  return stuck.length === 0 ? [] : [
    `the database is writable but ${stuck.join(" and ")} ${
      stuck.length === 1 ? "is" : "are"
    } not (left by a process that opened it read-only); make ${stuck.length === 1 ? "it" : "them"} writable too`
  ]
}

const synchronousNames = ["OFF", "NORMAL", "FULL", "EXTRA"]

/**
 * What `inspect` and `validate` check beyond the cheap pragmas.
 *
 * @since 0.1.0
 * @category models
 */
export interface InspectOptions {
  /**
   * Run `PRAGMA quick_check` (default `true`). It reads every page of the file: seconds on a database of gigabytes,
   * so callers that only read skip it (the report says `skipped`); see "Durability at the entry points" in
   * docs/architecture.md.
   */
  readonly quickCheck?: boolean | undefined
}

/**
 * Inspects an open database. SQLite: location, journal mode, synchronous level, foreign keys, `quick_check` (unless
 * skipped) and schema version. PostgreSQL: `fsync`, `synchronous_commit`, `full_page_writes` and schema version.
 * Never fails for a finding; every finding is a reason in the report.
 *
 * @since 0.1.0
 * @category validation
 */
export const inspect = Effect.fn("Durability.inspect")(function*(filename: string, options: InspectOptions = {}) {
  const sql = yield* SqlClient.SqlClient
  return yield* sql.onDialectOrElse({
    pg: () => inspectPg(sql, filename),
    orElse: () => inspectSqlite(sql, filename, options)
  })
})

const PgSettingsRow = Schema.Struct({
  fsync: Schema.String,
  synchronous_commit: Schema.String,
  full_page_writes: Schema.String,
  server_version: Schema.String,
  migrated: Schema.Boolean
})

/** `synchronous_commit = off` acknowledges commits before they are flushed: a crash loses them. */
const inspectPg = (sql: SqlClient.SqlClient, filename: string) =>
  Effect.gen(function*() {
    const rows = yield* sql`SELECT current_setting('fsync') AS fsync,
        current_setting('synchronous_commit') AS synchronous_commit,
        current_setting('full_page_writes') AS full_page_writes,
        current_setting('server_version') AS server_version,
        to_regclass('effect_sql_migrations') IS NOT NULL AS migrated`
    const settings = yield* Schema.decodeUnknown(PgSettingsRow)(rows[0]).pipe(Effect.orDie)
    const reasons: Array<string> = []
    if (settings.fsync !== "on") {
      reasons.push("fsync is off; PostgreSQL can lose or corrupt committed data on a crash, set fsync = on")
    }
    if (settings.synchronous_commit === "off") {
      reasons.push("synchronous_commit is off; the last commits are lost on a crash, set it to on (or local)")
    }
    if (settings.full_page_writes !== "on") {
      reasons.push("full_page_writes is off; a torn page after a crash cannot be repaired, set it to on")
    }
    const recorded = settings.migrated ?
      yield* sql<{ id: number; name: string }>`SELECT migration_id AS id, name FROM effect_sql_migrations` :
      []
    const schemaVersion = Math.max(0, ...recorded.map((row) => Number(row.id)))
    const foreign = foreignPgMigrations(recorded.map((row) => ({ id: Number(row.id), name: row.name })))
    if (foreign.length > 0) {
      reasons.push(
        `it holds the migrations of something else (effect_sql_migrations: ${foreign.join(", ")}), not Quarry's; ` +
          "give Quarry a database of its own"
      )
    } else if (schemaVersion > latestPgSchemaVersion) {
      reasons.push(
        `the schema version is ${schemaVersion} but this Quarry knows up to ${latestPgSchemaVersion}; upgrade Quarry`
      )
    }
    return new DurabilityReport({
      filename,
      journalMode: "wal",
      synchronous: settings.synchronous_commit,
      foreignKeys: true,
      quickCheck: "skipped",
      schemaVersion,
      supportedSchemaVersion: latestPgSchemaVersion,
      sqliteVersion: "",
      postgres: new PgSettings({
        fsync: settings.fsync,
        synchronousCommit: settings.synchronous_commit,
        fullPageWrites: settings.full_page_writes,
        serverVersion: settings.server_version
      }),
      reasons
    })
  })

const inspectSqlite = (sql: SqlClient.SqlClient, filename: string, options: InspectOptions) =>
  Effect.gen(function*() {
    const reasons = [...checkLocation(filename)]
    const pragma = (name: string) =>
      sql.unsafe<Record<string, unknown>>(`PRAGMA ${name}`).pipe(
        Effect.map((rows) => rows[0] === undefined ? undefined : Object.values(rows[0])[0])
      )
    const files = yield* sql<{ file: string }>`SELECT file FROM pragma_database_list WHERE name = 'main'`
    if (reasons.length === 0 && (files[0]?.file ?? "") === "") {
      reasons.push("the database has no file (in-memory or temporary); pass a file path")
    }
    const journalMode = String(yield* pragma("journal_mode")).toLowerCase()
    if (journalMode !== "wal") {
      reasons.push(`journal_mode is ${journalMode}; Quarry needs WAL for crash-safe commits with concurrent readers`)
    }
    const synchronousLevel = Number(yield* pragma("synchronous"))
    const synchronous = synchronousNames[synchronousLevel] ?? String(synchronousLevel)
    if (synchronousLevel < 2) {
      reasons.push(`synchronous is ${synchronous}; committed transactions can be lost on power failure, set FULL`)
    }
    const foreignKeys = Number(yield* pragma("foreign_keys")) === 1
    if (!foreignKeys) reasons.push("foreign_keys is OFF; set it ON so that no batch can exist without its run")
    const quickCheck = options.quickCheck === false ? "skipped" : String(yield* pragma("quick_check"))
    if (quickCheck !== "ok" && quickCheck !== "skipped") {
      reasons.push(`quick_check failed: ${quickCheck}; restore the database from a backup`)
    }
    // Look the table up first: on a database not yet migrated the query would fail to prepare, and the driver caches
    // that failure for the connection, so the version would read 0 on this connection even after migrating.
    const migrationTables = yield* sql<{ n: number }>`SELECT COUNT(*) AS n FROM sqlite_master
    WHERE type = 'table' AND name = 'effect_sql_migrations'`
    const migrated = (migrationTables[0]?.n ?? 0) === 0 ?
      [{ version: 0 }] :
      yield* sql<{ version: number | null }>`
      SELECT MAX(migration_id) AS version FROM effect_sql_migrations`.pipe(
        Effect.catchAll(() => Effect.succeed([{ version: 0 }]))
      )
    const schemaVersion = migrated[0]?.version ?? 0
    if (schemaVersion > latestSchemaVersion) {
      reasons.push(
        `the schema version is ${schemaVersion} but this Quarry knows up to ${latestSchemaVersion}; upgrade Quarry`
      )
    }
    reasons.push(...yield* entityTypesWithNul(sql, schemaVersion))
    const version = yield* sql<{ v: string }>`SELECT sqlite_version() AS v`
    return new DurabilityReport({
      filename,
      journalMode,
      synchronous,
      foreignKeys,
      quickCheck,
      schemaVersion,
      supportedSchemaVersion: latestSchemaVersion,
      sqliteVersion: version[0]?.v ?? "unknown",
      reasons
    })
  })

/**
 * Fails with one `DurabilityError` listing every reason the database cannot be trusted.
 *
 * @since 0.1.0
 * @category validation
 */
export const validate = Effect.fn("Durability.validate")(function*(filename: string, options: InspectOptions = {}) {
  const report = yield* inspect(filename, options).pipe(
    Effect.catchTag(
      "SqlError",
      (error) =>
        new DurabilityError({
          filename,
          reasons: [`it cannot be read as a Quarry database (${describe(error.cause)})`]
        })
    )
  )
  if (!report.durable) return yield* new DurabilityError({ filename, reasons: report.reasons })
  return report
})

const describe = (cause: unknown) => cause instanceof Error ? cause.message : String(cause)
