import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Harness from "../src/Harness.js"
import * as Report from "../src/Report.js"
import * as ServiceLoad from "../src/ServiceLoad.js"

// Smoke version of benchmark 13: a few runs against a real `quarry serve`; no timing assertions.

describe("benchmark 13 (smoke)", () => {
  it.live("service load: every run submitted, polled to its end, none lost, no error", () =>
    Effect.gen(function*() {
      const config = ServiceLoad.configs.smoke
      const { data, section } = yield* ServiceLoad.run(config).pipe(Effect.provide(Harness.quiet))
      assert.strictEqual(data.errors, 0, data.errorSamples.join("\n"))
      assert.strictEqual(data.submitted, config.runs)
      assert.strictEqual(data.completed, config.runs)
      assert.strictEqual(data.lost, 0)
      assert.strictEqual(data.submitLatency.length, config.runs)
      // At least one status read per run (the one that saw it end).
      assert.isAtLeast(data.statusLatency.length, config.runs)
      assert.isTrue(data.statusLatency.every((ms) => Number.isFinite(ms) && ms > 0))
      assert.deepStrictEqual(section.targets.filter((t) => t.status !== "info").map((t) => t.status), [
        "met",
        "met",
        "met"
      ])
      assert.notInclude(Report.text(section), "NaN")
    }), 120_000)
})
