import { assert, describe, it } from "@effect/vitest"
import * as Chunking from "@quarry/core/Chunking"
import * as Ontology from "@quarry/core/Ontology"
import * as Prompt from "@quarry/llm/Prompt"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FastCheck from "effect/FastCheck"
import * as Option from "effect/Option"
import { batchText, occurrences } from "../src/internal/spans.js"
import { ontology } from "./fixtures.js"

const chunk = (text: string, start: number) => new Chunking.Chunk({ index: 0, start, end: start + text.length, text })

describe("Prompt", () => {
  it("derives keys, labels, descriptions and literal ranges from the ontology", () => {
    const vocabulary = Prompt.vocabulary(Option.some(ontology))
    assert.deepStrictEqual(vocabulary.classes.map((c) => [c.key, c.label, c.description]), [
      ["Organization", "Organization", "A company, institution or society."],
      ["Person", "Person", "A human being, real or fictional."]
    ])
    assert.deepStrictEqual(vocabulary.properties.map((p) => [p.key, p.domain, p.range, p.literal]), [
      ["birthYear", ["Person"], ["xsd:gYear"], true],
      ["worksFor", ["Person"], ["Organization"], false]
    ])
  })

  it.effect("gives colliding local names distinct keys", () =>
    Effect.gen(function*() {
      const o = yield* Ontology.parse(`
        @prefix owl: <http://www.w3.org/2002/07/owl#> .
        <http://a.example/Agent> a owl:Class .
        <http://b.example/Agent> a owl:Class .
        <http://c.example/2023-Event> a owl:Class .`)
      const keys = Prompt.vocabulary(Option.some(o)).classes.map((c) => c.key)
      assert.deepStrictEqual(keys, ["Agent", "Agent_2", "_2023_Event"])
    }))

  it.effect("shows synonyms, and ranges that allow both literals and entities", () =>
    Effect.gen(function*() {
      const o = yield* Ontology.parse(`
        @prefix owl: <http://www.w3.org/2002/07/owl#> .
        @prefix rdf: <http://www.w3.org/1999/02/22-rdf-syntax-ns#> .
        @prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
        @prefix skos: <http://www.w3.org/2004/02/skos/core#> .
        @prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
        @prefix ex: <http://example.org/> .
        ex:Organization a owl:Class ; rdfs:label "Organization" ; skos:altLabel "company", "firm" .
        ex:founder a rdf:Property ; rdfs:range ex:Organization, xsd:string .`)
      const vocabulary = Prompt.vocabulary(Option.some(o))
      const system = Prompt.systemMessage(vocabulary)
      assert.include(system, "- Organization: Organization (also: company, firm)")
      assert.include(system, "- founder: founder; any -> Organization | xsd:string")
      assert.isFalse(vocabulary.properties[0]!.literal)
      assert.strictEqual(vocabulary.properties[0]!.datatype, "http://www.w3.org/2001/XMLSchema#string")
    }))

  it("falls back to owl:Thing without an ontology, with no relations in the schema", () => {
    const vocabulary = Prompt.vocabulary(Option.none())
    assert.deepStrictEqual(vocabulary.classes.map((c) => c.iri), ["http://www.w3.org/2002/07/owl#Thing"])
    const schema = Prompt.jsonSchema(vocabulary)
    assert.deepStrictEqual(schema.required, ["entities"])
  })

  it("decodes replies, tolerating a Markdown fence, and explains what is wrong otherwise", () => {
    const decode = Prompt.decodeReply(Prompt.vocabulary(Option.some(ontology)))
    const reply = { entities: [{ label: "Ada", type: "Person", confidence: 1 }], relations: [] }
    assert.isTrue(Either.isRight(decode(JSON.stringify(reply))))
    assert.isTrue(Either.isRight(decode("```json\n" + JSON.stringify(reply) + "\n```")))
    const wrongType = decode(JSON.stringify({ entities: [{ label: "Ada", type: "Robot" }] }))
    assert.isTrue(Either.isLeft(wrongType) && wrongType.left.includes("Robot"))
    const notJson = decode("{ entities: ")
    assert.isTrue(Either.isLeft(notJson) && notJson.left.includes("JSON"))
  })

  it("puts the schema, the vocabulary and the text in the messages; user text cannot inject placeholders", () => {
    const vocabulary = Prompt.vocabulary(Option.some(ontology))
    const system = Prompt.systemMessage(vocabulary)
    assert.include(system, JSON.stringify(Prompt.jsonSchema(vocabulary)))
    assert.include(system, "- worksFor: works for; Person -> Organization")
    const user = Prompt.userMessage(vocabulary, "A {{text}} and {{known}} here", [])
    assert.include(user, "<<<\nA {{text}} and {{known}} here\n>>>")
    assert.notInclude(user, "already known")
  })
})

describe("spans", () => {
  it("finds whole-word occurrences at document offsets, across chunk boundaries, once each", () => {
    // Two overlapping chunks of "Ann met Ann Lee at the Annual fair. Ann Lee left." placed at offset 100.
    const doc = "Ann met Ann Lee at the Annual fair. Ann Lee left."
    const batch = batchText([chunk(doc.slice(0, 20), 100), chunk(doc.slice(12, doc.length), 112)])
    assert.strictEqual(batch.text, doc)
    const found = occurrences(batch, "Ann Lee")
    assert.deepStrictEqual(found.map((o) => o.start), [108, 136])
    assert.deepStrictEqual(occurrences(batch, "Ann").map((o) => o.start), [100, 108, 136])
  })

  it("falls back to a case-insensitive match and matches a name broken across lines", () => {
    const batch = batchText([chunk("The river THAMES flows.\nNew\nYork is far.", 0)])
    assert.deepStrictEqual(occurrences(batch, "Thames").map((o) => [o.start, o.text]), [[10, "THAMES"]])
    assert.deepStrictEqual(occurrences(batch, "New York").map((o) => o.text), ["New\nYork"])
    assert.deepStrictEqual(occurrences(batch, "Paris"), [])
  })

  it.prop(
    "the batch text of a document's chunks is the document, and every occurrence maps to the same text",
    [FastCheck.string({ minLength: 1, maxLength: 400 }), FastCheck.integer({ min: 5, max: 60 })],
    ([text, windowSize]) => {
      const params = new Chunking.ChunkingParams({
        strategy: "chars",
        windowSize,
        overlap: Math.floor(windowSize / 3),
        batchSize: 1000
      })
      const chunks = Chunking.chunk(text, params)
      if (chunks.length === 0) return true
      const batch = batchText(chunks)
      assert.strictEqual(batch.text, text.slice(chunks[0]!.start, chunks[chunks.length - 1]!.end))
      const word = text.trim().split(/\s+/)[0] ?? ""
      for (const o of occurrences(batch, word)) assert.strictEqual(text.slice(o.start, o.end), o.text)
      return true
    }
  )
})
