/**
 * Maps what the offline extractor finds (kinds of mentions, kinds of relations) to the classes and properties of
 * the run's ontology: first a small table of FOAF and schema.org IRIs, then class and property labels.
 */
import type { Ontology, OntologyClass, OntologyProperty } from "@quarry/core/Ontology"
import * as Option from "effect/Option"

/** What a mention is, before it is typed by the ontology. */
export type Kind = "person" | "organization" | "place" | "event" | "project" | "work" | "date" | "email" | "url"

/** Every kind, in a fixed order. */
export const kinds: ReadonlyArray<Kind> = [
  "person",
  "organization",
  "place",
  "event",
  "project",
  "work",
  "date",
  "email",
  "url"
]

/** The relations the patterns find. */
export type RelationKind =
  | "knows"
  | "worksFor"
  | "memberOf"
  | "founded"
  | "foundingDate"
  | "location"
  | "spouse"
  | "parent"
  | "sibling"
  | "mbox"
  | "homepage"
  | "weblog"

/** What to do with a mention whose kind has no class in the ontology. */
export type Unmapped = "generic" | "drop"

const FOAF = "http://xmlns.com/foaf/0.1/"
const SCHEMA = "http://schema.org/"
const SCHEMAS = "https://schema.org/"
const ORG = "http://www.w3.org/ns/org#"
const OWL_THING = "http://www.w3.org/2002/07/owl#Thing"
const XSD = "http://www.w3.org/2001/XMLSchema#"

const both = (local: string) => [`${SCHEMA}${local}`, `${SCHEMAS}${local}`]

/** Preferred classes per kind, then label phrases that identify a class of that kind in any ontology. */
export const classTable: Readonly<
  Record<Kind, { readonly iris: ReadonlyArray<string>; readonly labels: ReadonlyArray<string> }>
> = {
  person: { iris: [`${FOAF}Person`, ...both("Person")], labels: ["person", "human", "individual", "people"] },
  organization: {
    iris: [`${FOAF}Organization`, ...both("Organization"), `${ORG}Organization`],
    labels: ["organization", "organisation", "company", "corporation", "institution", "business"]
  },
  place: {
    iris: [
      ...both("Place"),
      "http://www.w3.org/2003/01/geo/wgs84_pos#SpatialThing",
      "http://purl.org/dc/terms/Location"
    ],
    labels: ["place", "location", "spatial thing", "geographic location", "city"]
  },
  event: { iris: both("Event"), labels: ["event", "conference", "meeting"] },
  project: { iris: [`${FOAF}Project`, ...both("Project")], labels: ["project"] },
  work: {
    iris: [...both("CreativeWork"), `${FOAF}Document`],
    labels: ["creative work", "work", "document", "publication"]
  },
  date: { iris: both("Date"), labels: ["date", "instant", "temporal entity"] },
  email: { iris: [], labels: ["email address", "e-mail address", "email", "e-mail", "mailbox"] },
  url: { iris: [`${FOAF}Document`, ...both("WebPage")], labels: ["web page", "webpage", "website", "url", "document"] }
}

/** Classes used when the run has no ontology. */
const defaultClasses: Readonly<Partial<Record<Kind, string>>> = {
  person: `${FOAF}Person`,
  organization: `${FOAF}Organization`,
  place: `${SCHEMA}Place`,
  event: `${SCHEMA}Event`,
  project: `${FOAF}Project`,
  work: `${SCHEMA}CreativeWork`,
  url: `${FOAF}Document`
}

interface Candidate {
  readonly iri: string
  /** The property points from the pattern's object to its subject ("org founder person" for "person founded org"). */
  readonly inverse: boolean
}

const direct = (iri: string): Candidate => ({ iri, inverse: false })
const inverse = (iri: string): Candidate => ({ iri, inverse: true })

/** Preferred properties per relation, then label phrases for a direct or an inverse property. */
export const propertyTable: Readonly<
  Record<RelationKind, {
    readonly candidates: ReadonlyArray<Candidate>
    readonly labels: ReadonlyArray<string>
    readonly inverseLabels: ReadonlyArray<string>
  }>
> = {
  knows: { candidates: [direct(`${FOAF}knows`), ...both("knows").map(direct)], labels: ["knows"], inverseLabels: [] },
  worksFor: {
    candidates: [...both("worksFor").map(direct), ...both("employee").map(inverse)],
    labels: ["works for", "worksfor", "employer", "works at", "employed by"],
    inverseLabels: ["has employee", "employee", "employs"]
  },
  memberOf: {
    candidates: [
      ...both("memberOf").map(direct),
      direct(`${ORG}memberOf`),
      inverse(`${FOAF}member`),
      ...both("member").map(inverse)
    ],
    labels: ["member of", "memberof", "is member of"],
    inverseLabels: ["member", "has member"]
  },
  founded: {
    candidates: both("founder").map(inverse),
    labels: ["founded", "founder of"],
    inverseLabels: ["founder", "founded by", "has founder"]
  },
  foundingDate: {
    candidates: both("foundingDate").map(direct),
    labels: ["founding date", "foundingdate", "founded date", "date founded", "foundation date", "founded"],
    inverseLabels: []
  },
  location: {
    candidates: [...both("location").map(direct), ...both("homeLocation").map(direct), direct(`${FOAF}based_near`)],
    labels: ["location", "based near", "located in", "based in", "home location"],
    inverseLabels: []
  },
  spouse: {
    candidates: both("spouse").map(direct),
    labels: ["spouse", "married to", "husband", "wife"],
    inverseLabels: []
  },
  parent: {
    candidates: [...both("parent").map(direct), ...both("children").map(inverse)],
    labels: ["parent", "has parent", "father", "mother"],
    inverseLabels: ["children", "child", "has child", "son", "daughter"]
  },
  sibling: { candidates: both("sibling").map(direct), labels: ["sibling", "brother", "sister"], inverseLabels: [] },
  mbox: {
    candidates: [direct(`${FOAF}mbox`), ...both("email").map(direct)],
    labels: ["email", "e-mail", "mbox", "personal mailbox", "mailbox", "email address"],
    inverseLabels: []
  },
  homepage: {
    candidates: [direct(`${FOAF}homepage`), ...both("url").map(direct)],
    labels: ["homepage", "home page", "website", "url"],
    inverseLabels: []
  },
  weblog: { candidates: [direct(`${FOAF}weblog`)], labels: ["weblog", "blog"], inverseLabels: [] }
}

/** Properties used when the run has no ontology. */
const defaultProperties: Readonly<Record<RelationKind, Candidate>> = {
  knows: direct(`${FOAF}knows`),
  worksFor: direct(`${SCHEMA}worksFor`),
  memberOf: direct(`${SCHEMA}memberOf`),
  founded: inverse(`${SCHEMA}founder`),
  foundingDate: direct(`${SCHEMA}foundingDate`),
  location: direct(`${SCHEMA}location`),
  spouse: direct(`${SCHEMA}spouse`),
  parent: direct(`${SCHEMA}parent`),
  sibling: direct(`${SCHEMA}sibling`),
  mbox: direct(`${FOAF}mbox`),
  homepage: direct(`${FOAF}homepage`),
  weblog: direct(`${FOAF}weblog`)
}

/** A chosen property: its IRI, whether subject and object swap, and how a literal object is written. */
export interface ChosenProperty {
  readonly iri: string
  readonly inverse: boolean
}

/** The ontology-dependent decisions of one extraction. */
export interface TypeMap {
  /** The class of a kind after the unmapped policy; `undefined` means the mention is dropped. */
  readonly classOf: (kind: Kind) => string | undefined
  /** Class-label phrases ("company", "research group") and their classes, longest first. */
  readonly classPhrases: ReadonlyArray<{ readonly phrase: string; readonly iri: string }>
  /** The kind a class stands for, if it is (a subclass of) one of the kinds' classes. */
  readonly kindOfClass: (iri: string) => Kind | undefined
  /** The property for a relation between two typed things (object type `undefined` for a literal). */
  readonly property: (relation: RelationKind, subject: string, object: string | undefined) => ChosenProperty | undefined
}

/** Splits "CollegeOrUniversity" or "based_near" into lower-case words. */
export const phraseOf = (label: string): string =>
  label
    .replace(/([\p{Ll}\p{N}])(\p{Lu})/gu, "$1 $2")
    .replace(/(\p{Lu})(\p{Lu}\p{Ll})/gu, "$1 $2")
    .replace(/[_\s]+/gu, " ")
    .trim()
    .toLowerCase()

const localName = (iri: string) => iri.slice(Math.max(iri.lastIndexOf("#"), iri.lastIndexOf("/")) + 1)

const thingLocalNames = new Set(["Thing", "Resource"])

/** Labels and synonyms (`skos:altLabel`) as phrases; the local name when there is no label. */
const phrasesOfClass = (c: OntologyClass | OntologyProperty): Array<string> => {
  const labels = c.labels.map((l) => phraseOf(l.value)).filter((p) => p.length > 0)
  const main = labels.length > 0 ? labels : [phraseOf(localName(c.iri))]
  const synonyms = c.altLabels.map((l) => phraseOf(l.value)).filter((p) => p.length > 0)
  return [...new Set([...main, ...synonyms])]
}

/**
 * One class per phrase, longest phrases first. Where several classes share a phrase ("person": foaf:Person and
 * schema:Person), the class a kind maps to wins, so one label is not typed two ways.
 */
const onePerPhrase = (
  phrases: ReadonlyArray<{ readonly phrase: string; readonly iri: string }>,
  preferred: ReadonlySet<string>
) => {
  const chosen = new Map<string, string>()
  for (const p of phrases) {
    const current = chosen.get(p.phrase)
    if (current === undefined || (!preferred.has(current) && preferred.has(p.iri))) chosen.set(p.phrase, p.iri)
  }
  return [...chosen].map(([phrase, iri]) => ({ phrase, iri })).sort((a, b) =>
    b.phrase.length - a.phrase.length || (a.phrase < b.phrase ? -1 : 1)
  )
}

/** A class's ancestors (itself included), over `rdfs:subClassOf`, memoised. */
const ancestry = (classes: ReadonlyMap<string, { readonly superClasses: ReadonlyArray<string> }>) => {
  const ancestors = new Map<string, ReadonlySet<string>>()
  return (iri: string): ReadonlySet<string> => {
    const known = ancestors.get(iri)
    if (known !== undefined) return known
    const seen = new Set<string>([iri])
    const stack = [iri]
    while (stack.length > 0) {
      for (const parent of classes.get(stack.pop()!)?.superClasses ?? []) {
        if (!seen.has(parent)) {
          seen.add(parent)
          stack.push(parent)
        }
      }
    }
    ancestors.set(iri, seen)
    return seen
  }
}

/** The ontology's property for a relation between two classes (memoised), as `TypeMap.property`. */
const propertyChooser = (o: Ontology, ancestorsOf: (iri: string) => ReadonlySet<string>): TypeMap["property"] => {
  const fits = (cls: string, declared: ReadonlyArray<string>) => {
    if (declared.length === 0) return true
    const up = ancestorsOf(cls)
    const upNames = new Set([...up].map(localName))
    return declared.some((d) =>
      up.has(d) || ancestorsOf(d).has(cls) || thingLocalNames.has(localName(d)) || upNames.has(localName(d))
    )
  }
  const properties = new Map(o.properties.map((p) => [p.iri, p] as const))
  const propertyPhrases = o.properties.flatMap((p) => phrasesOfClass(p).map((phrase) => ({ phrase, property: p })))
  const cache = new Map<string, ChosenProperty | undefined>()
  const property = (
    relation: RelationKind,
    subject: string,
    object: string | undefined
  ): ChosenProperty | undefined => {
    const key = `${relation} ${subject} ${object ?? ""}`
    if (cache.has(key)) return cache.get(key)
    const accepts = (p: OntologyProperty, inv: boolean) => {
      const [s, t] = inv ? [object, subject] : [subject, object]
      return (s === undefined || fits(s, p.domain)) && (t === undefined || fits(t, p.range))
    }
    const entry = propertyTable[relation]
    const tried: Array<{ readonly p: OntologyProperty; readonly inverse: boolean }> = []
    for (const c of entry.candidates) {
      const p = properties.get(c.iri)
      if (p !== undefined) tried.push({ p, inverse: c.inverse })
    }
    for (const phrase of entry.labels) {
      for (const hit of propertyPhrases) if (hit.phrase === phrase) tried.push({ p: hit.property, inverse: false })
    }
    for (const phrase of entry.inverseLabels) {
      for (const hit of propertyPhrases) if (hit.phrase === phrase) tried.push({ p: hit.property, inverse: true })
    }
    // The table's direction first; the other one only where the ontology declares both domain and range.
    const chosen = tried.find((t) => accepts(t.p, t.inverse)) ??
      tried.map((t) => ({ p: t.p, inverse: !t.inverse })).find((t) =>
        t.p.domain.length > 0 && t.p.range.length > 0 && object !== undefined && accepts(t.p, t.inverse)
      )
    const result: ChosenProperty | undefined = chosen === undefined ?
      (relation === "weblog" ? property("homepage", subject, object) : undefined) :
      { iri: chosen.p.iri, inverse: chosen.inverse }
    cache.set(key, result)
    return result
  }
  return property
}

/** Builds the type map for a run's ontology (or the built-in defaults without one). */
export const typeMap = (ontology: Option.Option<Ontology>, unmapped: Unmapped): TypeMap => {
  if (Option.isNone(ontology)) return defaultTypeMap(unmapped)
  const o = ontology.value
  const classes = new Map(o.classes.map((c) => [c.iri, c] as const))
  const ancestorsOf = ancestry(classes)
  const phrases = o.classes.flatMap((c) => phrasesOfClass(c).map((phrase) => ({ phrase, iri: c.iri })))
  const byPhrase = (wanted: ReadonlyArray<string>) => {
    for (const w of wanted) {
      const hit = phrases.find((p) => p.phrase === w)
      if (hit !== undefined) return hit.iri
    }
    return undefined
  }
  const mapped = new Map<Kind, string | undefined>()
  for (const kind of kinds) {
    const entry = classTable[kind]
    mapped.set(kind, entry.iris.find((iri) => classes.has(iri)) ?? byPhrase(entry.labels))
  }
  const thing = [`${SCHEMA}Thing`, `${SCHEMAS}Thing`].find((iri) => classes.has(iri)) ?? byPhrase(["thing"]) ??
    OWL_THING
  const agent = [`${FOAF}Agent`].find((iri) => classes.has(iri)) ?? byPhrase(["agent"]) ?? thing
  const classOf = (kind: Kind) => {
    const found = mapped.get(kind)
    if (found !== undefined) return found
    if (unmapped === "drop") return undefined
    return kind === "person" || kind === "organization" ? agent : thing
  }
  const kindClasses = [...mapped.entries()].filter((e): e is [Kind, string] => e[1] !== undefined)
  const kindOfClass = (iri: string): Kind | undefined => {
    const up = ancestorsOf(iri)
    return kindClasses.find(([, c]) => up.has(c))?.[0]
  }
  return {
    classOf,
    classPhrases: onePerPhrase(phrases, new Set(kindClasses.map(([, c]) => c))),
    kindOfClass,
    property: propertyChooser(o, ancestorsOf)
  }
}

const defaultTypeMap = (unmapped: Unmapped): TypeMap => {
  const byClass = new Map<string, Kind>()
  for (const kind of kinds) {
    const iri = defaultClasses[kind]
    if (iri !== undefined && !byClass.has(iri)) byClass.set(iri, kind)
  }
  return {
    classOf: (kind) => defaultClasses[kind] ?? (unmapped === "drop" ? undefined : OWL_THING),
    classPhrases: [],
    kindOfClass: (iri) => byClass.get(iri),
    property: (relation) => defaultProperties[relation]
  }
}

/** How the object of a value relation (e-mail, homepage, date) is written for a chosen property. */
export const literalFor = (
  relation: "mbox" | "homepage" | "weblog",
  property: string,
  value: string
): { readonly value: string; readonly datatype: string | undefined } => {
  if (relation === "mbox") {
    return property === `${FOAF}mbox` ?
      { value: `mailto:${value}`, datatype: `${XSD}anyURI` } :
      { value, datatype: undefined }
  }
  return { value, datatype: `${XSD}anyURI` }
}
