/**
 * A small deterministic extractor: every sequence of capitalised words is an entity. Useful in tests and as a
 * placeholder; the offline NLP extractor is the real default.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import type * as Extractor from "./Extractor.js"

/**
 * The class given to every entity found.
 *
 * @since 0.1.0
 * @category constants
 */
export const thingType = "http://www.w3.org/2002/07/owl#Thing"

const capitalised = /\p{Lu}[\p{L}\p{M}'’-]*(?:[ \t]+\p{Lu}[\p{L}\p{M}'’-]*){0,3}/gu

/**
 * Finds the capitalised word sequences of the batch's chunks, with document spans.
 *
 * @since 0.1.0
 * @category extraction
 */
export const extractMentions = (input: Extractor.BatchInput): Extractor.BatchOutput => {
  const entities: Array<Extractor.EntityMention> = []
  for (const chunk of input.chunks) {
    for (const match of chunk.text.matchAll(capitalised)) {
      const start = chunk.start + match.index
      entities.push({
        label: match[0],
        type: thingType,
        span: { start, end: start + match[0].length },
        confidence: 0.5,
        attributes: {}
      })
    }
  }
  return { entities, relations: [] }
}

/**
 * The extractor, named `capitalized`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (): Extractor.Extractor => ({
  name: "capitalized",
  version: "1",
  configHash: "none",
  extract: (input) => Effect.sync(() => extractMentions(input))
})
