/**
 * Ontologies: loading RDF (Turtle, N-Triples, N-Quads, TriG) with `n3`, a canonical content identity that is the
 * same for every serialisation of the same graph, and the plain-data class/property view extractors use.
 *
 * @since 0.1.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as N3 from "n3"
import { createHash } from "node:crypto"
import * as Rdf from "./internal/rdf.js"

/**
 * A label with its language tag (lower case), if any.
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
  /** `rdfs:label` and `skos:prefLabel` in every language, sorted by language then value. */
  readonly labels: ReadonlyArray<Label>
  /** Direct named superclasses (`rdfs:subClassOf`); see {@link ancestors} for the transitive closure. */
  readonly superClasses: ReadonlyArray<string>
  /** `skos:altLabel` in every language (synonyms such as "company" for an organisation class). */
  readonly altLabels: ReadonlyArray<Label>
  /** `rdfs:comment` (or, without one, `skos:definition`) in every language. */
  readonly comments: ReadonlyArray<Label>
  /** A one-line description taken from the English (or untagged) comment, at most about 200 characters. */
  readonly description: string | undefined
}

/**
 * How a property's values are typed: `datatype` (literals), `object` (resources), `mixed` (its ranges allow both,
 * as many schema.org properties do), `annotation`, or `unknown` (no declaration and no range).
 *
 * @since 0.1.0
 * @category models
 */
export type PropertyKind = "datatype" | "object" | "mixed" | "annotation" | "unknown"

/**
 * A property of the ontology.
 *
 * @since 0.1.0
 * @category models
 */
export interface OntologyProperty {
  readonly iri: string
  readonly labels: ReadonlyArray<Label>
  /** `rdfs:domain` and `schema:domainIncludes`, with `owl:unionOf` classes expanded to their members. */
  readonly domain: ReadonlyArray<string>
  /** `rdfs:range` and `schema:rangeIncludes`, with `owl:unionOf` classes expanded to their members. */
  readonly range: ReadonlyArray<string>
  readonly altLabels: ReadonlyArray<Label>
  readonly comments: ReadonlyArray<Label>
  readonly description: string | undefined
  readonly kind: PropertyKind
  /** Direct named super-properties (`rdfs:subPropertyOf`). */
  readonly superProperties: ReadonlyArray<string>
}

/**
 * A loaded ontology: its canonical content, the SHA-256 of that content, its prefixes and its view. Plain data: it
 * can be shared between fibers and handed to pure extractors.
 *
 * @since 0.1.0
 * @category models
 */
export interface Ontology {
  /** SHA-256 (hex) of {@link Ontology.canonical}: the ontology's identity, stored with every run. */
  readonly sha256: string
  /** Sorted unique N-Triples (N-Quads for named graphs) of every triple, blank nodes labelled canonically. */
  readonly canonical: string
  /** The prefixes declared by the source text; presentation only, not part of the identity. */
  readonly prefixes: Readonly<Record<string, string>>
  /** Classes sorted by IRI (datatypes such as `schema:Text` are listed in {@link Ontology.datatypes} instead). */
  readonly classes: ReadonlyArray<OntologyClass>
  /** Properties sorted by IRI. */
  readonly properties: ReadonlyArray<OntologyProperty>
  /** Datatype IRIs the ontology declares or uses as ranges (XSD types, `rdfs:Literal`, schema.org data types). */
  readonly datatypes: ReadonlyArray<string>
  /** Number of distinct triples (quads) in the canonical content. */
  readonly tripleCount: number
}

/**
 * The ontology could not be read or parsed. `line` and `column` (both 1-based) point at the problem when known.
 *
 * @since 0.1.0
 * @category errors
 */
export class OntologyError extends Schema.TaggedError<OntologyError>()("OntologyError", {
  source: Schema.String,
  reason: Schema.String,
  line: Schema.optional(Schema.Int),
  column: Schema.optional(Schema.Int)
}) {
  override get message() {
    const at = this.line === undefined ?
      "" :
      ` (line ${this.line}${this.column === undefined ? "" : `, column ${this.column}`})`
    return `ontology ${this.source} could not be read${at}: ${this.reason}`
  }
}

/**
 * The RDF syntaxes Quarry reads.
 *
 * @since 0.1.0
 * @category models
 */
export type Format = "turtle" | "ntriples" | "nquads" | "trig"

/**
 * Options for {@link parse}. `format` accepts a {@link Format}, a file extension (`ttl`, `nt`, `nq`) or a media type;
 * without it the text is read with n3's permissive parser (a superset of Turtle, TriG, N-Triples and N-Quads).
 *
 * @since 0.1.0
 * @category models
 */
export interface ParseOptions {
  /** Where the text came from, for error messages (a path, a URL, "default"). */
  readonly source?: string | undefined
  readonly format?: Format | string | undefined
}

/**
 * Ontology text with its origin and syntax, as read by {@link readSource}.
 *
 * @since 0.1.0
 * @category models
 */
export interface Source {
  readonly text: string
  readonly source?: string | undefined
  readonly format?: Format | string | undefined
}

/**
 * The parsed quads of a text and the prefixes it declared.
 *
 * @since 0.1.0
 * @category models
 */
export interface Parsed {
  readonly quads: ReadonlyArray<N3.Quad>
  readonly prefixes: Readonly<Record<string, string>>
}

const RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
const RDFS = "http://www.w3.org/2000/01/rdf-schema#"
const OWL = "http://www.w3.org/2002/07/owl#"
const XSD = "http://www.w3.org/2001/XMLSchema#"
const SKOS = "http://www.w3.org/2004/02/skos/core#"
const SCHEMA_HTTP = "http://schema.org/"
const SCHEMA_HTTPS = "https://schema.org/"
const FOAF = "http://xmlns.com/foaf/0.1/"

const RDF_TYPE = `${RDF}type`
const XSD_STRING = `${XSD}string`
const RDF_LANG_STRING = `${RDF}langString`

// ---------------------------------------------------------------------------------------------------------------
// Formats and parsing
// ---------------------------------------------------------------------------------------------------------------

const formatAliases: ReadonlyArray<readonly [Format, ReadonlyArray<string>]> = [
  ["turtle", ["turtle", "ttl", "text/turtle", "application/x-turtle"]],
  ["ntriples", ["ntriples", "n-triples", "nt", "application/n-triples"]],
  ["nquads", ["nquads", "n-quads", "nq", "application/n-quads"]],
  ["trig", ["trig", "application/trig"]]
]

const n3Formats: Record<Format, string> = {
  turtle: "Turtle",
  ntriples: "N-Triples",
  nquads: "N-Quads",
  trig: "TriG"
}

/**
 * The {@link Format} a format name, extension or media type stands for, if Quarry knows it.
 *
 * @since 0.1.0
 * @category parsing
 */
export const formatOf = (name: string): Option.Option<Format> => {
  const wanted = name.trim().toLowerCase().replace(/^\./, "")
  const found = formatAliases.find(([, aliases]) => aliases.includes(wanted))
  return found === undefined ? Option.none() : Option.some(found[0])
}

/**
 * The {@link Format} of a file, from its extension (`.ttl`, `.turtle`, `.nt`, `.nq`, `.trig`).
 *
 * @since 0.1.0
 * @category parsing
 */
export const formatOfPath = (path: string): Option.Option<Format> => {
  const dot = path.lastIndexOf(".")
  return dot < 0 || dot < path.lastIndexOf("/") ? Option.none() : formatOf(path.slice(dot + 1))
}

const hintFor = (message: string, format: Format | undefined, text: string): string => {
  // Syntaxes n3 does not read, which a file named .owl, .rdf or .jsonld often holds.
  const start = text.trimStart()
  if (/^<(\?xml|rdf:RDF)\b/.test(start)) {
    return "this looks like RDF/XML, which Quarry does not read: convert it to Turtle first (e.g. rapper -i rdfxml -o " +
      "turtle)"
  }
  // `{"` (or `[{"`): a TriG graph block or a Turtle `[ ]` never opens with a quoted key.
  if (/^\[?\s*\{\s*"/.test(start)) {
    return "this looks like JSON-LD, which Quarry does not read: convert it to Turtle first"
  }
  const undefinedPrefix = /Undefined prefix "([^"]*)"/.exec(message)
  if (undefinedPrefix !== null) {
    return `declare the prefix before its first use, e.g. \`@prefix ${undefinedPrefix[1]} <http://example.org/ns#> .\``
  }
  if (format === "ntriples" || format === "nquads") {
    return `${
      format === "ntriples" ? "N-Triples" : "N-Quads"
    } needs one statement per line of full terms (<iri>, "literal", _:blank) ending in " ."; ` +
      "if the file is Turtle, give it a .ttl extension (or, from a program, parse it with format \"turtle\")"
  }
  if (/Expected punctuation|Expected dot/.test(message)) {
    return "end the statement with \".\" (or separate predicates with \";\" and objects with \",\")"
  }
  if (/Unexpected "?eof"?|Unclosed/i.test(message)) {
    return "the text ends inside a statement: close every \"[\", \"(\", \"{\" and string, and end with \".\""
  }
  if (/^Unexpected "/.test(message)) {
    return "check for an unterminated string, an IRI without its <angle brackets>, or a stray character"
  }
  if (/Expected entity|Expected predicate/.test(message)) {
    return "a subject, predicate or object is missing or misplaced here"
  }
  if (/Unexpected graph/.test(message)) {
    return "named graphs are not allowed in Turtle or N-Triples; use TriG (.trig) or N-Quads (.nq)"
  }
  return "fix the RDF syntax at this position"
}

interface N3ErrorContext {
  readonly line?: number
  readonly token?: { readonly line?: number; readonly start?: number } | null
  readonly previousToken?: { readonly line?: number; readonly end?: number } | null
}

const errorContext = (cause: unknown): N3ErrorContext => {
  if (typeof cause === "object" && cause !== null && "context" in cause) {
    const context: unknown = cause.context
    if (typeof context === "object" && context !== null) return context
  }
  return {}
}

/** n3 reports lines; columns are recovered from the offending token or the text after the previous token. */
const locate = (text: string, message: string, cause: unknown): { line?: number; column?: number } => {
  const context = errorContext(cause)
  const line = context.line ?? (() => {
    const m = /on line (\d+)/.exec(message)
    return m === null ? undefined : Number(m[1])
  })()
  if (line === undefined) return {}
  const token = context.token
  if (token !== undefined && token !== null && token.line === line && typeof token.start === "number") {
    return { line, column: token.start + 1 }
  }
  const lineText = text.split(/\r\n|\r|\n/)[line - 1]
  const issue = /^Unexpected "(.*)" on line/s.exec(message)?.[1]
  if (lineText !== undefined && issue !== undefined && issue.length > 0) {
    const previous = context.previousToken
    const from = previous !== undefined && previous !== null && previous.line === line ? previous.end ?? 0 : 0
    const at = lineText.indexOf(issue, from)
    if (at >= 0) return { line, column: at + 1 }
  }
  return { line }
}

/** RDF 1.2 triple terms; n3 parses them, but its type declarations predate them. */
const isTripleTerm = (term: N3.Term): boolean => String(term.termType) === "Quad"

const hasTripleTerm = (quad: N3.Quad): boolean => isTripleTerm(quad.subject) || isTripleTerm(quad.object)

/**
 * Parses RDF text into quads and the prefixes it declares, without building the view.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseQuads = Effect.fn("Ontology.parseQuads")(function*(text: string, options: ParseOptions = {}) {
  const source = options.source ?? "(inline)"
  let format: Format | undefined
  if (options.format !== undefined) {
    const known = formatOf(options.format)
    if (Option.isNone(known)) {
      return yield* new OntologyError({
        source,
        reason: `unknown format "${options.format}"; use turtle, ntriples, nquads or trig`
      })
    }
    format = known.value
  }
  const prefixes: Record<string, string> = {}
  const parser = new N3.Parser(format === undefined ? {} : { format: n3Formats[format] })
  const quads = yield* Effect.try({
    try: () =>
      parser.parse(text, null, (prefix, iri) => {
        prefixes[prefix] = iri.value
      }),
    catch: (cause) => {
      const raw = cause instanceof Error ? cause.message : String(cause)
      const message = raw.replace(/\s*on line \d+\.?$/, "")
      return new OntologyError({
        source,
        reason: `${message}; ${hintFor(raw, format, text)}`,
        ...locate(text, raw, cause)
      })
    }
  })
  if (quads.some(hasTripleTerm)) {
    return yield* new OntologyError({
      source,
      reason: "RDF 1.2 triple terms (<<( ... )>>) are not supported in ontologies; remove them or use reification"
    })
  }
  const parsed: Parsed = { quads, prefixes }
  return parsed
})

// ---------------------------------------------------------------------------------------------------------------
// Canonical form
// ---------------------------------------------------------------------------------------------------------------

const { escapeString: escapeLiteral, iriRef } = Rdf

const literalString = (literal: N3.Literal): string => {
  const value = `"${escapeLiteral(literal.value)}"`
  if (literal.language) {
    const direction: unknown = Reflect.get(literal, "direction")
    const dir = typeof direction === "string" && direction.length > 0 ? `--${direction.toLowerCase()}` : ""
    return `${value}@${literal.language.toLowerCase()}${dir}`
  }
  const datatype = literal.datatype.value
  return datatype === XSD_STRING || datatype === RDF_LANG_STRING ? value : `${value}^^${iriRef(datatype)}`
}

/** A ground term in canonical N-Triples syntax; blank nodes keep their parser label (used only for triple terms). */
const groundTerm = (term: N3.Term): string => {
  switch (term.termType) {
    case "NamedNode":
      return iriRef(term.value)
    case "Literal":
      return literalString(term)
    case "BlankNode":
      return `_:${term.value}`
    case "Variable":
      return `?${term.value}`
    case "DefaultGraph":
      return ""
    default:
      // A triple term (rejected by parseQuads; only reachable through fromQuads): n3's own id, not canonical.
      return `<<${N3.termToId(term)}>>`
  }
}

/** A quad position: a blank node (its index) or a ground term in canonical syntax. */
type Slot = number | string

const sha256Hex = (text: string) => createHash("sha256").update(text).digest("hex")

const renderQuad = (slots: ReadonlyArray<Slot>, labelOf: (node: number) => string): string =>
  slots.map((slot) => (typeof slot === "number" ? labelOf(slot) : slot)).join(" ") + " ."

interface Leaf {
  readonly candidate: string
  readonly labels: ReadonlyArray<string>
  readonly path: ReadonlyArray<number>
}

/** For each blank node, the indexes of the quads it appears in. */
const incidentQuads = (count: number, quads: ReadonlyArray<ReadonlyArray<Slot>>): Array<Array<number>> => {
  const incident: Array<Array<number>> = Array.from({ length: count }, () => [])
  quads.forEach((quad, index) => {
    const seen = new Set<number>()
    for (const slot of quad) {
      if (typeof slot === "number" && !seen.has(slot)) {
        seen.add(slot)
        incident[slot].push(index)
      }
    }
  })
  return incident
}

const cellSizes = (colors: ReadonlyArray<string>) => {
  const sizes = new Map<string, number>()
  for (const color of colors) sizes.set(color, (sizes.get(color) ?? 0) + 1)
  return sizes
}

/** Colour refinement in place: each node's colour becomes the hash of the quads around it, until stable. */
const refine = (
  colors: Array<string>,
  quads: ReadonlyArray<ReadonlyArray<Slot>>,
  incident: ReadonlyArray<ReadonlyArray<number>>
): void => {
  const count = colors.length
  let cells = cellSizes(colors).size
  while (cells < count) {
    const sizes = cellSizes(colors)
    const next = colors.slice()
    for (let node = 0; node < count; node++) {
      // A node alone in its cell stays alone; freezing its colour saves work and changes no partition.
      if (sizes.get(colors[node]) === 1) continue
      const around = incident[node].map((q) =>
        renderQuad(quads[q], (other) => (other === node ? "_:@" : `_:${colors[other]}`))
      ).sort()
      next[node] = sha256Hex(`${colors[node]}\n${around.join("\n")}`)
    }
    for (let node = 0; node < count; node++) colors[node] = next[node]
    const refined = cellSizes(colors).size
    if (refined === cells) break
    cells = refined
  }
}

const leafOf = (
  quads: ReadonlyArray<ReadonlyArray<Slot>>,
  colors: ReadonlyArray<string>,
  path: ReadonlyArray<number>
): Leaf => {
  const short = colors.map((color) => color.slice(0, 16))
  const labels = new Set(short).size === colors.length ? short : colors
  const candidate = quads.map((quad) => renderQuad(quad, (node) => `_:c${labels[node]}`)).sort().join("\n")
  return { candidate, labels, path }
}

const automorphism = (from: Leaf, to: Leaf): Int32Array => {
  const nodeOf = new Map<string, number>()
  to.labels.forEach((label, node) => nodeOf.set(label, node))
  return Int32Array.from(from.labels, (label) => nodeOf.get(label) ?? -1)
}

// In a forest of blank nodes (what Turtle's [ ] and ( ) produce), colour refinement already separates every pair
// of nodes that no automorphism maps onto each other (a node's stable colour fixes its tree up to isomorphism),
// so any one member of a tied cell leads to the best leaf: one path instead of a search.
const isForest = (count: number, quads: ReadonlyArray<ReadonlyArray<Slot>>): boolean => {
  const parent = Array.from({ length: count }, (_, i) => i)
  const find = (x: number): number => {
    while (parent[x] !== x) x = parent[x] = parent[parent[x]]
    return x
  }
  for (const quad of quads) {
    const nodes = [...new Set(quad.filter((slot): slot is number => typeof slot === "number"))]
    if (nodes.length > 2) return false
    if (nodes.length < 2) continue
    const a = find(nodes[0])
    const b = find(nodes[1])
    if (a === b) return false
    parent[a] = b
  }
  return true
}

/** The smallest cell of nodes that still look alike (ties broken by colour), as its members. */
const smallestTiedCell = (colors: ReadonlyArray<string>, sizes: ReadonlyMap<string, number>) => {
  let target: string | undefined
  for (const [color, size] of sizes) {
    if (size < 2) continue
    if (target === undefined) target = color
    else {
      const targetSize = sizes.get(target) ?? 0
      if (size < targetSize || (size === targetSize && color < target)) target = color
    }
  }
  const members: Array<number> = []
  colors.forEach((color, node) => {
    if (color === target) members.push(node)
  })
  return members
}

/**
 * Canonical blank node labels by colour refinement (each node's colour is the hash of the quads around it, iterated
 * until the partition is stable) and, where refinement leaves nodes that look alike, individualisation with
 * backtracking: each candidate node of the smallest tied cell is individualised in turn, and the labelling giving
 * the smallest canonical text wins. Automorphisms found on the way prune equivalent branches, so symmetric
 * structures (the same restriction written twice) stay cheap. The result depends only on the graph, never on the
 * parser's labels or the order of the input.
 */
const labelBlankNodes = (count: number, quads: ReadonlyArray<ReadonlyArray<Slot>>): ReadonlyArray<string> => {
  const incident = incidentQuads(count, quads)
  const forest = isForest(count, quads)

  const automorphisms: Array<Int32Array> = []
  let first: Leaf | undefined
  let best: Leaf | undefined

  const sameOrbit = (a: number, b: number, path: ReadonlyArray<number>, members: ReadonlyArray<number>) => {
    const parent = new Map<number, number>(members.map((m) => [m, m]))
    const find = (x: number): number => {
      let root = x
      for (let up = parent.get(root); up !== undefined && up !== root; up = parent.get(root)) root = up
      return root
    }
    for (const sigma of automorphisms) {
      if (!path.every((fixed) => sigma[fixed] === fixed)) continue
      for (const m of members) {
        const image = sigma[m]
        if (parent.has(image)) parent.set(find(m), find(image))
      }
    }
    return find(a) === find(b)
  }

  /** Returns the depth to backtrack to when an automorphism proves the rest of a subtree equivalent. */
  const search = (colors: Array<string>, path: Array<number>): number | undefined => {
    refine(colors, quads, incident)
    const sizes = cellSizes(colors)
    if (sizes.size === count) {
      const leaf = leafOf(quads, colors, path)
      if (first === undefined || best === undefined) {
        first = leaf
        best = leaf
        return undefined
      }
      if (leaf.candidate === first.candidate) {
        automorphisms.push(automorphism(first, leaf))
        let depth = 0
        while (depth < path.length && path[depth] === first.path[depth]) depth++
        return depth
      }
      if (leaf.candidate === best.candidate) automorphisms.push(automorphism(best, leaf))
      else if (leaf.candidate < best.candidate) best = leaf
      return undefined
    }
    const members = smallestTiedCell(colors, sizes)
    const explored: Array<number> = []
    for (const node of members) {
      if (forest && explored.length > 0) break
      if (explored.some((done) => sameOrbit(done, node, path, members))) continue
      explored.push(node)
      const child = colors.slice()
      child[node] = sha256Hex(`${colors[node]}\n!${path.length}`)
      const jump = search(child, [...path, node])
      if (jump !== undefined && jump < path.length) return jump
    }
    return undefined
  }

  // Every node starts alike; a lone node keeps this colour, so its label has the same shape as the others.
  const initial = sha256Hex("")
  search(Array.from({ length: count }, () => initial), [])
  // A search always reaches at least one leaf, so `best` is set here.
  return (best?.labels ?? []).map((label) => `_:c${label}`)
}

/**
 * The canonical form of a set of quads: sorted unique N-Triples lines (a fourth term for quads in a named graph),
 * blank nodes labelled canonically, so every serialisation of the same graph gives the same text and any
 * difference in a triple gives a different text. Literals use canonical N-Triples escapes and lower-case language
 * tags; IRIs are kept exactly (relative IRIs are not resolved against the file's location).
 *
 * @since 0.1.0
 * @category identity
 */
export const canonicalize = (quads: ReadonlyArray<N3.Quad>): string => {
  const blankIndex = new Map<string, number>()
  const lines = new Set<string>()
  const blankQuads: Array<ReadonlyArray<Slot>> = []
  const blankKeys = new Set<string>()
  for (const quad of quads) {
    const terms = quad.graph.termType === "DefaultGraph" ?
      [quad.subject, quad.predicate, quad.object] :
      [quad.subject, quad.predicate, quad.object, quad.graph]
    let blank = false
    const slots = terms.map((term): Slot => {
      if (term.termType !== "BlankNode") return groundTerm(term)
      blank = true
      let index = blankIndex.get(term.value)
      if (index === undefined) {
        index = blankIndex.size
        blankIndex.set(term.value, index)
      }
      return index
    })
    if (!blank) {
      lines.add(renderQuad(slots, String))
      continue
    }
    const key = slots.map((slot) => (typeof slot === "number" ? `#${slot}` : slot)).join(" ")
    if (!blankKeys.has(key)) {
      blankKeys.add(key)
      blankQuads.push(slots)
    }
  }
  if (blankIndex.size > 0) {
    const labels = labelBlankNodes(blankIndex.size, blankQuads)
    for (const quad of blankQuads) lines.add(renderQuad(quad, (node) => labels[node]))
  }
  const sorted = [...lines].sort()
  return sorted.length === 0 ? "" : `${sorted.join("\n")}\n`
}

/**
 * The identity of canonical content: its SHA-256 in hex.
 *
 * @since 0.1.0
 * @category identity
 */
export const digest = (canonical: string): string => sha256Hex(canonical)

// ---------------------------------------------------------------------------------------------------------------
// The view
// ---------------------------------------------------------------------------------------------------------------

/**
 * The class/property view of an ontology, without its identity.
 *
 * @since 0.1.0
 * @category models
 */
export interface View {
  readonly classes: ReadonlyArray<OntologyClass>
  readonly properties: ReadonlyArray<OntologyProperty>
  readonly datatypes: ReadonlyArray<string>
}

const builtinDatatypes = new Set([
  `${RDFS}Literal`,
  RDF_LANG_STRING,
  `${RDF}PlainLiteral`,
  `${RDF}XMLLiteral`,
  `${RDF}HTML`,
  `${RDF}JSON`,
  `${RDF}dirLangString`
])

const isBuiltinDatatype = (iri: string) => iri.startsWith(XSD) || builtinDatatypes.has(iri)

/** Vocabulary terms that describe the ontology language itself, never classes of entities. */
const isMetaClass = (iri: string) =>
  iri !== `${OWL}Thing` && (iri.startsWith(RDF) || iri.startsWith(RDFS) || iri.startsWith(OWL) || iri.startsWith(XSD))

const propertyTypes = [
  `${RDF}Property`,
  `${OWL}ObjectProperty`,
  `${OWL}DatatypeProperty`,
  `${OWL}AnnotationProperty`,
  `${OWL}FunctionalProperty`,
  `${OWL}InverseFunctionalProperty`,
  `${OWL}TransitiveProperty`,
  `${OWL}SymmetricProperty`,
  `${OWL}AsymmetricProperty`,
  `${OWL}ReflexiveProperty`,
  `${OWL}IrreflexiveProperty`
]

const compareStrings = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0)

const compareLabels = (a: Label, b: Label) =>
  compareStrings(a.language ?? "", b.language ?? "") || compareStrings(a.value, b.value)

const uniqueLabels = (labels: ReadonlyArray<Label>): Array<Label> => {
  const seen = new Set<string>()
  return [...labels].sort(compareLabels).filter((label) => {
    const key = `${label.language ?? ""}\u0000${label.value}`
    if (seen.has(key)) return false
    seen.add(key)
    return true
  })
}

/** Subject key: an IRI, or "_:" + label for a blank node. */
const keyOf = (term: N3.Term) => (term.termType === "BlankNode" ? `_:${term.value}` : term.value)

class Graph {
  private readonly bySubject = new Map<string, Map<string, Array<N3.Term>>>()
  private readonly byPredicateObject = new Map<string, Array<string>>()

  constructor(quads: ReadonlyArray<N3.Quad>) {
    for (const quad of quads) {
      const subject = keyOf(quad.subject)
      let predicates = this.bySubject.get(subject)
      if (predicates === undefined) {
        predicates = new Map()
        this.bySubject.set(subject, predicates)
      }
      const objects = predicates.get(quad.predicate.value)
      if (objects === undefined) predicates.set(quad.predicate.value, [quad.object])
      else objects.push(quad.object)
      if (quad.object.termType === "NamedNode" && quad.subject.termType === "NamedNode") {
        const key = `${quad.predicate.value}\u0000${quad.object.value}`
        const subjects = this.byPredicateObject.get(key)
        if (subjects === undefined) this.byPredicateObject.set(key, [quad.subject.value])
        else subjects.push(quad.subject.value)
      }
    }
  }

  objects(subject: string, ...predicates: ReadonlyArray<string>): Array<N3.Term> {
    const all = this.bySubject.get(subject)
    if (all === undefined) return []
    return predicates.flatMap((p) => all.get(p) ?? [])
  }

  namedSubjects(predicate: string, object: string): ReadonlyArray<string> {
    return this.byPredicateObject.get(`${predicate}\u0000${object}`) ?? []
  }

  *namedTriples(): Generator<readonly [string, string, N3.Term]> {
    for (const [subject, predicates] of this.bySubject) {
      if (subject.startsWith("_:")) continue
      for (const [predicate, objects] of predicates) {
        for (const object of objects) yield [subject, predicate, object]
      }
    }
  }

  /** The members of an RDF list, stopping at a cycle or a malformed node. */
  list(head: N3.Term): Array<N3.Term> {
    const items: Array<N3.Term> = []
    const seen = new Set<string>()
    let node = head
    while (node.termType !== "NamedNode" || node.value !== `${RDF}nil`) {
      const key = keyOf(node)
      if (seen.has(key)) break
      seen.add(key)
      const first = this.objects(key, `${RDF}first`)[0]
      const rest = this.objects(key, `${RDF}rest`)[0]
      if (first === undefined || rest === undefined) break
      items.push(first)
      node = rest
    }
    return items
  }

  /** Named classes a class expression stands for: the IRI itself, or the members of an `owl:unionOf`. */
  classesOf(term: N3.Term, depth = 0): Array<string> {
    if (term.termType === "NamedNode") return [term.value]
    if (term.termType !== "BlankNode" || depth > 8) return []
    return this.objects(keyOf(term), `${OWL}unionOf`).flatMap((list) =>
      this.list(list).flatMap((member) => this.classesOf(member, depth + 1))
    )
  }
}

const labelsOf = (graph: Graph, iri: string, ...predicates: ReadonlyArray<string>): Array<Label> =>
  uniqueLabels(
    graph.objects(iri, ...predicates).flatMap((term) =>
      term.termType === "Literal" ? [{ value: term.value, language: term.language.toLowerCase() || undefined }] : []
    )
  )

const sortedUnique = (iris: Iterable<string>) => [...new Set(iris)].sort(compareStrings)

const namedObjects = (graph: Graph, iri: string, ...predicates: ReadonlyArray<string>) =>
  sortedUnique(graph.objects(iri, ...predicates).flatMap((t) => (t.termType === "NamedNode" ? [t.value] : [])))

const cleanDescription = (text: string): string => {
  const plain = text
    .replace(/\[\[([^\]]+)\]\]/g, "$1")
    .replace(/\[([^\]]+)\]\([^)]*\)/g, "$1")
    .replace(/\\n/g, " ")
    .replace(/\s+/g, " ")
    .trim()
  if (plain.length <= 200) return plain
  const sentence = /^(.{20,200}?[.!?])\s/.exec(plain)
  if (sentence?.[1] !== undefined) return sentence[1]
  const cut = plain.slice(0, 199)
  const space = cut.lastIndexOf(" ")
  return `${space > 100 ? cut.slice(0, space) : cut}…`
}

const describe = (comments: ReadonlyArray<Label>): string | undefined => {
  const english = comments.find((c) => c.language === "en" || c.language?.startsWith("en-"))
  const chosen = english ?? comments.find((c) => c.language === undefined) ?? comments[0]
  return chosen === undefined ? undefined : cleanDescription(chosen.value)
}

const commentsOf = (graph: Graph, iri: string) => {
  const comments = labelsOf(graph, iri, `${RDFS}comment`)
  return comments.length > 0 ? comments : labelsOf(graph, iri, `${SKOS}definition`)
}

/** The IRIs that may be classes or properties, read off the triples that mention them. */
const candidatesOf = (graph: Graph) => {
  const subclassesOf = new Map<string, Array<string>>()
  const classCandidates = new Set<string>()
  const propertyCandidates = new Set<string>()
  const mentioned = new Set<string>()
  for (const [subject, predicate, object] of graph.namedTriples()) {
    if (object.termType === "NamedNode") mentioned.add(object.value)
    if (predicate === `${RDFS}subClassOf` && object.termType === "NamedNode") {
      const list = subclassesOf.get(object.value)
      if (list === undefined) subclassesOf.set(object.value, [subject])
      else list.push(subject)
      classCandidates.add(subject)
      classCandidates.add(object.value)
    } else if (predicate === RDF_TYPE && object.termType === "NamedNode") {
      if (object.value === `${OWL}Class` || object.value === `${RDFS}Class`) classCandidates.add(subject)
      else if (propertyTypes.includes(object.value)) propertyCandidates.add(subject)
    } else if (
      predicate === `${RDFS}domain` || predicate === `${RDFS}range` || predicate === `${RDFS}subPropertyOf` ||
      predicate === `${SCHEMA_HTTP}domainIncludes` || predicate === `${SCHEMA_HTTP}rangeIncludes` ||
      predicate === `${SCHEMA_HTTPS}domainIncludes` || predicate === `${SCHEMA_HTTPS}rangeIncludes`
    ) {
      propertyCandidates.add(subject)
    }
  }
  return { subclassesOf, classCandidates, propertyCandidates, mentioned }
}

/** Declared datatypes (rdfs:Datatype, schema:DataType) and their subclasses. */
const declaredDatatypesOf = (graph: Graph, candidates: ReturnType<typeof candidatesOf>): Set<string> => {
  const declared = new Set<string>()
  const pending = [
    ...graph.namedSubjects(RDF_TYPE, `${RDFS}Datatype`),
    ...[SCHEMA_HTTP, SCHEMA_HTTPS].flatMap((ns) => [
      ...graph.namedSubjects(RDF_TYPE, `${ns}DataType`),
      ...(candidates.classCandidates.has(`${ns}DataType`) || candidates.mentioned.has(`${ns}DataType`) ?
        [`${ns}DataType`] :
        [])
    ])
  ]
  for (let iri = pending.pop(); iri !== undefined; iri = pending.pop()) {
    if (declared.has(iri)) continue
    declared.add(iri)
    pending.push(...(candidates.subclassesOf.get(iri) ?? []))
  }
  return declared
}

const classOf = (graph: Graph, iri: string): OntologyClass => {
  const comments = commentsOf(graph, iri)
  return {
    iri,
    labels: labelsOf(graph, iri, `${RDFS}label`, `${SKOS}prefLabel`),
    superClasses: namedObjects(graph, iri, `${RDFS}subClassOf`).filter((s) => s !== iri && !isMetaClass(s)),
    altLabels: labelsOf(graph, iri, `${SKOS}altLabel`),
    comments,
    description: describe(comments)
  }
}

/** A property's kind: declared by its OWL type, else told by whether its ranges are datatypes. */
const kindOf = (types: ReadonlySet<string>, range: ReadonlyArray<string>, isDatatype: (iri: string) => boolean) => {
  const literalRanges = range.filter(isDatatype).length
  const kind: PropertyKind = types.has(`${OWL}DatatypeProperty`) ?
    "datatype" :
    types.has(`${OWL}ObjectProperty`) ?
    "object" :
    types.has(`${OWL}AnnotationProperty`) ?
    "annotation" :
    range.length === 0 ?
    "unknown" :
    literalRanges === range.length ?
    "datatype" :
    literalRanges === 0 ?
    "object" :
    "mixed"
  return kind
}

const propertyOf = (graph: Graph, iri: string, isDatatype: (iri: string) => boolean): OntologyProperty => {
  const expand = (...predicates: ReadonlyArray<string>) =>
    sortedUnique(graph.objects(iri, ...predicates).flatMap((term) => graph.classesOf(term)))
  const comments = commentsOf(graph, iri)
  const range = expand(`${RDFS}range`, `${SCHEMA_HTTP}rangeIncludes`, `${SCHEMA_HTTPS}rangeIncludes`)
  return {
    iri,
    labels: labelsOf(graph, iri, `${RDFS}label`, `${SKOS}prefLabel`),
    domain: expand(`${RDFS}domain`, `${SCHEMA_HTTP}domainIncludes`, `${SCHEMA_HTTPS}domainIncludes`),
    range,
    altLabels: labelsOf(graph, iri, `${SKOS}altLabel`),
    comments,
    description: describe(comments),
    kind: kindOf(new Set(namedObjects(graph, iri, RDF_TYPE)), range, isDatatype),
    superProperties: namedObjects(graph, iri, `${RDFS}subPropertyOf`).filter((s) => s !== iri)
  }
}

/**
 * Builds the class/property view from quads. The result depends only on the set of triples (not on their order),
 * so every serialisation of the same ontology gets the same view.
 *
 * @since 0.1.0
 * @category constructors
 */
export const view = (quads: ReadonlyArray<N3.Quad>): View => {
  const graph = new Graph(quads)
  const candidates = candidatesOf(graph)
  // Datatypes: declared ones, their subclasses, and built-in ones used anywhere.
  const declaredDatatypes = declaredDatatypesOf(graph, candidates)
  const isDatatype = (iri: string) => isBuiltinDatatype(iri) || declaredDatatypes.has(iri)
  const classIris = sortedUnique(
    [...candidates.classCandidates].filter((iri) => !isMetaClass(iri) && !isDatatype(iri))
  )
  const properties = sortedUnique(candidates.propertyCandidates).map((iri) => propertyOf(graph, iri, isDatatype))
  const usedDatatypes = new Set<string>(declaredDatatypes)
  for (const property of properties) for (const r of property.range) if (isDatatype(r)) usedDatatypes.add(r)
  return {
    classes: classIris.map((iri) => classOf(graph, iri)),
    properties,
    datatypes: sortedUnique(usedDatatypes)
  }
}

/**
 * Builds an ontology from parsed quads: canonical form, identity and view.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromQuads = (
  quads: ReadonlyArray<N3.Quad>,
  prefixes: Readonly<Record<string, string>> = {}
): Ontology => {
  const canonical = canonicalize(quads)
  return fromCanonical(quads, prefixes, canonical)
}

/**
 * Builds an ontology from quads whose canonical form is already known (as computed by {@link canonicalize} on the
 * same quads); lets a cache canonicalise once to find its key and reuse the result.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromCanonical = (
  quads: ReadonlyArray<N3.Quad>,
  prefixes: Readonly<Record<string, string>>,
  canonical: string
): Ontology => ({
  sha256: digest(canonical),
  canonical,
  prefixes,
  tripleCount: canonical.length === 0 ? 0 : canonical.split("\n").length - 1,
  ...view(quads)
})

/**
 * Parses Turtle, N-Triples, N-Quads or TriG text into an ontology. Syntax errors are {@link OntologyError}s with the
 * line and column n3 reports and a hint on what to fix.
 *
 * @since 0.1.0
 * @category constructors
 */
export const parse = Effect.fn("Ontology.parse")(function*(text: string, options: ParseOptions = {}) {
  const parsed = yield* parseQuads(text, options)
  return fromQuads(parsed.quads, parsed.prefixes)
})

/**
 * Reads an ontology file as text, with its format taken from the extension (or `options.format`). A missing file or
 * a directory is an {@link OntologyError} that says so.
 *
 * @since 0.1.0
 * @category constructors
 */
export const readSource = Effect.fn("Ontology.readSource")(
  function*(path: string, options: { readonly format?: Format | string | undefined } = {}) {
    const fs = yield* FileSystem.FileSystem
    const failed = (reason: string) => new OntologyError({ source: path, reason })
    const info = yield* fs.stat(path).pipe(
      Effect.mapError((error) =>
        failed(
          error._tag === "SystemError" && error.reason === "NotFound" ?
            "no such file; check the path (a relative path is resolved from the working directory)" :
            `the file cannot be read (${error.message})`
        )
      )
    )
    if (info.type === "Directory") {
      return yield* failed("this is a directory; pass an ontology file (.ttl, .nt, .nq or .trig)")
    }
    if (info.type !== "File" && info.type !== "SymbolicLink") {
      return yield* failed(`this is a ${info.type}, not a regular file; pass an ontology file`)
    }
    const text = yield* fs.readFileString(path).pipe(
      Effect.mapError((error) => failed(`the file cannot be read (${error.message})`))
    )
    const format = options.format ?? Option.getOrUndefined(formatOfPath(path))
    const result: Source = { text, source: path, format }
    return result
  }
)

/**
 * Loads an ontology file (Turtle, N-Triples, N-Quads or TriG, chosen by extension or `options.format`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const load = Effect.fn("Ontology.load")(
  function*(path: string, options: { readonly format?: Format | string | undefined } = {}) {
    const source = yield* readSource(path, options)
    return yield* parse(source.text, { source: path, format: source.format })
  }
)

// ---------------------------------------------------------------------------------------------------------------
// Lookups (pure; indexes are built once per view and remembered)
// ---------------------------------------------------------------------------------------------------------------

interface LabelMatch {
  readonly cls: OntologyClass
  /** 0: rdfs:label / skos:prefLabel, 1: skos:altLabel, 2: the IRI's local name. */
  readonly rank: number
}

interface Index {
  readonly classes: ReadonlyMap<string, OntologyClass>
  readonly properties: ReadonlyMap<string, OntologyProperty>
  readonly byLabel: ReadonlyMap<string, ReadonlyArray<LabelMatch>>
  readonly ancestors: Map<string, ReadonlyArray<string>>
  readonly descendants: ReadonlyMap<string, ReadonlyArray<string>>
}

const indexes = new WeakMap<ReadonlyArray<OntologyClass>, WeakMap<ReadonlyArray<OntologyProperty>, Index>>()

/**
 * The form labels are compared in: Unicode NFKC, camelCase split into words, `_`/`-` as spaces, lower case, single
 * spaces. "SportsTeam", "sports_team" and "Sports  team" all become "sports team".
 *
 * @since 0.1.0
 * @category lookups
 */
export const normalizeLabel = (label: string): string =>
  label
    .normalize("NFKC")
    .replace(/(\p{Ll})(\p{Lu})/gu, "$1 $2")
    .replace(/[_-]+/g, " ")
    .toLowerCase()
    .replace(/\s+/g, " ")
    .trim()

/**
 * The local name of an IRI: what follows its last `#`, `/` or `:`.
 *
 * @since 0.1.0
 * @category lookups
 */
export const localName = (iri: string): string => {
  const cut = Math.max(iri.lastIndexOf("#"), iri.lastIndexOf("/"), iri.lastIndexOf(":"))
  return cut < 0 ? iri : iri.slice(cut + 1)
}

const buildIndex = (ontology: Pick<Ontology, "classes" | "properties">): Index => {
  const classes = new Map(ontology.classes.map((c) => [c.iri, c]))
  const properties = new Map(ontology.properties.map((p) => [p.iri, p]))
  const byLabel = new Map<string, Array<LabelMatch>>()
  const add = (label: string, cls: OntologyClass, rank: number) => {
    const key = normalizeLabel(label)
    if (key.length === 0) return
    const list = byLabel.get(key)
    if (list === undefined) byLabel.set(key, [{ cls, rank }])
    else if (!list.some((m) => m.cls === cls && m.rank <= rank)) list.push({ cls, rank })
  }
  for (const cls of ontology.classes) {
    for (const label of cls.labels) add(label.value, cls, 0)
    for (const label of cls.altLabels) add(label.value, cls, 1)
    add(localName(cls.iri), cls, 2)
  }
  for (const list of byLabel.values()) {
    list.sort((a, b) => a.rank - b.rank || compareStrings(a.cls.iri, b.cls.iri))
  }
  const descendants = new Map<string, Array<string>>()
  for (const cls of ontology.classes) {
    for (const sup of cls.superClasses) {
      const list = descendants.get(sup)
      if (list === undefined) descendants.set(sup, [cls.iri])
      else list.push(cls.iri)
    }
  }
  return { classes, properties, byLabel, ancestors: new Map(), descendants }
}

const indexOf = (ontology: Pick<Ontology, "classes" | "properties">): Index => {
  let byProperties = indexes.get(ontology.classes)
  if (byProperties === undefined) {
    byProperties = new WeakMap()
    indexes.set(ontology.classes, byProperties)
  }
  let index = byProperties.get(ontology.properties)
  if (index === undefined) {
    index = buildIndex(ontology)
    byProperties.set(ontology.properties, index)
  }
  return index
}

/**
 * Builds the lookup indexes of a view now rather than on the first lookup (the cache prepares views this way).
 * Returns the same ontology.
 *
 * @since 0.1.0
 * @category lookups
 */
export const prepare = <O extends Pick<Ontology, "classes" | "properties">>(ontology: O): O => {
  indexOf(ontology)
  return ontology
}

/**
 * The class with this IRI.
 *
 * @since 0.1.0
 * @category lookups
 */
export const getClass = (
  ontology: Pick<Ontology, "classes" | "properties">,
  iri: string
): Option.Option<OntologyClass> => Option.fromNullable(indexOf(ontology).classes.get(iri))

/**
 * The property with this IRI.
 *
 * @since 0.1.0
 * @category lookups
 */
export const getProperty = (
  ontology: Pick<Ontology, "classes" | "properties">,
  iri: string
): Option.Option<OntologyProperty> => Option.fromNullable(indexOf(ontology).properties.get(iri))

/**
 * Every superclass of a class, transitively: nearest first (breadth-first), each once, cycles tolerated. The class
 * itself is not included.
 *
 * @since 0.1.0
 * @category lookups
 */
export const ancestors = (ontology: Pick<Ontology, "classes" | "properties">, iri: string): ReadonlyArray<string> => {
  const index = indexOf(ontology)
  const known = index.ancestors.get(iri)
  if (known !== undefined) return known
  const result: Array<string> = []
  const seen = new Set([iri])
  let frontier = [iri]
  while (frontier.length > 0) {
    const next: Array<string> = []
    for (const current of frontier) {
      for (const sup of index.classes.get(current)?.superClasses ?? []) {
        if (seen.has(sup)) continue
        seen.add(sup)
        result.push(sup)
        next.push(sup)
      }
    }
    frontier = next
  }
  index.ancestors.set(iri, result)
  return result
}

/**
 * Whether `sub` is `sup` or one of its subclasses (transitively).
 *
 * @since 0.1.0
 * @category lookups
 */
export const isSubClassOf = (ontology: Pick<Ontology, "classes" | "properties">, sub: string, sup: string): boolean =>
  sub === sup || ancestors(ontology, sub).includes(sup)

/**
 * Every class whose label, alternative label (any language) or IRI local name matches, compared after
 * {@link normalizeLabel} (so case-insensitively). Best matches first: preferred labels, then alternative labels,
 * then local names; ties by IRI.
 *
 * @since 0.1.0
 * @category lookups
 */
export const classesByLabel = (
  ontology: Pick<Ontology, "classes" | "properties">,
  label: string
): ReadonlyArray<OntologyClass> => {
  const seen = new Set<string>()
  return (indexOf(ontology).byLabel.get(normalizeLabel(label)) ?? []).flatMap((m) => {
    if (seen.has(m.cls.iri)) return []
    seen.add(m.cls.iri)
    return [m.cls]
  })
}

/**
 * The best class for a label ("company", "Organisation", "personne"), case-insensitively, in any language.
 *
 * @since 0.1.0
 * @category lookups
 */
export const classByLabel = (
  ontology: Pick<Ontology, "classes" | "properties">,
  label: string
): Option.Option<OntologyClass> => Option.fromNullable(classesByLabel(ontology, label)[0])

/**
 * Properties that apply to instances of a class: those whose domain contains the class or one of its ancestors.
 *
 * @since 0.1.0
 * @category lookups
 */
export const propertiesOf = (
  ontology: Pick<Ontology, "classes" | "properties">,
  classIri: string
): ReadonlyArray<OntologyProperty> => {
  const lineage = new Set([classIri, ...ancestors(ontology, classIri)])
  return ontology.properties.filter((p) => p.domain.some((d) => lineage.has(d)))
}

const agentIris = [`${FOAF}Agent`, "http://www.w3.org/ns/prov#Agent", "http://purl.org/dc/terms/Agent"]
const thingIris = [`${SCHEMA_HTTP}Thing`, `${SCHEMA_HTTPS}Thing`, `${OWL}Thing`]

/**
 * The class to type an entity with when nothing more specific fits: a well-known agent class (`foaf:Agent`,
 * `prov:Agent`, `dcterms:Agent`) or a class labelled "agent"; failing that a thing class (`schema:Thing`,
 * `owl:Thing`, or labelled "thing"); failing that the root class with the most descendants. None for an ontology
 * without classes.
 *
 * @since 0.1.0
 * @category lookups
 */
export const mostGeneralAgentOrThing = (
  ontology: Pick<Ontology, "classes" | "properties">
): Option.Option<OntologyClass> => {
  const index = indexOf(ontology)
  const byName = (name: string) =>
    classesByLabel(ontology, name).filter((c) => c.superClasses.every((s) => !isSubClassOf(ontology, s, c.iri)))
  for (const candidates of [agentIris, thingIris]) {
    const known = candidates.map((iri) => index.classes.get(iri)).find((c) => c !== undefined)
    if (known !== undefined) return Option.some(known)
    const named = byName(candidates === agentIris ? "agent" : "thing")
    const root = named.find((c) => c.superClasses.length === 0) ?? named[0]
    if (root !== undefined) return Option.some(root)
  }
  const size = (iri: string): number => {
    const seen = new Set<string>()
    const pending = [iri]
    for (let current = pending.pop(); current !== undefined; current = pending.pop()) {
      for (const child of index.descendants.get(current) ?? []) {
        if (seen.has(child)) continue
        seen.add(child)
        pending.push(child)
      }
    }
    return seen.size
  }
  const roots = ontology.classes.filter((c) => c.superClasses.length === 0)
  let best: OntologyClass | undefined
  let bestSize = -1
  for (const root of roots) {
    const n = size(root.iri)
    if (n > bestSize) {
      best = root
      bestSize = n
    }
  }
  return Option.fromNullable(best)
}

/**
 * A class's label for display: the first preferred label in `language` (default English), then an untagged one,
 * then any, then the IRI's local name.
 *
 * @since 0.1.0
 * @category lookups
 */
export const preferredLabel = (
  entry: Pick<OntologyClass, "iri" | "labels">,
  language = "en"
): string => {
  const wanted = language.toLowerCase()
  const found = entry.labels.find((l) => l.language === wanted) ??
    entry.labels.find((l) => l.language?.startsWith(`${wanted}-`)) ??
    entry.labels.find((l) => l.language === undefined) ??
    entry.labels[0]
  return found?.value ?? localName(entry.iri)
}
