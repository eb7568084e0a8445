/**
 * `quarry doctor`: the durability report of the database; exit 3 when it cannot be trusted.
 *
 * @since 0.1.0
 */
import * as Command from "@effect/cli/Command"
import * as DatabaseUrl from "@quarry/core/DatabaseUrl"
import * as Durability from "@quarry/core/Durability"
import { DurabilityError } from "@quarry/core/Errors"
import { RunStore } from "@quarry/core/RunStore"
import * as Effect from "effect/Effect"
import * as path from "node:path"
import * as Flags from "./Flags.js"
import * as Inputs from "./Inputs.js"
import { Output } from "./Output.js"
import { Settings } from "./Settings.js"
import * as Store from "./Store.js"

interface Report {
  readonly database: string
  readonly exists: boolean
  readonly durable: boolean
  readonly reasons: ReadonlyArray<string>
  readonly details?: Durability.DurabilityReport | undefined
  readonly runs?: Readonly<Record<string, number>> | undefined
}

/** How many runs there are in each status. */
const countRuns = Effect.gen(function*() {
  const runs: Record<string, number> = {}
  for (const run of yield* Effect.flatMap(RunStore, (store) => store.listRuns())) {
    runs[run.status] = (runs[run.status] ?? 0) + 1
  }
  return runs
})

/** A PostgreSQL database: opening it checks its settings and migrates it; the report then lists the settings. */
const inspectServer = (db: string): Effect.Effect<Report, never, Settings> =>
  Effect.gen(function*() {
    const settings = yield* Settings
    const database = DatabaseUrl.redact(db)
    return yield* Effect.gen(function*() {
      const details = yield* Durability.inspect(database)
      return {
        database,
        exists: true,
        durable: details.durable,
        reasons: details.reasons,
        details,
        runs: yield* countRuns
      }
    }).pipe(
      Effect.provide(Store.layer(db, settings)),
      Effect.catchAll((error): Effect.Effect<Report> =>
        Effect.succeed({
          database,
          exists: true,
          durable: false,
          reasons: error instanceof DurabilityError ? error.reasons : [error.message]
        })
      )
    )
  })

const inspect = (db: string): Effect.Effect<Report, never, Settings> =>
  Effect.gen(function*() {
    const settings = yield* Settings
    if (DatabaseUrl.isPostgres(db)) return yield* inspectServer(db)
    const database = Inputs.isEphemeralDatabase(db) ? db : path.resolve(db)
    const location = Durability.checkLocation(db)
    const exists = Inputs.databaseExists(db)
    if (location.length > 0) return { database, exists, durable: false, reasons: location }
    if (!exists) return { database, exists, durable: true, reasons: [] }
    const notSqlite = yield* Inputs.checkDatabase(db).pipe(Effect.flip, Effect.option)
    if (notSqlite._tag === "Some") return { database, exists, durable: false, reasons: [notSqlite.value.message] }
    return yield* Effect.gen(function*() {
      // Opening ran the one quick_check (a read of the whole file) and refuses a damaged file before migrating it.
      const checked = yield* Durability.inspect(db, { quickCheck: false })
      const details = new Durability.DurabilityReport({ ...checked, quickCheck: "ok" })
      return { database, exists, durable: details.durable, reasons: details.reasons, details, runs: yield* countRuns }
    }).pipe(
      Effect.provide(Store.layer(db, settings, { quickCheck: "always" })),
      Effect.catchAll((error): Effect.Effect<Report> =>
        Effect.succeed({
          database,
          exists,
          durable: false,
          reasons: error instanceof DurabilityError ? error.reasons : [error.message]
        })
      )
    )
  })

const lines = (report: Report): ReadonlyArray<string> => {
  const rows: Array<[string, string]> = [["database", report.database]]
  if (!report.exists && report.durable) {
    rows.push(["exists", "no: `quarry start` creates it (its directory is writable)"])
  }
  rows.push(["durable", report.durable ? "yes" : "no"])
  const d = report.details
  if (d?.postgres !== undefined) {
    rows.push(["fsync", d.postgres.fsync])
    rows.push(["synchronous commit", d.postgres.synchronousCommit])
    rows.push(["full page writes", d.postgres.fullPageWrites])
    rows.push(["schema", `version ${d.schemaVersion} (this Quarry supports up to ${d.supportedSchemaVersion})`])
    rows.push(["postgresql", d.postgres.serverVersion])
  } else if (d !== undefined) {
    rows.push(["journal mode", d.journalMode])
    rows.push(["synchronous", d.synchronous])
    rows.push(["foreign keys", d.foreignKeys ? "on" : "off"])
    rows.push(["quick check", d.quickCheck])
    rows.push(["schema", `version ${d.schemaVersion} (this Quarry supports up to ${d.supportedSchemaVersion})`])
    rows.push(["sqlite", d.sqliteVersion])
  }
  if (report.runs !== undefined) {
    const counts = Object.entries(report.runs).map(([status, n]) => `${n} ${status}`)
    rows.push(["runs", counts.length === 0 ? "none" : counts.join(", ")])
  }
  const width = Math.max(...rows.map(([key]) => key.length))
  return [
    ...rows.map(([key, value]) => `${key.padEnd(width)}  ${value}`),
    ...report.reasons.map((reason) => `  - ${reason}`)
  ]
}

/**
 * The `doctor` command.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = Command.make("doctor", { db: Flags.db, json: Flags.json }, (flags) =>
  Effect.gen(function*() {
    const output = yield* Output
    const db = yield* Flags.resolveDb(flags.db)
    // A URL without a host or a database is bad usage (exit 2), as for every other command, not a database to report.
    if (DatabaseUrl.isPostgres(db)) yield* Inputs.checkDatabase(db)
    const report = yield* inspect(db)
    if (flags.json) {
      const { details, ...rest } = report
      yield* output.out(JSON.stringify({
        ...rest,
        ...(details === undefined ? {} : {
          journalMode: details.journalMode,
          synchronous: details.synchronous,
          foreignKeys: details.foreignKeys,
          quickCheck: details.quickCheck,
          schemaVersion: details.schemaVersion,
          supportedSchemaVersion: details.supportedSchemaVersion,
          sqliteVersion: details.sqliteVersion,
          ...(details.postgres === undefined ? {} : { postgres: details.postgres })
        })
      }))
    } else {
      for (const line of lines(report)) yield* output.out(line)
    }
    if (!report.durable) return yield* new DurabilityError({ filename: report.database, reasons: report.reasons })
  })).pipe(Command.withDescription("Check that the database keeps committed work safely (exit 3 if not)."))
