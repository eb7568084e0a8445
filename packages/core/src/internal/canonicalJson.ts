/**
 * The canonical JSON of a batch output written by hand: the bytes `Schema.encode` of `BatchOutput` followed by
 * `JSON.stringify` gives (keys in schema order, excess keys dropped, absent optional fields left out), for an output
 * that `Schema.is(BatchOutput)` accepted. A Schema encode and decode of a 10 KB output cost about 400 µs of CPU, a
 * tenth of an engine commit (docs/benchmarks.md, section 1); this costs about a tenth of that. A test compares it
 * with the Schema encoding on generated outputs, so a change of the schema that this misses fails there.
 */
import type { BatchOutput, EntityMention, Literal, RelationMention, Span, Usage } from "../Extractor.js"

/** Thrown for a number JSON cannot carry (`NaN`, `Infinity`): the caller falls back to the Schema path's error. */
class NotFinite extends Error {}

const num = (n: number): string => {
  if (!Number.isFinite(n)) throw new NotFinite()
  return JSON.stringify(n)
}

const str = (s: string): string => JSON.stringify(s)

const span = (s: Span): string => `{"start":${num(s.start)},"end":${num(s.end)}}`

const attributes = (record: { readonly [key: string]: string }): string => {
  let out = "{"
  let first = true
  for (const key of Object.keys(record)) {
    // The Schema encoding assigns keys to a plain object, where `__proto__` is the prototype's setter: it is lost.
    if (key === "__proto__") continue
    out += `${first ? "" : ","}${str(key)}:${str(record[key]!)}`
    first = false
  }
  return out + "}"
}

const entity = (e: EntityMention): string =>
  `{"label":${str(e.label)},"type":${str(e.type)},"span":${span(e.span)},"confidence":${num(e.confidence)},` +
  `"attributes":${attributes(e.attributes)}}`

const entityRef = (r: { readonly label: string; readonly type: string }): string =>
  `{"_tag":"Entity","label":${str(r.label)},"type":${str(r.type)}}`

const literal = (l: Literal): string =>
  `{"_tag":"Literal","value":${str(l.value)}` +
  (l.datatype === undefined ? "" : `,"datatype":${str(l.datatype)}`) +
  (l.language === undefined ? "" : `,"language":${str(l.language)}`) + "}"

const relation = (r: RelationMention): string =>
  `{"subject":${entityRef(r.subject)},"predicate":${str(r.predicate)},` +
  `"object":${r.object._tag === "Entity" ? entityRef(r.object) : literal(r.object)}` +
  (r.span === undefined ? "" : `,"span":${span(r.span)}`) + `,"confidence":${num(r.confidence)}}`

const usage = (u: Usage): string =>
  `{"requests":${num(u.requests)},"promptTokens":${num(u.promptTokens)},` +
  `"completionTokens":${num(u.completionTokens)}` + (u.costUsd === undefined ? "" : `,"costUsd":${num(u.costUsd)}`) +
  "}"

/**
 * The canonical JSON of an output the schema accepts, or `undefined` when a number in it is not finite (JSON would
 * turn it into `null`, which the merge could not decode).
 */
export const write = (output: BatchOutput): string | undefined => {
  try {
    return `{"entities":[${output.entities.map(entity).join(",")}],` +
      `"relations":[${output.relations.map(relation).join(",")}]` +
      (output.usage === undefined ? "" : `,"usage":${usage(output.usage)}`) + "}"
  } catch (e) {
    if (e instanceof NotFinite) return undefined
    throw e
  }
}
