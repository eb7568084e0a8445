import { assert, describe, it } from "@effect/vitest"
import { CapitalizedExtractor, Database, Extractor, SqliteRunStore, WorkflowManager } from "@quarry/core"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as fs from "node:fs"
import * as path from "node:path"
import { tempDir } from "./fixtures.js"

// The example of docs/architecture.md, with paths moved into a temporary directory.
describe("docs/architecture.md example", () => {
  it.scoped("composes the layers and completes a run", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const QuarryLive = WorkflowManager.layer().pipe(
        Layer.provideMerge(SqliteRunStore.layer),
        Layer.provideMerge(Extractor.layerRegistry(CapitalizedExtractor.make())),
        Layer.provideMerge(Database.layer(path.join(dir, "quarry.db")))
      )
      const program = Effect.gen(function*() {
        const manager = yield* WorkflowManager.WorkflowManager
        const handle = yield* manager.start({
          input: "Ada Lovelace met Charles Babbage in London.",
          extractor: "capitalized",
          chunking: { windowSize: 200, overlap: 20, batchSize: 2 },
          output: { path: path.join(dir, "graph.ttl"), format: "turtle" }
        })
        return yield* manager.await(handle.runId)
      })
      const run = yield* Effect.scoped(program.pipe(Effect.provide(QuarryLive)))
      assert.strictEqual(run.status, "completed")
      const ttl = fs.readFileSync(path.join(dir, "graph.ttl"), "utf8")
      assert.include(ttl, "\"Ada Lovelace\"")
      assert.include(ttl, "\"Charles Babbage\"")
    }))
})
