import * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import * as CapitalizedExtractor from "@quarry/core/CapitalizedExtractor"
import * as Chunking from "@quarry/core/Chunking"
import * as Database from "@quarry/core/Database"
import * as Extractor from "@quarry/core/Extractor"
import { RunId } from "@quarry/core/Run"
import * as RunStore from "@quarry/core/RunStore"
import * as SqliteRunStore from "@quarry/core/SqliteRunStore"
import * as Workflow from "@quarry/core/Workflow"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as N3 from "n3"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import {
  cleanArtifact,
  countRows,
  failingAt,
  readBytes,
  readText,
  recordingTracer,
  scriptedExtractor,
  sharedData,
  snapshot,
  storeLayer,
  tempDir
} from "./fixtures.js"

const text = readText(sharedData("texts", "long-multi-chapter.txt"))
const custom = { strategy: "chars", windowSize: 300, overlap: 50, batchSize: 2 } as const

describe("Workflow", () => {
  it.scoped("executes a multi-batch run to an artifact", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
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

  describe("chunking parameters", () => {
    it.scoped("are stored by createRun in the same transaction as the run and its input", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        yield* Effect.gen(function*() {
          const store = yield* RunStore.RunStore
          const sql = yield* SqlClient.SqlClient
          const run = yield* Workflow.create({
            input: text,
            extractor: "capitalized",
            chunking: custom,
            concurrency: 3,
            output: { path: path.join(dir, "a.ttl"), format: "turtle" }
          })
          const stored = yield* store.getRun(run.id)
          assert.deepStrictEqual(stored.plan.chunking, new Chunking.ChunkingParams(custom))
          assert.strictEqual(stored.plan.chunkerVersion, Chunking.chunkerVersion)
          assert.strictEqual(stored.plan.concurrency, 3)
          assert.strictEqual(stored.plan.totalBatches, Chunking.plan(text, new Chunking.ChunkingParams(custom)).length)
          assert.strictEqual(yield* store.readInput(run.id), text)

          // Make the input insert fail: the run row written just before it must not survive.
          yield* sql`CREATE TRIGGER refuse_input BEFORE INSERT ON run_inputs BEGIN SELECT RAISE(ABORT, 'no'); END`
          const error = yield* Effect.flip(Workflow.create({
            runId: RunId.make("atomic"),
            input: text,
            extractor: "capitalized",
            chunking: custom,
            output: { path: path.join(dir, "b.ttl"), format: "turtle" }
          }))
          assert.strictEqual(error._tag, "PersistenceError")
          assert.strictEqual(yield* countRows("runs", "atomic"), 0)
          assert.deepStrictEqual((yield* store.listRuns()).map((r) => r.id), [run.id])
        }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"))))
      }))

    it.scoped("an input or ontology with a lone surrogate is refused as a defect before anything is written", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        yield* Effect.gen(function*() {
          const store = yield* RunStore.RunStore
          const output = { path: path.join(dir, "s.ttl"), format: "turtle" } as const
          for (
            const [options, message] of [
              [{ input: "Ada\ud800 Lovelace" }, "Workflow.create: the input holds a lone UTF-16 surrogate at 3"],
              [
                { input: "Ada", ontology: { text: "\udc00", format: "turtle" } },
                "Workflow.create: the ontology holds a lone UTF-16 surrogate at 0"
              ]
            ] as const
          ) {
            const exit = yield* Effect.exit(Workflow.create({ ...options, extractor: "capitalized", output }))
            const defect = Exit.isFailure(exit) ? Option.getOrUndefined(Cause.dieOption(exit.cause)) : undefined
            assert.instanceOf(defect, Cause.IllegalArgumentException)
            assert.strictEqual(defect.message, message)
          }
          assert.deepStrictEqual(yield* store.listRuns(), [])
          // A surrogate pair is one well-formed character.
          yield* Workflow.create({ input: "Ada \ud83d\udc0b", extractor: "capitalized", output })
        }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"))))
      }))

    it.scoped("an output format or batch-error policy the types do not allow is refused as a defect, naming it", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        yield* Effect.gen(function*() {
          const store = yield* RunStore.RunStore
          const output = { path: path.join(dir, "f.ttl"), format: "turtle" } as const
          // What a program written in JavaScript, or reading its settings from a file, can pass.
          const wrong: ReadonlyArray<[Record<string, unknown>, string]> = [
            [
              { output: { ...output, format: "ttl" } },
              `Workflow.create: output.format is "ttl"; expected "turtle", "ntriples" or "jsonl"`
            ],
            [
              { output, onBatchError: "skipp" },
              `Workflow.create: onBatchError is "skipp"; expected "fail" or "skip"`
            ]
          ]
          for (const [options, message] of wrong) {
            const create = Workflow.create({ input: "Ada", extractor: "capitalized", output, ...options })
            const exit = yield* Effect.exit(create)
            const defect = Exit.isFailure(exit) ? Option.getOrUndefined(Cause.dieOption(exit.cause)) : undefined
            assert.instanceOf(defect, Cause.IllegalArgumentException)
            assert.strictEqual(defect.message, message)
          }
          assert.deepStrictEqual(yield* store.listRuns(), [])
        }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"))))
      }))

    it.scoped("resume uses the stored parameters, not the caller's or the defaults, and skips committed batches", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const params = new Chunking.ChunkingParams(custom)
        const total = Chunking.plan(text, params).length
        assert.notStrictEqual(total, Chunking.plan(text, Chunking.defaults).length)
        const clean = yield* cleanArtifact(dir, "params", { input: text, extractor: "capitalized", chunking: custom })
        const db = path.join(dir, "q.db")
        const out = path.join(dir, "out.ttl")
        const run = yield* Workflow.create({
          runId: RunId.make("params-run"),
          input: text,
          extractor: "capitalized",
          chunking: custom,
          output: { path: out, format: "turtle" }
        }).pipe(Effect.provide(storeLayer(db)))
        const failed = yield* Effect.flip(Workflow.execute(run.id)).pipe(Effect.provide(storeLayer(db, [failingAt(3)])))
        assert.strictEqual(failed._tag, "ExtractorError")

        const seen: Array<Extractor.BatchInput> = []
        const recorder = scriptedExtractor({ before: (input) => Effect.sync(() => seen.push(input)) })
        yield* Effect.gen(function*() {
          // A caller with other parameters cannot change the stored run...
          const again = yield* Effect.flip(Workflow.create({
            runId: run.id,
            input: text,
            extractor: "capitalized",
            output: { path: out, format: "turtle" }
          }))
          assert.strictEqual(again._tag, "RunAlreadyExists")
          // ...and execute takes no parameters at all: it reads them from the run.
          const done = yield* Workflow.execute(run.id)
          assert.strictEqual(done.status, "completed")
          assert.strictEqual(done.committedBatches, total)
          assert.deepStrictEqual(done.plan.chunking, params)
        }).pipe(Effect.provide(storeLayer(db, [recorder])))
        // Only the batches that were not committed were extracted, cut with the stored parameters.
        assert.deepStrictEqual(seen.map((b) => b.batchIndex), Array.from({ length: total - 3 }, (_, i) => i + 3))
        const expected = Chunking.plan(text, params)
        for (const input of seen) {
          assert.deepStrictEqual(input.chunks, expected[input.batchIndex]!.chunks)
          assert.isAtMost(input.chunks.length, 2)
          for (const chunk of input.chunks) assert.isAtMost(chunk.end - chunk.start, 300)
        }
        assert.deepStrictEqual(readBytes(out), clean)
      }))
  })

  describe("refusals before anything is written", () => {
    it.scoped("a stored input that no longer matches its hash is InputMismatch", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const out = path.join(dir, "out.ttl")
        yield* Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const run = yield* Workflow.create({
            input: text,
            extractor: "capitalized",
            chunking: custom,
            output: { path: out, format: "turtle" }
          })
          yield* sql`UPDATE run_inputs SET text = ${text.replace("a", "b")} WHERE run_id = ${run.id}`
          const before = yield* snapshot(run.id)
          const error = yield* Effect.flip(Workflow.execute(run.id))
          assert.strictEqual(error._tag, "InputMismatch")
          if (error._tag === "InputMismatch") assert.strictEqual(error.expected, run.plan.inputSha256)
          assert.deepStrictEqual(yield* snapshot(run.id), before)
          assert.strictEqual((yield* snapshot(run.id)).batches, "[]")
        }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"))))
        assert.isFalse(fs.existsSync(out))
      }))

    it.scoped("an extractor whose version changed is PlanMismatch, also for a partly executed run", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const db = path.join(dir, "q.db")
        const out = path.join(dir, "out.ttl")
        const run = yield* Effect.gen(function*() {
          const created = yield* Workflow.create({
            input: text,
            extractor: "capitalized",
            chunking: custom,
            output: { path: out, format: "turtle" }
          })
          return created
        }).pipe(Effect.provide(storeLayer(db)))
        yield* Effect.flip(Workflow.execute(run.id)).pipe(Effect.provide(storeLayer(db, [failingAt(2)])))

        const newer = scriptedExtractor({ version: "2" })
        yield* Effect.gen(function*() {
          const before = yield* snapshot(run.id)
          assert.strictEqual(yield* countRows("batches", run.id), 2)
          const error = yield* Effect.flip(Workflow.execute(run.id))
          assert.strictEqual(error._tag, "PlanMismatch")
          if (error._tag === "PlanMismatch") {
            assert.include(error.field, "version")
            assert.strictEqual(error.stored, "1")
            assert.strictEqual(error.current, "2")
          }
          assert.deepStrictEqual(yield* snapshot(run.id), before)
        }).pipe(Effect.provide(storeLayer(db, [newer])))
        assert.isFalse(fs.existsSync(out))
      }))
  })

  describe("extractor settings", () => {
    /** The capitalized extractor publishing `settings`, with a config hash that covers them. */
    const tuned = (settings: Readonly<Record<string, string | number | boolean>>): Extractor.Extractor => ({
      ...CapitalizedExtractor.make(),
      configHash: `tuned ${JSON.stringify(settings)}`,
      settings
    })

    it.scoped("are stored with the run and read back; changed ones are a PlanMismatch naming each, with both hashes", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const db = path.join(dir, "q.db")
        const settings = { model: "m", temperature: 0.3, seed: 7, strict: false }
        const run = yield* Effect.gen(function*() {
          const created = yield* Workflow.create({
            input: text,
            extractor: "capitalized",
            chunking: custom,
            output: { path: path.join(dir, "out.ttl"), format: "turtle" }
          })
          assert.deepStrictEqual(created.plan.extractor.settings, settings)
          const read = yield* (yield* RunStore.RunStore).getRun(created.id)
          assert.deepStrictEqual(read.plan.extractor.settings, settings)
          const sql = yield* SqlClient.SqlClient
          const rows = yield* sql<{ extractor_settings: string }>`SELECT extractor_settings FROM runs`
          assert.deepStrictEqual(JSON.parse(rows[0]!.extractor_settings), settings)
          return created
        }).pipe(Effect.provide(storeLayer(db, [tuned(settings)])))

        const error = yield* Effect.flip(Workflow.execute(run.id)).pipe(
          Effect.provide(storeLayer(db, [tuned({ model: "m", temperature: 0.5, strict: false })]))
        )
        assert.strictEqual(error._tag, "PlanMismatch")
        if (error._tag === "PlanMismatch") {
          assert.strictEqual(error.field, "extractor capitalized configuration")
          assert.deepStrictEqual(error.settings, [
            { name: "seed", stored: "7", current: "unset" },
            { name: "temperature", stored: "0.3", current: "0.5" }
          ])
          assert.include(error.message, "(seed: 7 when started, unset now; temperature: 0.3 when started, 0.5 now)")
          assert.include(error.message, `tuned ${JSON.stringify(settings)}`)
        }
        const done = yield* Workflow.execute(run.id).pipe(Effect.provide(storeLayer(db, [tuned(settings)])))
        assert.strictEqual(done.status, "completed")
        assert.deepStrictEqual(done.plan.extractor.settings, settings)
      }))

    it.scoped("are not named when the run was stored without any", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const db = path.join(dir, "q.db")
        const run = yield* Workflow.create({
          input: text,
          extractor: "capitalized",
          output: { path: path.join(dir, "out.ttl"), format: "turtle" }
        }).pipe(Effect.provide(storeLayer(db, [tuned({})])))
        const error = yield* Effect.flip(Workflow.execute(run.id)).pipe(
          Effect.provide(storeLayer(db, [tuned({ temperature: 0.5 })]))
        )
        assert.strictEqual(error._tag, "PlanMismatch")
        if (error._tag === "PlanMismatch") {
          assert.strictEqual(error.field, "extractor capitalized configuration")
          assert.isUndefined(error.settings)
        }
      }))

    it.scoped("are empty for an extractor that publishes none", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const run = yield* Workflow.create({
          input: text,
          extractor: "capitalized",
          output: { path: path.join(dir, "out.ttl"), format: "turtle" }
        }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"))))
        assert.deepStrictEqual(run.plan.extractor.settings, {})
      }))
  })

  describe("an extractor output that does not match its schema", () => {
    // A NaN confidence passes the type checker and would become `null` in the stored JSON, unreadable at merge time.
    const broken = scriptedExtractor({ name: "broken" })
    const brokenOn = (batchIndex: number): Extractor.Extractor => ({
      ...broken,
      extract: (input) =>
        Effect.map(broken.extract(input), (output) =>
          input.batchIndex !== batchIndex ? output : {
            ...output,
            entities: output.entities.map((e) => ({ ...e, confidence: Number.NaN })),
            usage: { requests: 1, promptTokens: 5, completionTokens: 1 }
          })
    })
    const createBroken = (dir: string, onBatchError: "fail" | "skip") =>
      Workflow.create({
        input: text,
        extractor: "broken",
        chunking: custom,
        onBatchError,
        output: { path: path.join(dir, `${onBatchError}.ttl`), format: "turtle" }
      })

    it.scoped("is an ExtractorError naming the batch (not a defect), and nothing of that batch is committed", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        yield* Effect.gen(function*() {
          const run = yield* createBroken(dir, "fail")
          const error = yield* Effect.flip(Workflow.execute(run.id))
          assert.strictEqual(error._tag, "ExtractorError")
          if (error._tag === "ExtractorError") {
            assert.strictEqual(error.batchIndex, 2)
            assert.isFalse(error.retryable)
            assert.include(error.message, "extractor broken failed on batch 2")
            assert.include(error.message, "does not match the batch output schema")
          }
          const failed = yield* (yield* RunStore.RunStore).getRun(run.id)
          assert.strictEqual(failed.status, "failed")
          assert.deepStrictEqual(failed.failureReason, Option.some("ExtractorError"))
          assert.strictEqual(failed.committedBatches, 2)
          assert.strictEqual(yield* countRows("batches", run.id), 2)
        }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"), [brokenOn(2)])))
      }))

    it.scoped("under the skip policy, the batch is skipped with that error and its usage, and the run completes", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        yield* Effect.gen(function*() {
          const store = yield* RunStore.RunStore
          const run = yield* createBroken(dir, "skip")
          const done = yield* Workflow.execute(run.id)
          assert.strictEqual(done.status, "completed")
          const skipped = yield* store.skippedBatches(run.id)
          assert.deepStrictEqual(skipped.map((s) => s.batchIndex), [1])
          assert.include(skipped[0]!.error, "does not match the batch output schema")
          assert.deepStrictEqual((yield* store.batchPage(run.id, 0, 1))[0]!.output.usage, {
            requests: 1,
            promptTokens: 5,
            completionTokens: 1
          })
        }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"), [brokenOn(1)])))
      }))
  })

  it.scoped("refuses a span ending beyond the document, naming the batch and the place", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const base = scriptedExtractor({ name: "overrun" })
      const overrun: Extractor.Extractor = {
        ...base,
        extract: (input) =>
          Effect.map(base.extract(input), (output) => ({
            ...output,
            entities: [{ ...output.entities[0]!, span: { start: 0, end: text.length + 1 } }]
          }))
      }
      yield* Effect.gen(function*() {
        const run = yield* Workflow.create({
          input: text,
          extractor: "overrun",
          chunking: custom,
          output: { path: path.join(dir, "out.ttl"), format: "turtle" }
        })
        const error = yield* Effect.flip(Workflow.execute(run.id))
        assert.include(
          error.message,
          `extractor overrun failed on batch 0: its output does not match the batch output schema (a bug in the ` +
            `extractor): entities[0].span: ends at ${text.length + 1}, beyond the end of the document ` +
            `(${text.length} characters)`
        )
      }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"), [overrun])))
    }))

  describe("classes with the same local name in different namespaces", () => {
    const ORG = "http://www.w3.org/ns/org#Organization"
    const FOAF_ORG = "http://xmlns.com/foaf/0.1/Organization"
    const EX_ORG = "https://example.org/vocab#Organization"
    const FOAF_PROJECT = "http://xmlns.com/foaf/0.1/Project"
    const PURL_PROJECT = "http://purl.org/example/Project"
    const ENTITY = "https://w3id.org/quarry/entity/"
    const found = (label: string, type: string): Extractor.EntityMention => ({
      label,
      type,
      span: { start: 0, end: 4 },
      confidence: 1,
      attributes: {}
    })
    const ref = (label: string, type: string) => ({ _tag: "Entity" as const, label, type })
    // Batch 1 names Acme under two classes at once; example.org's Organization appears only in a relation.
    const scripted: ReadonlyArray<Extractor.BatchOutput> = [
      { entities: [found("Acme", ORG)], relations: [] },
      {
        entities: [
          found("Beta", FOAF_ORG),
          found("Acme", FOAF_ORG),
          found("Beta", ORG),
          // Both new in this batch: the class IRI first in order keeps the plain name, whatever the mention order.
          found("Zed", FOAF_PROJECT),
          found("Zed", PURL_PROJECT)
        ],
        relations: [
          {
            subject: ref("Acme", FOAF_ORG),
            predicate: "http://www.w3.org/ns/org#linkedTo",
            object: ref("Acme", ORG),
            confidence: 1
          },
          {
            subject: ref("Beta", ORG),
            predicate: "http://www.w3.org/ns/org#linkedTo",
            object: ref("Gamma", EX_ORG),
            confidence: 1
          }
        ]
      }
    ]
    const qualified = (type: string, local = "Organization") =>
      `${local}_${createHash("sha256").update(type).digest("hex").slice(0, 8)}`

    it.scoped("are distinct entities with distinct IRIs, the first class keeping its plain IRI, as the context says", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const known: Array<Extractor.KnownEntity> = []
        const extractor: Extractor.Extractor = {
          name: "namespaces",
          version: "1",
          configHash: "namespaces-1",
          extract: (input) =>
            Effect.gen(function*() {
              if (input.batchIndex === 2) known.push(...yield* Effect.orDie(input.knownEntities))
              return scripted[input.batchIndex] ?? { entities: [], relations: [] }
            })
        }
        const out = path.join(dir, "out.nt")
        yield* Effect.gen(function*() {
          const run = yield* Workflow.create({
            input: text,
            extractor: "namespaces",
            chunking: custom,
            output: { path: out, format: "ntriples" }
          })
          yield* Workflow.execute(run.id)
        }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"), [extractor])))
        const types = new Map<string, Array<string>>()
        const links: Array<[string, string]> = []
        for (const q of new N3.Parser({ format: "N-Triples" }).parse(readText(out))) {
          if (q.predicate.value === "http://www.w3.org/1999/02/22-rdf-syntax-ns#type") {
            types.set(q.subject.value, [...types.get(q.subject.value) ?? [], q.object.value])
          }
          if (q.predicate.value.endsWith("linkedTo")) links.push([q.subject.value, q.object.value])
        }
        const expected = new Map([
          [`${ENTITY}Organization/acme`, [ORG]],
          [`${ENTITY}${qualified(FOAF_ORG)}/beta`, [FOAF_ORG]],
          [`${ENTITY}${qualified(FOAF_ORG)}/acme`, [FOAF_ORG]],
          [`${ENTITY}Organization/beta`, [ORG]],
          [`${ENTITY}${qualified(FOAF_PROJECT, "Project")}/zed`, [FOAF_PROJECT]],
          [`${ENTITY}Project/zed`, [PURL_PROJECT]],
          [`${ENTITY}${qualified(EX_ORG)}/gamma`, [EX_ORG]]
        ])
        assert.deepStrictEqual(types, expected)
        assert.deepStrictEqual(links, [
          [`${ENTITY}${qualified(FOAF_ORG)}/acme`, `${ENTITY}Organization/acme`],
          [`${ENTITY}Organization/beta`, `${ENTITY}${qualified(EX_ORG)}/gamma`]
        ])
        // The known-entity context given to batch 2 names the entities by the IRIs the artifact gives them.
        assert.deepStrictEqual(known.map((e) => [e.label, e.type, e.iri]), [
          ["Acme", ORG, `${ENTITY}Organization/acme`],
          ["Zed", PURL_PROJECT, `${ENTITY}Project/zed`],
          ["Beta", ORG, `${ENTITY}Organization/beta`],
          ["Acme", FOAF_ORG, `${ENTITY}${qualified(FOAF_ORG)}/acme`],
          ["Beta", FOAF_ORG, `${ENTITY}${qualified(FOAF_ORG)}/beta`],
          ["Zed", FOAF_PROJECT, `${ENTITY}${qualified(FOAF_PROJECT, "Project")}/zed`]
        ])
      }))
  })

  describe("an extractor that throws", () => {
    const base = scriptedExtractor({ name: "throwing" })
    // Inside its effect, and in `extract` itself before any effect exists: both are the extractor's bug.
    const throwing = (batchIndex: number, how: "effect" | "call"): Extractor.Extractor => ({
      ...base,
      extract: (input) => {
        if (input.batchIndex !== batchIndex) return base.extract(input)
        if (how === "call") throw new TypeError("Cannot read properties of undefined (reading 'text')")
        return Effect.sync(() => {
          throw new Error("kaboom")
        })
      }
    })
    const create = (dir: string, name: string, onBatchError: "fail" | "skip") =>
      Workflow.create({
        input: text,
        extractor: "throwing",
        chunking: custom,
        onBatchError,
        output: { path: path.join(dir, `${name}.ttl`), format: "turtle" }
      })

    it.scoped("fails its batch with an ExtractorError naming the extractor, the batch and what it threw", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const cases = [
          ["effect", "Error: kaboom"],
          ["call", "TypeError: Cannot read properties of undefined (reading 'text')"]
        ] as const
        for (const [how, thrown] of cases) {
          yield* Effect.gen(function*() {
            const run = yield* create(dir, how, "fail")
            const error = yield* Effect.flip(Workflow.execute(run.id))
            assert.strictEqual(error._tag, "ExtractorError")
            assert.strictEqual(
              error.message,
              `extractor throwing failed on batch 2: it threw ${thrown} (a bug in the extractor)`
            )
            const failed = yield* (yield* RunStore.RunStore).getRun(run.id)
            assert.strictEqual(failed.status, "failed")
            assert.strictEqual(failed.committedBatches, 2)
          }).pipe(Effect.provide(storeLayer(path.join(dir, `${how}.db`), [throwing(2, how)])))
        }
      }))

    it.scoped("under the skip policy, the batch is skipped with that error and the run completes", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        yield* Effect.gen(function*() {
          const store = yield* RunStore.RunStore
          const run = yield* create(dir, "skip", "skip")
          assert.strictEqual((yield* Workflow.execute(run.id)).status, "completed")
          const skipped = yield* store.skippedBatches(run.id)
          assert.deepStrictEqual(skipped.map((s) => [s.batchIndex, s.error]), [
            [1, "extractor throwing failed on batch 1: it threw Error: kaboom (a bug in the extractor)"]
          ])
        }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"), [throwing(1, "effect")])))
      }))
  })

  describe("zero-batch runs", () => {
    for (const [name, input] of [["empty", ""], ["whitespace-only", "  \n\t \r\n\u00a0 "]] as const) {
      it.scoped(`${name} input completes with an empty valid artifact without merging; resume is a no-op`, () =>
        Effect.gen(function*() {
          const dir = yield* tempDir
          const outputs = {
            turtle: path.join(dir, "out.ttl"),
            ntriples: path.join(dir, "out.nt"),
            jsonl: path.join(dir, "out.jsonl")
          }
          const { names, tracer } = yield* recordingTracer
          yield* Effect.gen(function*() {
            for (const [format, out] of Object.entries(outputs) as Array<[keyof typeof outputs, string]>) {
              const run = yield* Workflow.create({ input, extractor: "capitalized", output: { path: out, format } })
              assert.strictEqual(run.plan.totalBatches, 0)
              names.length = 0
              const done = yield* Workflow.execute(run.id).pipe(Effect.withTracer(tracer))
              assert.strictEqual(done.status, "completed")
              assert.include(names, "Workflow.execute")
              assert.include(names, "Merge.writeEmpty")
              assert.notInclude(names, "Merge.merge")
              const bytes = readBytes(out)
              assert.deepStrictEqual(Option.map(done.artifact, (a) => a.bytes), Option.some(bytes.length))
              if (format === "turtle") {
                assert.deepStrictEqual(new N3.Parser().parse(bytes.toString("utf8")), [])
              } else {
                assert.strictEqual(bytes.length, 0)
              }

              names.length = 0
              const again = yield* Workflow.execute(run.id).pipe(Effect.withTracer(tracer))
              assert.deepStrictEqual(again, done)
              assert.notInclude(names, "Merge.writeEmpty")
              assert.notInclude(names, "Merge.merge")
              assert.deepStrictEqual(readBytes(out), bytes)
            }
          }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"))))
        }))
    }
  })

  it.scopedLive("determinism: batch i sees exactly the entities of batches < i - concurrency + 1, whatever the timing", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const concurrency = 3
      const chunking = { windowSize: 200, overlap: 40, batchSize: 1 }
      const runOnce = (name: string, delayMs: (batchIndex: number) => number) =>
        Effect.gen(function*() {
          const known = new Map<number, ReadonlyArray<string>>()
          let inFlight = 0
          let maxInFlight = 0
          const extractor = scriptedExtractor({
            contextual: true,
            before: (input) =>
              Effect.sync(() => {
                inFlight++
                maxInFlight = Math.max(maxInFlight, inFlight)
              }).pipe(
                Effect.zipRight(Effect.sleep(delayMs(input.batchIndex))),
                Effect.ensuring(Effect.sync(() => inFlight--))
              ),
            onKnown: (batchIndex, entities) => known.set(batchIndex, entities.map((e) => `${e.label}|${e.type}`))
          })
          const out = path.join(dir, `${name}.jsonl`)
          const stored = yield* Effect.gen(function*() {
            const store = yield* RunStore.RunStore
            const run = yield* Workflow.create({
              input: text,
              extractor: "capitalized",
              chunking,
              concurrency,
              output: { path: out, format: "jsonl" }
            })
            yield* Workflow.execute(run.id)
            return yield* store.batchPage(run.id, -1, 10_000)
          }).pipe(Effect.provide(storeLayer(path.join(dir, `${name}.db`), [extractor])))
          return { known, maxInFlight, stored, artifact: readBytes(out) }
        })
      const a = yield* runOnce("a", (i) => ((i * 37) % 11) * 3)
      const b = yield* runOnce("b", (i) => ((1000 - i) * 53 % 7) * 4)
      assert.isAbove(a.stored.length, 10)
      assert.isAbove(a.maxInFlight, 1, "batches must really run concurrently for this test to mean anything")
      assert.isAbove(b.maxInFlight, 1)

      // The expected context, computed independently from the stored outputs.
      const normalise = (label: string) => label.normalize("NFKC").toLowerCase().replace(/\s+/gu, " ").trim()
      for (const { batchIndex } of a.stored) {
        const horizon = batchIndex - concurrency + 1
        const firstSeen = new Map<string, string>()
        for (const { batchIndex: j, output } of a.stored) {
          if (j >= horizon) break
          for (const e of output.entities) {
            const key = `${e.type}\u0000${normalise(e.label)}`
            if (!firstSeen.has(key)) firstSeen.set(key, `${e.label}|${e.type}`)
          }
        }
        assert.sameMembers([...(a.known.get(batchIndex) ?? [])], [...firstSeen.values()], `batch ${batchIndex}`)
        assert.strictEqual(a.known.get(batchIndex)!.length, firstSeen.size)
      }
      assert.deepStrictEqual(b.known, a.known)
      assert.deepStrictEqual(b.artifact, a.artifact)
    }))

  // The store, recording the size of every commit transaction (1 for `commitBatch`).
  const countingGroups = (groups: Array<number>) =>
    Layer.effect(
      RunStore.RunStore,
      Effect.map(SqliteRunStore.make(), (store) => ({
        ...store,
        commitBatch: (commit: RunStore.BatchCommit) =>
          Effect.zipRight(Effect.sync(() => groups.push(1)), store.commitBatch(commit)),
        commitBatches: (commits: ReadonlyArray<RunStore.BatchCommit>) =>
          Effect.zipRight(Effect.sync(() => groups.push(commits.length)), store.commitBatches(commits))
      }))
    )

  it.scopedLive("group commit: batches extracted together commit in one transaction, as one by one would", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const runOnce = (name: string, groupCommit: boolean) =>
        Effect.gen(function*() {
          // Batch 0 is slow: batches 1 to 3 are extracted and wait for it, then all four are ready at once.
          const extractor = scriptedExtractor({
            contextual: true,
            before: (input) => Effect.sleep(input.batchIndex % 4 === 0 ? 150 : 1)
          })
          const groups: Array<number> = []
          const counting = countingGroups(groups)
          const out = path.join(dir, `${name}.ttl`)
          const events: Array<string> = []
          const run = yield* Effect.gen(function*() {
            const created = yield* Workflow.create({
              input: text.slice(0, 6000),
              extractor: "capitalized",
              chunking: { windowSize: 300, overlap: 50, batchSize: 1 },
              concurrency: 4,
              output: { path: out, format: "turtle" }
            })
            return yield* Workflow.execute(created.id, {
              groupCommit,
              onEvent: (e) =>
                Effect.sync(() =>
                  e._tag === "BatchCommitted" &&
                  events.push(`${e.batchIndex}:${e.committedBatches}:${e.entityMentions}`)
                )
            })
          }).pipe(
            Effect.provide(
              Layer.mergeAll(counting, Extractor.layerRegistry(extractor)).pipe(
                Layer.provideMerge(Database.layer(path.join(dir, `${name}.db`)))
              )
            )
          )
          return { run, groups, events, artifact: readBytes(out) }
        })
      const grouped = yield* runOnce("grouped", true)
      const single = yield* runOnce("single", false)
      assert.isAbove(grouped.run.committedBatches, 8)
      assert.isAbove(Math.max(...grouped.groups), 1, "some batches were committed together")
      assert.isBelow(grouped.groups.length, grouped.run.committedBatches)
      assert.strictEqual(grouped.groups.reduce((a, b) => a + b, 0), grouped.run.committedBatches)
      assert.deepStrictEqual(single.groups, single.groups.map(() => 1))
      // Every batch still has its own event, in order, with its own checkpoint's counters; same digest and bytes.
      assert.deepStrictEqual(grouped.events, single.events)
      assert.strictEqual(grouped.run.digest, single.run.digest)
      assert.deepStrictEqual(grouped.artifact, single.artifact)
    }))

  it.scopedLive("group commit: batches extracted at once join the group of the batch whose turn it is; none at concurrency 1", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      // A synchronous extractor: every batch is extracted before its turn to commit comes.
      const runAt = (concurrency: number) =>
        Effect.gen(function*() {
          const groups: Array<number> = []
          const run = yield* Effect.gen(function*() {
            const created = yield* Workflow.create({
              input: text.slice(0, 6000),
              extractor: "capitalized",
              chunking: { windowSize: 300, overlap: 50, batchSize: 1 },
              concurrency,
              output: { path: path.join(dir, `c${concurrency}.ttl`), format: "turtle" }
            })
            return yield* Workflow.execute(created.id)
          }).pipe(
            Effect.provide(
              Layer.mergeAll(countingGroups(groups), Extractor.layerRegistry(scriptedExtractor())).pipe(
                Layer.provideMerge(Database.layer(path.join(dir, `c${concurrency}.db`)))
              )
            )
          )
          return { run, groups }
        })
      const grouped = yield* runAt(4)
      const alone = yield* runAt(1)
      assert.isAbove(grouped.run.committedBatches, 8)
      assert.isAbove(Math.max(...grouped.groups), 1, "some batches were committed together")
      assert.isAtMost(Math.max(...grouped.groups), 4, "a group is at most the batches in flight")
      assert.strictEqual(grouped.groups.reduce((a, b) => a + b, 0), grouped.run.committedBatches)
      assert.deepStrictEqual(alone.groups, alone.groups.map(() => 1))
      assert.strictEqual(alone.groups.length, alone.run.committedBatches)
      assert.strictEqual(grouped.run.digest, alone.run.digest)
    }))
})
