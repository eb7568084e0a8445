import { assert, describe, it } from "@effect/vitest"
import * as fc from "effect/FastCheck"
import * as Option from "effect/Option"
import * as Flags from "../src/Flags.js"
import * as Inputs from "../src/Inputs.js"

describe("Flags.limitsOf", () => {
  it.prop(
    "a deadline suggested again in a resume command reads back as the same milliseconds",
    { ms: fc.integer({ min: 1, max: 400 * 86_400_000 }) },
    ({ ms }) => {
      const limits = Flags.limitsOf({ maxCost: Option.none(), maxTokens: Option.none(), deadline: Option.some(ms) })
      assert.strictEqual(limits.args[0], "--deadline")
      assert.deepStrictEqual(Inputs.parseDuration(limits.args[1]!), Option.some(ms))
    }
  )

  it("repeats each given limit and sets the budget only when one is given", () => {
    const none = Flags.limitsOf({ maxCost: Option.none(), maxTokens: Option.none(), deadline: Option.none() })
    assert.deepStrictEqual(none, { budget: undefined, deadlineMs: undefined, args: [] })
    const all = Flags.limitsOf({
      maxCost: Option.some(2.5),
      maxTokens: Option.some(900),
      deadline: Option.some(5_400_000)
    })
    assert.deepStrictEqual(all, {
      budget: { maxCostUsd: 2.5, maxTokens: 900 },
      deadlineMs: 5_400_000,
      args: ["--max-cost", "2.5", "--max-tokens", "900", "--deadline", "1h30m"]
    })
  })
})
