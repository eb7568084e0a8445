import { assert, describe, it } from "@effect/vitest"
import * as BatchExtraction from "@quarry/core/BatchExtraction"
import { ExtractorError } from "@quarry/core/Errors"
import * as Extractor from "@quarry/core/Extractor"
import { RunId } from "@quarry/core/Run"
import * as RunStore from "@quarry/core/RunStore"
import * as Workflow from "@quarry/core/Workflow"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as path from "node:path"
import { readBytes, readText, scriptedExtractor, sharedData, storeLayer, tempDir } from "./fixtures.js"

const text = readText(sharedData("texts", "long-multi-chapter.txt"))
const chunking = { windowSize: 300, overlap: 50, batchSize: 2 }

/** Through JSON and back, as a request and its reply cross the wire between two processes. */
const overTheWire = <A, I>(schema: Schema.Schema<A, I>, value: A) =>
  Schema.encode(schema)(value).pipe(
    Effect.map((encoded) => JSON.parse(JSON.stringify(encoded)) as unknown),
    Effect.flatMap(Schema.decodeUnknown(schema)),
    Effect.orDie
  )

/** A `send` serving every request with `serve` (another process's extractors), counting what it served. */
const wire = (serve: (request: BatchExtraction.Request) => Effect.Effect<BatchExtraction.Reply, unknown>) => {
  const served: Array<number> = []
  const send: BatchExtraction.Send = (request) =>
    overTheWire(BatchExtraction.Request, request).pipe(
      Effect.flatMap(serve),
      Effect.tap(() => Effect.sync(() => served.push(request.batchIndex))),
      Effect.flatMap((reply) => overTheWire(BatchExtraction.Reply, reply)),
      Effect.catchAll((error) =>
        error instanceof BatchExtraction.ExtractionRefused ? Effect.fail(error) : Effect.die(error)
      )
    )
  return { send, served }
}

/** Creates and executes one run with the given registry; answers the artifact's bytes and the run's digest. */
const execute = (runId: string, out: string, registry: Extractor.Registry["Type"]) =>
  Effect.gen(function*() {
    const run = yield* Workflow.create({
      runId: RunId.make(runId),
      input: text,
      extractor: "capitalized",
      chunking,
      concurrency: 3,
      output: { path: out, format: "turtle" }
    })
    const done = yield* Workflow.execute(run.id).pipe(Effect.provideService(Extractor.Registry, registry))
    assert.strictEqual(done.status, "completed")
    return { bytes: readBytes(out).toString("hex"), digest: done.digest, totalBatches: done.plan.totalBatches }
  })

describe("BatchExtraction", () => {
  it.scoped("a distributed run gives the bytes and digest of a local run, every batch served remotely", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const contextual = scriptedExtractor({ contextual: true })
      yield* Effect.gen(function*() {
        const local = yield* Extractor.Registry
        const { send, served } = wire(yield* BatchExtraction.makeServer)
        const straight = yield* execute("straight", path.join(dir, "a.ttl"), local)
        const spread = yield* execute(
          "spread",
          path.join(dir, "b.ttl"),
          BatchExtraction.distributeRegistry(local, send)
        )
        assert.strictEqual(spread.bytes, straight.bytes)
        assert.strictEqual(spread.digest, straight.digest)
        assert.deepStrictEqual(
          [...served].sort((a, b) => a - b),
          Array.from({ length: straight.totalBatches }, (_, i) => i)
        )
      }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"), [contextual])))
    }))

  it.scoped("a served batch is told the IRIs a local one is, for classes that share a local name", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const ORG = "http://www.w3.org/ns/org#Organization"
      const FOAF_ORG = "http://xmlns.com/foaf/0.1/Organization"
      const named = (type: string) => ({ label: "Acme", type })
      const acme = (type: string) => ({ _tag: "Entity" as const, ...named(type) })
      const span = { start: 0, end: 4 }
      // Batches 0 and 1 name Acme under two classes; later ones write the IRIs their context gave them.
      const namespaces: Extractor.Extractor = {
        name: "capitalized",
        version: "1",
        configHash: "namespaces",
        extract: (input) =>
          input.batchIndex < 2 ?
            Effect.succeed({
              entities: [{ ...named(input.batchIndex === 0 ? ORG : FOAF_ORG), span, confidence: 1, attributes: {} }],
              relations: []
            }) :
            Effect.map(Effect.orDie(input.knownEntities), (known) => ({
              entities: [],
              relations: [{
                subject: acme(ORG),
                predicate: "https://example.org/told",
                object: { _tag: "Literal" as const, value: known.map((e) => e.iri).join(" ") },
                confidence: 1
              }]
            }))
      }
      yield* Effect.gen(function*() {
        const local = yield* Extractor.Registry
        const { send } = wire(yield* BatchExtraction.makeServer)
        const straight = yield* execute("straight", path.join(dir, "a.ttl"), local)
        const spread = yield* execute(
          "spread",
          path.join(dir, "b.ttl"),
          BatchExtraction.distributeRegistry(local, send)
        )
        assert.strictEqual(spread.bytes, straight.bytes)
        assert.include(
          readText(path.join(dir, "a.ttl")),
          "\"https://w3id.org/quarry/entity/Organization/acme https://w3id.org/quarry/entity/Organization_e7206caf/acme\""
        )
      }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"), [namespaces])))
    }))

  it.scoped("a server with another extractor version refuses; the owner extracts the batch itself", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const other = Extractor.makeRegistry([scriptedExtractor({ version: "other", contextual: true })])
      yield* Effect.gen(function*() {
        const local = yield* Extractor.Registry
        const { send, served } = wire(
          yield* Effect.provideService(BatchExtraction.makeServer, Extractor.Registry, other)
        )
        const refused: Array<BatchExtraction.ExtractionRefused> = []
        const straight = yield* execute("straight", path.join(dir, "a.ttl"), local)
        const registry = BatchExtraction.distributeRegistry(
          local,
          send,
          (r) => Effect.sync(() => void refused.push(r))
        )
        const spread = yield* execute("spread", path.join(dir, "b.ttl"), registry)
        assert.strictEqual(spread.bytes, straight.bytes)
        assert.deepStrictEqual(served, [])
        assert.strictEqual(refused.length, straight.totalBatches)
        assert.include(refused[0]!.reason, "the run needs")
      }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"), [scriptedExtractor({ contextual: true })])))
    }))

  it.scoped("an extractor error keeps its reason and retryable flag across the wire, with the usage it recorded", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const usage = { requests: 2, promptTokens: 10, completionTokens: 5, costUsd: 0.25 }
      const failing = scriptedExtractor({
        before: (input) =>
          Effect.zipRight(
            input.recordUsage?.(usage) ?? Effect.void,
            Effect.fail(
              new ExtractorError({
                extractor: "capitalized",
                batchIndex: input.batchIndex,
                reason: "rate limited",
                retryable: true
              })
            )
          )
      })
      yield* Effect.gen(function*() {
        const local = yield* Extractor.Registry
        const { send } = wire(yield* BatchExtraction.makeServer)
        const run = yield* Workflow.create({
          input: text,
          extractor: "capitalized",
          chunking,
          output: { path: path.join(dir, "c.ttl"), format: "turtle" }
        })
        const store = yield* RunStore.RunStore
        const stored = yield* store.getRun(run.id)
        assert.isTrue(Option.isNone(stored.artifact))
        const distributed = BatchExtraction.distribute(yield* local.get("capitalized"), send)
        const recorded: Array<Extractor.Usage> = []
        const error = yield* Effect.flip(distributed.extract({
          runId: run.id,
          batchIndex: 0,
          chunks: [],
          ontology: Option.none(),
          knownEntities: Effect.succeed([]),
          recordUsage: (u) => Effect.sync(() => void recorded.push(u))
        }))
        assert.instanceOf(error, ExtractorError)
        assert.strictEqual(error.reason, "rate limited")
        assert.isTrue(error.retryable)
        assert.deepStrictEqual(recorded, [usage])
      }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"), [failing])))
    }))
})
