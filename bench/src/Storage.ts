/**
 * Benchmark 6: database bytes against the bytes of the batch outputs stored, and metadata bytes per batch.
 *
 * @since 0.1.0
 */
import * as DefaultOntology from "@quarry/core/DefaultOntology"
import type * as Extractor from "@quarry/core/Extractor"
import { RunId } from "@quarry/core/Run"
import * as SqliteRunStore from "@quarry/core/SqliteRunStore"
import * as Workflow from "@quarry/core/Workflow"
import * as OfflineExtractor from "@quarry/offline/OfflineExtractor"
import BetterSqlite3 from "better-sqlite3"
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as Harness from "./Harness.js"
import type * as Report from "./Report.js"
import * as Stats from "./Stats.js"
import * as Synthetic from "./Synthetic.js"

/**
 * Batches of the synthetic runs, and the real document (a prefix of it in small modes).
 *
 * @since 0.1.0
 * @category models
 */
export interface Config {
  readonly batches: number
  readonly document: string
  /** Characters of the document to use (the whole document when undefined). */
  readonly documentChars?: number | undefined
}

/**
 * The Moby-Dick text of the repository's test data.
 *
 * @since 0.1.0
 * @category constants
 */
export const mobyDick = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  "../../test/data/texts/moby-dick.txt"
)

/**
 * Sizes per mode.
 *
 * @since 0.1.0
 * @category configs
 */
export const configs: Record<"smoke" | "quick" | "full", Config> = {
  smoke: { batches: 10, document: mobyDick, documentChars: 30_000 },
  quick: { batches: 300, document: mobyDick, documentChars: 300_000 },
  full: { batches: 2_000, document: mobyDick }
}

/**
 * The storage figures of one database holding one run.
 *
 * @since 0.1.0
 * @category models
 */
export interface Measured {
  readonly name: string
  readonly batches: number
  /** Canonical JSON bytes of the outputs (what the extractor produced). */
  readonly outputBytes: number
  /** Bytes of the stored output blobs (deflated above `SqliteRunStore.compressAbove`). */
  readonly blobBytes: number
  /** The database file after its last connection closed (the WAL is checkpointed and removed then). */
  readonly dbBytes: number
  /** Pages used by the stored input text (`run_inputs`), which exact resume needs. */
  readonly inputBytes: number
  readonly ratio: number
  readonly ratioWithoutInput: number
  /** (database − output blobs − stored input) / batches. */
  readonly metadataPerBatch: number
  readonly tables: ReadonlyArray<{ readonly name: string; readonly bytes: number }>
}

/**
 * Figures per database.
 *
 * @since 0.1.0
 * @category models
 */
export interface Data {
  readonly rows: ReadonlyArray<Measured>
}

/** Measures a closed database file holding one run. */
const measure = (name: string, file: string, batches: number, outputBytes: number): Measured => {
  const wal = `${file}-wal`
  const dbBytes = fs.statSync(file).size + (fs.existsSync(wal) ? fs.statSync(wal).size : 0)
  const db = new BetterSqlite3(file, { readonly: true })
  try {
    const tables = db.prepare<[], { name: string; bytes: number }>(
      "SELECT name, SUM(pgsize) AS bytes FROM dbstat GROUP BY name ORDER BY bytes DESC"
    ).all()
    const blobBytes = db.prepare<[], { bytes: number }>("SELECT SUM(length(output)) AS bytes FROM batches").get()!.bytes
    const inputBytes = tables.find((t) => t.name === "run_inputs")?.bytes ?? 0
    return {
      name,
      batches,
      outputBytes,
      blobBytes,
      dbBytes,
      inputBytes,
      ratio: dbBytes / outputBytes,
      ratioWithoutInput: (dbBytes - inputBytes) / outputBytes,
      metadataPerBatch: (dbBytes - blobBytes - inputBytes) / batches,
      tables
    }
  } finally {
    db.close()
  }
}

/** Executes one run through the engine on a fresh database and measures the database. */
const runAndMeasure = (
  dir: string,
  name: string,
  input: string,
  extractor: Extractor.Extractor,
  chunking: Workflow.CreateOptions["chunking"],
  ontology?: Workflow.CreateOptions["ontology"]
) =>
  Effect.gen(function*() {
    const file = path.join(dir, `${name.replace(/[^a-z0-9]+/gi, "-")}.db`)
    let outputBytes = 0
    const counting: Extractor.Extractor = {
      ...extractor,
      extract: (batch) =>
        extractor.extract(batch).pipe(
          Effect.tap((output) => Effect.sync(() => (outputBytes += Buffer.byteLength(JSON.stringify(output)))))
        )
    }
    const done = yield* Effect.gen(function*() {
      const created = yield* Workflow.create({
        runId: RunId.make("storage"),
        input,
        extractor: counting.name,
        chunking,
        ontology,
        output: { path: path.join(dir, "storage.nt"), format: "ntriples" }
      })
      return yield* Workflow.execute(created.id)
    }).pipe(Effect.provide(Harness.engineLayer(file, [counting])))
    return measure(name, file, done.committedBatches, outputBytes)
  })

/**
 * Runs the benchmark.
 *
 * @since 0.1.0
 * @category benchmarks
 */
export const run = (config: Config) =>
  Effect.scoped(Effect.gen(function*() {
    const dir = yield* Harness.tempDir()
    const text = fs.readFileSync(config.document, "utf8")
    const document = config.documentChars === undefined ? text : text.slice(0, config.documentChars)
    const rows: Array<Measured> = []
    for (const [label, shape] of [["~3.5 KB", Synthetic.small], ["~10 KB", Synthetic.tenKb]] as const) {
      rows.push(
        yield* runAndMeasure(
          dir,
          `Synthetic ${label} outputs (${shape.entities} entities)`,
          Synthetic.input(config.batches),
          Harness.replayExtractor((i) => Synthetic.output(i, shape)),
          Synthetic.chunking
        )
      )
    }
    rows.push(
      yield* runAndMeasure(
        dir,
        `${path.basename(config.document)}${
          config.documentChars === undefined ? "" : ` (first ${Stats.int(config.documentChars)} chars)`
        }, offline extractor, default chunking and ontology`,
        document,
        OfflineExtractor.make(),
        {},
        { text: DefaultOntology.turtle, format: "turtle" }
      )
    )
    const data: Data = { rows }
    return { section: section(data), data } satisfies Report.Result<Data>
  }))

const section = (data: Data): Report.Section => {
  const primary = data.rows[0]!
  const ok = (m: Measured) => m.ratio <= 1.2 && m.metadataPerBatch <= 2048
  const describe = (m: Measured) =>
    `${Stats.ratio(m.ratio)} and ${Stats.bytes(m.metadataPerBatch)} per batch (${m.name})`
  const misses = data.rows.filter((m) => !ok(m))
  const perBatch = (m: Measured, ...names: ReadonlyArray<string>) =>
    m.tables.filter((t) => names.includes(t.name)).reduce((n, t) => n + t.bytes, 0) / m.batches
  const why = (m: Measured) => {
    const stored = m.blobBytes / m.batches
    return `the batches table takes ${
      Stats.bytes(perBatch(m, "batches", "sqlite_autoindex_batches_1"))
    } per batch for ${Stats.bytes(stored)} of stored output` +
      // A row over half a page leaves the rest of its page to rows that fit there, often none.
      (stored > 2048 ? ` (page slack: rows of about ${Stats.bytes(stored)} fill 4 KB pages one by one)` : "") +
      `, the run's entity rows ${Stats.bytes(perBatch(m, "entities"))} and their index by first batch ` +
      `${Stats.bytes(perBatch(m, "entities_by_first_batch"))} (what keeps a batch's known-entity context as cheap at ` +
      "batch 10,000 as at batch 10, section 11, and what remote extraction reads it by), " +
      `checkpoints ${Stats.bytes(perBatch(m, "checkpoints"))}`
  }
  const tableNames = [...new Set(data.rows.flatMap((m) => m.tables.map((t) => t.name)))]
  return {
    id: "6",
    title: "Storage",
    method: "Each run executes through the engine (`Workflow.execute`) on a fresh database; the database is measured " +
      "after its last connection closed (WAL checkpointed and removed). *Output bytes* are the canonical JSON bytes " +
      "of the outputs as the extractor returned them; *ratio* is database bytes / output bytes; *metadata per " +
      "batch* is (database − stored output blobs − stored input text) / batches: checkpoints, entity index rows, " +
      "batch row columns, run row, indexes and page slack. Page use per table comes from SQLite's `dbstat`.",
    tables: [
      {
        header: [
          "Run",
          "Batches",
          "Output bytes",
          "Stored blobs",
          "Database",
          "Ratio",
          "Ratio without input",
          "Metadata / batch"
        ],
        rows: data.rows.map((m) => [
          m.name,
          Stats.int(m.batches),
          Stats.bytes(m.outputBytes),
          Stats.bytes(m.blobBytes),
          Stats.bytes(m.dbBytes),
          Stats.ratio(m.ratio),
          Stats.ratio(m.ratioWithoutInput),
          Stats.bytes(m.metadataPerBatch)
        ])
      },
      {
        caption: "Bytes per batch by table or index (dbstat)",
        header: ["Table / index", ...data.rows.map((_, i) => `Run ${i + 1}`)],
        rows: tableNames.map((name) => [
          name,
          ...data.rows.map((m) => Stats.bytes((m.tables.find((t) => t.name === name)?.bytes ?? 0) / m.batches))
        ])
      }
    ],
    targets: [{
      name: "Storage",
      goal: "<= 1.2x output bytes and <= 2 KB metadata per batch",
      measured: describe(primary),
      status: ok(primary) ? "met" : "missed",
      comment: ok(primary) ?
        undefined :
        `ratio ${Stats.ratio(primary.ratio)} is ${
          Stats.num(Math.max(0, primary.ratio / 1.2 - 1) * 100, 0)
        }% over, metadata ${Stats.bytes(primary.metadataPerBatch)} per batch is ${
          Stats.num(Math.max(0, primary.metadataPerBatch / 2048 - 1) * 100, 0)
        }% over: ${why(primary)}.`
    }],
    notes: [
      `Run 1 is the target's reference; ${
        misses.length === 0 ? "every run meets it." : `runs outside it: ${misses.map(describe).join("; ")}.`
      }`,
      "No table grows with a snapshot per batch: checkpoints hold counters and a digest, entity rows are written " +
      `once per new entity. Outputs above ${
        Stats.bytes(SqliteRunStore.compressAbove)
      } are stored deflated, so the ratio can fall below 1, while the stored input text (kept for exact resume) ` +
      "weighs most when outputs are small next to the document (run 3).",
      "An entity row holds its key (class NUL normalised label), its first label and its first batch; the class is " +
      "read back from the key. Until migration 0006 a `type` column repeated it: run 1 took 2.22 KB of metadata per " +
      "batch then (entity rows 1.10 KB; report of 2026-12-06 on 83845b5), over the target.",
      "SQLite's page size stays at its default of 4 KiB, by measurement (by hand, 2026-12-06, before migration 0006, " +
      "the database created with each size): 8 KiB pages gave run 1 2.17 KB of metadata per batch (2.22 KB at " +
      "4 KiB) and 16 KiB 2.21 KB, while run 3 grew to 2.35 KB and 3.42 KB; the commit loops of section 1 (engine, commitBatch and raw) did not " +
      "change beyond the noise at 8 KiB; merging 20,000 batches to Turtle with 4 or 8 KiB main pages and 4, 8 or " +
      "16 KiB temp pages took 5.6 s to 5.9 s for every pairing (medians of the last three of five interleaved " +
      "repeats; 4 KiB and 4 KiB 5.6 s), so no size earned a change."
    ]
  }
}
