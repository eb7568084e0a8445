import { assert, describe, it } from "@effect/vitest"
import * as Compensation from "@quarry/core/Compensation"
import { RunId } from "@quarry/core/Run"
import * as RunStore from "@quarry/core/RunStore"
import * as Workflow from "@quarry/core/Workflow"
import * as WorkflowManager from "@quarry/core/WorkflowManager"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as path from "node:path"
import { makeGate, readText, scriptedExtractor, sharedData, storeLayer, tempDir } from "./fixtures.js"

const runId = RunId.make("undo")

describe("Compensation", () => {
  it.effect("runs every step newest first, all of them when some fail, and again only the failed ones", () =>
    Effect.gen(function*() {
      const undone: Array<string> = []
      let flaky = 0
      const step = (name: string, fails = false): Compensation.Step => ({
        name,
        undo: Effect.suspend(() => {
          undone.push(name)
          return fails && flaky++ === 0 ? Effect.fail(new Error(`${name} refused`)) : Effect.void
        })
      })
      const compensations = yield* Compensation.make(runId)
      yield* compensations.register(step("upload a"))
      yield* compensations.register(step("job b", true))
      yield* compensations.register(step("upload c"))
      const error = yield* Effect.flip(compensations.run("cancelled by the user"))
      assert.deepStrictEqual(undone, ["upload c", "job b", "upload a"])
      assert.deepStrictEqual(error.failures, [{ step: "job b", error: "job b refused" }])
      assert.strictEqual(error.stoppedBecause, "cancelled by the user")
      assert.include(error.message, "cancelled by the user")
      assert.include(error.message, "job b (job b refused)")

      yield* compensations.run("cancelled again")
      assert.deepStrictEqual(undone, ["upload c", "job b", "upload a", "job b"])
      yield* compensations.run("nothing left")
      assert.strictEqual(undone.length, 4)
    }))
})

const text = readText(sharedData("texts", "long-multi-chapter.txt"))

describe("Compensation in a workflow", () => {
  const start = (dir: string, manager: WorkflowManager.WorkflowManager["Type"], steps: Array<string>, fail: string) =>
    manager.start({
      runId,
      input: text,
      extractor: "capitalized",
      chunking: { windowSize: 300, overlap: 50, batchSize: 2 },
      output: { path: path.join(dir, "out.ttl"), format: "turtle" }
    }, {
      compensations: [{
        name: "remove the application's upload",
        undo: Effect.sync(() => steps.push("application"))
      }, {
        name: "release the application's job",
        undo: fail === "application" ? Effect.fail(new Error("job service unreachable")) : Effect.void
      }]
    })

  /** Registers one undo step per batch, recording its index when it runs; `fail` makes that batch's step fail. */
  const undoingExtractor = (steps: Array<string>, fail: string, before: ReturnType<typeof makeGate>) =>
    Effect.map(before, (gate) => ({
      gate,
      extractor: scriptedExtractor({
        before: (input) =>
          Effect.zipRight(
            input.compensate?.({
              name: `delete upload of batch ${input.batchIndex}`,
              undo: String(input.batchIndex) === fail ?
                Effect.fail(new Error(`upload ${input.batchIndex} is locked`)) :
                Effect.sync(() => steps.push(`batch ${input.batchIndex}`))
            }) ?? Effect.dieMessage("no compensate in a workflow"),
            gate.before(input)
          )
      })
    }))

  it.scoped("a cancelled run undoes every batch's and the application's steps, newest first", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const steps: Array<string> = []
      const { extractor, gate } = yield* undoingExtractor(steps, "none", makeGate(2))
      yield* Effect.gen(function*() {
        const manager = yield* WorkflowManager.make()
        yield* start(dir, manager, steps, "none")
        yield* gate.reached
        const cancelled = yield* manager.cancel(runId)
        assert.strictEqual(cancelled.status, "cancelled")
        assert.isTrue(Option.isNone(cancelled.failureReason))
        assert.deepStrictEqual(steps, ["batch 2", "batch 1", "batch 0", "application"])
        assert.strictEqual((yield* Effect.flip(manager.await(runId)))._tag, "RunCancelled")
      }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"), [extractor])))
    }))

  it.scoped("a failing step does not hide the cancel: both are recorded, and await reports both", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const steps: Array<string> = []
      const { extractor, gate } = yield* undoingExtractor(steps, "1", makeGate(2))
      yield* Effect.gen(function*() {
        const manager = yield* WorkflowManager.make()
        yield* start(dir, manager, steps, "application")
        yield* gate.reached
        const cancelled = yield* manager.cancel(runId)
        // The other steps still ran.
        assert.deepStrictEqual(steps, ["batch 2", "batch 0", "application"])
        assert.strictEqual(cancelled.status, "cancelled")
        assert.deepStrictEqual(cancelled.failureReason, Option.some("compensation_failed"))
        const recorded = Option.getOrElse(cancelled.lastError, () => "")
        assert.include(recorded, "stopped (cancelled)")
        assert.include(recorded, "delete upload of batch 1 (upload 1 is locked)")
        assert.include(recorded, "release the application's job (job service unreachable)")
        const errors = yield* (yield* RunStore.RunStore).errors(runId)
        assert.deepStrictEqual(errors.map((e) => e.reason), ["compensation_failed"])
        const error = yield* Effect.flip(manager.await(runId))
        assert.strictEqual(error._tag, "RunFailed")
        if (error._tag === "RunFailed") assert.strictEqual(error.reason, "compensation_failed")
      }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"), [extractor])))
    }))

  it.scoped("a cancel seen at a checkpoint (another process asked) fails execute with CompensationFailed", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const steps: Array<string> = []
      const { extractor, gate } = yield* undoingExtractor(steps, "0", makeGate(2))
      yield* Effect.gen(function*() {
        const store = yield* RunStore.RunStore
        yield* Workflow.create({
          runId,
          input: text,
          extractor: "capitalized",
          chunking: { windowSize: 300, overlap: 50, batchSize: 2 },
          output: { path: path.join(dir, "out.ttl"), format: "turtle" }
        })
        const execution = yield* Effect.fork(Workflow.execute(runId))
        yield* gate.reached
        yield* store.requestCancel(runId)
        yield* gate.open
        const error = yield* Effect.flip(Fiber.join(execution))
        assert.strictEqual(error._tag, "CompensationFailed")
        if (error._tag === "CompensationFailed") {
          assert.include(error.stoppedBecause, "was cancelled")
          assert.deepStrictEqual(error.failures.map((f) => f.step), ["delete upload of batch 0"])
        }
        assert.deepStrictEqual(steps, ["batch 2", "batch 1"])
        const run = yield* store.getRun(runId)
        assert.strictEqual(run.status, "cancelled")
        assert.strictEqual(run.committedBatches, 3)
        assert.deepStrictEqual(run.failureReason, Option.some("compensation_failed"))
      }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"), [extractor])))
    }))
})
