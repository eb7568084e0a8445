/**
 * The offline extractor (`offline`, the default): people, organisations, places, events, projects, works, dates,
 * e-mail addresses and URLs with exact document spans, typed by the run's ontology, and relations from documented
 * surface patterns. Built on compromise (part-of-speech tags and a name lexicon) and chrono-node (dates); needs no
 * network and no model download, and gives the same output for the same batch every time. See `docs/extractor.md`.
 *
 * @since 0.1.0
 */
import * as BooleanSetting from "@quarry/core/BooleanSetting"
import { ExtractorError } from "@quarry/core/Errors"
import type * as Extractor from "@quarry/core/Extractor"
import type { Ontology } from "@quarry/core/Ontology"
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { createHash } from "node:crypto"
import * as Language from "./internal/language.js"
import { type TypeMap, typeMap, type Unmapped } from "./internal/mapping.js"
import { collect, decide, type Known } from "./internal/mentions.js"
import { canonicalLabels, findRelations } from "./internal/relations.js"
import * as Steps from "./internal/steps.js"
import { labelKey, segmentsOf } from "./internal/text.js"

/**
 * The extractor's name, as runs and the registry know it.
 *
 * @since 0.1.0
 * @category constants
 */
export const name = "offline"

/**
 * Bumped whenever the same batch could give a different output (patterns, word lists, compromise upgrades).
 *
 * @since 0.1.0
 * @category constants
 */
export const version = "4"

/**
 * What the extractor can be told. Every option changes the output and is part of the configuration hash.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /**
   * A mention whose kind has no class in the ontology (a place under plain FOAF, an e-mail address or a date under
   * most ontologies): `drop` leaves it out (its value still appears in relations, e.g. as the `foaf:mbox` literal);
   * `generic` types it by the ontology's most general agent class (people, organisations) or thing class (everything
   * else, `owl:Thing` when the ontology declares none). Default `drop`: a graph without "alan@example.com a
   * schema:Thing" nodes.
   */
  readonly unmapped?: Unmapped | undefined
  /**
   * Type bare names by the entities earlier batches committed ("Ahab" after "Captain Ahab" was typed a Person).
   * Default `true`.
   */
  readonly useKnownEntities?: boolean | undefined
}

/**
 * The options with their defaults filled in: what the extractor publishes with each run (`Extractor.settings`), both
 * of them being what its `configHash` covers, so that a refused resume names the one that changed and a resume can
 * build the extractor from the stored ones.
 *
 * @since 0.1.0
 * @category models
 */
export const Settings = Schema.Struct({
  unmapped: Schema.Literal("drop", "generic"),
  useKnownEntities: Schema.Boolean
})

/**
 * @since 0.1.0
 * @category models
 */
export type Settings = typeof Settings.Type

/**
 * The defaults.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaults: Settings = { unmapped: "drop", useKnownEntities: true }

/**
 * Fills in the defaults.
 *
 * @since 0.1.0
 * @category constructors
 */
export const resolve = (options: Options = {}): Settings => ({
  unmapped: options.unmapped ?? defaults.unmapped,
  useKnownEntities: options.useKnownEntities ?? defaults.useKnownEntities
})

/**
 * The options read from the environment: `QUARRY_OFFLINE_UNMAPPED` (`generic` | `drop`) and
 * `QUARRY_OFFLINE_USE_KNOWN_ENTITIES` (`true` | `false` in any case, or `yes`/`no`, `on`/`off`, `1`/`0`).
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<Settings> = Config.all({
  unmapped: Config.literal("generic", "drop")("QUARRY_OFFLINE_UNMAPPED").pipe(
    Config.withDefault(defaults.unmapped),
    Config.withDescription("what to do with mentions whose kind has no class in the ontology: drop | generic")
  ),
  useKnownEntities: BooleanSetting.config("QUARRY_OFFLINE_USE_KNOWN_ENTITIES").pipe(
    Config.withDefault(defaults.useKnownEntities),
    Config.withDescription("type bare names by the entities committed by earlier batches")
  )
})

/**
 * The configuration hash: SHA-256 over every setting (all of them change the output).
 *
 * @since 0.1.0
 * @category identity
 */
export const configHash = (options: Options = {}): string => {
  const s = resolve(options)
  return createHash("sha256").update(JSON.stringify({ unmapped: s.unmapped, useKnownEntities: s.useKnownEntities }))
    .digest("hex")
}

/**
 * Reads the settings stored with a run (e.g. to resume it with them). Runs created before the extractor published
 * its settings stored none, and do not decode.
 *
 * @since 0.1.0
 * @category identity
 */
export const decodeSettings = Schema.decodeUnknownOption(Settings)

/**
 * What one extraction reads: the batch's chunks, the run's ontology and (optionally) the entities already known.
 *
 * @since 0.1.0
 * @category models
 */
export interface Input {
  readonly chunks: Extractor.BatchInput["chunks"]
  readonly ontology: Option.Option<Ontology>
  readonly knownEntities?: ReadonlyArray<Extractor.KnownEntity> | undefined
}

const typeMaps = new WeakMap<Ontology, Map<Unmapped, TypeMap>>()
const noOntology = new Map<Unmapped, TypeMap>()

/** The type map of an ontology, built once per ontology object and policy (class phrases are compiled once). */
const typeMapFor = (ontology: Option.Option<Ontology>, unmapped: Unmapped): TypeMap => {
  let byPolicy = Option.isSome(ontology) ? typeMaps.get(ontology.value) : noOntology
  if (byPolicy === undefined) {
    byPolicy = new Map()
    if (Option.isSome(ontology)) typeMaps.set(ontology.value, byPolicy)
  }
  let map = byPolicy.get(unmapped)
  if (map === undefined) {
    map = typeMap(ontology, unmapped)
    byPolicy.set(unmapped, map)
  }
  return map
}

const compareStrings = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0)

/** The extraction of a batch, a step at a time (compromise tags a text a piece at a time, see `internal/nlp`). */
function* extraction(input: Input, options: Options): Steps.Steps<Extractor.BatchOutput> {
  const settings = resolve(options)
  const types = typeMapFor(input.ontology, settings.unmapped)
  const knownEntities = settings.useKnownEntities ? input.knownEntities ?? [] : []
  const byKey = new Map<string, string>()
  const personTokens = new Set<string>()
  const knownPeople: Array<{ readonly label: string; readonly type: string }> = []
  for (const k of [...knownEntities].sort((a, b) => compareStrings(a.iri, b.iri))) {
    const key = labelKey(k.label)
    if (!byKey.has(key)) byKey.set(key, k.type)
    if (types.kindOfClass(k.type) === "person") {
      const words = key.split(/\s+/u)
      if (words.length >= 2) {
        for (const w of words) personTokens.add(w)
        knownPeople.push({ label: k.label, type: k.type })
      }
    }
  }
  const known: Known = { byKey, personTokens }
  const segments = segmentsOf(input.chunks)
  const { analysed, occurrences } = yield* collect(segments, types)
  const mentions = decide(occurrences, types, known)
  yield
  const canonical = canonicalLabels(mentions, knownPeople)
  yield
  // One language per batch, from the batch's own text (docs/extractor.md#language-tags).
  const language = Language.detect(segments)
  const relations = findRelations(analysed, mentions, canonical, types).map((r) => Language.tagLiteral(r, language))
  yield
  const entities: Array<Extractor.EntityMention> = []
  mentions.forEach((m, i) => {
    if (m.type === undefined) return
    const attributes: Record<string, string> = {}
    if (m.title !== undefined) attributes.title = m.title
    if (m.value !== undefined) attributes.value = m.value
    if (m.datatype !== undefined) attributes.datatype = m.datatype
    const c = canonical[i]!
    if (c.label !== m.label) attributes.canonical = c.label
    if (language !== undefined && Language.isText(m.kind, m.value)) attributes.language = language
    entities.push({
      label: m.label,
      type: m.type,
      span: { start: m.start, end: m.end },
      confidence: m.confidence,
      attributes
    })
  })
  entities.sort((a, b) =>
    a.span.start - b.span.start || a.span.end - b.span.end || compareStrings(a.type, b.type) ||
    compareStrings(a.label, b.label)
  )
  relations.sort((a, b) =>
    (a.span?.start ?? 0) - (b.span?.start ?? 0) || (a.span?.end ?? 0) - (b.span?.end ?? 0) ||
    compareStrings(
      JSON.stringify([a.subject, a.predicate, a.object]),
      JSON.stringify([b.subject, b.predicate, b.object])
    )
  )
  return { entities, relations }
}

/**
 * Extracts the mentions and relations of a batch: pure, synchronous and deterministic.
 *
 * @since 0.1.0
 * @category extraction
 */
export const extractSync = (input: Input, options: Options = {}): Extractor.BatchOutput =>
  Steps.runSync(extraction(input, options))

/**
 * Builds the extractor.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Extractor.Extractor => {
  const settings = resolve(options)
  const hash = configHash(settings)
  const extract = Effect.fn("OfflineExtractor.extract")(function*(input: Extractor.BatchInput) {
    const knownEntities = settings.useKnownEntities ?
      yield* input.knownEntities.pipe(
        Effect.mapError((cause) =>
          new ExtractorError({
            extractor: name,
            batchIndex: input.batchIndex,
            reason: `could not read the entities known to the run: ${cause.message}`,
            retryable: true,
            cause
          })
        )
      ) :
      []
    const steps = extraction({ chunks: input.chunks, ontology: input.ontology, knownEntities }, settings)
    // A batch of a megabyte takes compromise tens of seconds: between its steps the fiber yields, and under the
    // workflow's fair scheduler the event loop turns (a server answers its probes, a drain interrupts the batch).
    for (;;) {
      const step = yield* Effect.try({
        try: () => steps.next(),
        catch: (cause) =>
          new ExtractorError({
            extractor: name,
            batchIndex: input.batchIndex,
            reason: `the offline extractor failed: ${cause instanceof Error ? cause.message : String(cause)}`,
            retryable: false,
            cause
          })
      })
      if (step.done === true) return step.value
      yield* Effect.yieldNow()
    }
  })
  return {
    name,
    version,
    configHash: hash,
    settings: { unmapped: settings.unmapped, useKnownEntities: settings.useKnownEntities },
    extract
  }
}

/**
 * The `offline` extractor as a service, for applications that register it by tag.
 *
 * @since 0.1.0
 * @category tags
 */
export class OfflineExtractor extends Context.Tag("@quarry/offline/OfflineExtractor")<
  OfflineExtractor,
  Extractor.Extractor
>() {}

/**
 * The extractor built from explicit options.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<OfflineExtractor> =>
  Layer.succeed(OfflineExtractor, make(options))

/**
 * The extractor built from `QUARRY_OFFLINE_*` configuration, with `overrides` taking precedence.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (overrides: Options = {}): Layer.Layer<OfflineExtractor, ConfigError.ConfigError> =>
  Layer.effect(
    OfflineExtractor,
    Effect.map(config, (settings) =>
      make({
        unmapped: overrides.unmapped ?? settings.unmapped,
        useKnownEntities: overrides.useKnownEntities ?? settings.useKnownEntities
      }))
  )
