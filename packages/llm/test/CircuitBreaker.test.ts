import { assert, describe, it } from "@effect/vitest"
import * as CircuitBreaker from "@quarry/llm/CircuitBreaker"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as TestClock from "effect/TestClock"

const settings: CircuitBreaker.Settings = { failureThreshold: 3, cooldown: "10 seconds" }
const down = Effect.fail("down" as const)
const bad = Effect.fail("bad request" as const)
const ok = Effect.succeed("ok" as const)
const counts = (e: string) => e === "down"

describe("CircuitBreaker", () => {
  it.effect("opens after N consecutive failures and fails fast until the cool-down is over", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make
      let calls = 0
      const call = (effect: Effect.Effect<string, string>) =>
        Effect.exit(breaker.protect("e", settings, Effect.zipRight(Effect.sync(() => calls++), effect), counts))
      yield* call(down)
      yield* call(down)
      yield* call(ok) // a success resets the count
      yield* call(down)
      yield* call(down)
      assert.deepStrictEqual(yield* breaker.state("e"), { _tag: "Closed", consecutiveFailures: 2 })
      yield* call(down)
      const state = yield* breaker.state("e")
      assert.strictEqual(state._tag, "Open")
      assert.strictEqual(calls, 6)

      const refused = yield* breaker.protect("e", settings, ok, counts).pipe(Effect.flip)
      assert.isTrue(refused instanceof CircuitBreaker.CircuitOpen)
      assert.strictEqual(calls, 6, "nothing ran")
      assert.include(String(refused), "suspended after 3 consecutive failures")

      yield* TestClock.adjust("10 seconds")
      assert.isTrue(Exit.isSuccess(yield* call(ok)))
      assert.deepStrictEqual(yield* breaker.state("e"), { _tag: "Closed", consecutiveFailures: 0 })
    }))

  it.effect("lets exactly one trial call through when half-open; a failed trial reopens at once", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make
      for (let i = 0; i < 3; i++) yield* Effect.exit(breaker.protect("e", settings, down, counts))
      yield* TestClock.adjust("10 seconds")
      const gate = yield* Deferred.make<void>()
      const trial = yield* Effect.fork(
        breaker.protect("e", settings, Effect.zipRight(Deferred.await(gate), down), counts)
      )
      yield* Effect.yieldNow()
      assert.strictEqual((yield* breaker.state("e"))._tag, "HalfOpen")
      const second = yield* Effect.flip(breaker.protect("e", settings, ok, counts))
      assert.isTrue(second instanceof CircuitBreaker.CircuitOpen, "a second call waits for the trial's verdict")
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.await(trial)
      const reopened = yield* breaker.state("e")
      assert.strictEqual(reopened._tag, "Open")
      assert.strictEqual(reopened.consecutiveFailures, 4)
    }))

  it.effect("does not count failures the caller says are not the endpoint's fault", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make
      for (let i = 0; i < 10; i++) yield* Effect.exit(breaker.protect("e", settings, bad, counts))
      assert.deepStrictEqual(yield* breaker.state("e"), { _tag: "Closed", consecutiveFailures: 0 })
    }))

  it.effect("keeps one circuit per endpoint and lists them all for status", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make
      for (let i = 0; i < 3; i++) yield* Effect.exit(breaker.protect("b", settings, down, counts))
      yield* breaker.protect("a", settings, ok, counts)
      const states = yield* breaker.states
      assert.deepStrictEqual(states.map((s) => [s.key, s.state._tag]), [["a", "Closed"], ["b", "Open"]])
    }))
})
