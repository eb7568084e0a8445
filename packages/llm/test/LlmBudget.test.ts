import { assert, describe, it } from "@effect/vitest"
import * as Database from "@quarry/core/Database"
import * as Extractor from "@quarry/core/Extractor"
import { RunStore } from "@quarry/core/RunStore"
import * as SqliteRunStore from "@quarry/core/SqliteRunStore"
import * as Workflow from "@quarry/core/Workflow"
import * as LlmExtractor from "@quarry/llm/LlmExtractor"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as FakeOpenAi from "./FakeOpenAi.js"
import { ontologyTurtle, options, services } from "./fixtures.js"

const reply = JSON.stringify({
  entities: [{ label: "Ada Lovelace", type: "Person", confidence: 0.9 }],
  relations: []
})

// 1,000 prompt and 100 completion tokens at $1 / $2 per million: $0.0012 per batch.
const perBatch = 0.0012

const text = Array.from(
  { length: 12 },
  (_, i) => `Chapter ${i + 1}. Ada Lovelace wrote notes on the engine, and the Analytical Society printed them.`
).join("\n\n")

describe("LlmExtractor under a budget", () => {
  it.scopedLive("concurrency 8 against the fake server: spend stays within one batch's cost of the budget", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "quarry-llm-budget-"))),
        (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
      )
      const fake = yield* FakeOpenAi.make({
        fallback: () => ({
          ...FakeOpenAi.completion(reply, { usage: { prompt_tokens: 1000, completion_tokens: 100 } }),
          delayMillis: 30
        })
      })
      const extractor = yield* LlmExtractor.make(options(fake.baseUrl))
      const layer = Layer.mergeAll(SqliteRunStore.layer, Extractor.layerRegistry(extractor)).pipe(
        Layer.provideMerge(Database.layer(path.join(dir, "q.db")))
      )
      yield* Effect.gen(function*() {
        const store = yield* RunStore
        const run = yield* Workflow.create({
          input: text,
          extractor: extractor.name,
          ontology: { text: ontologyTurtle },
          chunking: { windowSize: 120, overlap: 0, batchSize: 1 },
          concurrency: 8,
          output: { path: path.join(dir, "out.ttl"), format: "turtle" }
        })
        assert.isAbove(run.plan.totalBatches, 8)
        const maxCostUsd = 3.5 * perBatch
        const error = yield* Effect.flip(Workflow.execute(run.id, { budget: { maxCostUsd } }))
        assert.strictEqual(error._tag, "BudgetExceeded")
        const spent = yield* store.attemptTotals(run.id)
        assert.isAtMost(spent.costUsd, maxCostUsd + perBatch, `spent $${spent.costUsd} of $${maxCostUsd}`)
        assert.strictEqual((yield* fake.requests).length, spent.requests, "every request is counted")
        const stopped = yield* store.getRun(run.id)
        assert.deepStrictEqual(stopped.failureReason, Option.some("budget"))
        assert.strictEqual(stopped.committedBatches, 3)
      }).pipe(Effect.provide(layer))
    }).pipe(Effect.provide(services)))
})
