import { assert, describe, it } from "@effect/vitest"
import { Database, Extractor, SqliteRunStore, WorkflowManager } from "@quarry/core"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { tempDir } from "./fixtures.js"

// The example of docs/writing-an-extractor.md, with paths moved into a temporary directory.
const FOAF = "http://xmlns.com/foaf/0.1/"

const people = (names: ReadonlyArray<string>): Extractor.Extractor => ({
  name: "people",
  version: "1", // raise it whenever the same batch would give another output
  configHash: createHash("sha256").update(JSON.stringify(names)).digest("hex"),
  settings: { names: names.join(", ") },
  extract: (input) =>
    Effect.sync(() => {
      const entities: Array<Extractor.EntityMention> = []
      const relations: Array<Extractor.RelationMention> = []
      for (const chunk of input.chunks) {
        const found = new Set<string>()
        for (const name of names) {
          for (let at = chunk.text.indexOf(name); at !== -1; at = chunk.text.indexOf(name, at + name.length)) {
            const start = chunk.start + at // spans are offsets in the whole document, not in the chunk
            entities.push({
              label: name,
              type: `${FOAF}Person`,
              span: { start, end: start + name.length },
              confidence: 1,
              attributes: {}
            })
            found.add(name)
          }
        }
        const [first, ...others] = [...found]
        for (const other of others) {
          relations.push({
            subject: { _tag: "Entity", label: first!, type: `${FOAF}Person` },
            predicate: `${FOAF}knows`,
            object: { _tag: "Entity", label: other, type: `${FOAF}Person` },
            confidence: 0.8
          })
        }
      }
      return { entities, relations }
    })
})

const input = "Ada Lovelace met Charles Babbage in London. Later Ada Lovelace wrote the first program."

describe("docs/writing-an-extractor.md example", () => {
  it.scoped("runs the extractor to a graph with each person once and foaf:knows between them", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const QuarryLive = WorkflowManager.layer().pipe(
        Layer.provideMerge(SqliteRunStore.layer),
        Layer.provideMerge(Extractor.layerRegistry(people(["Ada Lovelace", "Charles Babbage"]))),
        Layer.provideMerge(Database.layer(path.join(dir, "quarry.db")))
      )
      const program = Effect.gen(function*() {
        const manager = yield* WorkflowManager.WorkflowManager
        const handle = yield* manager.start({
          input,
          extractor: "people",
          chunking: { windowSize: 60, overlap: 10, batchSize: 1 },
          output: { path: path.join(dir, "people.ttl"), format: "turtle" }
        })
        return yield* manager.await(handle.runId)
      })
      const run = yield* Effect.scoped(program.pipe(Effect.provide(QuarryLive)))
      assert.strictEqual(run.status, "completed")
      assert.strictEqual(run.plan.totalBatches, 2)
      const ttl = fs.readFileSync(path.join(dir, "people.ttl"), "utf8")
      for (const name of ["Ada Lovelace", "Charles Babbage"]) {
        assert.strictEqual(ttl.split(`rdfs:label "${name}"`).length - 1, 1, name)
      }
      assert.include(
        ttl,
        "<https://w3id.org/quarry/entity/Person/ada_lovelace> foaf:knows " +
          "<https://w3id.org/quarry/entity/Person/charles_babbage> ."
      )
    }))
})
