import { assert, describe, it } from "@effect/vitest"
import * as FairScheduler from "@quarry/core/FairScheduler"
import * as Effect from "effect/Effect"

/** A synchronous step that keeps the thread for `ms`, as an extractor call does. */
const busy = (ms: number) =>
  Effect.sync(() => {
    const end = performance.now() + ms
    while (performance.now() < end) {
      // spin
    }
  })

describe("FairScheduler", () => {
  it.live("lets timers run between long synchronous steps of a fiber that takes far fewer than 2,048 steps", () =>
    Effect.gen(function*() {
      let done = 0
      const seen: Array<number> = []
      setTimeout(() => seen.push(done), 0)
      yield* Effect.forEach([1, 2, 3, 4, 5, 6], () => Effect.map(busy(40), () => done++), { discard: true }).pipe(
        Effect.withScheduler(FairScheduler.make(25))
      )
      assert.strictEqual(seen.length, 1)
      assert.isBelow(seen[0]!, 6, "the timer waited for the whole fiber")
    }))
})
