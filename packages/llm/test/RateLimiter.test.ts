import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { assert, describe, it } from "@effect/vitest"
import type * as Extractor from "@quarry/core/Extractor"
import * as CircuitBreaker from "@quarry/llm/CircuitBreaker"
import * as LlmExtractor from "@quarry/llm/LlmExtractor"
import * as RateLimiter from "@quarry/llm/RateLimiter"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import * as FakeOpenAi from "./FakeOpenAi.js"
import { batch, options, sleepReal } from "./fixtures.js"

const minute = 60_000

/** The most requests and tokens in any 60-second window `[t, t + 60 s)` starting at an admission. */
const worstWindow = (admissions: ReadonlyArray<{ readonly at: number; readonly tokens: number }>) => {
  const sorted = [...admissions].sort((a, b) => a.at - b.at)
  let requests = 0
  let tokens = 0
  for (const first of sorted) {
    const inside = sorted.filter((a) => a.at >= first.at && a.at < first.at + minute)
    requests = Math.max(requests, inside.length)
    tokens = Math.max(tokens, inside.reduce((n, a) => n + a.tokens, 0))
  }
  return { requests, tokens }
}

/** Advances the test clock a second at a time, letting real I/O run in between, until the fibers are done. */
const drive = <A, E>(fibers: ReadonlyArray<Fiber.Fiber<A, E>>) =>
  Effect.gen(function*() {
    for (let step = 0; step < 5_000; step++) {
      const polls = yield* Effect.forEach(fibers, (f) => f.poll)
      if (polls.every(Option.isSome)) break
      yield* TestClock.adjust("1 second")
      yield* sleepReal(2)
    }
    return yield* Fiber.joinAll(fibers)
  })

describe("RateLimiter", () => {
  it.effect("admits at most requestsPerMinute in any minute, in arrival order", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make
      const admitted: Array<number> = []
      const call = limiter.withPermit("k", { requestsPerMinute: 3 }, 1, (permit) =>
        Effect.sync(() => {
          admitted.push(permit.admittedAt)
        }))
      const fibers = yield* Effect.forEach(
        Array.from({ length: 5 }, () => Effect.zipRight(call, call)),
        (caller) => Effect.fork(caller)
      )
      yield* TestClock.adjust("10 minutes")
      yield* Fiber.joinAll(fibers)
      assert.deepStrictEqual(admitted, [0, 0, 0, 60, 60, 60, 120, 120, 120, 180].map((s) => s * 1000))
    }))

  it.effect("keeps tokens per minute within the limit, counting settled usage instead of the estimate", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make
      const admitted: Array<number> = []
      const call = (settleTo: number) =>
        limiter.withPermit("k", { tokensPerMinute: 1000 }, 400, (permit) =>
          Effect.zipRight(
            Effect.sync(() => void admitted.push(permit.admittedAt)),
            permit.settle(settleTo)
          ))
      // Estimates of 400: two fit in a minute. Settled at 100 each, the rest of the minute frees up.
      yield* Effect.all([call(400), call(400), call(400)], { concurrency: "unbounded", discard: true }).pipe(
        Effect.fork,
        Effect.tap(() => TestClock.adjust("2 minutes")),
        Effect.flatMap(Fiber.join)
      )
      assert.deepStrictEqual(admitted, [0, 0, minute])
      admitted.length = 0
      yield* TestClock.adjust("5 minutes")
      const start = yield* Clock.currentTimeMillis
      // One after the other: each is settled at 100 before the next asks, so all four fit at once.
      yield* Effect.all([call(100), call(100), call(100), call(100)], { discard: true })
      assert.deepStrictEqual(admitted, [start, start, start, start])
    }))

  it.effect("refuses a request that could never fit the tokens-per-minute limit", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make
      const error = yield* Effect.flip(limiter.withPermit("k", { tokensPerMinute: 100 }, 101, () => Effect.void))
      assert.strictEqual(error._tag, "RequestTooLarge")
      assert.include(error.message, "more than the limit of 100 tokens per minute")
    }))

  it.effect("holds every caller of an endpoint during a pause (a server's Retry-After)", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make
      const admitted: Array<number> = []
      const call = limiter.withPermit("k", {}, 1, (permit) => Effect.sync(() => void admitted.push(permit.admittedAt)))
      yield* call
      yield* limiter.pause("k", "30 seconds")
      const fiber = yield* Effect.fork(Effect.all([call, call], { concurrency: "unbounded" }))
      yield* TestClock.adjust("29 seconds")
      assert.deepStrictEqual(admitted, [0])
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(fiber)
      assert.deepStrictEqual(admitted, [0, 30_000, 30_000])
      const snapshot = yield* limiter.snapshot("k")
      assert.isTrue(Option.isSome(snapshot) && snapshot.value.requestsInWindow === 3)
    }))

  it.effect("tells onWait of each wait as it starts, with its cause and limit; callers queued behind it wait silently", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make
      const waits: Array<RateLimiter.Wait & { readonly at: number }> = []
      const onWait = (wait: RateLimiter.Wait) =>
        Effect.map(Clock.currentTimeMillis, (at) => void waits.push({ ...wait, at }))
      const call = (key: string, limits: RateLimiter.Limits, tokens = 1) =>
        limiter.withPermit(key, limits, tokens, () => Effect.void, onWait)
      // One request a minute: the second caller waits a minute, the third (held by the gate) is told only at its turn.
      const callers = yield* Effect.fork(
        Effect.all([call("rpm", { requestsPerMinute: 1 }), call("rpm", { requestsPerMinute: 1 }), call("rpm", {})], {
          concurrency: "unbounded"
        })
      )
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(waits, [{ key: "rpm", cause: "requests_per_minute", millis: minute, limit: 1, at: 0 }])
      yield* TestClock.adjust("1 minute")
      assert.deepStrictEqual(waits.map((w) => [w.cause, w.at, w.millis]), [
        ["requests_per_minute", 0, minute],
        ["requests_per_minute", minute, minute]
      ])
      yield* TestClock.adjust("1 minute")
      yield* Fiber.join(callers)
      waits.length = 0
      // Tokens per minute, and a pause a server asked for (the longer cause is the one named).
      yield* call("tpm", { tokensPerMinute: 100 }, 80)
      const tpm = yield* Effect.fork(call("tpm", { tokensPerMinute: 100 }, 80))
      yield* TestClock.adjust("1 second")
      assert.deepInclude(waits[0]!, { key: "tpm", cause: "tokens_per_minute", millis: minute, limit: 100 })
      // Paused at 1 s for 5 minutes: woken at 60 s, the caller has 4 minutes and 1 s to go.
      yield* limiter.pause("tpm", "5 minutes")
      yield* TestClock.adjust("1 minute")
      assert.deepInclude(waits[1]!, { key: "tpm", cause: "retry_after", millis: 4 * minute + 1000 })
      assert.notProperty(waits[1]!, "limit")
      yield* TestClock.adjust("5 minutes")
      yield* Fiber.join(tpm)
      assert.strictEqual(waits.length, 2)
    }))

  it.effect("runs at most maxConcurrent requests at once per endpoint, independently of other endpoints", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make
      let inFlight = 0
      let most = 0
      const call = (key: string) =>
        limiter.withPermit(key, { maxConcurrent: 2 }, 1, () =>
          Effect.acquireUseRelease(
            Effect.sync(() => {
              inFlight++
              most = Math.max(most, inFlight)
            }),
            () => Effect.sleep("1 second"),
            () => Effect.sync(() => inFlight--)
          ))
      const fiber = yield* Effect.fork(Effect.all(Array.from({ length: 6 }, () => call("a")), { concurrency: 6 }))
      yield* TestClock.adjust("1 second")
      assert.strictEqual(most, 2)
      const other = yield* Effect.fork(Effect.all([call("b"), call("b")], { concurrency: 2 }))
      yield* TestClock.adjust("5 seconds")
      yield* Fiber.join(fiber)
      yield* Fiber.join(other)
      assert.strictEqual(most, 4, "endpoint b ran beside endpoint a's two")
    }))

  describe("with the llm extractor", () => {
    // Stamps each request with the (test) clock time of its admission: the request is built right after admission.
    const stamped = Layer.effect(
      HttpClient.HttpClient,
      Effect.map(HttpClient.HttpClient, (client) =>
        HttpClient.mapRequestEffect(client, (request) =>
          Effect.map(
            Clock.currentTimeMillis,
            (now) => HttpClientRequest.setHeader(request, "x-admitted-at", String(now))
          )))
    ).pipe(Layer.provide(NodeHttpClient.layerUndici))
    const services = Layer.mergeAll(stamped, RateLimiter.layer, CircuitBreaker.layer)

    const reply = JSON.stringify({ entities: [{ label: "Ada Lovelace", type: "Person", confidence: 1 }] })
    const text = "Ada Lovelace wrote the first program."

    const fiveCallers = (extractors: ReadonlyArray<Extractor.Extractor>, batchesEach: number) =>
      Effect.forEach(extractors, (extractor, caller) =>
        Effect.fork(Effect.forEach(
          Array.from({ length: batchesEach }, (_, i) => i),
          (i) => extractor.extract(batch(text, { batchIndex: caller * 100 + i }))
        )))

    const admissions = (fake: FakeOpenAi.FakeOpenAi) =>
      Effect.map(fake.requests, (requests) =>
        requests.map((r) => ({
          at: Number(r.headers["x-admitted-at"]),
          tokens: r.promptTokens + r.completionTokens
        })))

    it.scoped("5 concurrent runs share one endpoint's requests-per-minute limit", () =>
      Effect.gen(function*() {
        const fake = yield* FakeOpenAi.make({ fallback: () => FakeOpenAi.completion(reply) })
        const opts = options(fake.baseUrl, { callTimeout: "1 hour", limits: { requestsPerMinute: 3 } })
        // One extractor per run, as five runs in one process would have: they share the limiter by endpoint.
        const extractors = yield* Effect.forEach(Array.from({ length: 5 }), () => LlmExtractor.make(opts))
        const fibers = yield* fiveCallers(extractors, 2)
        yield* drive(fibers)
        const seen = yield* admissions(fake)
        assert.strictEqual(seen.length, 10)
        assert.isAtMost(worstWindow(seen).requests, 3)
        assert.isAtLeast(Math.max(...seen.map((a) => a.at)), 3 * minute, "10 requests at 3 a minute take 3 minutes")
      }).pipe(Effect.provide(services)))

    it.scoped("5 concurrent runs stay within tokens per minute, as the server counts them", () =>
      Effect.gen(function*() {
        const fake = yield* FakeOpenAi.make({ fallback: () => FakeOpenAi.completion(reply) })
        const base = options(fake.baseUrl, { callTimeout: "1 hour", maxTokens: 100 })
        // Learn what one request costs (under another model, so it does not count against the limit).
        const probe = yield* LlmExtractor.make({ ...base, model: "probe" })
        const probed = yield* probe.extract(batch(text))
        const perRequest = probed.usage!.promptTokens + probed.usage!.completionTokens
        // Room for two requests a minute by the estimate (prompt + 100 max tokens), not three.
        const tokensPerMinute = 2 * (perRequest + 100) + 50
        // Even settled at their real size, two requests leave no room for a third estimate in the same minute.
        assert.isAbove(2 * perRequest + perRequest + 100, tokensPerMinute)
        const opts = { ...base, limits: { tokensPerMinute, maxConcurrent: 5 } }
        const extractors = yield* Effect.forEach(Array.from({ length: 5 }), () => LlmExtractor.make(opts))
        const fibers = yield* fiveCallers(extractors, 2)
        yield* drive(fibers)
        const seen = (yield* admissions(fake)).slice(1)
        assert.strictEqual(seen.length, 10)
        const worst = worstWindow(seen)
        assert.isAtMost(worst.tokens, tokensPerMinute)
        assert.isAtLeast(worst.requests, 2)
        assert.isAtLeast(Math.max(...seen.map((a) => a.at)), 4 * minute, "10 requests at 2 a minute take 4 minutes")
      }).pipe(Effect.provide(services)))

    it.scopedLive("max concurrent requests hold across runs sharing an endpoint", () =>
      Effect.gen(function*() {
        const fake = yield* FakeOpenAi.make({ fallback: () => ({ ...FakeOpenAi.completion(reply), delayMillis: 50 }) })
        const opts = options(fake.baseUrl, { limits: { maxConcurrent: 2 } })
        const extractors = yield* Effect.forEach(Array.from({ length: 5 }), () => LlmExtractor.make(opts))
        const fibers = yield* fiveCallers(extractors, 2)
        yield* Fiber.joinAll(fibers)
        assert.strictEqual((yield* fake.requests).length, 10)
        assert.strictEqual(yield* fake.maxInFlight, 2)
      }).pipe(Effect.provide(services)))
  })
})
