import { assert, describe, it } from "@effect/vitest"
import * as Workflow from "@quarry/core/Workflow"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as path from "node:path"
import { readText, sharedData, storeLayer, tempDir } from "./fixtures.js"

describe("Workflow", () => {
  it.scoped("executes a multi-batch run to an artifact", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const text = readText(sharedData("texts", "long-multi-chapter.txt"))
      const out = path.join(dir, "out.ttl")
      const result = yield* Effect.gen(function*() {
        const run = yield* Workflow.create({
          input: text,
          extractor: "capitalized",
          chunking: { windowSize: 300, overlap: 50, batchSize: 2 },
          output: { path: out, format: "turtle" }
        })
        return yield* Workflow.execute(run.id)
      }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"))))
      assert.strictEqual(result.status, "completed")
      assert.isTrue(result.committedBatches > 2)
      assert.isTrue(Option.isSome(result.artifact))
      const ttl = readText(out)
      assert.include(ttl, "rdfs:label")
    }))
})
