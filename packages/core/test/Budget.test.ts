import { assert, describe, it } from "@effect/vitest"
import * as Budget from "@quarry/core/Budget"
import * as CapitalizedExtractor from "@quarry/core/CapitalizedExtractor"
import type * as Extractor from "@quarry/core/Extractor"
import { RunId, UsageTotals } from "@quarry/core/Run"
import { RunStore } from "@quarry/core/RunStore"
import * as Workflow from "@quarry/core/Workflow"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as path from "node:path"
import { readText, sharedData, storeLayer, tempDir } from "./fixtures.js"

const runId = RunId.make("budget")
const nothingSpent = new UsageTotals({ requests: 0, promptTokens: 0, completionTokens: 0, costUsd: 0 })
const cent = { requests: 1, promptTokens: 80, completionTokens: 20, costUsd: 0.01 }

/** Lets every forked fiber run as far as it can. */
const settleFibers = Effect.repeatN(Effect.yieldNow(), 20)

const isWaiting = <A, E>(fiber: Fiber.RuntimeFiber<A, E>) =>
  Effect.zipRight(settleFibers, Effect.map(Fiber.poll(fiber), Option.isNone))

describe("Budget", () => {
  it.effect("the first batch runs alone; later ones start while spent + reserved + their projection fits", () =>
    Effect.gen(function*() {
      const budget = yield* Budget.make({
        runId,
        limits: { maxCostUsd: 0.035 },
        spent: nothingSpent,
        settledBatches: 0
      })
      yield* budget.reserve(0)
      const second = yield* Effect.fork(budget.reserve(1))
      assert.isTrue(yield* isWaiting(second), "nothing is known about a batch's cost until one settles")
      yield* budget.record(0, cent)
      yield* budget.settle(0)
      yield* Fiber.join(second)
      assert.deepStrictEqual(yield* budget.projection, Option.some({ costUsd: 0.01, tokens: 100 }))
      // 0.01 spent + 0.01 reserved by batch 1 + 0.01 projected = 0.03 <= 0.035.
      yield* budget.reserve(2)
      // 0.01 + 0.02 + 0.01 = 0.04 > 0.035: batch 3 waits while batches 1 and 2 hold reservations.
      const fourth = yield* Effect.fork(budget.reserve(3))
      assert.isTrue(yield* isWaiting(fourth))
      yield* budget.record(1, cent)
      yield* budget.settle(1)
      assert.isTrue(yield* isWaiting(fourth))
      yield* budget.record(2, cent)
      yield* budget.settle(2)
      // Nothing in flight could make room any more: 0.03 spent + 0.01 projected > 0.035.
      const exit = yield* Fiber.await(fourth)
      assert.isTrue(Exit.isFailure(exit))
      const error = yield* Effect.flip(exit)
      assert.strictEqual(error.limit, "cost")
      assert.closeTo(error.spent, 0.03, 1e-9)
      assert.strictEqual(error.max, 0.035)
    }))

  it.effect("a batch that costs less than it reserved makes room for the next one", () =>
    Effect.gen(function*() {
      // Earlier executions settled 2 batches for 200 tokens: 100 projected per batch.
      const spent = new UsageTotals({ requests: 2, promptTokens: 160, completionTokens: 40, costUsd: 0 })
      const budget = yield* Budget.make({ runId, limits: { maxTokens: 450 }, spent, settledBatches: 2 })
      yield* budget.reserve(2)
      // 200 spent + 100 reserved + 100 projected = 400 <= 450; one more would be 500.
      yield* budget.reserve(3)
      const fifth = yield* Effect.fork(budget.reserve(4))
      assert.isTrue(yield* isWaiting(fifth))
      // Batch 2 cost 10 tokens: 210 spent + 100 still reserved by batch 3 + ~103 projected fits.
      yield* budget.record(2, { requests: 1, promptTokens: 10, completionTokens: 0 })
      yield* budget.settle(2)
      yield* Fiber.join(fifth)
      assert.deepStrictEqual(yield* budget.spent, { costUsd: 0, tokens: 210 })
    }))

  it.effect("a stop reports what was spent as a clean decimal, not a floating-point sum", () =>
    Effect.gen(function*() {
      const budget = yield* Budget.make({ runId, limits: { maxCostUsd: 0.03 }, spent: nothingSpent, settledBatches: 0 })
      // $0.012 + $0.01212 is 0.024120000000000003 in floating point; a third batch (~$0.012) would pass $0.03.
      for (const [batch, costUsd] of [[0, 0.012], [1, 0.01212]] as const) {
        yield* budget.reserve(batch)
        yield* budget.record(batch, { ...cent, costUsd })
        yield* budget.settle(batch)
      }
      const error = yield* Effect.flip(budget.reserve(2))
      assert.strictEqual(error.spent, 0.02412)
      assert.include(error.message, "spent $0.0241 of its max cost of $0.03")
    }))

  it.effect("before any batch settled, the extractor's estimate stands in for the projection; after, the average does", () =>
    Effect.gen(function*() {
      let asked = 0
      const estimate = (costUsd: number) =>
        Effect.sync(() => {
          asked++
          return Option.some({ promptTokens: 900, completionTokens: 100, costUsd, basis: "900 + 100 tokens" })
        })
      // An estimate the budget does not fit stops the first batch, with the estimate in the error.
      const small = yield* Budget.make({ runId, limits: { maxCostUsd: 0.001 }, spent: nothingSpent, settledBatches: 0 })
      const error = yield* Effect.flip(small.reserve(0, estimate(0.0012000000000000001)))
      assert.deepStrictEqual(
        [error.limit, error.spent, error.max, error.estimate],
        ["cost", 0, 0.001, { tokens: 1000, costUsd: 0.0012, basis: "900 + 100 tokens" }]
      )
      assert.include(error.message, "stopped before its first batch, which the extractor estimates at $0.0012 (900")
      const tokens = yield* Budget.make({ runId, limits: { maxTokens: 999 }, spent: nothingSpent, settledBatches: 0 })
      assert.strictEqual((yield* Effect.flip(tokens.reserve(0, estimate(0)))).estimate?.tokens, 1000)

      // One it fits is reserved; once a batch settled, its measured cost is the projection and no estimate is asked.
      const budget = yield* Budget.make({
        runId,
        limits: { maxCostUsd: 0.025 },
        spent: nothingSpent,
        settledBatches: 0
      })
      asked = 0
      yield* budget.reserve(0, estimate(0.02))
      // 0.02 reserved by batch 0: batch 1 waits for it (and is not estimated: batch 0 will be measured first).
      const second = yield* Effect.fork(budget.reserve(1, estimate(0.02)))
      assert.isTrue(yield* isWaiting(second))
      yield* budget.record(0, cent)
      yield* budget.settle(0)
      // Projected at the $0.01 measured, not the $0.02 estimated: 0.01 spent + 0.01 fits $0.025.
      yield* Fiber.join(second)
      assert.strictEqual(asked, 1)
    }))

  it.effect("spend already at the limit fails at once; without limits nothing ever waits", () =>
    Effect.gen(function*() {
      const spent = new UsageTotals({ requests: 3, promptTokens: 0, completionTokens: 0, costUsd: 0.05 })
      const spentOut = yield* Budget.make({ runId, limits: { maxCostUsd: 0.05 }, spent, settledBatches: 0 })
      const error = yield* Effect.flip(spentOut.reserve(0))
      assert.strictEqual(error._tag, "BudgetExceeded")
      const unlimited = yield* Budget.make({ runId, spent: nothingSpent, settledBatches: 0 })
      yield* Effect.forEach([0, 1, 2, 3], (i) => unlimited.reserve(i), { discard: true })
    }))
})

const text = readText(sharedData("texts", "long-multi-chapter.txt"))

/**
 * An extractor that reports $0.01 per batch as it goes, takes a little real time, and counts how many batches it
 * extracts at once.
 */
const meteredSlow = (gate?: number) => {
  const peak = { inFlight: 0, max: 0 }
  // With a gate, the first extractions wait (up to 2 s) until `gate` are in flight at once, so that how many the
  // workflow lets run together does not depend on how fast a loaded machine starts them.
  const opened = () => gate === undefined || peak.max >= gate
  const extractor: Extractor.Extractor = {
    ...CapitalizedExtractor.make(),
    extract: (input) =>
      Effect.gen(function*() {
        peak.inFlight += 1
        peak.max = Math.max(peak.max, peak.inFlight)
        for (let waited = 0; !opened() && waited < 2_000; waited += 5) yield* Effect.sleep(5)
        yield* Effect.sleep(20)
        if (input.recordUsage) yield* input.recordUsage(cent)
        yield* Effect.sleep(5)
        peak.inFlight -= 1
        return { ...CapitalizedExtractor.extractMentions(input), usage: cent }
      })
  }
  return { extractor, peak }
}

describe("Budget in a workflow", () => {
  it.scopedLive("concurrency 8, a budget for 3 batches: spend stays within one batch's projected cost of it", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      // Gated at 2: whether two batches overlap must not depend on how fast a loaded machine starts the second.
      const { extractor, peak } = meteredSlow(2)
      yield* Effect.gen(function*() {
        const store = yield* RunStore
        const run = yield* Workflow.create({
          input: text,
          extractor: "capitalized",
          chunking: { windowSize: 300, overlap: 50, batchSize: 1 },
          concurrency: 8,
          output: { path: path.join(dir, "out.ttl"), format: "turtle" }
        })
        assert.isAbove(run.plan.totalBatches, 8)
        const error = yield* Effect.flip(Workflow.execute(run.id, { budget: { maxCostUsd: 0.035 } }))
        assert.strictEqual(error._tag, "BudgetExceeded")
        const spent = (yield* store.attemptTotals(run.id)).costUsd
        assert.isAtMost(spent, 0.035 + 0.01, `spent $${spent} of a $0.035 budget`)
        const stopped = yield* store.getRun(run.id)
        assert.strictEqual(stopped.status, "failed")
        assert.deepStrictEqual(stopped.failureReason, Option.some("budget"))
        // Every batch paid for was committed: nothing extracted was thrown away at the stop.
        assert.strictEqual((yield* store.attemptTotals(run.id)).requests, stopped.committedBatches)
        assert.strictEqual(stopped.committedBatches, 3)
        assert.isAtLeast(peak.max, 2, "batches within the budget still run concurrently")

        const done = yield* Workflow.execute(run.id, { budget: { maxCostUsd: 1 } })
        assert.strictEqual(done.status, "completed")
        assert.strictEqual((yield* store.attemptTotals(run.id)).requests, done.plan.totalBatches)
      }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"), [extractor])))
    }))

  it.scopedLive("a first batch estimated above the budget is never extracted; one estimated within it runs", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { extractor, peak } = meteredSlow()
      const estimated: Extractor.Extractor = {
        ...extractor,
        estimate: (input) =>
          Effect.succeed({
            promptTokens: input.chunks.length * 80,
            completionTokens: 20,
            costUsd: 0.01,
            basis: "80 tokens per chunk"
          })
      }
      yield* Effect.gen(function*() {
        const store = yield* RunStore
        const run = yield* Workflow.create({
          input: text,
          extractor: "capitalized",
          chunking: { windowSize: 300, overlap: 50, batchSize: 1 },
          concurrency: 2,
          output: { path: path.join(dir, "out.ttl"), format: "turtle" }
        })
        const error = yield* Effect.flip(Workflow.execute(run.id, { budget: { maxCostUsd: 0.005 } }))
        assert.strictEqual(error._tag, "BudgetExceeded")
        assert.deepStrictEqual(error._tag === "BudgetExceeded" ? error.estimate : undefined, {
          tokens: 100,
          costUsd: 0.01,
          basis: "80 tokens per chunk"
        })
        assert.strictEqual(peak.max, 0, "no batch was extracted")
        assert.strictEqual((yield* store.attemptTotals(run.id)).requests, 0)
        const stopped = yield* store.getRun(run.id)
        assert.deepStrictEqual([stopped.committedBatches, stopped.failureReason], [0, Option.some("budget")])
        assert.include(Option.getOrElse(stopped.lastError, () => ""), "stopped before its first batch")

        // A budget the estimate fits: the first batch runs, and the measured $0.01 projects the rest.
        const resumed = yield* Effect.flip(Workflow.execute(run.id, { budget: { maxCostUsd: 0.035 } }))
        assert.strictEqual(resumed._tag, "BudgetExceeded")
        assert.strictEqual((yield* store.getRun(run.id)).committedBatches, 3)
      }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"), [estimated])))
    }))

  it.scopedLive("without a budget, batches are not held back: all 8 slots fill", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { extractor, peak } = meteredSlow(8)
      const done = yield* Effect.gen(function*() {
        const run = yield* Workflow.create({
          input: text,
          extractor: "capitalized",
          chunking: { windowSize: 300, overlap: 50, batchSize: 1 },
          concurrency: 8,
          output: { path: path.join(dir, "out.ttl"), format: "turtle" }
        })
        return yield* Workflow.execute(run.id)
      }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"), [extractor])))
      assert.strictEqual(done.status, "completed")
      assert.strictEqual(peak.max, 8)
    }))
})
