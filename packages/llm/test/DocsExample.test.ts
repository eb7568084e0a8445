import { assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as DocsExample from "./DocsExample.js"
import * as FakeOpenAi from "./FakeOpenAi.js"

const read = (file: string) => fs.readFileSync(path.resolve(import.meta.dirname, file), "utf8")

/** The code of each ```ts block of a Markdown text. */
const tsBlocks = (markdown: string) => [...markdown.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]!)

const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "quarry-llm-docs-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

describe("docs/llm.md examples", () => {
  it("are the code of DocsExample.ts, verbatim and in order", () => {
    const code = read("DocsExample.ts").replace(/^\/\*\*[\s\S]*?\*\/\n\n/, "")
    assert.strictEqual(tsBlocks(read("../../../docs/llm.md")).join("\n"), code)
  })

  it.scopedLive("the program runs the llm extractor, configured by QUARRY_LLM_*, to a graph", () =>
    Effect.gen(function*() {
      const fake = yield* FakeOpenAi.make({
        fallback: () =>
          FakeOpenAi.completion(JSON.stringify({ entities: [{ label: "Ada Lovelace", type: "Thing", confidence: 1 }] }))
      })
      const dir = yield* tempDir
      const artifact = path.join(dir, "graph.ttl")
      const run = yield* DocsExample.extractGraph(
        "Ada Lovelace met Charles Babbage in London.",
        artifact,
        path.join(dir, "quarry.db")
      ).pipe(
        Effect.withConfigProvider(
          ConfigProvider.fromMap(new Map([["QUARRY_LLM_BASE_URL", fake.baseUrl], ["QUARRY_LLM_MODEL", "test-model"]]))
        )
      )
      assert.strictEqual(run.status, "completed")
      assert.strictEqual((yield* fake.requests)[0]?.body.model, "test-model")
      assert.include(fs.readFileSync(artifact, "utf8"), "\"Ada Lovelace\"")
    }))

  it.effect("make's refusal reads as the docs say", () =>
    Effect.gen(function*() {
      assert.strictEqual(
        yield* DocsExample.refusal,
        "LlmExtractor option temperature: expected a number from 0 to 2, such as 0.7, got Infinity"
      )
    }))
})
