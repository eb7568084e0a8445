/**
 * A cache of prepared ontology views keyed by the ontology's identity hash. Every hit also compares the full
 * canonical content, so a hash collision is detected, counted and never serves the wrong ontology. Size, time to
 * live and eviction policy come from `Config` or from layer options; concurrent misses for the same content build
 * the view once.
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Ontology from "./Ontology.js"

/**
 * Which entry makes room when the cache is full: the least recently used (`lru`), the least frequently used (`lfu`,
 * ties broken by least recent use) or the oldest inserted (`fifo`).
 *
 * @since 0.1.0
 * @category models
 */
export type Eviction = "lru" | "lfu" | "fifo"

/**
 * Options for {@link layer} and {@link make}. Unset options take the {@link defaults}.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** How many views the cache holds (at least 1). */
  readonly maxEntries?: number | undefined
  /** How long a view stays after it was built (expire-after-write); `Duration.infinity` keeps it until evicted. */
  readonly ttl?: Duration.DurationInput | undefined
  readonly eviction?: Eviction | undefined
  /**
   * The key function over the canonical content. Defaults to SHA-256 (the ontology's identity); replace it only to
   * test collision handling with a deliberately weak function.
   */
  readonly hash?: ((canonical: string) => string) | undefined
}

/**
 * Counters since the cache was built. Every `get` that parses is exactly one of `hits`, `coalesced` or `misses`;
 * `misses` is the number of views built.
 *
 * @since 0.1.0
 * @category models
 */
export interface Stats {
  /** Served from a cached view. */
  readonly hits: number
  /** Found no cached view and built one. */
  readonly misses: number
  /** Found the same content being built by another fiber and waited for that view instead of building it again. */
  readonly coalesced: number
  /** Entries removed to make room (by the eviction policy). */
  readonly evictions: number
  /** Entries removed because their time to live had passed. */
  readonly expirations: number
  /** Lookups that met a different ontology under the same key (a hash collision), detected by content comparison. */
  readonly collisions: number
  /** Entries held now. */
  readonly size: number
}

/**
 * The defaults: 16 entries, no time to live, LRU eviction.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaults: {
  readonly maxEntries: number
  readonly ttl: Duration.Duration
  readonly eviction: Eviction
} = {
  maxEntries: 16,
  ttl: Duration.infinity,
  eviction: "lru"
}

/**
 * The ontology cache service.
 *
 * @since 0.1.0
 * @category tags
 */
export class OntologyCache extends Context.Tag("@quarry/core/OntologyCache")<OntologyCache, {
  /**
   * The prepared view of this ontology text: parsed and canonicalised on every call (the key is computed from the
   * content), built only on a miss. The returned ontology carries the prefixes of this text.
   */
  readonly get: (source: Ontology.Source) => Effect.Effect<Ontology.Ontology, Ontology.OntologyError>
  readonly stats: Effect.Effect<Stats>
  /** Drops every entry (not counted as evictions). */
  readonly clear: Effect.Effect<void>
}>() {}

interface Entry {
  readonly key: string
  readonly canonical: string
  readonly ontology: Ontology.Ontology
  readonly insertedAt: number
  readonly sequence: number
  lastUsed: number
  uses: number
}

interface Pending {
  readonly canonical: string
  readonly deferred: Deferred.Deferred<Ontology.Ontology>
  waiters: number
}

type Lookup =
  | { readonly _tag: "Hit"; readonly ontology: Ontology.Ontology }
  | { readonly _tag: "Wait"; readonly deferred: Deferred.Deferred<Ontology.Ontology> }
  | { readonly _tag: "Miss"; readonly pending: Pending }

const sameRecord = (a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>) => {
  const keys = Object.keys(a)
  return keys.length === Object.keys(b).length && keys.every((k) => b[k] === a[k])
}

/** A cached view with the prefixes of the text just read; the class/property arrays (and their indexes) are shared. */
const withPrefixes = (ontology: Ontology.Ontology, prefixes: Readonly<Record<string, string>>): Ontology.Ontology =>
  sameRecord(ontology.prefixes, prefixes) ? ontology : { ...ontology, prefixes }

const validate = (options: Options) => {
  const maxEntries = options.maxEntries ?? defaults.maxEntries
  if (!Number.isInteger(maxEntries) || maxEntries < 1) {
    return Either.left(`maxEntries must be an integer of at least 1, got ${maxEntries}`)
  }
  const ttl = Duration.decodeUnknown(options.ttl ?? defaults.ttl)
  if (Option.isNone(ttl)) return Either.left(`ttl must be a duration, got ${String(options.ttl)}`)
  const eviction = options.eviction ?? defaults.eviction
  if (!["lru", "lfu", "fifo"].includes(eviction)) {
    return Either.left(`eviction must be lru, lfu or fifo, got ${String(eviction)}`)
  }
  return Either.right({ maxEntries, ttlMillis: Duration.toMillis(ttl.value), eviction })
}

/**
 * The cache's entries and pending builds. Mutated only inside single synchronous steps, so every lookup/insert is
 * atomic with respect to other fibers.
 */
class Table {
  private readonly buckets = new Map<string, Array<Entry>>()
  private readonly pending = new Map<string, Array<Pending>>()
  private size = 0
  private tick = 0
  private sequence = 0
  private readonly counters = { hits: 0, misses: 0, coalesced: 0, evictions: 0, expirations: 0, collisions: 0 }

  constructor(
    private readonly eviction: Eviction,
    private readonly maxEntries: number,
    private readonly ttlMillis: number
  ) {}

  stats(): Stats {
    return { ...this.counters, size: this.size }
  }

  clear(): void {
    this.buckets.clear()
    this.size = 0
  }

  private expired(entry: Entry, now: number) {
    return now - entry.insertedAt >= this.ttlMillis
  }

  private remove(entry: Entry) {
    const bucket = this.buckets.get(entry.key)
    if (bucket === undefined) return
    const at = bucket.indexOf(entry)
    if (at < 0) return
    bucket.splice(at, 1)
    if (bucket.length === 0) this.buckets.delete(entry.key)
    this.size--
  }

  private entries() {
    return [...this.buckets.values()].flat()
  }

  private worse(a: Entry, b: Entry): boolean {
    switch (this.eviction) {
      case "lru":
        return a.lastUsed < b.lastUsed
      case "lfu":
        return a.uses < b.uses || (a.uses === b.uses && a.lastUsed < b.lastUsed)
      case "fifo":
        return a.sequence < b.sequence
    }
  }

  lookup(key: string, canonical: string, now: number, deferred: Deferred.Deferred<Ontology.Ontology>) {
    const counters = this.counters
    let collided = false
    for (const entry of [...(this.buckets.get(key) ?? [])]) {
      if (this.expired(entry, now)) {
        this.remove(entry)
        counters.expirations++
      } else if (entry.canonical === canonical) {
        entry.lastUsed = ++this.tick
        entry.uses++
        counters.hits++
        if (collided) counters.collisions++
        return { result: { _tag: "Hit", ontology: entry.ontology } satisfies Lookup, collided }
      } else {
        collided = true
      }
    }
    for (const building of this.pending.get(key) ?? []) {
      if (building.canonical === canonical) {
        building.waiters++
        counters.coalesced++
        if (collided) counters.collisions++
        return { result: { _tag: "Wait", deferred: building.deferred } satisfies Lookup, collided }
      }
      collided = true
    }
    if (collided) counters.collisions++
    counters.misses++
    const registered: Pending = { canonical, deferred, waiters: 0 }
    this.pending.set(key, [...(this.pending.get(key) ?? []), registered])
    return { result: { _tag: "Miss", pending: registered } satisfies Lookup, collided }
  }

  unregister(key: string, registered: Pending) {
    const rest = (this.pending.get(key) ?? []).filter((p) => p !== registered)
    if (rest.length === 0) this.pending.delete(key)
    else this.pending.set(key, rest)
  }

  insert(key: string, registered: Pending, ontology: Ontology.Ontology, now: number) {
    this.unregister(key, registered)
    for (const entry of this.entries()) {
      if (this.expired(entry, now)) {
        this.remove(entry)
        this.counters.expirations++
      }
    }
    const entry: Entry = {
      key,
      canonical: registered.canonical,
      ontology,
      insertedAt: now,
      sequence: this.sequence++,
      lastUsed: ++this.tick,
      uses: 1 + registered.waiters
    }
    this.buckets.set(key, [...(this.buckets.get(key) ?? []), entry])
    this.size++
    this.evictBeyondCapacity(entry)
  }

  private evictBeyondCapacity(kept: Entry) {
    while (this.size > this.maxEntries) {
      let victim: Entry | undefined
      for (const candidate of this.entries()) {
        if (candidate !== kept && (victim === undefined || this.worse(candidate, victim))) victim = candidate
      }
      if (victim === undefined) break
      this.remove(victim)
      this.counters.evictions++
    }
  }
}

/**
 * Builds the cache service. Invalid options (a `maxEntries` below 1, an unknown eviction policy) are defects: they
 * are programming errors; configuration from the environment is validated by {@link config} instead.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<Context.Tag.Service<OntologyCache>> =>
  Effect.gen(function*() {
    const valid = validate(options)
    if (Either.isLeft(valid)) return yield* Effect.dieMessage(`OntologyCache: ${valid.left}`)
    const { eviction, maxEntries, ttlMillis } = valid.right
    const hash = options.hash ?? Ontology.digest

    const table = new Table(eviction, maxEntries, ttlMillis)

    const build = (key: string, registered: Pending, parsed: Ontology.Parsed) =>
      Effect.gen(function*() {
        // Let concurrent lookups of the same content find the pending build before this fiber is busy building.
        yield* Effect.yieldNow()
        const ontology = Ontology.prepare(Ontology.fromCanonical(parsed.quads, parsed.prefixes, registered.canonical))
        const now = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
        yield* Effect.sync(() => table.insert(key, registered, ontology, now))
        return ontology
      }).pipe(
        Effect.onExit((exit) =>
          Effect.zipRight(
            Effect.sync(() => table.unregister(key, registered)),
            Deferred.done(registered.deferred, exit)
          )
        )
      )

    const get = Effect.fn("OntologyCache.get")(function*(input: Ontology.Source) {
      const parsed = yield* Ontology.parseQuads(input.text, { source: input.source, format: input.format })
      // Parsing a large ontology is long synchronous work; give other fibers (lease renewals, progress) a turn.
      yield* Effect.yieldNow()
      const canonical = Ontology.canonicalize(parsed.quads)
      const key = hash(canonical)
      const now = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
      const deferred = yield* Deferred.make<Ontology.Ontology>()
      // From registering a pending build to completing it nothing may interrupt this fiber, or the fibers waiting
      // for the build would wait forever; only waiting for someone else's build stays interruptible.
      const { collided, ontology } = yield* Effect.uninterruptibleMask((restore) =>
        Effect.gen(function*() {
          const { collided, result } = table.lookup(key, canonical, now, deferred)
          switch (result._tag) {
            case "Hit":
              return { collided, ontology: result.ontology }
            case "Wait":
              return { collided, ontology: yield* restore(Deferred.await(result.deferred)) }
            case "Miss":
              return { collided, ontology: yield* build(key, result.pending, parsed) }
          }
        })
      )
      if (collided) {
        yield* Effect.logWarning("ontology cache: hash collision detected; compared content and kept them apart").pipe(
          Effect.annotateLogs({ key, source: input.source ?? "(inline)" })
        )
      }
      return withPrefixes(ontology, parsed.prefixes)
    })

    return OntologyCache.of({
      get,
      stats: Effect.sync(() => table.stats()),
      clear: Effect.sync(() => table.clear())
    })
  })

const ttlConfig = Config.string("QUARRY_ONTOLOGY_CACHE_TTL").pipe(
  Config.mapOrFail((text) => {
    const trimmed = text.trim()
    if (/^(infinity|infinite|none|never)$/i.test(trimmed)) return Either.right(Duration.infinity)
    const decoded = Duration.decodeUnknown(trimmed)
    return Option.isSome(decoded) ?
      Either.right(decoded.value) :
      Either.left(
        ConfigError.InvalidData(
          [],
          `Expected a duration such as "30 minutes", "2 hours" or "infinity", got ${JSON.stringify(text)}`
        )
      )
  }),
  Config.withDefault(defaults.ttl),
  Config.withDescription(
    "How long a prepared ontology view stays cached after it was built, e.g. \"30 minutes\"; \"infinity\" (the " +
      "default) keeps it until it is evicted."
  )
)

/**
 * The cache settings from the environment: `QUARRY_ONTOLOGY_CACHE_MAX_ENTRIES` (default 16),
 * `QUARRY_ONTOLOGY_CACHE_TTL` (a duration such as "30 minutes", default "infinity") and
 * `QUARRY_ONTOLOGY_CACHE_EVICTION` (`lru` | `lfu` | `fifo`, default `lru`).
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<{
  readonly maxEntries: number
  readonly ttl: Duration.Duration
  readonly eviction: Eviction
}> = Config.all({
  maxEntries: Config.integer("QUARRY_ONTOLOGY_CACHE_MAX_ENTRIES").pipe(
    Config.validate({ message: "Expected an integer of at least 1", validation: (n) => n >= 1 }),
    Config.withDefault(defaults.maxEntries),
    Config.withDescription(
      "How many prepared ontology views the cache holds (default 16); each holds its ontology's canonical text."
    )
  ),
  ttl: ttlConfig,
  eviction: Config.literal("lru", "lfu", "fifo")("QUARRY_ONTOLOGY_CACHE_EVICTION").pipe(
    Config.withDefault<Eviction>(defaults.eviction),
    Config.withDescription(
      "Which view makes room when the cache is full: lru (least recently used, the default), lfu (least " +
        "frequently used) or fifo (oldest)."
    )
  )
})

/**
 * The cache with these options.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<OntologyCache> => Layer.effect(OntologyCache, make(options))

/**
 * The cache configured from the environment (see {@link config}).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig: Layer.Layer<OntologyCache, ConfigError.ConfigError> = Layer.effect(
  OntologyCache,
  Effect.flatMap(config, (settings) => make(settings))
)

/**
 * The prepared view of an ontology text, through the cache in context.
 *
 * @since 0.1.0
 * @category accessors
 */
export const get = (source: Ontology.Source): Effect.Effect<Ontology.Ontology, Ontology.OntologyError, OntologyCache> =>
  Effect.flatMap(OntologyCache, (cache) => cache.get(source))

/**
 * Reads an ontology file and returns its prepared view through the cache in context.
 *
 * @since 0.1.0
 * @category accessors
 */
export const load = Effect.fn("OntologyCache.load")(
  function*(path: string, options: { readonly format?: Ontology.Format | string | undefined } = {}) {
    const source = yield* Ontology.readSource(path, options)
    const cache = yield* OntologyCache
    return yield* cache.get(source)
  }
)

/**
 * The cache's counters, from the cache in context.
 *
 * @since 0.1.0
 * @category accessors
 */
export const stats: Effect.Effect<Stats, never, OntologyCache> = Effect.flatMap(OntologyCache, (cache) => cache.stats)
