import { assert, describe, it } from "@effect/vitest"
import * as Extractor from "@quarry/core/Extractor"
import * as Merge from "@quarry/core/Merge"
import { RunId } from "@quarry/core/Run"
import * as Workflow from "@quarry/core/Workflow"
import BetterSqlite3 from "better-sqlite3"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as path from "node:path"
import * as Harness from "../src/Harness.js"
import * as Stats from "../src/Stats.js"
import * as Synthetic from "../src/Synthetic.js"

// The benchmarks rely on the raw writer storing exactly what the engine stores (benchmark 1 compares their costs,
// benchmarks 2 and 3 fill databases with it), and on the synthetic inputs planning into the intended batches.

const outputFor = (i: number) => Synthetic.output(i, i % 3 === 0 ? Synthetic.tenKb : Synthetic.small)

const rows = (file: string, sql: string, runId: string) => {
  const db = new BetterSqlite3(file, { readonly: true })
  try {
    return db.prepare<[string], Record<string, unknown>>(sql).all(runId)
  } finally {
    db.close()
  }
}

describe("Harness", () => {
  it("encodes outputs to the store's canonical JSON", () => {
    for (const i of [0, 1, 2, 3, 997, 99_999]) {
      const output = outputFor(i)
      assert.strictEqual(Harness.encode(output).json, Extractor.encodeOutput(output))
    }
  })

  it("plans synthetic inputs into exactly the requested number of batches", () => {
    for (const n of [1, 7, 1000]) assert.strictEqual(Synthetic.batchCount(Synthetic.input(n), Synthetic.chunking), n)
  })

  it.live("the raw writer stores the same rows as the engine, and they merge to the same artifact", () =>
    Effect.scoped(Effect.gen(function*() {
      const dir = yield* Harness.tempDir()
      const file = path.join(dir, "fidelity.db")
      const count = 12
      const extractor = Harness.replayExtractor(outputFor)
      const layer = Harness.engineLayer(file, [extractor])
      const create = (runId: string) =>
        Workflow.create({
          runId: RunId.make(runId),
          input: Synthetic.input(count),
          extractor: extractor.name,
          chunking: Synthetic.chunking,
          output: { path: path.join(dir, `${runId}.nt`), format: "ntriples" }
        })
      const engineRun = yield* Effect.gen(function*() {
        yield* create("raw")
        const created = yield* create("engine")
        return yield* Workflow.execute(created.id)
      }).pipe(Effect.provide(layer))
      yield* Harness.populate(file, RunId.make("raw"), count, outputFor)
      const rawArtifact = yield* Merge.merge({
        runId: RunId.make("raw"),
        path: path.join(dir, "raw.nt"),
        format: "ntriples",
        ontology: Option.none()
      }).pipe(Effect.provide(layer))

      const compare = (sql: string, drop: ReadonlyArray<string>) => {
        const strip = (list: ReadonlyArray<Record<string, unknown>>) =>
          list.map((row) => Object.fromEntries(Object.entries(row).filter(([k]) => !drop.includes(k))))
        const engine = strip(rows(file, sql, "engine"))
        const raw = strip(rows(file, sql, "raw"))
        assert.isAbove(engine.length, 0, sql)
        assert.deepStrictEqual(raw, engine, sql)
      }
      compare("SELECT * FROM batches WHERE run_id = ? ORDER BY batch_index", ["run_id", "committed_at", "duration_ms"])
      compare("SELECT * FROM checkpoints WHERE run_id = ? ORDER BY batch_index", ["run_id", "committed_at"])
      compare("SELECT * FROM entities WHERE run_id = ? ORDER BY entity_key", ["run_id"])
      const progress = (runId: string) => {
        const row = rows(file, "SELECT * FROM runs WHERE id = ?", runId)[0]!
        return Object.fromEntries(
          Object.entries(row).filter(([k]) =>
            ["committed_batches", "entity_mentions", "relations", "digest"].includes(k) || k.startsWith("usage_") ||
            k.startsWith("skipped")
          )
        )
      }
      assert.deepStrictEqual(progress("raw"), progress("engine"))
      assert.strictEqual(engineRun.committedBatches, count)
      assert.strictEqual(rawArtifact.sha256, Option.getOrThrow(engineRun.artifact).sha256)
    })).pipe(Effect.provide(Harness.quiet)))
})

describe("Stats", () => {
  it("summarises and ranks", () => {
    assert.deepStrictEqual(Stats.summarize([3, 1, 2]), { n: 3, min: 1, median: 2, max: 3, mean: 2 })
    assert.strictEqual(Stats.summarize([1, 2, 3, 4]).median, 2.5)
    assert.isNaN(Stats.summarize([]).median)
    const sorted = Array.from({ length: 100 }, (_, i) => i + 1)
    assert.strictEqual(Stats.percentile(sorted, 50), 50)
    assert.strictEqual(Stats.percentile(sorted, 99), 99)
    assert.strictEqual(Stats.percentile(sorted, 100), 100)
  })
})
