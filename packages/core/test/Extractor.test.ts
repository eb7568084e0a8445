import { assert, describe, it } from "@effect/vitest"
import * as Extractor from "@quarry/core/Extractor"
import * as Effect from "effect/Effect"

const withLanguage = (language: string): Extractor.BatchOutput => ({
  entities: [],
  relations: [{
    subject: { _tag: "Entity", label: "Ishmael", type: "http://xmlns.com/foaf/0.1/Person" },
    predicate: "http://xmlns.com/foaf/0.1/nick",
    object: { _tag: "Literal", value: "Call me Ishmael", language },
    confidence: 0.9
  }]
})

describe("Extractor.checkOutput", () => {
  it.effect("accepts well-formed language tags on literals", () =>
    Effect.gen(function*() {
      for (const tag of ["en", "en-GB", "zh-Hant-TW"]) {
        const output = yield* Extractor.checkOutput("llm", 0)(withLanguage(tag))
        assert.deepStrictEqual(output, withLanguage(tag))
      }
    }))

  it.effect("refuses a language tag that would make invalid Turtle, naming the batch", () =>
    Effect.gen(function*() {
      for (const tag of ["en us", "e", "en-", "en\"@x"]) {
        const error = yield* Effect.flip(Extractor.checkOutput("llm", 3)(withLanguage(tag)))
        assert.strictEqual(error.batchIndex, 3)
        assert.isFalse(error.retryable)
        assert.include(error.message, "does not match the batch output schema")
      }
    }))

  it.effect("the JSON it encoded is what the store writes, and the same bytes a second encode gives", () =>
    Effect.gen(function*() {
      // Keys out of schema order, optional fields absent and present: encoding must not depend on either.
      const output: Extractor.BatchOutput = {
        relations: withLanguage("en").relations,
        entities: [{
          attributes: { jobTitle: "harpooneer" },
          confidence: 0.5,
          span: { end: 8, start: 0 },
          type: "http://xmlns.com/foaf/0.1/Person",
          label: "Queequeg"
        }],
        usage: { requests: 1, promptTokens: 2, completionTokens: 3 }
      }
      const checked = yield* Extractor.checkOutput("llm", 0)(output)
      assert.strictEqual(Extractor.canonicalJson(checked), Extractor.encodeOutput(output))
      assert.strictEqual(Extractor.canonicalJson(checked), Extractor.encodeOutput(checked))
      // An output that was never checked is encoded on demand.
      assert.strictEqual(Extractor.canonicalJson(output), Extractor.encodeOutput(output))
    }))
})
