import { assert, describe, it } from "@effect/vitest"
import type * as Extractor from "@quarry/core/Extractor"
import * as Merge from "@quarry/core/Merge"
import { type OutputFormat, RunId } from "@quarry/core/Run"
import * as RunStore from "@quarry/core/RunStore"
import * as Workflow from "@quarry/core/Workflow"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as N3 from "n3"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { readBytes, storeLayer, tempDir } from "./fixtures.js"
import { newRun } from "./RunStoreSuite.js"

const FOAF = "http://xmlns.com/foaf/0.1/"
const PERSON = `${FOAF}Person`
const KNOWS = `${FOAF}knows`
const XSD_INTEGER = "http://www.w3.org/2001/XMLSchema#integer"
const ENTITY = "https://w3id.org/quarry/entity/"

const batchCount = 1_200
const tanaka = { batch: 500, again: 900 }
const eleni = { batch: 700, again: 900 }

const mention = (label: string, start: number, end = start + 10): Extractor.EntityMention => ({
  label,
  type: PERSON,
  span: { start, end },
  confidence: 0.8,
  attributes: {}
})

/**
 * Batch i names `Person i`, repeats the previous batch's person at the very same span (an overlap duplicate),
 * every tenth batch also names that person in upper case at a new span, and says `Person i knows Person i-1`
 * (twice every 100 batches: a duplicate relation). Some batches carry Japanese and Greek names and literals.
 */
const output = (i: number): Extractor.BatchOutput => {
  const entities: Array<Extractor.EntityMention> = [mention(`Person ${i}`, i * 100)]
  if (i > 0) entities.push(mention(`Person ${i - 1}`, (i - 1) * 100))
  if (i > 0 && i % 10 === 0) entities.push(mention(`PERSON ${i - 1}`, i * 100 + 50))
  if (i === tanaka.batch) entities.push(mention("田中優子", i * 100 + 20, i * 100 + 24))
  if (i === eleni.batch) entities.push(mention("Ελένη", i * 100 + 30, i * 100 + 35))
  if (i === tanaka.again) {
    entities.push(mention("田中優子", i * 100 + 20, i * 100 + 24))
    entities.push(mention("Ελένη", eleni.batch * 100 + 30, eleni.batch * 100 + 35))
  }
  const relations: Array<Extractor.RelationMention> = []
  const knows: Extractor.RelationMention = {
    subject: { _tag: "Entity", label: `Person ${i}`, type: PERSON },
    predicate: KNOWS,
    object: { _tag: "Entity", label: `Person ${i - 1}`, type: PERSON },
    confidence: 0.7
  }
  if (i > 0) relations.push(knows)
  if (i > 0 && i % 100 === 0) {
    relations.push(knows)
    relations.push({
      subject: { _tag: "Entity", label: `Person ${i}`, type: PERSON },
      predicate: `${FOAF}nick`,
      object: { _tag: "Literal", value: `Νίκη "${i}"\n田中`, language: "EL" },
      confidence: 1
    })
    relations.push({
      subject: { _tag: "Entity", label: `Person ${i}`, type: PERSON },
      predicate: `${FOAF}age`,
      object: { _tag: "Literal", value: String(i), datatype: XSD_INTEGER },
      confidence: 1
    })
  }
  return { entities, relations }
}

/** Labels in order of first appearance, as the merge must write them. */
const expectedLabels = (() => {
  const labels: Array<string> = []
  for (let i = 0; i < batchCount; i++) {
    labels.push(`Person ${i}`)
    if (i === tanaka.batch) labels.push("田中優子")
    if (i === eleni.batch) labels.push("Ελένη")
  }
  return labels
})()

const expectedRelations = (batchCount - 1) + 2 * Math.floor((batchCount - 1) / 100)

/** Every triple of an RDF document as sorted canonical N-Triples lines (n3's own writer). */
const canonicalTriples = (text: string, format: "Turtle" | "N-Triples") => {
  const quads = new N3.Parser({ format }).parse(text)
  const writer = new N3.Writer({ format: "N-Triples" })
  return quads.map((q) => writer.quadToString(q.subject, q.predicate, q.object)).sort()
}

const sha256 = (data: Uint8Array) => createHash("sha256").update(data).digest("hex")

interface JsonlEntity {
  readonly kind: "entity"
  readonly iri: string
  readonly label: string
  readonly type: string
  readonly mentions: ReadonlyArray<[number, number]>
}

describe("Merge", () => {
  it.scoped(
    `merges ${batchCount} batches: order, overlap duplicates, Unicode, determinism, RDF round trip`,
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        yield* Effect.gen(function*() {
          const store = yield* RunStore.RunStore
          const run = yield* store.createRun(newRun("big-merge", { totalBatches: batchCount }))
          const holder = Option.getOrThrow((yield* store.claim(run.id, "merger", 600_000)).holder)
          for (let i = 0; i < batchCount; i++) {
            yield* store.commitBatch({
              runId: run.id,
              holder,
              batchIndex: i,
              output: output(i),
              attempts: 1,
              durationMs: 0
            })
          }
          assert.strictEqual((yield* store.getRun(run.id)).committedBatches, batchCount)

          const mergeTo = (format: OutputFormat, name: string, pageSize?: number) =>
            Merge.merge({ runId: run.id, path: path.join(dir, name), format, ontology: Option.none(), pageSize }).pipe(
              Effect.map((artifact) => {
                const bytes = readBytes(artifact.path)
                assert.strictEqual(artifact.sha256, sha256(bytes))
                assert.strictEqual(artifact.bytes, bytes.length)
                return bytes
              })
            )

          // JSON Lines: order, duplicates, Unicode.
          const jsonl = yield* mergeTo("jsonl", "a.jsonl")
          assert.deepStrictEqual(yield* mergeTo("jsonl", "b.jsonl", 7), jsonl)
          const lines = jsonl.toString("utf8").trimEnd().split("\n").map((l) => JSON.parse(l))
          const entities: Array<JsonlEntity> = lines.filter((l) => l.kind === "entity")
          const relations = lines.filter((l) => l.kind === "relation")
          assert.deepStrictEqual(entities.map((e) => e.label), expectedLabels)
          assert.strictEqual(relations.length, expectedRelations)
          for (const entity of entities) {
            const spans = entity.mentions.map(([s, e]) => `${s}-${e}`)
            assert.strictEqual(new Set(spans).size, spans.length, `duplicate mention of ${entity.label}`)
          }
          const byLabel = new Map(entities.map((e) => [e.label, e]))
          // Person 9 was named in batch 9, repeated at the same span in batch 10, and upper-cased in batch 10.
          assert.deepStrictEqual(byLabel.get("Person 9")!.mentions, [[900, 910], [1050, 1060]])
          assert.deepStrictEqual(byLabel.get("Person 10")!.mentions, [[1000, 1010]])
          assert.isFalse(byLabel.has("PERSON 9"))
          const tanakaEntity = byLabel.get("田中優子")!
          const eleniEntity = byLabel.get("Ελένη")!
          assert.strictEqual(tanakaEntity.iri, `${ENTITY}Person/田中優子`)
          assert.strictEqual(eleniEntity.iri, `${ENTITY}Person/ελένη`)
          assert.notStrictEqual(tanakaEntity.iri, eleniEntity.iri)
          assert.deepStrictEqual(tanakaEntity.mentions, [[50020, 50024], [90020, 90024]])
          assert.deepStrictEqual(eleniEntity.mentions, [[70030, 70035]])

          // Turtle and N-Triples: deterministic, and both parse back to the same triples.
          const turtle = yield* mergeTo("turtle", "a.ttl")
          assert.deepStrictEqual(yield* mergeTo("turtle", "b.ttl", 7), turtle)
          const ntriples = yield* mergeTo("ntriples", "a.nt")
          assert.deepStrictEqual(yield* mergeTo("ntriples", "b.nt", 1_000), ntriples)
          const fromTurtle = canonicalTriples(turtle.toString("utf8"), "Turtle")
          const fromNTriples = canonicalTriples(ntriples.toString("utf8"), "N-Triples")
          assert.strictEqual(fromTurtle.length, 2 * expectedLabels.length + expectedRelations)
          assert.deepStrictEqual(fromTurtle, fromNTriples)
          assert.strictEqual(new Set(fromTurtle).size, fromTurtle.length)

          const quads = new N3.Parser({ format: "Turtle" }).parse(turtle.toString("utf8"))
          const labelled = (label: string) =>
            quads.filter((q) => q.object.termType === "Literal" && q.object.value === label).map((q) => q.subject.value)
          assert.deepStrictEqual(labelled("田中優子"), [`${ENTITY}Person/田中優子`])
          assert.deepStrictEqual(labelled("Ελένη"), [`${ENTITY}Person/ελένη`])
          const nick = quads.find((q) => q.predicate.value === `${FOAF}nick`)!
          assert.strictEqual(nick.object.value, "Νίκη \"100\"\n田中")
          assert.strictEqual(nick.object.termType === "Literal" ? nick.object.language : "", "el")
          const age = quads.find((q) => q.predicate.value === `${FOAF}age`)!
          assert.strictEqual(age.object.termType === "Literal" ? age.object.datatype.value : "", XSD_INTEGER)
          assert.include(turtle.toString("utf8"), "田中優子")
          assert.include(ntriples.toString("utf8"), `<${ENTITY}Person/田中優子>`)
        }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"))))
        // Only the artifacts are left: no temp files beside them.
        assert.sameMembers(fs.readdirSync(dir).filter((f) => !f.startsWith("q.db")), [
          "a.jsonl",
          "b.jsonl",
          "a.ttl",
          "b.ttl",
          "a.nt",
          "b.nt"
        ])
      }),
    { timeout: 120_000 }
  )

  it.scoped("writeEmpty writes a valid empty artifact in every format", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      for (const format of ["turtle", "ntriples", "jsonl"] as const) {
        const target = path.join(dir, `empty.${format}`)
        const artifact = yield* Merge.writeEmpty({ path: target, format, ontology: Option.none() })
        const bytes = readBytes(target)
        assert.strictEqual(artifact.sha256, sha256(bytes))
        assert.deepStrictEqual(
          new N3.Parser({ format: format === "turtle" ? "Turtle" : "N-Triples" }).parse(
            format === "jsonl" ? "" : bytes.toString("utf8")
          ),
          []
        )
        if (format !== "turtle") assert.strictEqual(bytes.length, 0)
      }
    }))

  it.scoped("a run with no committed batch merges to an empty artifact", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      yield* Effect.gen(function*() {
        const store = yield* RunStore.RunStore
        yield* store.createRun(newRun("nothing", { totalBatches: 0 }))
        const target = path.join(dir, "none.nt")
        yield* Merge.merge({ runId: RunId.make("nothing"), path: target, format: "ntriples", ontology: Option.none() })
        assert.strictEqual(readBytes(target).length, 0)
      }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"))))
    }))
})

describe("Merge output quality", () => {
  const text = "Bob Johnson (bob@example.org) met Alice. Later Bob left."
  const bobMail = "bob@example.org"
  const fixed: Extractor.Extractor = {
    name: "fixed",
    version: "3",
    configHash: "none",
    extract: () =>
      Effect.succeed({
        entities: [
          { label: "Bob Johnson", type: PERSON, span: { start: 0, end: 11 }, confidence: 1, attributes: {} },
          { label: "Alice", type: PERSON, span: { start: 34, end: 39 }, confidence: 1, attributes: {} },
          {
            label: "Bob",
            type: PERSON,
            span: { start: 47, end: 50 },
            confidence: 1,
            attributes: { canonical: "Bob Johnson" }
          }
        ],
        relations: [{
          subject: { _tag: "Entity", label: "Bob Johnson", type: PERSON },
          predicate: `${FOAF}mbox`,
          object: { _tag: "Literal", value: bobMail, datatype: "http://www.w3.org/2001/XMLSchema#anyURI" },
          confidence: 1
        }]
      })
  }
  const run = (provenance: boolean) =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const out = path.join(dir, "out.ttl")
      const done = yield* Effect.gen(function*() {
        const created = yield* Workflow.create({
          input: text,
          extractor: "fixed",
          provenance,
          output: { path: out, format: "turtle" }
        })
        return yield* Workflow.execute(created.id)
      }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"), [fixed])))
      return { done, quads: new N3.Parser().parse(fs.readFileSync(out, "utf8")) }
    })
  const bob = `${ENTITY}Person/bob_johnson`
  const PROV = "http://www.w3.org/ns/prov#"

  it.scoped("folds a short mention into its canonical entity and writes mailboxes as mailto: IRIs", () =>
    Effect.gen(function*() {
      const { quads } = yield* run(false)
      const labels = quads.filter((q) => q.predicate.value === "http://www.w3.org/2000/01/rdf-schema#label")
      assert.deepStrictEqual(labels.map((q) => q.object.value).sort(), ["Alice", "Bob Johnson"])
      const mbox = quads.find((q) => q.predicate.value === `${FOAF}mbox`)
      assert.strictEqual(mbox?.subject.value, bob)
      assert.strictEqual(mbox?.object.termType, "NamedNode")
      assert.strictEqual(mbox?.object.value, `mailto:${bobMail}`)
      assert.isUndefined(quads.find((q) => q.predicate.value.startsWith(PROV)), "no provenance unless asked")
    }))

  it.scoped("--provenance: the run is a prov:Activity of the extractor, entities derive from their mentions", () =>
    Effect.gen(function*() {
      const { done, quads } = yield* run(true)
      const runIri = `https://w3id.org/quarry/run/${done.id}`
      const has = (s: string, p: string, o: string) =>
        quads.some((q) => q.subject.value === s && q.predicate.value === p && q.object.value === o)
      assert.isTrue(has(runIri, "http://www.w3.org/1999/02/22-rdf-syntax-ns#type", `${PROV}Activity`))
      assert.isTrue(has(runIri, `${PROV}wasAssociatedWith`, "https://w3id.org/quarry/extractor/fixed/3"))
      assert.isTrue(has(bob, `${PROV}wasGeneratedBy`, runIri))
      const mentions = quads.filter((q) => q.subject.value === bob && q.predicate.value === `${PROV}wasDerivedFrom`)
        .map((q) => q.object.value).sort()
      assert.deepStrictEqual(mentions, [`${runIri}/mention/0-11`, `${runIri}/mention/47-50`])
      const start = quads.find((q) =>
        q.subject.value === `${runIri}/mention/47-50` && q.predicate.value === "https://w3id.org/quarry/ns#start"
      )
      assert.strictEqual(start?.object.value, "47")
      assert.strictEqual(start?.object.termType === "Literal" ? start.object.datatype.value : "", XSD_INTEGER)
    }))
})

describe("Merge temp files", () => {
  it.scoped("a temp file left by a killed merge is removed by the next merge once stale; other files stay", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const out = path.join(dir, "out.ttl")
      const stale = path.join(dir, ".out.ttl.0123456789ab.tmp")
      const unrelated = path.join(dir, ".other.ttl.0123456789ab.tmp")
      fs.writeFileSync(stale, "half a graph")
      fs.writeFileSync(unrelated, "not ours")
      // Older than the lease (30 s by default): a younger temp file may belong to a live merge.
      const old = new Date(Date.now() - 60_000)
      fs.utimesSync(stale, old, old)
      const artifact = yield* Merge.writeEmpty({ path: out, format: "ntriples", ontology: Option.none() })
      assert.strictEqual(artifact.bytes, 0)
      assert.isFalse(fs.existsSync(stale))
      assert.isTrue(fs.existsSync(unrelated))
      assert.deepStrictEqual(fs.readdirSync(dir).sort(), [".other.ttl.0123456789ab.tmp", "out.ttl"])
    }))
})
