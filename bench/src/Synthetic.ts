/**
 * Deterministic synthetic data: batch outputs of a chosen size and input texts that plan into a chosen number of
 * batches.
 *
 * @since 0.1.0
 */
import * as Chunking from "@quarry/core/Chunking"
import type * as Extractor from "@quarry/core/Extractor"
import * as Either from "effect/Either"

/**
 * The shape of a synthetic batch output.
 *
 * @since 0.1.0
 * @category models
 */
export interface Shape {
  /** Entity mentions per batch. */
  readonly entities: number
  /** Relations per batch (half to another entity, half to a literal). */
  readonly relations: number
  /** How many distinct recurring entities the document has; the other half of the mentions are new entities. */
  readonly pool: number
}

/**
 * About 20 entities per batch, about 3.5 KB of JSON (above the store's 1 KB threshold: stored deflated).
 *
 * @since 0.1.0
 * @category shapes
 */
export const small: Shape = { entities: 20, relations: 3, pool: 2000 }

/**
 * About 10 KB of JSON per batch (stored deflated, as the store compresses outputs above 1 KB).
 *
 * @since 0.1.0
 * @category shapes
 */
export const tenKb: Shape = { entities: 50, relations: 12, pool: 2000 }

const types = [
  "http://schema.org/Person",
  "http://schema.org/Place",
  "http://schema.org/Organization",
  "http://schema.org/Event"
]
const givenNames = [
  "Ishmael",
  "Ahab",
  "Starbuck",
  "Queequeg",
  "Stubb",
  "Flask",
  "Tashtego",
  "Daggoo",
  "Pip",
  "Fedallah"
]
const places = ["Nantucket", "New Bedford", "Cape Horn", "Java Head", "Sunda Strait", "Manhattoes"]
const gYear = "http://www.w3.org/2001/XMLSchema#gYear"

/** A small fast deterministic generator (mulberry32). */
const random = (seed: number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/**
 * The synthetic output of batch `batchIndex`: half of the mentions name recurring entities from a pool, half name
 * entities first seen in this batch. Keys are in schema order, so `JSON.stringify` gives the store's canonical
 * encoding.
 *
 * @since 0.1.0
 * @category generators
 */
export const output = (batchIndex: number, shape: Shape): Extractor.BatchOutput => {
  const next = random(batchIndex * 7919 + 17)
  const entities: Array<Extractor.EntityMention> = []
  // Spans lie in the batch's own window of `input` (so within the document, as the output check requires); they may
  // overlap, which nothing checks.
  const base = batchIndex * chunking.windowSize
  const end = (start: number, length: number) => Math.min(start + length, base + chunking.windowSize)
  for (let j = 0; j < shape.entities; j++) {
    const recurring = j % 2 === 0
    const id = recurring ? Math.floor(next() * shape.pool) : batchIndex * shape.entities + j
    const type = types[id % types.length]!
    const label = type.endsWith("Place") ?
      `${places[id % places.length]} ${id}` :
      `${givenNames[id % givenNames.length]}${recurring ? "" : " Jr"} ${id}`
    const start = base + Math.floor(next() * chunking.windowSize / 2)
    entities.push({
      label,
      type,
      span: { start, end: end(start, label.length) },
      confidence: Math.round((0.5 + next() / 2) * 1000) / 1000,
      attributes: j % 5 === 0 ? { jobTitle: "harpooneer" } : {}
    })
  }
  const relations: Array<Extractor.RelationMention> = []
  for (let k = 0; k < shape.relations && entities.length > 0; k++) {
    const subject = entities[k % entities.length]!
    const other = entities[(k + 1) % entities.length]!
    const start = subject.span.start
    relations.push({
      subject: { _tag: "Entity", label: subject.label, type: subject.type },
      predicate: k % 2 === 0 ? "http://schema.org/knows" : "http://schema.org/foundingDate",
      object: k % 2 === 0 ?
        { _tag: "Entity", label: other.label, type: other.type } :
        { _tag: "Literal", value: String(1800 + ((batchIndex + k) % 60)), datatype: gYear },
      span: { start, end: end(start, 80) },
      confidence: 0.75
    })
  }
  return { entities, relations }
}

/**
 * Chunking that turns `input(n)` into exactly `n` batches: 100-character windows, no overlap, one chunk per batch.
 *
 * @since 0.1.0
 * @category generators
 */
export const chunking = { strategy: "chars", windowSize: 100, overlap: 0, batchSize: 1 } as const

/**
 * A document that plans into exactly `batches` batches with `chunking`: lines of 99 characters plus a newline, so
 * every window ends at a line break.
 *
 * @since 0.1.0
 * @category generators
 */
export const input = (batches: number): string => {
  const line = (i: number) => {
    const head = `Line ${i} of the voyage: `
    return (head + "call me Ishmael and the whale ".repeat(4)).slice(0, 98).padEnd(99, ".") + "\n"
  }
  const parts: Array<string> = []
  for (let i = 0; i < batches; i++) parts.push(line(i))
  return parts.join("")
}

/**
 * The number of batches `text` plans into with the given chunking.
 *
 * @since 0.1.0
 * @category generators
 */
export const batchCount = (text: string, params: Parameters<typeof Chunking.validate>[0]): number =>
  Either.match(Chunking.validate(params), {
    onLeft: () => NaN,
    onRight: (valid) => Chunking.plan(text, valid).length
  })

/**
 * The UTF-8 bytes of a string.
 *
 * @since 0.1.0
 * @category generators
 */
export const utf8Bytes = (text: string): number => Buffer.byteLength(text, "utf8")
