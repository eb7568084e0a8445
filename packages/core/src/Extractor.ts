/**
 * The extractor contract: one call per batch, from chunk texts to entity mentions and relations with document spans.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type { Chunk } from "./Chunking.js"
import type * as Compensation from "./Compensation.js"
import * as DecodeIssues from "./DecodeIssues.js"
import { ExtractorError, UnknownExtractor } from "./Errors.js"
import type { PersistenceError } from "./Errors.js"
import * as CanonicalJson from "./internal/canonicalJson.js"
import * as internalEntities from "./internal/entities.js"
import * as internalLanguageTag from "./internal/languageTag.js"
import * as Rdf from "./internal/rdf.js"
import * as Unstorable from "./internal/unstorable.js"
import * as internalUsage from "./internal/usage.js"
import type { Ontology } from "./Ontology.js"
import type { RunId } from "./Run.js"

/**
 * A half-open range of UTF-16 offsets into the whole document.
 *
 * @since 0.1.0
 * @category models
 */
export const Span = Schema.Struct({ start: Schema.Int, end: Schema.Int })

/**
 * @since 0.1.0
 * @category models
 */
export type Span = typeof Span.Type

/**
 * A label: any string without a NUL character. The store keys an entity by `class NUL normalised label`, and
 * PostgreSQL's `TEXT` refuses NUL; no input text holds one. New outputs are held to `CheckedName` as well (not
 * empty once normalised); stored ones are read with this schema.
 *
 * @since 0.1.0
 * @category models
 */
export const Name = Schema.String.pipe(
  Schema.filter((s) => !s.includes("\u0000") || "a label may not hold a NUL character (U+0000)", {
    identifier: "Name"
  })
)

/**
 * An absolute IRI (a class, a property or a datatype): a scheme, a colon, and no space, control character or any of
 * `<>"{}|^`\`\\. A bare name such as `Person` would make the N-Triples invalid and resolve against a Turtle file's
 * own location, so an output holding one fails its check (`checkOutput`) instead of reaching the artifact. The store
 * reads an entity's class back from its key (`class NUL label`): an IRI holds no NUL.
 *
 * @since 0.1.0
 * @category models
 */
export const Iri = Schema.String.pipe(
  Schema.pattern(Rdf.absoluteIri, {
    identifier: "Iri",
    message: (issue) =>
      `expected an absolute IRI such as http://xmlns.com/foaf/0.1/Person (a scheme, a colon, no space), got ${
        JSON.stringify(issue.actual)
      }`
  })
)

// Finite: JSON writes NaN and Infinity as null, and a refusal should name the value the extractor gave, not null.
const Confidence = Schema.Finite

/**
 * One occurrence of an entity in the document.
 *
 * @since 0.1.0
 * @category models
 */
export const EntityMention = Schema.Struct({
  label: Name,
  /** IRI of the entity's class in the run's ontology. */
  type: Iri,
  span: Span,
  confidence: Confidence,
  attributes: Schema.optionalWith(Schema.Record({ key: Schema.String, value: Schema.String }), {
    default: () => ({})
  })
})

/**
 * @since 0.1.0
 * @category models
 */
export type EntityMention = typeof EntityMention.Type

/**
 * An entity named by label and type; the merge resolves it to the same IRI as its mentions.
 *
 * @since 0.1.0
 * @category models
 */
export const EntityRef = Schema.TaggedStruct("Entity", { label: Name, type: Iri })

/**
 * @since 0.1.0
 * @category models
 */
export type EntityRef = typeof EntityRef.Type

/**
 * A language tag as RDF writes it (`en`, `en-GB`, `zh-Hant-TW`): anything else would make the Turtle invalid, so an
 * extractor output with another tag fails its check (`checkOutput`) instead of reaching the artifact.
 *
 * @since 0.1.0
 * @category models
 */
export const languageTagPattern = internalLanguageTag.pattern

/**
 * @since 0.1.0
 * @category models
 */
export const LanguageTag = Schema.String.pipe(Schema.pattern(languageTagPattern))

/**
 * A literal value, typed by an XSD datatype IRI or tagged with a language.
 *
 * @since 0.1.0
 * @category models
 */
export const Literal = Schema.TaggedStruct("Literal", {
  value: Schema.String,
  datatype: Schema.optional(Iri),
  language: Schema.optional(LanguageTag)
})

/**
 * @since 0.1.0
 * @category models
 */
export type Literal = typeof Literal.Type

/**
 * A statement `subject predicate object` found in the text.
 *
 * @since 0.1.0
 * @category models
 */
export const RelationMention = Schema.Struct({
  subject: EntityRef,
  predicate: Iri,
  object: Schema.Union(EntityRef, Literal),
  span: Schema.optional(Span),
  confidence: Confidence
})

/**
 * @since 0.1.0
 * @category models
 */
export type RelationMention = typeof RelationMention.Type

/**
 * What an extractor call cost (LLM extractors report it; offline extractors leave it out).
 *
 * @since 0.1.0
 * @category models
 */
export const Usage = internalUsage.Usage

/**
 * @since 0.1.0
 * @category models
 */
export type Usage = typeof Usage.Type

/**
 * The result of one extractor call, stored with the batch's checkpoint.
 *
 * @since 0.1.0
 * @category models
 */
export const BatchOutput = Schema.Struct({
  entities: Schema.Array(EntityMention),
  relations: Schema.Array(RelationMention),
  usage: Schema.optional(Usage)
})

/**
 * @since 0.1.0
 * @category models
 */
export type BatchOutput = typeof BatchOutput.Type

/**
 * A span as a new output must give it: `0 <= start <= end`. Only new outputs are held to it (`checkOutput`); stored
 * ones are read with `Span`, so that nothing committed before the rule became unreadable.
 *
 * @since 0.1.0
 * @category models
 */
export const CheckedSpan = Span.pipe(Schema.filter((s) => spanProblem(s) ?? true))

const spanProblem = (s: Span): string | undefined =>
  s.start >= 0 && s.end >= s.start ?
    undefined :
    `a span runs from start to end, 0 <= start <= end; got start ${s.start} and end ${s.end}`

const namelessProblem = (label: string): string | undefined =>
  internalEntities.isNamed(label) ?
    undefined :
    "a label must name something, and this one is empty once normalised (case, Unicode form, white space); got " +
    JSON.stringify(label)

/**
 * A label as a new output must give it: a `Name` that is not empty once normalised (`NFKC`, lower case, white space
 * collapsed), since the entity's IRI and key are made of the normalised label, and every nameless entity of a class
 * would be one entity (`.../entity/Person/`).
 *
 * @since 0.1.0
 * @category models
 */
export const CheckedName = Name.pipe(Schema.filter((s) => namelessProblem(s) ?? true))

const CheckedEntityRef = Schema.TaggedStruct("Entity", { label: CheckedName, type: Iri })

// The merge names an entity by its `canonical` attribute when there is one: it is held to the label's rule.
const CheckedEntityMention = Schema.Struct({ ...EntityMention.fields, label: CheckedName, span: CheckedSpan }).pipe(
  Schema.filter((m) => {
    const canonical = m.attributes.canonical
    const message = canonical === undefined ? undefined : namelessProblem(canonical)
    return message === undefined || { path: ["attributes", "canonical"], message }
  })
)

// On the relation, not its optional span: a union with `undefined` would add "or Expected undefined" to the message.
const CheckedRelationMention = Schema.Struct({
  ...RelationMention.fields,
  subject: CheckedEntityRef,
  object: Schema.Union(CheckedEntityRef, Literal)
}).pipe(
  Schema.filter((r) => {
    const message = r.span === undefined ? undefined : spanProblem(r.span)
    return message === undefined || { path: ["span"], message }
  })
)

/**
 * What `checkOutput` accepts: a `BatchOutput` whose spans are `CheckedSpan`s and whose labels (and `canonical`
 * attributes) are `CheckedName`s. It has the same type and encoding; the merge decodes stored outputs with the more
 * lenient `BatchOutput`.
 *
 * @since 0.1.0
 * @category models
 */
export const CheckedBatchOutput = Schema.Struct({
  ...BatchOutput.fields,
  entities: Schema.Array(CheckedEntityMention),
  relations: Schema.Array(CheckedRelationMention)
})

/**
 * An entity the run already knows from committed batches.
 *
 * @since 0.1.0
 * @category models
 */
export interface KnownEntity {
  readonly label: string
  readonly type: string
  readonly iri: string
}

/**
 * A pause an extractor makes before it can go on with a batch (an endpoint's rate limit, a pause a server asked
 * for), announced as it starts so that a front end can tell a wait from a hang.
 *
 * @since 0.1.0
 * @category models
 */
export interface Wait {
  /** A stable code for programs, e.g. `requests_per_minute` (the llm extractor's are in docs/llm.md). */
  readonly reason: string
  /** What is waited on, safe to show (no credentials), e.g. an endpoint. */
  readonly endpoint: string
  /** How long, from when it is reported. */
  readonly millis: number
  /** For people, completing "waiting 45 s for ...": `the rate limit of <endpoint> (QUARRY_LLM_RPM=2)`. */
  readonly description: string
}

/**
 * A wait for people: `waiting 45 s for the rate limit of <endpoint> (QUARRY_LLM_RPM=2)` (whole seconds, rounded up;
 * minutes from two minutes on).
 *
 * @since 0.1.0
 * @category formatting
 */
export const waitMessage = (wait: Wait): string => {
  const seconds = Math.max(1, Math.ceil(wait.millis / 1000))
  const length = seconds < 120 ? `${seconds} s` : `${Math.ceil(seconds / 60)} min`
  return `waiting ${length} for ${wait.description}`
}

/**
 * What an extractor gets for one batch. `knownEntities` waits until every batch before `batchIndex - concurrency + 1`
 * is committed and then reads exactly those batches' entities, so the context never depends on timing.
 *
 * @since 0.1.0
 * @category models
 */
export interface BatchInput {
  readonly runId: RunId
  readonly batchIndex: number
  readonly chunks: ReadonlyArray<Chunk>
  readonly ontology: Option.Option<Ontology>
  /**
   * The run's entities first seen before this batch's horizon. The array is the engine's own (no copy per batch):
   * it stays exactly as given until this batch's `extract` ends; copy it to keep it longer.
   */
  readonly knownEntities: Effect.Effect<ReadonlyArray<KnownEntity>, PersistenceError>
  /**
   * Records the usage of one attempt (e.g. one HTTP call) as soon as it is known, so that spend on attempts lost to
   * a crash still counts against budgets. Absent outside a workflow (e.g. in an extractor's unit tests).
   */
  readonly recordUsage?: ((usage: Usage) => Effect.Effect<void>) | undefined
  /**
   * Publishes the extractor's state (e.g. `{ circuit: "open" }`) with the run, where `quarry status` shows it.
   * Absent outside a workflow.
   */
  readonly reportStatus?: ((status: Readonly<Record<string, string>>) => Effect.Effect<void>) | undefined
  /**
   * Announces a wait as it starts, for the run's front ends (`quarry start`'s stderr line and `--json` event). Only
   * waits a person would notice (a few seconds or more), and one per wait, not per batch held by it. Absent outside
   * a workflow, and for a batch extracted in another process (`BatchExtraction`): log the wait there as well.
   */
  readonly reportWait?: ((wait: Wait) => Effect.Effect<void>) | undefined
  /**
   * Records, durably, a step that undoes something this batch does outside the database (e.g. deletes an uploaded
   * file); call it before the action. The steps run newest first if the run is cancelled, by the handler registered
   * under `step.handler` (see `Compensation`). Absent outside a workflow.
   */
  readonly compensate?: ((step: Compensation.Step) => Effect.Effect<void, PersistenceError>) | undefined
}

/**
 * What a batch will spend at least, told before it runs: tokens counted as budgets count them (prompt plus
 * completion), the cost when the extractor knows its prices, and what the numbers are made of, in words that
 * complete "estimated at $0.011 (...)": `its prompt alone: about 1134 tokens, ...`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Estimate {
  readonly promptTokens: number
  readonly completionTokens: number
  readonly costUsd?: number | undefined
  readonly basis: string
}

/**
 * What an estimate sees of a batch: its chunks and the ontology. Not the known entities: they are read when the batch
 * runs, once the batches before it are committed.
 *
 * @since 0.1.0
 * @category models
 */
export type EstimateInput = Pick<BatchInput, "runId" | "batchIndex" | "chunks" | "ontology">

/**
 * An extractor. `version`, `configHash` and `settings` are stored with each run; resume refuses a different version
 * or hash.
 *
 * @since 0.1.0
 * @category models
 */
export interface Extractor {
  readonly name: string
  readonly version: string
  /** A hash of every setting that changes the output (model, prompt, thresholds). */
  readonly configHash: string
  /**
   * The settings behind `configHash` that a caller chose (model, temperature, ...): everything that changes the output
   * and is not a secret. Stored with the run as JSON, shown by `quarry status`, and used to build the same extractor
   * again on resume, so that a run resumes with exactly the settings it started with. Never an API key, a token, a
   * URL with credentials or anything else secret: the database is not a secret store. Finite numbers only.
   */
  readonly settings?: Readonly<Record<string, string | number | boolean>> | undefined
  readonly extract: (input: BatchInput) => Effect.Effect<BatchOutput, ExtractorError>
  /**
   * What a batch will spend at least, estimated before it is sent (optional; an extractor that pays for calls
   * should have one). A budget holds a run's first batch to it, before any batch has shown what one costs: a budget
   * it does not fit stops the run with nothing spent, since the batch would surely go over. It is a floor, not a
   * worst case (the llm extractor counts its prompt and not the reply): an estimate above what batches cost would
   * refuse budgets that hold many of them. Without one the first batch runs whatever it costs.
   */
  readonly estimate?: ((input: EstimateInput) => Effect.Effect<Estimate>) | undefined
  /** The handlers of the compensation steps this extractor records (`BatchInput.compensate`). */
  readonly compensationHandlers?: ReadonlyArray<Compensation.Handler> | undefined
}

/**
 * The extractors this process can run, by name. Runs name their extractor; the registry supplies it.
 *
 * @since 0.1.0
 * @category tags
 */
export class Registry extends Context.Tag("@quarry/core/Extractor/Registry")<Registry, {
  readonly names: ReadonlyArray<string>
  readonly get: (name: string) => Effect.Effect<Extractor, UnknownExtractor>
}>() {}

/**
 * A registry holding the given extractors.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeRegistry = (extractors: ReadonlyArray<Extractor>): Registry["Type"] => {
  const byName = new Map(extractors.map((e) => [e.name, e] as const))
  const names = [...byName.keys()].sort()
  return {
    names,
    get: (name) => {
      const extractor = byName.get(name)
      return extractor === undefined ?
        Effect.fail(new UnknownExtractor({ name, available: names })) :
        Effect.succeed(extractor)
    }
  }
}

/**
 * A layer providing a registry of the given extractors.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerRegistry = (...extractors: ReadonlyArray<Extractor>): Layer.Layer<Registry> =>
  Layer.succeed(Registry, makeRegistry(extractors))

/**
 * Encodes a batch output to the canonical JSON stored in the database (keys in schema order, so the same output
 * always gives the same bytes and hash).
 *
 * @since 0.1.0
 * @category encoding
 */
export const encodeOutput = Schema.encodeSync(Schema.parseJson(BatchOutput))

/**
 * Runs `extractor.extract(input)` so that a throw, in `extract` itself or in its effect, is the batch's
 * non-retryable `ExtractorError` naming the extractor, the batch and what was thrown (a bug in the extractor, as a
 * refused output is), not a defect of the run without either; the skip policy then applies to it.
 *
 * @since 0.1.0
 * @category running
 */
export const extractBatch = (extractor: Extractor, input: BatchInput): Effect.Effect<BatchOutput, ExtractorError> =>
  Effect.suspend(() => extractor.extract(input)).pipe(
    Effect.catchAllDefect((defect) =>
      Effect.fail(
        new ExtractorError({
          extractor: extractor.name,
          batchIndex: input.batchIndex,
          reason: `it threw ${thrown(defect)} (a bug in the extractor)`,
          retryable: false,
          cause: defect
        })
      )
    )
  )

const thrown = (defect: unknown): string => {
  if (defect instanceof Error) return `${defect.name}: ${defect.message}`
  try {
    return String(defect)
  } catch {
    // An object without a prototype has no toString.
    return "an object that has no string form"
  }
}

/**
 * Decodes a stored batch output.
 *
 * @since 0.1.0
 * @category encoding
 */
export const decodeOutput = Schema.decodeUnknown(Schema.parseJson(BatchOutput))

const encodeCheckedEffect = Schema.encode(Schema.parseJson(CheckedBatchOutput))
const decodeChecked = Schema.decodeUnknown(Schema.parseJson(CheckedBatchOutput))

/** The first span of `output` ending beyond a document of `length` characters, with its place. */
const spanBeyond = (output: BatchOutput, length: number): string | undefined => {
  const beyond = (place: string, span: Span | undefined) =>
    span !== undefined && span.end > length ?
      `${place}.span: ends at ${span.end}, beyond the end of the document (${length} characters)` :
      undefined
  for (const [i, e] of output.entities.entries()) {
    const found = beyond(`entities[${i}]`, e.span)
    if (found !== undefined) return found
  }
  for (const [i, r] of output.relations.entries()) {
    const found = beyond(`relations[${i}]`, r.span)
    if (found !== undefined) return found
  }
  return undefined
}

// The JSON `checkOutput` encoded, by the output it returned: the commit writes these bytes instead of encoding the
// same output a second time (a second pass of the writer, or of the Schema encode for an output the writer does not
// vouch for). Outputs are immutable values, so the bytes stay those of the output.
const checkedJson = new WeakMap<BatchOutput, string>()

/**
 * The canonical JSON of an output (`encodeOutput`): the bytes `checkOutput` encoded when it returned this very
 * output, encoded now otherwise.
 *
 * @since 0.1.0
 * @category encoding
 */
export const canonicalJson = (output: BatchOutput): string =>
  checkedJson.get(output) ?? CanonicalJson.write(output) ?? encodeOutput(output)

// An extractor written in JavaScript may return anything, `null` included: its usage is read only from an object.
const usageOf = (output: unknown): Usage | undefined =>
  typeof output === "object" && output !== null && "usage" in output && Schema.is(Usage)(output.usage) ?
    output.usage :
    undefined

/**
 * Checks that an extractor's output survives encoding as the store encodes it and decoding as the merge decodes it
 * (e.g. no `NaN` confidence, which JSON turns into `null`), and that it is sound where the merge cannot tell
 * (`CheckedBatchOutput`: no span ending before it starts; none ending beyond a document of `documentLength`
 * characters, when that is given). An output that is not is an `ExtractorError` naming the batch and the place (not
 * retryable: the same input gives the same output), with the output's usage when that is well formed.
 * An output the hand-written writer vouches for (`internal/canonicalJson`, which checks as it writes) is returned as
 * it is, with that JSON; any other goes through the Schema encode and decode, which accept it or name what is wrong.
 *
 * @since 0.1.0
 * @category encoding
 */
export const checkOutput =
  (extractor: string, batchIndex: number, documentLength = Number.POSITIVE_INFINITY) =>
  (output: BatchOutput): Effect.Effect<BatchOutput, ExtractorError> => {
    const refused = (message: string, cause: unknown) =>
      new ExtractorError({
        extractor,
        batchIndex,
        reason: `its output does not match the batch output schema (a bug in the extractor): ${message}`,
        retryable: false,
        usage: usageOf(output),
        cause
      })
    // Well-formed, but holding a string the store cannot keep: the batch's error, before anything is written.
    const storable = (checked: BatchOutput, json: string): Effect.Effect<BatchOutput, ExtractorError> => {
      const problem = Unstorable.find(checked, json)
      if (problem !== undefined) return Effect.fail(refused(`${problem}, which the store cannot keep`, checked))
      checkedJson.set(checked, json)
      return Effect.succeed(checked)
    }
    const json = CanonicalJson.write(output, documentLength)
    if (json !== undefined) return storable(output, json)
    // The schema's own wording of the whole output's type is hundreds of characters long.
    if (typeof output !== "object" || output === null || Array.isArray(output)) {
      const got = Array.isArray(output) ? "an array" : output === null ? "null" : typeof output
      return Effect.fail(refused(`the output: expected an object with entities and relations, got ${got}`, output))
    }
    // Suspended: the encode runs (and may throw) when the effect runs, where a defect is caught below.
    return Effect.suspend(() => encodeCheckedEffect(output)).pipe(
      Effect.flatMap((json) => Effect.map(decodeChecked(json), (decoded) => [decoded, json] as const)),
      Effect.mapError((error) => refused(DecodeIssues.describe(error, { max: 3, whole: "the output" }), error)),
      Effect.flatMap(([decoded, json]) => {
        const beyond = spanBeyond(decoded, documentLength)
        return beyond === undefined ? storable(decoded, json) : Effect.fail(refused(beyond, decoded))
      }),
      // Effect's parser throws on some values instead of refusing them (`String()` of a null-prototype object as a
      // union's `_tag`): still this output's fault, and the batch's error, not a defect of the run.
      Effect.catchAllDefect((defect) => Effect.fail(refused(String(defect), defect)))
    )
  }
