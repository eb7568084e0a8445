/**
 * The prompt and the reply format, both derived from the run's ontology: each class and property gets a short key
 * (its local name), the reply is a JSON object whose types and predicates are those keys (an `enum` in the JSON
 * schema sent to the server and a `Schema.Literal` when decoding), and the keys map back to IRIs.
 *
 * @since 0.1.0
 */
import * as DecodeIssues from "@quarry/core/DecodeIssues"
import type * as Extractor from "@quarry/core/Extractor"
import type * as Ontology from "@quarry/core/Ontology"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { createHash } from "node:crypto"
import * as Json from "./internal/json.js"

const OWL_THING = "http://www.w3.org/2002/07/owl#Thing"
const XSD = "http://www.w3.org/2001/XMLSchema#"
const RDFS_LITERAL = "http://www.w3.org/2000/01/rdf-schema#Literal"

/**
 * A class as the model sees it.
 *
 * @since 0.1.0
 * @category models
 */
export interface ClassTerm {
  readonly key: string
  readonly iri: string
  readonly label: string
  readonly description: string | undefined
  /** Other names of the class (`skos:altLabel`), to help the model recognise it. */
  readonly synonyms: ReadonlyArray<string>
  readonly superClasses: ReadonlyArray<string>
}

/**
 * A property as the model sees it. `literal` is true when its range is a datatype.
 *
 * @since 0.1.0
 * @category models
 */
export interface PropertyTerm {
  readonly key: string
  readonly iri: string
  readonly label: string
  readonly description: string | undefined
  readonly domain: ReadonlyArray<string>
  readonly range: ReadonlyArray<string>
  readonly literal: boolean
  readonly datatype: string | undefined
}

/**
 * The classes and properties offered to the model, with keys unique within each list.
 *
 * @since 0.1.0
 * @category models
 */
export interface Vocabulary {
  readonly classes: readonly [ClassTerm, ...Array<ClassTerm>]
  readonly properties: ReadonlyArray<PropertyTerm>
}

const localName = (iri: string) => {
  const name = iri.slice(Math.max(iri.lastIndexOf("#"), iri.lastIndexOf("/")) + 1).replace(/[^A-Za-z0-9_]/g, "_")
  return name === "" || /^[0-9]/.test(name) ? `_${name}` : name
}

/** Keys for the IRIs, in the same order: local names, suffixed `_2`, `_3`... where they collide. */
const uniqueKeys = (iris: ReadonlyArray<string>): Array<string> => {
  const used = new Set<string>()
  return iris.map((iri) => {
    const base = localName(iri)
    let key = base
    for (let n = 2; used.has(key); n++) key = `${base}_${n}`
    used.add(key)
    return key
  })
}

const pickLabel = (labels: ReadonlyArray<Ontology.Label>, fallback: string) =>
  (labels.find((l) => l.language === "en") ?? labels.find((l) => l.language === undefined) ?? labels[0])?.value ??
    fallback

const synonyms = (
  labels: ReadonlyArray<Ontology.Label>
) => [...new Set(labels.filter((l) => l.language === undefined || l.language === "en").map((l) => l.value))]

/**
 * The vocabulary of an ontology; without an ontology (or without classes), the single class `owl:Thing`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const vocabulary = (ontology: Option.Option<Ontology.Ontology>): Vocabulary => {
  const thing: ClassTerm = {
    key: "Thing",
    iri: OWL_THING,
    label: "Thing",
    description: undefined,
    synonyms: [],
    superClasses: []
  }
  if (Option.isNone(ontology) || ontology.value.classes.length === 0) {
    return {
      classes: [thing],
      properties: Option.isNone(ontology) ? [] : propertiesOf(ontology.value, new Map([[OWL_THING, "Thing"]]))
    }
  }
  const o = ontology.value
  const keys = uniqueKeys(o.classes.map((c) => c.iri))
  const classKeys = new Map(o.classes.map((c, i) => [c.iri, keys[i]!]))
  const classes = o.classes.map((c, i): ClassTerm => ({
    key: keys[i]!,
    iri: c.iri,
    label: pickLabel(c.labels, localName(c.iri)),
    description: c.description,
    synonyms: synonyms(c.altLabels),
    superClasses: c.superClasses.flatMap((s) => Option.toArray(Option.fromNullable(classKeys.get(s))))
  }))
  return { classes: [classes[0]!, ...classes.slice(1)], properties: propertiesOf(o, classKeys) }
}

const propertiesOf = (o: Ontology.Ontology, classKeys: ReadonlyMap<string, string>): Array<PropertyTerm> => {
  const keys = uniqueKeys(o.properties.map((p) => p.iri))
  const datatypes = new Set(o.datatypes)
  const isDatatype = (iri: string) => datatypes.has(iri) || iri.startsWith(XSD) || iri === RDFS_LITERAL
  const named = (iri: string) =>
    classKeys.get(iri) ??
      (iri.startsWith(XSD) ? `xsd:${iri.slice(XSD.length)}` : isDatatype(iri) ? "literal" : localName(iri))
  return o.properties.map((p, i) => {
    const literalRanges = p.range.filter(isDatatype)
    const [onlyLiteralRange] = literalRanges
    return {
      key: keys[i]!,
      iri: p.iri,
      label: pickLabel(p.labels, localName(p.iri)),
      description: p.description,
      domain: p.domain.map(named),
      range: [...new Set(p.range.map(named))],
      literal: p.kind === "datatype" || (p.range.length > 0 && literalRanges.length === p.range.length),
      datatype: literalRanges.length === 1 && onlyLiteralRange?.startsWith(XSD) ? onlyLiteralRange : undefined
    }
  })
}

/**
 * The JSON schema of the reply, in the subset strict structured output accepts (every property required, no
 * additional properties, enums for keys).
 *
 * @since 0.1.0
 * @category reply
 */
export const jsonSchema = (vocabulary: Vocabulary): Record<string, unknown> => {
  const classKeys = vocabulary.classes.map((c) => c.key)
  const entity = {
    type: "object",
    properties: {
      label: { type: "string" },
      type: { type: "string", enum: classKeys },
      confidence: { type: "number" }
    },
    required: ["label", "type", "confidence"],
    additionalProperties: false
  }
  const properties: Record<string, unknown> = { entities: { type: "array", items: entity } }
  if (vocabulary.properties.length > 0) {
    properties.relations = {
      type: "array",
      items: {
        type: "object",
        properties: {
          subject: { type: "string" },
          subjectType: { type: "string", enum: classKeys },
          predicate: { type: "string", enum: vocabulary.properties.map((p) => p.key) },
          object: { type: "string" },
          objectType: { type: "string", enum: [...classKeys, "literal"] },
          evidence: { type: "string" },
          confidence: { type: "number" }
        },
        required: ["subject", "subjectType", "predicate", "object", "objectType", "evidence", "confidence"],
        additionalProperties: false
      }
    }
  }
  return { type: "object", properties, required: Object.keys(properties), additionalProperties: false }
}

/**
 * A reply as decoded.
 *
 * @since 0.1.0
 * @category reply
 */
export interface Reply {
  readonly entities: ReadonlyArray<{ readonly label: string; readonly type: string; readonly confidence: number }>
  readonly relations: ReadonlyArray<{
    readonly subject: string
    readonly subjectType: string
    readonly predicate: string
    readonly object: string
    readonly objectType: string
    readonly evidence: string
    readonly confidence: number
  }>
}

/**
 * The Schema that decodes a reply's JSON text; types and predicates must be keys of the vocabulary.
 *
 * @since 0.1.0
 * @category reply
 */
export const replySchema = (vocabulary: Vocabulary): Schema.Schema<Reply, string> => {
  const [first, ...rest] = vocabulary.classes
  const ClassKey = Schema.Literal(first.key, ...rest.map((c) => c.key))
  const Confidence = Schema.optionalWith(Schema.Number, { default: () => 0.5 })
  const Entity = Schema.Struct({ label: Schema.String, type: ClassKey, confidence: Confidence })
  const [p, ...ps] = vocabulary.properties.map((x) => x.key)
  // Without properties the schema sent has no relations; any the model adds anyway are dropped when mapping.
  const Relation = Schema.Struct({
    subject: Schema.String,
    subjectType: ClassKey,
    predicate: p === undefined ? Schema.String : Schema.Literal(p, ...ps),
    object: Schema.String,
    objectType: Schema.Union(ClassKey, Schema.Literal("literal")),
    evidence: Schema.optionalWith(Schema.String, { default: () => "" }),
    confidence: Confidence
  })
  const Relations = Schema.optionalWith(Schema.Array(Relation), { default: () => [] })
  return Schema.parseJson(Schema.Struct({ entities: Schema.Array(Entity), relations: Relations }))
}

/** Models often wrap JSON in a Markdown fence even when told not to. */
const unfence = (text: string) => {
  const fenced = /^\s*```[A-Za-z]*\s*\n([\s\S]*?)\n?\s*```\s*$/.exec(text)
  return fenced === null ? text.trim() : fenced[1]!.trim()
}

/**
 * Decodes a reply, giving a short readable error for the repair prompt on failure.
 *
 * @since 0.1.0
 * @category reply
 */
export const decodeReply = (vocabulary: Vocabulary) => {
  const decode = Schema.decodeEither(replySchema(vocabulary), { errors: "all", onExcessProperty: "ignore" })
  return (content: string): Either.Either<Reply, string> => {
    const text = unfence(content)
    const syntax = Json.notJson(text)
    if (syntax !== undefined) {
      return Either.left(
        text === "" ? "the reply is empty, not a JSON object" : `the reply is not valid JSON (${syntax})`
      )
    }
    return Either.mapLeft(
      decode(text),
      (error) => `the reply does not match the schema: ${DecodeIssues.describe(error)}`
    )
  }
}

/** Bump when the way prompts or schemas are derived changes: it is part of the template hash. */
const derivationVersion = "1"

const systemTemplate = `You extract entities and relations from a text for a knowledge graph.
Use only the classes and properties listed below, by their key.
Reply with one JSON object and nothing else (no Markdown, no comments), matching this JSON schema:
{{schema}}

Rules:
- "label" is the entity's name copied exactly as it is written in the text: same spelling, same case. Never invent, \
translate, expand or normalise a name.
- List each distinct entity once, with the most specific class that fits.
- Only state relations the text itself states. "subject" and "object" are entity labels copied from the text; when \
the object is a value (a date, a number, a string), set "objectType" to "literal" and "object" to the value.
- "evidence" is a short exact quote from the text that states the relation.
- "confidence" is a number between 0 and 1.

Classes (key: label - description):
{{classes}}

Properties (key: label - description; domain -> range):
{{properties}}`

const userTemplate = `{{known}}Text:
<<<
{{text}}
>>>`

const knownTemplate = `Entities already known in this document (reuse their labels and classes when the text \
mentions them):
{{entities}}

`

const repairTemplate = `Your previous reply could not be used:
{{error}}
Reply again with only the corrected JSON object, matching the schema exactly.`

/**
 * SHA-256 of everything that shapes the prompt: the templates and the derivation version. Part of the extractor's
 * configuration hash, so a changed prompt makes `resume` refuse a run started with the old one.
 *
 * @since 0.1.0
 * @category prompt
 */
export const templateHash: string = createHash("sha256")
  .update(JSON.stringify({ derivationVersion, systemTemplate, userTemplate, knownTemplate, repairTemplate }))
  .digest("hex")

const fill = (template: string, values: Record<string, string>) =>
  template.replace(/\{\{(\w+)\}\}/g, (_, name: string) => values[name] ?? "")

const describeClass = (c: ClassTerm) =>
  `- ${c.key}: ${c.label}${c.synonyms.length === 0 ? "" : ` (also: ${c.synonyms.join(", ")})`}${
    c.description === undefined ? "" : ` - ${c.description}`
  }${c.superClasses.length === 0 ? "" : ` (a kind of ${c.superClasses.join(", ")})`}`

const describeProperty = (p: PropertyTerm) =>
  `- ${p.key}: ${p.label}${p.description === undefined ? "" : ` - ${p.description}`}; ${
    p.domain.length === 0 ? "any" : p.domain.join(" | ")
  } -> ${p.range.length === 0 ? "any" : p.range.join(" | ")}`

/**
 * The system message: instructions, the reply's JSON schema and the vocabulary.
 *
 * @since 0.1.0
 * @category prompt
 */
export const systemMessage = (vocabulary: Vocabulary): string =>
  fill(systemTemplate, {
    schema: JSON.stringify(jsonSchema(vocabulary)),
    classes: vocabulary.classes.map(describeClass).join("\n"),
    properties: vocabulary.properties.length === 0 ?
      "(none: reply with entities only)" :
      vocabulary.properties.map(describeProperty).join("\n")
  })

/**
 * The user message: known entities (if any) and the batch text.
 *
 * @since 0.1.0
 * @category prompt
 */
export const userMessage = (
  vocabulary: Vocabulary,
  text: string,
  known: ReadonlyArray<Extractor.KnownEntity>
): string => {
  const keyOf = new Map(vocabulary.classes.map((c) => [c.iri, c.key]))
  const entities = known.map((e) => `- ${e.label} (${keyOf.get(e.type) ?? localName(e.type)})`).join("\n")
  return fill(userTemplate, { known: known.length === 0 ? "" : fill(knownTemplate, { entities }), text })
}

/**
 * The follow-up message asking the model to fix a reply that did not decode.
 *
 * @since 0.1.0
 * @category prompt
 */
export const repairMessage = (error: string): string => fill(repairTemplate, { error })
