/**
 * The canonical JSON of a batch output written by hand: the bytes `Schema.encode` of `BatchOutput` followed by
 * `JSON.stringify` gives (keys in schema order, excess keys dropped, absent optional fields left out). A Schema encode
 * and decode of a 10 KB output cost 300 µs to 430 µs of CPU (docs/benchmarks.md, section 1); this writer about 30 µs
 * (measured by hand, 2026-12-06).
 *
 * It checks each value as it writes it, against the same rules as the schema, so that no `Schema.is` runs first: that
 * check cost more than the writing (about 60 µs for a 10 KB output) and allocated about 180 KB per batch, a third of
 * a commit's garbage. It vouches only for what it can check plainly; anything else (a wrong type, a number JSON cannot
 * carry, a sparse array) is left to the Schema path, which either accepts the output or names what is wrong. A test
 * compares it with the Schema encode and decode on generated outputs, so a change of the schema that this misses
 * fails there.
 */
import type { BatchOutput } from "../Extractor.js"
import { isNamed } from "./entities.js"
import { pattern as languageTagPattern } from "./languageTag.js"
import { absoluteIri } from "./rdf.js"

/** Thrown for a value this writer does not vouch for: the caller falls back to the Schema path. */
class NotPlain extends Error {}

const notPlain = (): never => {
  throw new NotPlain()
}

type Fields = { readonly [key: string]: unknown }

/** An object that is not an array (the schema's `Struct` and `Record`). */
const record = (value: unknown): Fields =>
  typeof value === "object" && value !== null && !Array.isArray(value) ? value as Fields : notPlain()

/** `Schema.Number` as JSON carries it: finite only (`NaN` would come back as `null`). */
const num = (n: unknown): string => typeof n === "number" && Number.isFinite(n) ? JSON.stringify(n) : notPlain()

/** `Schema.Int`. */
const int = (n: unknown): string => Number.isSafeInteger(n) ? JSON.stringify(n) : notPlain()

/** `Schema.Int`, as a number (`-0` writes as `0`, as JSON writes it). */
const offset = (n: unknown): number => typeof n === "number" && Number.isSafeInteger(n) ? n : notPlain()

const str = (s: unknown): string => typeof s === "string" ? JSON.stringify(s) : notPlain()

/** `Extractor.CheckedName`: a label, without NUL, not empty once normalised. */
const name = (s: unknown): string =>
  typeof s === "string" && !s.includes("\u0000") && isNamed(s) ? JSON.stringify(s) : notPlain()

/** `Extractor.Iri`: a class, property or datatype. */
const iri = (s: unknown): string => typeof s === "string" && absoluteIri.test(s) ? JSON.stringify(s) : notPlain()

/** `Schema.Array`: every index read, so a hole is refused as the schema refuses `undefined`. */
const array = (value: unknown, item: (value: unknown) => string): string => {
  if (!Array.isArray(value)) return notPlain()
  let out = ""
  for (let i = 0; i < value.length; i++) out += (i === 0 ? "" : ",") + item(value[i])
  return `[${out}]`
}

/** The end no span may pass in the output being written (`write`'s `documentLength`). */
let spanLimit = Number.POSITIVE_INFINITY

/** `Extractor.CheckedSpan`, ending within the document. */
const span = (value: unknown): string => {
  const s = record(value)
  const start = offset(s.start)
  const end = offset(s.end)
  return start >= 0 && end >= start && end <= spanLimit ? `{"start":${start},"end":${end}}` : notPlain()
}

const attributes = (value: unknown): string => {
  const fields = record(value)
  let out = "{"
  let first = true
  for (const key of Object.keys(fields)) {
    // `canonical` names the entity at the merge (`Extractor.CheckedEntityMention`).
    const text = key === "canonical" ? name(fields[key]) : str(fields[key])
    // The Schema encoding assigns keys to a plain object, where `__proto__` is the prototype's setter: it is lost.
    if (key === "__proto__") continue
    out += `${first ? "" : ","}${JSON.stringify(key)}:${text}`
    first = false
  }
  return out + "}"
}

const entity = (value: unknown): string => {
  const e = record(value)
  return `{"label":${name(e.label)},"type":${iri(e.type)},"span":${span(e.span)},"confidence":${num(e.confidence)},` +
    `"attributes":${attributes(e.attributes)}}`
}

const entityRef = (value: unknown): string => {
  const r = record(value)
  return r._tag === "Entity" ? `{"_tag":"Entity","label":${name(r.label)},"type":${iri(r.type)}}` : notPlain()
}

const language = (value: unknown): string =>
  typeof value === "string" && languageTagPattern.test(value) ? JSON.stringify(value) : notPlain()

const literal = (l: Fields): string =>
  `{"_tag":"Literal","value":${str(l.value)}` +
  (l.datatype === undefined ? "" : `,"datatype":${iri(l.datatype)}`) +
  (l.language === undefined ? "" : `,"language":${language(l.language)}`) + "}"

const object = (value: unknown): string => {
  const o = record(value)
  return o._tag === "Entity" ? entityRef(o) : o._tag === "Literal" ? literal(o) : notPlain()
}

const relation = (value: unknown): string => {
  const r = record(value)
  return `{"subject":${entityRef(r.subject)},"predicate":${iri(r.predicate)},"object":${object(r.object)}` +
    (r.span === undefined ? "" : `,"span":${span(r.span)}`) + `,"confidence":${num(r.confidence)}}`
}

const usage = (value: unknown): string => {
  const u = record(value)
  return `{"requests":${int(u.requests)},"promptTokens":${int(u.promptTokens)},` +
    `"completionTokens":${int(u.completionTokens)}` + (u.costUsd === undefined ? "" : `,"costUsd":${num(u.costUsd)}`) +
    "}"
}

/**
 * The canonical JSON of an output this writer vouches for, or `undefined` when it does not: the caller then takes
 * the Schema path.
 */
export const write = (output: BatchOutput, documentLength = Number.POSITIVE_INFINITY): string | undefined => {
  spanLimit = documentLength
  try {
    const o = record(output)
    return `{"entities":${array(o.entities, entity)},"relations":${array(o.relations, relation)}` +
      (o.usage === undefined ? "" : `,"usage":${usage(o.usage)}`) + "}"
  } catch (e) {
    if (e instanceof NotPlain) return undefined
    throw e
  }
}
