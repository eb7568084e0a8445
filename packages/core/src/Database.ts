/**
 * The SQLite database layer: durable pragmas, migrations, and validation before anything uses it.
 *
 * @since 0.1.0
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as FileSystem from "@effect/platform/FileSystem"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as SqlClientTag from "@effect/sql/SqlClient"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as fs from "node:fs"
import * as path from "node:path"
import * as Durability from "./Durability.js"
import { DurabilityError } from "./Errors.js"
import { migrate } from "./internal/migrations.js"

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
 * Options of `layer`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly quickCheck?: QuickCheck | undefined
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

const open = (filename: string) =>
  Layer.unwrapEffect(Effect.gen(function*() {
    const reasons = Durability.checkLocation(filename)
    if (reasons.length > 0) return yield* new DurabilityError({ filename, reasons })
    return Layer.scopedContext(
      Effect.map(
        SqliteClient.make({ filename }).pipe(
          // The driver throws while opening a file that is not a database (SQLITE_NOTADB): a finding, not a defect.
          Effect.catchAllDefect((defect) =>
            new DurabilityError({
              filename,
              reasons: [
                `it cannot be opened as a SQLite database (${
                  defect instanceof Error ? defect.message : String(defect)
                })`
              ]
            })
          )
        ),
        (client) => Context.make(SqliteClient.SqliteClient, client).pipe(Context.add(SqlClientTag.SqlClient, client))
      )
    ).pipe(Layer.provide(Reactivity.layer))
  }))

const prepare = (filename: string, quickCheck: boolean) =>
  Effect.gen(function*() {
    const sql = yield* SqliteClient.SqliteClient
    yield* sql`PRAGMA synchronous = FULL`
    yield* sql`PRAGMA foreign_keys = ON`
    yield* sql.unsafe(`PRAGMA busy_timeout = ${busyTimeoutMs}`)
    // Refuse a newer schema or a damaged file before migrating anything.
    yield* Durability.validate(filename, { quickCheck })
    yield* migrate
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
): Layer.Layer<SqliteClient.SqliteClient | SqlClientTag.SqlClient, DurabilityError> =>
  Layer.unwrapEffect(Effect.sync(() => {
    const quickCheck = wantsQuickCheck(filename, options.quickCheck ?? "afterUncleanShutdown")
    return Layer.effectDiscard(prepare(filename, quickCheck)).pipe(Layer.provideMerge(open(filename)))
  }))

/**
 * A database in a fresh temporary directory that is deleted when the layer's scope closes. For tests and
 * throw-away work only: it is a real file with the same pragmas, but it does not outlive the scope.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerEphemeral: Layer.Layer<SqliteClient.SqliteClient | SqlClientTag.SqlClient, DurabilityError> = Layer
  .unwrapScoped(
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const directory = yield* fs.makeTempDirectoryScoped({ prefix: "quarry-" })
      return layer(path.join(directory, "quarry.db"))
    }).pipe(Effect.orDie, Effect.provide(NodeFileSystem.layer))
  )
