import { assert, describe, it } from "@effect/vitest"
import {
  BudgetExceeded,
  RunAlreadyExists,
  RunCancelled,
  RunFailed,
  RunInterrupted,
  RunLocked,
  RunNotFound
} from "@quarry/core/Errors"
import { RunId } from "@quarry/core/Run"

const runId = RunId.make("book")

describe("Errors", () => {
  it("the run errors name their run and no command of a front end (a library user has no `quarry` to run)", () => {
    const errors = [
      new RunNotFound({ runId }),
      new RunAlreadyExists({ runId }),
      new RunLocked({ runId, owner: "process 42 on host vm", expiresAt: Date.UTC(2026, 11, 7) }),
      new RunCancelled({ runId }),
      new RunFailed({ runId, reason: "ExtractorError", error: "the endpoint answered 500" }),
      new RunInterrupted({ runId })
    ]
    for (const error of errors) {
      assert.include(error.message, `run "book"`, error._tag)
      assert.notMatch(error.message, /quarry \w|--\w/, error._tag)
    }
    assert.strictEqual(
      errors[2]!.message,
      "run \"book\" is being executed by process 42 on host vm (lease valid until 2026-12-07T00:00:00.000Z); wait for " +
        "it to finish, or cancel it"
    )
  })

  it("a budget stop says whether the run stopped before its limit or went over it", () => {
    const before = new BudgetExceeded({ runId, limit: "tokens", spent: 900, max: 1000 })
    assert.include(before.message, "stopped before exceeding its budget: spent 900 tokens of its max of 1000 tokens")
    const over = new BudgetExceeded({ runId, limit: "tokens", spent: 1100, max: 1099 })
    assert.include(over.message, "stopped over its budget: spent 1100 tokens of its max of 1099 tokens")
    assert.notInclude(over.message, "before exceeding")
    const estimate = { tokens: 904, costUsd: 0.00904, basis: "its prompt alone: about 904 tokens" }
    const first = new BudgetExceeded({ runId, limit: "cost", spent: 0, max: 0.001, estimate })
    assert.strictEqual(
      first.message,
      `run "book" stopped before its first batch, which the extractor estimates at $0.00904 (its prompt alone: ` +
        `about 904 tokens), more than its max cost of $0.001; nothing was spent on it, and a resume with a higher ` +
        `budget continues it`
    )
  })
})
