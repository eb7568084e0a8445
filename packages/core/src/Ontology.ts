/**
 * Ontologies: loading RDF with `n3`, a canonical content identity, and the class/property view extractors use.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as N3 from "n3"
import { createHash } from "node:crypto"

/**
 * A label with its language tag, if any.
 *
 * @since 0.1.0
 * @category models
 */
export interface Label {
  readonly value: string
  readonly language: string | undefined
}

/**
 * A class of the ontology.
 *
 * @since 0.1.0
 * @category models
 */
export interface OntologyClass {
  readonly iri: string
  readonly labels: ReadonlyArray<Label>
  readonly superClasses: ReadonlyArray<string>
}

/**
 * A property of the ontology.
 *
 * @since 0.1.0
 * @category models
 */
export interface OntologyProperty {
  readonly iri: string
  readonly labels: ReadonlyArray<Label>
  readonly domain: ReadonlyArray<string>
  readonly range: ReadonlyArray<string>
}

/**
 * A loaded ontology: its canonical content, the SHA-256 of that content, its prefixes and its view.
 *
 * @since 0.1.0
 * @category models
 */
export interface Ontology {
  readonly sha256: string
  /** Sorted N-Triples of every triple, blank nodes relabelled canonically. */
  readonly canonical: string
  readonly prefixes: Readonly<Record<string, string>>
  readonly classes: ReadonlyArray<OntologyClass>
  readonly properties: ReadonlyArray<OntologyProperty>
}

/**
 * The ontology file could not be parsed.
 *
 * @since 0.1.0
 * @category errors
 */
export class OntologyError extends Schema.TaggedError<OntologyError>()("OntologyError", {
  source: Schema.String,
  reason: Schema.String,
  line: Schema.optional(Schema.Int)
}) {
  override get message() {
    return `ontology ${this.source} could not be read${
      this.line === undefined ? "" : ` (line ${this.line})`
    }: ${this.reason}`
  }
}

const RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
const RDFS = "http://www.w3.org/2000/01/rdf-schema#"
const OWL = "http://www.w3.org/2002/07/owl#"

const termString = (term: N3.Term, bnodes: Map<string, string>): string => {
  switch (term.termType) {
    case "NamedNode":
      return `<${term.value}>`
    case "BlankNode":
      return `_:${bnodes.get(term.value) ?? term.value}`
    case "Literal": {
      const literal = term as N3.Literal
      const value = JSON.stringify(literal.value)
      if (literal.language) return `${value}@${literal.language}`
      return literal.datatype.value === "http://www.w3.org/2001/XMLSchema#string" ?
        value :
        `${value}^^<${literal.datatype.value}>`
    }
    default:
      return term.value
  }
}

/** Labels each blank node by a hash of the triples around it, so the same graph always gets the same labels. */
const canonicalBlankNodes = (quads: ReadonlyArray<N3.Quad>): Map<string, string> => {
  const around = new Map<string, Array<string>>()
  const placeholder = new Map<string, string>()
  for (const q of quads) {
    for (const [term, role] of [[q.subject, "s"], [q.object, "o"]] as const) {
      if (term.termType !== "BlankNode") continue
      const line = `${role} ${termString(q.subject, placeholder)} ${termString(q.predicate, placeholder)} ${
        termString(q.object, placeholder)
      }`
      const list = around.get(term.value) ?? []
      list.push(line.replaceAll(`_:${term.value}`, "_:self"))
      around.set(term.value, list)
    }
  }
  const labels = new Map<string, string>()
  const used = new Map<string, number>()
  for (const [id, lines] of [...around.entries()].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const hash = createHash("sha256").update(lines.sort().join("\n")).digest("hex").slice(0, 16)
    const n = used.get(hash) ?? 0
    used.set(hash, n + 1)
    labels.set(id, n === 0 ? `c${hash}` : `c${hash}_${n}`)
  }
  return labels
}

/**
 * The canonical form of a set of quads: sorted unique N-Triples lines.
 *
 * @since 0.1.0
 * @category identity
 */
export const canonicalize = (quads: ReadonlyArray<N3.Quad>): string => {
  const bnodes = canonicalBlankNodes(quads)
  const lines = new Set<string>()
  for (const q of quads) {
    lines.add(`${termString(q.subject, bnodes)} ${termString(q.predicate, bnodes)} ${termString(q.object, bnodes)} .`)
  }
  return [...lines].sort().join("\n") + (lines.size > 0 ? "\n" : "")
}

const labelsOf = (store: N3.Store, iri: string): Array<Label> =>
  store.getObjects(iri, `${RDFS}label`, null).filter((t) => t.termType === "Literal").map((t) => ({
    value: t.value,
    language: (t as N3.Literal).language || undefined
  }))

const sortedIris = (terms: ReadonlyArray<N3.Term>) =>
  [...new Set(terms.filter((t) => t.termType === "NamedNode").map((t) => t.value))].sort()

/**
 * Parses Turtle, N-Triples or N-Quads text into an ontology.
 *
 * @since 0.1.0
 * @category constructors
 */
export const parse = (
  text: string,
  options: { readonly source?: string | undefined; readonly format?: string | undefined } = {}
): Effect.Effect<Ontology, OntologyError> =>
  Effect.try({
    try: () => new N3.Parser(options.format === undefined ? {} : { format: options.format }).parse(text),
    catch: (cause) => {
      const message = cause instanceof Error ? cause.message : String(cause)
      const line = /line (\d+)/.exec(message)
      return new OntologyError({
        source: options.source ?? "(inline)",
        reason: message,
        ...(line === null ? {} : { line: Number(line[1]) })
      })
    }
  }).pipe(Effect.map((quads) => fromQuads(quads, prefixesOf(text))))

const prefixesOf = (text: string): Record<string, string> => {
  const prefixes: Record<string, string> = {}
  for (const m of text.matchAll(/@prefix\s+([\w-]*):\s*<([^>]*)>/gi)) prefixes[m[1]!] = m[2]!
  for (const m of text.matchAll(/^\s*PREFIX\s+([\w-]*):\s*<([^>]*)>/gim)) prefixes[m[1]!] = m[2]!
  return prefixes
}

/**
 * Builds an ontology from parsed quads.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromQuads = (
  quads: ReadonlyArray<N3.Quad>,
  prefixes: Readonly<Record<string, string>> = {}
): Ontology => {
  const canonical = canonicalize(quads)
  const store = new N3.Store([...quads])
  const classIris = sortedIris([
    ...store.getSubjects(`${RDF}type`, `${OWL}Class`, null),
    ...store.getSubjects(`${RDF}type`, `${RDFS}Class`, null)
  ])
  const propertyIris = sortedIris([
    ...store.getSubjects(`${RDF}type`, `${OWL}ObjectProperty`, null),
    ...store.getSubjects(`${RDF}type`, `${OWL}DatatypeProperty`, null),
    ...store.getSubjects(`${RDF}type`, `${RDF}Property`, null)
  ])
  return {
    sha256: createHash("sha256").update(canonical).digest("hex"),
    canonical,
    prefixes,
    classes: classIris.map((iri) => ({
      iri,
      labels: labelsOf(store, iri),
      superClasses: sortedIris(store.getObjects(iri, `${RDFS}subClassOf`, null))
    })),
    properties: propertyIris.map((iri) => ({
      iri,
      labels: labelsOf(store, iri),
      domain: sortedIris(store.getObjects(iri, `${RDFS}domain`, null)),
      range: sortedIris(store.getObjects(iri, `${RDFS}range`, null))
    }))
  }
}
