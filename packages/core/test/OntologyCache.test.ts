import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { assert, describe, it } from "@effect/vitest"
import * as DefaultOntology from "@quarry/core/DefaultOntology"
import * as Ontology from "@quarry/core/Ontology"
import * as OntologyCache from "@quarry/core/OntologyCache"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as TestClock from "effect/TestClock"
import * as path from "node:path"

const ontologies = path.resolve(import.meta.dirname, "../../../test/data/ontologies")

/** A small ontology per name; different names are different ontologies. */
const text = (name: string, prefix = "ex") => ({
  text: `@prefix ${prefix}: <http://example.org/> .
@prefix owl: <http://www.w3.org/2002/07/owl#> .
${prefix}:${name} a owl:Class ; <http://www.w3.org/2000/01/rdf-schema#label> "${name}"@en .
`,
  source: `${name}.ttl`
})

const A = text("A")
const B = text("B")
const C = text("C")

const get = OntologyCache.get
const stats = OntologyCache.stats

const expectHit = (source: Ontology.Source) =>
  Effect.gen(function*() {
    const before = yield* stats
    yield* get(source)
    const after = yield* stats
    return after.hits === before.hits + 1 && after.misses === before.misses
  })

const run = <A, E>(effect: Effect.Effect<A, E, OntologyCache.OntologyCache>, options: OntologyCache.Options = {}) =>
  Effect.provide(effect, OntologyCache.layer(options))

describe("OntologyCache", () => {
  it.effect("a miss builds the view, a hit returns the same view", () =>
    run(Effect.gen(function*() {
      const first = yield* get(A)
      const second = yield* get(A)
      assert.strictEqual(second, first)
      const direct = yield* Ontology.parse(A.text)
      assert.strictEqual(first.sha256, direct.sha256)
      assert.strictEqual(first.canonical, direct.canonical)
      assert.deepStrictEqual(yield* stats, {
        hits: 1,
        misses: 1,
        coalesced: 0,
        evictions: 0,
        expirations: 0,
        collisions: 0,
        size: 1
      })
    })))

  it.effect("the same graph written with other prefixes is a hit and carries the new prefixes", () =>
    run(Effect.gen(function*() {
      const first = yield* get(A)
      const renamed = yield* get(text("A", "zz"))
      assert.strictEqual((yield* stats).hits, 1)
      assert.strictEqual(renamed.sha256, first.sha256)
      assert.strictEqual(renamed.prefixes["zz"], "http://example.org/")
      assert.isUndefined(renamed.prefixes["ex"])
      // The view (and its lookup indexes) is shared, not rebuilt.
      assert.strictEqual(renamed.classes, first.classes)
    })))

  it.effect("a parse error fails the get and counts nothing", () =>
    run(Effect.gen(function*() {
      const error = yield* Effect.flip(get({ text: "@prefix ex: <http://e/> .\nex:a ex:b", source: "bad.ttl" }))
      assert.strictEqual(error._tag, "OntologyError")
      assert.strictEqual(error.line, 2)
      const s = yield* stats
      assert.strictEqual(s.hits + s.misses + s.coalesced, 0)
    })))

  describe("eviction", () => {
    // [accesses, evicted under lru, lfu, fifo]: after the accesses the cache (2 entries) had to drop exactly one.
    const scenarios: ReadonlyArray<{
      readonly name: string
      readonly accesses: ReadonlyArray<Ontology.Source>
      readonly evicted: Record<OntologyCache.Eviction, Ontology.Source>
    }> = [
      { name: "A A A B C", accesses: [A, A, A, B, C], evicted: { lru: A, lfu: B, fifo: A } },
      { name: "A B A C", accesses: [A, B, A, C], evicted: { lru: B, lfu: B, fifo: A } },
      { name: "A B B B A C", accesses: [A, B, B, B, A, C], evicted: { lru: B, lfu: A, fifo: A } },
      // Equal use counts: lfu falls back to the least recently used.
      { name: "A B B A C", accesses: [A, B, B, A, C], evicted: { lru: B, lfu: B, fifo: A } }
    ]
    for (const eviction of ["lru", "lfu", "fifo"] as const) {
      for (const scenario of scenarios) {
        it.effect(`${eviction}: ${scenario.name} evicts ${scenario.evicted[eviction].source}`, () =>
          run(
            Effect.gen(function*() {
              for (const access of scenario.accesses) yield* get(access)
              const s = yield* stats
              assert.strictEqual(s.evictions, 1)
              assert.strictEqual(s.size, 2)
              const evicted = scenario.evicted[eviction]
              const kept = [A, B].find((o) => o !== evicted)!
              // Probe the survivors first: probing the evicted one inserts it again and evicts another.
              assert.isTrue(yield* expectHit(C), "the newest entry is kept")
              assert.isTrue(yield* expectHit(kept), `${kept.source} is kept`)
              assert.isFalse(yield* expectHit(evicted), `${evicted.source} was evicted`)
            }),
            { maxEntries: 2, eviction }
          ))
      }
    }
  })

  it.effect("ttl: an entry expires after its time to live (TestClock)", () =>
    run(
      Effect.gen(function*() {
        yield* get(A)
        yield* TestClock.adjust("59 minutes")
        assert.isTrue(yield* expectHit(A))
        yield* get(B)
        yield* TestClock.adjust("2 minutes")
        // A was built 61 minutes ago: gone. B was built 2 minutes ago: still there.
        assert.isFalse(yield* expectHit(A))
        assert.isTrue(yield* expectHit(B))
        const s = yield* stats
        assert.strictEqual(s.expirations, 1)
        assert.strictEqual(s.evictions, 0)
      }),
      { ttl: "1 hour" }
    ))

  it.effect("ttl: expired entries make room before the eviction policy has to choose", () =>
    run(
      Effect.gen(function*() {
        yield* get(A)
        yield* TestClock.adjust("10 minutes")
        yield* get(B)
        yield* TestClock.adjust("25 minutes")
        yield* get(C)
        const s = yield* stats
        assert.strictEqual(s.expirations, 1)
        assert.strictEqual(s.evictions, 0)
        assert.isTrue(yield* expectHit(B))
      }),
      { ttl: "30 minutes", maxEntries: 2 }
    ))

  describe("collisions", () => {
    const weak = { hash: (_canonical: string) => "x" }

    it.effect("a weak hash never serves the wrong ontology, and every collision is counted", () =>
      run(
        Effect.gen(function*() {
          const expectedA = yield* Ontology.parse(A.text)
          const expectedB = yield* Ontology.parse(B.text)
          const a1 = yield* get(A)
          const b1 = yield* get(B)
          const a2 = yield* get(A)
          const b2 = yield* get(B)
          for (const [got, expected] of [[a1, expectedA], [a2, expectedA], [b1, expectedB], [b2, expectedB]] as const) {
            assert.strictEqual(got.sha256, expected.sha256)
            assert.strictEqual(got.canonical, expected.canonical)
          }
          assert.notStrictEqual(a1.sha256, b1.sha256)
          // get B met A (miss), get A found A first (no collision), get B met A again before finding B.
          assert.deepStrictEqual(yield* stats, {
            hits: 2,
            misses: 2,
            coalesced: 0,
            evictions: 0,
            expirations: 0,
            collisions: 2,
            size: 2
          })
        }),
        weak
      ))

    it.effect("with room for one entry, colliding ontologies replace each other instead of being confused", () =>
      run(
        Effect.gen(function*() {
          const a = yield* get(A)
          const b = yield* get(B)
          const again = yield* get(A)
          assert.notStrictEqual(b.sha256, a.sha256)
          assert.strictEqual(again.sha256, a.sha256)
          const s = yield* stats
          assert.strictEqual(s.misses, 3)
          assert.strictEqual(s.collisions, 2)
          assert.strictEqual(s.evictions, 2)
        }),
        { ...weak, maxEntries: 1 }
      ))

    it.effect("colliding ontologies built concurrently are kept apart", () =>
      run(
        Effect.gen(function*() {
          const results = yield* Effect.all([get(A), get(B), get(A), get(B)], { concurrency: "unbounded" })
          const [a1, b1, a2, b2] = results
          assert.strictEqual(a1.sha256, a2.sha256)
          assert.strictEqual(b1.sha256, b2.sha256)
          assert.notStrictEqual(a1.sha256, b1.sha256)
          const s = yield* stats
          assert.strictEqual(s.misses, 2)
          assert.strictEqual(s.misses + s.coalesced + s.hits, 4)
          assert.isAtLeast(s.collisions, 1)
        }),
        weak
      ))
  })

  it.effect("concurrent misses for the same content build the view once", () =>
    run(Effect.gen(function*() {
      const source = { text: DefaultOntology.turtle, source: DefaultOntology.source, format: "turtle" }
      const results = yield* Effect.all(Array.from({ length: 8 }, () => get(source)), { concurrency: "unbounded" })
      const s = yield* stats
      assert.strictEqual(s.misses, 1, "built once")
      assert.strictEqual(s.coalesced, 7)
      assert.strictEqual(s.hits, 0)
      for (const result of results) assert.strictEqual(result, results[0])
      // Different content concurrently: one build each.
      yield* Effect.all([get(A), get(B), get(A), get(B)], { concurrency: "unbounded" })
      assert.strictEqual((yield* stats).misses, 3)
    })))

  it.effect("interrupting the fiber that builds does not fail or strand the fibers waiting for its view", () =>
    run(Effect.gen(function*() {
      const source = { text: DefaultOntology.turtle, source: DefaultOntology.source }
      const builder = yield* Effect.fork(get(source))
      const waiter = yield* Effect.fork(get(source))
      // Wait (boundedly) until the waiter found the builder's pending build.
      for (let i = 0; i < 100 && (yield* stats).coalesced + (yield* stats).hits === 0; i++) yield* Effect.yieldNow()
      assert.strictEqual((yield* stats).coalesced, 1, "the second get waits for the first one's build")
      yield* Fiber.interrupt(builder)
      const view = yield* Fiber.join(waiter)
      assert.strictEqual(view.sha256, (yield* DefaultOntology.load).sha256)
      assert.strictEqual((yield* stats).misses, 1)
      assert.isTrue(yield* expectHit(source), "the interrupted build was still cached")
    })))

  it.effect("clear drops every entry", () =>
    run(Effect.gen(function*() {
      yield* get(A)
      yield* get(B)
      const cache = yield* OntologyCache.OntologyCache
      yield* cache.clear
      assert.strictEqual((yield* stats).size, 0)
      assert.isFalse(yield* expectHit(A))
    })))

  it.effect("load reads a file through the cache", () =>
    Effect.gen(function*() {
      const foaf = yield* OntologyCache.load(path.join(ontologies, "foaf.ttl"))
      const again = yield* OntologyCache.load(path.join(ontologies, "foaf.ttl"))
      assert.strictEqual(again, foaf)
      assert.strictEqual((yield* stats).hits, 1)
      const missing = yield* Effect.flip(OntologyCache.load(path.join(ontologies, "missing.ttl")))
      assert.include(missing.reason, "no such file")
    }).pipe(Effect.provide(Layer.merge(OntologyCache.layer(), NodeFileSystem.layer))))

  describe("configuration", () => {
    const fromEnv = (env: Record<string, string>) =>
      OntologyCache.layerConfig.pipe(
        Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))))
      )

    it.effect("defaults: 16 entries, no ttl, lru", () =>
      Effect.gen(function*() {
        const settings = yield* OntologyCache.config
        assert.strictEqual(settings.maxEntries, 16)
        assert.strictEqual(settings.eviction, "lru")
        assert.strictEqual(settings.ttl.toString(), OntologyCache.defaults.ttl.toString())
      }).pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map()))))

    it.effect("QUARRY_ONTOLOGY_CACHE_* configure the layer", () =>
      Effect.gen(function*() {
        yield* get(A)
        yield* get(B)
        assert.strictEqual((yield* stats).evictions, 1, "max entries 1")
        yield* TestClock.adjust("11 minutes")
        assert.isFalse(yield* expectHit(B), "ttl 10 minutes")
        assert.strictEqual((yield* stats).expirations, 1)
      }).pipe(Effect.provide(fromEnv({
        QUARRY_ONTOLOGY_CACHE_MAX_ENTRIES: "1",
        QUARRY_ONTOLOGY_CACHE_TTL: "10 minutes",
        QUARRY_ONTOLOGY_CACHE_EVICTION: "fifo"
      }))))

    it.effect("invalid settings are configuration errors", () =>
      Effect.gen(function*() {
        for (
          const env of [
            { QUARRY_ONTOLOGY_CACHE_MAX_ENTRIES: "0" },
            { QUARRY_ONTOLOGY_CACHE_MAX_ENTRIES: "many" },
            { QUARRY_ONTOLOGY_CACHE_TTL: "soon" },
            { QUARRY_ONTOLOGY_CACHE_EVICTION: "random" }
          ]
        ) {
          const exit = yield* Effect.exit(Layer.build(fromEnv(env)).pipe(Effect.scoped))
          assert.isTrue(Exit.isFailure(exit), JSON.stringify(env))
        }
        const infinite = yield* OntologyCache.config.pipe(
          Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["QUARRY_ONTOLOGY_CACHE_TTL", "infinity"]])))
        )
        assert.strictEqual(infinite.ttl.toString(), OntologyCache.defaults.ttl.toString())
      }))

    it.effect("invalid layer options are defects", () =>
      Effect.gen(function*() {
        const exit = yield* Effect.exit(Layer.build(OntologyCache.layer({ maxEntries: 0 })).pipe(Effect.scoped))
        assert.isTrue(Exit.isFailure(exit) && Exit.causeOption(exit)._tag === "Some")
      }))
  })
})
