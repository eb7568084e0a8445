import { assert, describe, it } from "@effect/vitest"
import * as CapitalizedExtractor from "@quarry/core/CapitalizedExtractor"
import { ExtractorError } from "@quarry/core/Errors"
import type * as Extractor from "@quarry/core/Extractor"
import * as Merge from "@quarry/core/Merge"
import type * as Run from "@quarry/core/Run"
import { RunStore } from "@quarry/core/RunStore"
import * as RunView from "@quarry/core/RunView"
import * as Workflow from "@quarry/core/Workflow"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as fs from "node:fs"
import * as path from "node:path"
import { readText, sharedData, storeLayer, tempDir } from "./fixtures.js"

const text = readText(sharedData("texts", "long-multi-chapter.txt"))
const chunking = { windowSize: 300, overlap: 50, batchSize: 1 }

/** The capitalized extractor, failing on the given batches. */
const failingOn = (failing: ReadonlySet<number>): Extractor.Extractor => {
  const base = CapitalizedExtractor.make()
  return {
    ...base,
    extract: (input) =>
      failing.has(input.batchIndex) ?
        Effect.fail(
          new ExtractorError({
            extractor: base.name,
            batchIndex: input.batchIndex,
            reason: "scripted",
            retryable: false
          })
        ) :
        base.extract(input)
  }
}

/** The capitalized extractor that reports 100 tokens and $0.01 per batch through both channels. */
const metered: Extractor.Extractor = {
  ...CapitalizedExtractor.make(),
  extract: (input) =>
    Effect.gen(function*() {
      const usage = { requests: 1, promptTokens: 80, completionTokens: 20, costUsd: 0.01 }
      if (input.recordUsage) yield* input.recordUsage(usage)
      return { ...CapitalizedExtractor.extractMentions(input), usage }
    })
}

/**
 * Like `metered`, but the given batches fail after two attempts, with an `ExtractorError` carrying those attempts'
 * usage (as the llm extractor's does).
 */
const meteredFailingOn = (failing: ReadonlySet<number>): Extractor.Extractor => ({
  ...CapitalizedExtractor.make(),
  extract: (input) =>
    Effect.gen(function*() {
      const attempt = { requests: 1, promptTokens: 80, completionTokens: 20, costUsd: 0.01 }
      if (input.recordUsage) yield* input.recordUsage(attempt)
      if (!failing.has(input.batchIndex)) return { ...CapitalizedExtractor.extractMentions(input), usage: attempt }
      const failed = { requests: 1, promptTokens: 80, completionTokens: 0, costUsd: 0.008 }
      if (input.recordUsage) yield* input.recordUsage(failed)
      return yield* new ExtractorError({
        extractor: "capitalized",
        batchIndex: input.batchIndex,
        reason: "scripted after two attempts",
        retryable: true,
        usage: { requests: 2, promptTokens: 160, completionTokens: 20, costUsd: 0.018 }
      })
    })
})

/** Asserts that the run's usage is every recorded attempt's: nothing spent is left out as lost. */
const assertNothingLost = (run: Run.Run) =>
  Effect.gen(function*() {
    const attempts = yield* (yield* RunStore).attemptTotals(run.id)
    assert.deepStrictEqual(
      [run.usage.requests, run.usage.promptTokens, run.usage.completionTokens],
      [attempts.requests, attempts.promptTokens, attempts.completionTokens]
    )
    assert.closeTo(run.usage.costUsd, attempts.costUsd, 1e-9)
  })

describe("batch error policy", () => {
  it.scoped("the usage of a skipped batch's failed attempts is part of the run's usage, also after retries", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const db = path.join(dir, "q.db")
      const runId = yield* Effect.gen(function*() {
        const run = yield* Workflow.create({
          input: text,
          extractor: "capitalized",
          chunking,
          onBatchError: "skip",
          output: { path: path.join(dir, "out.ttl"), format: "turtle" }
        })
        const done = yield* Workflow.execute(run.id)
        assert.strictEqual(done.skippedBatches, 2)
        const ok = done.plan.totalBatches - 2
        assert.strictEqual(done.usage.requests, ok + 2 * 2, "the failed attempts are in the run's usage")
        assert.strictEqual(done.usage.promptTokens, 80 * ok + 160 * 2)
        assert.closeTo(done.usage.costUsd, 0.01 * ok + 0.018 * 2, 1e-9)
        yield* assertNothingLost(done)
        const skipped = (yield* (yield* RunStore).batchPage(run.id, 0, 1))[0]!
        assert.deepStrictEqual(skipped.output, {
          entities: [],
          relations: [],
          usage: { requests: 2, promptTokens: 160, completionTokens: 20, costUsd: 0.018 }
        })

        // Retried and failing again: still skipped, and the retry's spend is counted too.
        const again = yield* Workflow.execute(run.id, { retrySkipped: true })
        assert.strictEqual(again.skippedBatches, 2)
        assert.strictEqual(again.usage.requests, ok + 2 * 2 * 2)
        yield* assertNothingLost(again)
        const twice = (yield* (yield* RunStore).batchPage(run.id, 0, 1))[0]!
        assert.deepInclude(twice.output.usage, { requests: 4, promptTokens: 320, completionTokens: 40 })
        return run.id
      }).pipe(Effect.provide(storeLayer(db, [meteredFailingOn(new Set([1, 3]))])))

      const healed = yield* Workflow.execute(runId, { retrySkipped: true }).pipe(
        Effect.provide(storeLayer(db, [meteredFailingOn(new Set())]))
      )
      assert.strictEqual(healed.skippedBatches, 0)
      assert.strictEqual(healed.usage.requests, healed.plan.totalBatches + 2 * 2 * 2)
      yield* assertNothingLost(healed).pipe(Effect.provide(storeLayer(db)))
    }))

  it.scoped("skip completes with a partial artifact and a manifest; retrySkipped restores the full artifact", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const db = path.join(dir, "q.db")
      const clean = path.join(dir, "clean.ttl")
      const partial = path.join(dir, "partial.ttl")
      const cleanRun = yield* Effect.gen(function*() {
        const run = yield* Workflow.create({
          input: text,
          extractor: "capitalized",
          chunking,
          output: { path: clean, format: "turtle" }
        })
        return yield* Workflow.execute(run.id)
      }).pipe(Effect.provide(storeLayer(path.join(dir, "clean.db"))))
      assert.strictEqual(cleanRun.status, "completed")

      const runId = yield* Effect.gen(function*() {
        const run = yield* Workflow.create({
          input: text,
          extractor: "capitalized",
          chunking,
          onBatchError: "skip",
          output: { path: partial, format: "turtle" }
        })
        const done = yield* Workflow.execute(run.id)
        assert.strictEqual(done.status, "completed")
        assert.strictEqual(done.skippedBatches, 2)
        const skipped = yield* (yield* RunStore).skippedBatches(run.id)
        assert.deepStrictEqual(skipped.map((s) => s.batchIndex), [1, 3])
        return run.id
      }).pipe(Effect.provide(storeLayer(db, [failingOn(new Set([1, 3]))])))

      const manifest = JSON.parse(fs.readFileSync(Merge.manifestPath(partial), "utf8"))
      assert.deepStrictEqual(manifest.skipped.map((s: { batch: number }) => s.batch), [1, 3])
      assert.include(manifest.skipped[0].error, "scripted")
      assert.notStrictEqual(fs.readFileSync(partial, "utf8"), fs.readFileSync(clean, "utf8"))

      const retried = yield* Workflow.execute(runId, { retrySkipped: true }).pipe(
        Effect.provide(storeLayer(db, [failingOn(new Set())]))
      )
      assert.strictEqual(retried.status, "completed")
      assert.strictEqual(retried.skippedBatches, 0)
      assert.strictEqual(retried.digest, cleanRun.digest, "rechained digest equals a clean run's")
      assert.strictEqual(fs.readFileSync(partial, "utf8"), fs.readFileSync(clean, "utf8"))
      assert.isFalse(fs.existsSync(Merge.manifestPath(partial)))
    }))

  it.scoped("fail policy fails the run, keeps committed batches, and resume completes", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const db = path.join(dir, "q.db")
      const out = path.join(dir, "out.ttl")
      const runId = yield* Effect.gen(function*() {
        const run = yield* Workflow.create({
          input: text,
          extractor: "capitalized",
          chunking,
          output: { path: out, format: "turtle" }
        })
        const exit = yield* Effect.exit(Workflow.execute(run.id))
        assert.isTrue(Exit.isFailure(exit))
        const failed = yield* (yield* RunStore).getRun(run.id)
        assert.strictEqual(failed.status, "failed")
        assert.strictEqual(failed.committedBatches, 2)
        assert.deepStrictEqual(Option.getOrUndefined(failed.failureReason), "ExtractorError")
        return run.id
      }).pipe(Effect.provide(storeLayer(db, [failingOn(new Set([2]))])))
      const done = yield* Workflow.execute(runId).pipe(Effect.provide(storeLayer(db, [failingOn(new Set())])))
      assert.strictEqual(done.status, "completed")
    }))
})

describe("budgets", () => {
  it.scoped("refuse a limit that is no budget, stop before exceeding, count across restarts, keep the budget on a resume without one, resume with a higher one or none", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const out = path.join(dir, "out.ttl")
      yield* Effect.gen(function*() {
        const store = yield* RunStore
        const run = yield* Workflow.create({
          input: text,
          extractor: "capitalized",
          chunking,
          output: { path: out, format: "turtle" }
        })
        assert.isTrue(run.plan.totalBatches > 6)
        // A limit that is no budget is refused before anything is written.
        for (
          const [budget, message] of [
            [{ maxCostUsd: -1 }, "maxCostUsd must be a number above 0, got -1"],
            [{ maxCostUsd: Number.NaN }, "maxCostUsd must be a number above 0, got NaN"],
            [{ maxTokens: 1.5 }, "maxTokens must be a whole number above 0, got 1.5"]
          ] as const
        ) {
          const refused = yield* Effect.exit(Workflow.execute(run.id, { budget }))
          const defect = Exit.isFailure(refused) ? Option.getOrUndefined(Cause.dieOption(refused.cause)) : undefined
          assert.instanceOf(defect, Cause.IllegalArgumentException)
          assert.strictEqual(defect.message, `Workflow.execute: ${message}`)
        }
        const untouched = yield* store.getRun(run.id)
        assert.deepStrictEqual([untouched.status, untouched.budget], ["pending", Option.none()])
        assert.strictEqual((yield* store.attemptTotals(run.id)).requests, 0)

        const exit = yield* Effect.exit(Workflow.execute(run.id, { budget: { maxCostUsd: 0.035 } }))
        assert.isTrue(Exit.isFailure(exit))
        const stopped = yield* store.getRun(run.id)
        assert.strictEqual(stopped.status, "failed")
        assert.strictEqual(Option.getOrUndefined(stopped.failureReason), "budget")
        // 3 batches cost 0.03; a 4th would reach 0.04 > 0.035.
        assert.strictEqual(stopped.committedBatches, 3)
        assert.isAtMost((yield* store.attemptTotals(run.id)).costUsd, 0.035)
        assert.deepStrictEqual(stopped.budget, Option.some({ maxCostUsd: 0.035 }))
        assert.deepStrictEqual(RunView.limitsToRaise(stopped), ["maxCostUsd"])

        // A resume that gives no budget keeps the run's: it stops again at once, nothing extracted.
        const kept = yield* Effect.exit(Workflow.execute(run.id))
        assert.isTrue(Exit.isFailure(kept))
        const again = yield* store.getRun(run.id)
        assert.deepStrictEqual([again.status, Option.getOrUndefined(again.failureReason)], ["failed", "budget"])
        assert.strictEqual(again.committedBatches, 3)
        assert.strictEqual((yield* store.attemptTotals(run.id)).requests, 3)

        // A budget given replaces the run's whole: the cost limit is gone, the token limit stops it.
        const tokens = yield* Effect.exit(Workflow.execute(run.id, { budget: { maxTokens: 450 } }))
        assert.isTrue(Exit.isFailure(tokens))
        assert.strictEqual((yield* store.getRun(run.id)).committedBatches, 4)

        const byTokens = yield* store.getRun(run.id)
        assert.deepStrictEqual(byTokens.budget, Option.some({ maxTokens: 450 }))
        assert.deepStrictEqual(RunView.limitsToRaise(byTokens), ["maxTokens"])

        const higher = yield* Effect.exit(Workflow.execute(run.id, { budget: { maxCostUsd: 0.065 } }))
        assert.isTrue(Exit.isFailure(higher))
        assert.strictEqual((yield* store.getRun(run.id)).committedBatches, 6)

        // An empty budget lifts the run's: it goes on to the end without limits.
        const done = yield* Workflow.execute(run.id, { budget: {} })
        assert.strictEqual(done.status, "completed")
        assert.deepStrictEqual(RunView.limitsToRaise(done), [])
        assert.isTrue(Option.isNone(done.budget))
        assert.strictEqual(done.usage.requests, done.plan.totalBatches)
        assert.strictEqual(done.usage.promptTokens, 80 * done.plan.totalBatches)
        assert.closeTo(done.usage.costUsd, 0.01 * done.plan.totalBatches, 1e-9)
        const attempts = yield* store.attemptTotals(run.id)
        assert.strictEqual(attempts.requests, done.plan.totalBatches)
      }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"), [metered])))
    }))
})

describe("deadline and extractor status", () => {
  it.live("a run past its deadline fails with reason deadline and resumes to completion", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const slow: Extractor.Extractor = {
        ...CapitalizedExtractor.make(),
        extract: (input) =>
          Effect.gen(function*() {
            if (input.reportStatus) yield* input.reportStatus({ circuit: "closed", batch: String(input.batchIndex) })
            yield* Effect.sleep(40)
            return CapitalizedExtractor.extractMentions(input)
          })
      }
      yield* Effect.gen(function*() {
        const store = yield* RunStore
        const run = yield* Workflow.create({
          input: text,
          extractor: "capitalized",
          chunking,
          output: { path: path.join(dir, "out.ttl"), format: "turtle" }
        })
        const exit = yield* Effect.exit(Workflow.execute(run.id, { deadlineMs: 100 }))
        assert.isTrue(Exit.isFailure(exit))
        const stopped = yield* store.getRun(run.id)
        assert.strictEqual(stopped.status, "failed")
        assert.strictEqual(Option.getOrUndefined(stopped.failureReason), "deadline")
        assert.isBelow(stopped.committedBatches, stopped.plan.totalBatches)
        assert.strictEqual(stopped.extractorStatus.circuit, "closed")
        const done = yield* Workflow.execute(run.id)
        assert.strictEqual(done.status, "completed")
        assert.strictEqual(done.extractorStatus.batch, String(done.plan.totalBatches - 1))
      }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"), [slow])))
    }).pipe(Effect.scoped))
})
