/**
 * What the benchmarks share: scoped temp directories, the engine's layers on a real SQLite file, benchmark
 * extractors, and a raw better-sqlite3 writer that performs the same writes as `SqliteRunStore.commitBatch` (the
 * baseline of benchmark 1, and a fast way to fill a database with committed batches for benchmarks 2 and 3).
 *
 * @since 0.1.0
 */
import * as Database from "@quarry/core/Database"
import * as Extractor from "@quarry/core/Extractor"
import type { RunId } from "@quarry/core/Run"
import * as SqliteRunStore from "@quarry/core/SqliteRunStore"
import BetterSqlite3 from "better-sqlite3"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { deflateRawSync } from "node:zlib"

/**
 * A temporary directory (on the same file system as `os.tmpdir()`) removed when the scope closes.
 *
 * @since 0.1.0
 * @category resources
 */
export const tempDir = (prefix = "quarry-bench-") =>
  Effect.acquireRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), prefix))),
    (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
  )

/**
 * Hides the engine's info logs (one per execution) so that they do not drown the figures.
 *
 * @since 0.1.0
 * @category layers
 */
export const quiet: Layer.Layer<never> = Logger.minimumLogLevel(LogLevel.Warning)

/**
 * The engine on a durable SQLite file: database, run store and a registry of the given extractors.
 *
 * @since 0.1.0
 * @category layers
 */
export const engineLayer = (filename: string, extractors: ReadonlyArray<Extractor.Extractor>) =>
  Layer.mergeAll(SqliteRunStore.layer, Extractor.layerRegistry(...extractors)).pipe(
    Layer.provideMerge(Database.layer(filename))
  )

/**
 * A no-op extractor: returns `outputFor(batchIndex)` (precomputed by the caller) without looking at the text.
 *
 * @since 0.1.0
 * @category extractors
 */
export const replayExtractor = (
  outputFor: (batchIndex: number) => Extractor.BatchOutput,
  name = "bench-replay"
): Extractor.Extractor => ({
  name,
  version: "1",
  configHash: "none",
  extract: (input) => Effect.sync(() => outputFor(input.batchIndex))
})

// The store's encoding, repeated here for the raw baseline: outputs above the store's threshold are stored deflated.
const { compressAbove } = SqliteRunStore

const normalizeLabel = (label: string): string => label.normalize("NFKC").toLowerCase().replace(/\s+/gu, " ").trim()

/** The store's entity key: the class and the normalised label. */
const entityKey = (label: string, type: string): string => `${type}\u0000${normalizeLabel(label)}`

const sha256 = (data: string | Uint8Array): string => createHash("sha256").update(data).digest("hex")

/**
 * A batch output encoded as the store writes it.
 *
 * @since 0.1.0
 * @category raw
 */
export interface Encoded {
  readonly json: string
  readonly sha256: string
  readonly blob: Buffer
  readonly encoding: "json" | "deflate"
  readonly entities: ReadonlyArray<readonly [key: string, label: string]>
  readonly mentions: number
  readonly relations: number
}

/**
 * Encodes an output the way a hand-written loop would (`JSON.stringify`, which gives the store's canonical bytes
 * for outputs whose keys are in schema order, as the synthetic ones are), hashes and compresses it.
 *
 * @since 0.1.0
 * @category raw
 */
export const encode = (output: Extractor.BatchOutput): Encoded => {
  const json = JSON.stringify(output)
  const raw = Buffer.from(json, "utf8")
  const deflate = raw.length > compressAbove
  const entities = new Map<string, readonly [string, string]>()
  for (const mention of output.entities) {
    const key = entityKey(mention.label, mention.type)
    if (!entities.has(key)) entities.set(key, [key, mention.label])
  }
  return {
    json,
    sha256: sha256(json),
    blob: deflate ? deflateRawSync(raw) : raw,
    encoding: deflate ? "deflate" : "json",
    entities: [...entities.values()],
    mentions: output.entities.length,
    relations: output.relations.length
  }
}

/**
 * The progress of a run as the raw writer tracks it (it is the only writer, so it need not re-read the row).
 *
 * @since 0.1.0
 * @category raw
 */
export interface RawRun {
  readonly runId: string
  committed: number
  mentions: number
  relations: number
  digest: string
}

/**
 * A raw better-sqlite3 connection that writes batches exactly as `SqliteRunStore.commitBatch` does: the batch row,
 * new entity rows, the checkpoint row with the chained digest, and the run's progress columns.
 *
 * @since 0.1.0
 * @category raw
 */
export interface RawWriter {
  readonly db: BetterSqlite3.Database
  readonly run: (runId: string) => RawRun
  /** Writes one batch in its own transaction. */
  readonly commit: (run: RawRun, encoded: Encoded) => void
  /** Writes many batches in one transaction (for filling databases; not durable per batch). */
  readonly commitMany: (run: RawRun, encoded: ReadonlyArray<Encoded>) => void
}

/**
 * The batch insert, over the columns the current schema has: the schema evolves through migrations, so a column this
 * writer does not know makes it fail loudly (the smoke test compares its rows with the engine's).
 */
const prepareBatchInsert = (db: BetterSqlite3.Database) => {
  const known = new Set([
    "run_id",
    "batch_index",
    "status",
    "error",
    "output",
    "encoding",
    "output_sha256",
    "entity_mentions",
    "relations",
    "attempts",
    "duration_ms",
    "usage",
    "committed_at"
  ])
  const columns = db.prepare<[], { name: string; notnull: number; dflt_value: unknown }>(
    "SELECT name, \"notnull\", dflt_value FROM pragma_table_info('batches')"
  ).all()
  const unknown = columns.filter((c) => !known.has(c.name) && c.notnull === 1 && c.dflt_value === null)
  if (unknown.length > 0) {
    throw new Error(
      `the batches table has new required columns (${unknown.map((c) => c.name).join(", ")}): ` +
        "update the raw writer in bench/src/Harness.ts to match SqliteRunStore.commitBatch"
    )
  }
  const names = columns.map((c) => c.name).filter((name) => known.has(name))
  return db.prepare(
    `INSERT INTO batches (${names.join(", ")}) VALUES (${names.map((n) => `@${n}`).join(", ")})`
  )
}

/**
 * Opens a raw connection with the engine's pragmas (WAL, the given `synchronous`, foreign keys on, busy timeout).
 *
 * @since 0.1.0
 * @category raw
 */
export const openRaw = (filename: string, options: { readonly synchronous: "FULL" | "OFF" }) =>
  Effect.acquireRelease(
    Effect.sync((): RawWriter => {
      const db = new BetterSqlite3(filename)
      db.pragma("journal_mode = WAL")
      db.pragma(`synchronous = ${options.synchronous}`)
      db.pragma("foreign_keys = ON")
      db.pragma(`busy_timeout = ${Database.busyTimeoutMs}`)
      const insertBatch = prepareBatchInsert(db)
      const insertEntity = db.prepare(`INSERT INTO entities (run_id, entity_key, label, first_batch)
        VALUES (?, ?, ?, ?) ON CONFLICT (run_id, entity_key) DO NOTHING`)
      const insertCheckpoint = db.prepare(`INSERT INTO checkpoints (run_id, batch_index, entity_mentions, relations,
        digest, committed_at) VALUES (?, ?, ?, ?, ?, ?)`)
      const updateRun = db.prepare(`UPDATE runs SET committed_batches = ?, entity_mentions = ?, relations = ?,
        digest = ? WHERE id = ?`)
      const readRun = db.prepare<
        [string],
        { committed_batches: number; entity_mentions: number; relations: number; digest: string }
      >(
        "SELECT committed_batches, entity_mentions, relations, digest FROM runs WHERE id = ?"
      )
      const write = (run: RawRun, encoded: Encoded) => {
        const now = Date.now()
        const index = run.committed
        insertBatch.run({
          run_id: run.runId,
          batch_index: index,
          status: "ok",
          error: null,
          output: encoded.blob,
          encoding: encoded.encoding,
          output_sha256: encoded.sha256,
          entity_mentions: encoded.mentions,
          relations: encoded.relations,
          attempts: 1,
          duration_ms: 0,
          usage: null,
          committed_at: now
        })
        for (const [key, label] of encoded.entities) insertEntity.run(run.runId, key, label, index)
        const digest = sha256(run.digest + encoded.sha256)
        const mentions = run.mentions + encoded.mentions
        const relations = run.relations + encoded.relations
        insertCheckpoint.run(run.runId, index, mentions, relations, digest, now)
        updateRun.run(index + 1, mentions, relations, digest, run.runId)
        run.committed = index + 1
        run.mentions = mentions
        run.relations = relations
        run.digest = digest
      }
      const one = db.transaction(write)
      const many = db.transaction((run: RawRun, list: ReadonlyArray<Encoded>) => {
        for (const encoded of list) write(run, encoded)
      })
      return {
        db,
        run: (runId) => {
          const row = readRun.get(runId)
          if (row === undefined) throw new Error(`run ${runId} not found`)
          return {
            runId,
            committed: row.committed_batches,
            mentions: row.entity_mentions,
            relations: row.relations,
            digest: row.digest
          }
        },
        commit: (run, encoded) => one(run, encoded),
        commitMany: (run, list) => many(run, list)
      }
    }),
    (writer) =>
      Effect.sync(() => {
        writer.db.pragma("wal_checkpoint(TRUNCATE)")
        writer.db.close()
      })
  )

/**
 * Fills a created run with `count` committed batches of `outputFor(i)`, through the raw writer in transactions of
 * 1,000 batches with `synchronous=OFF` (setup only; the result is the same rows the engine would write).
 *
 * @since 0.1.0
 * @category raw
 */
export const populate = (
  filename: string,
  runId: RunId,
  count: number,
  outputFor: (batchIndex: number) => Extractor.BatchOutput
) =>
  Effect.scoped(Effect.gen(function*() {
    const writer = yield* openRaw(filename, { synchronous: "OFF" })
    // A large page cache keeps the entity index's random inserts in memory while filling 100k batches.
    writer.db.pragma("cache_size = -262144")
    const run = writer.run(runId)
    const step = 1000
    for (let from = run.committed; from < count; from += step) {
      const list: Array<Encoded> = []
      for (let i = from; i < Math.min(count, from + step); i++) list.push(encode(outputFor(i)))
      writer.commitMany(run, list)
      yield* Effect.yieldNow()
    }
    return run
  }))

/**
 * The SQLite library version of better-sqlite3 (the same library the engine uses).
 *
 * @since 0.1.0
 * @category info
 */
export const sqliteVersion = (): string => {
  const db = new BetterSqlite3(":memory:")
  try {
    return db.prepare<[], { v: string }>("SELECT sqlite_version() AS v").get()!.v
  } finally {
    db.close()
  }
}
