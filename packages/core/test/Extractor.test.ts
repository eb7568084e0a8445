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
})
