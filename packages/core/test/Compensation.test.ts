import { assert, describe, it } from "@effect/vitest"
import * as Compensation from "@quarry/core/Compensation"
import { RunId } from "@quarry/core/Run"
import * as RunStore from "@quarry/core/RunStore"
import * as Workflow from "@quarry/core/Workflow"
import * as WorkflowManager from "@quarry/core/WorkflowManager"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as TestClock from "effect/TestClock"
import * as path from "node:path"
import { makeGate, readText, scriptedExtractor, sharedData, storeLayer, tempDir } from "./fixtures.js"

const runId = RunId.make("undo")
const text = readText(sharedData("texts", "long-multi-chapter.txt"))

const createOptions = (dir: string): Workflow.CreateOptions => ({
  runId,
  input: text,
  extractor: "capitalized",
  chunking: { windowSize: 300, overlap: 50, batchSize: 2 },
  output: { path: path.join(dir, "out.ttl"), format: "turtle" }
})

/** What the handlers did, and which payloads they refuse (a cause a test can remove). */
const makeWorld = () => {
  const undone: Array<string> = []
  const refused = new Set<string>()
  const Payload = Schema.Struct({ id: Schema.String })
  const handler = (name: string): Compensation.Handler => ({
    name,
    undo: (payload) =>
      Effect.flatMap(
        Schema.decodeUnknown(Payload)(payload),
        ({ id }) => refused.has(id) ? Effect.fail(new Error(`${id} refused`)) : Effect.sync(() => undone.push(id))
      )
  })
  return { undone, refused, layer: Compensation.layer([handler("delete-upload"), handler("release-job")]) }
}

const stepsOf = Effect.flatMap(RunStore.RunStore, (store) => store.compensationSteps(runId))

describe("Compensation", () => {
  it.scoped("steps are rows: newest first, all of them when some fail, outcomes stored, then only the failed rerun", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const world = makeWorld()
      yield* Effect.gen(function*() {
        yield* Workflow.create(createOptions(dir))
        yield* Compensation.register(runId, { handler: "delete-upload", name: "upload a", payload: { id: "a" } })
        yield* Compensation.register(runId, { handler: "release-job", name: "job b", payload: { id: "b" } })
        yield* Compensation.register(runId, { handler: "not-here", name: "mystery c", payload: { id: "c" } })
        yield* Compensation.register(runId, { handler: "delete-upload", name: "upload d", payload: { id: "d" } })
        world.refused.add("b")

        const error = yield* Effect.flip(Compensation.run(runId, "cancelled by the user"))
        assert.deepStrictEqual(world.undone, ["d", "a"])
        assert.deepStrictEqual(error.failures.map((f) => f.step), ["mystery c", "job b"])
        assert.include(error.failures[0]?.error, `no compensation handler "not-here" is registered in this process`)
        assert.strictEqual(error.failures[1]?.error, "b refused")
        assert.strictEqual(error.stoppedBecause, "cancelled by the user")
        assert.include(error.message, "cancelled by the user")
        assert.include(error.message, "job b (b refused)")
        const steps = yield* stepsOf
        assert.deepStrictEqual(steps.map((s) => s.state), ["done", "failed", "failed", "done"])
        assert.deepStrictEqual(steps[1]?.lastError, Option.some("b refused"))
        assert.strictEqual(Compensation.stateOf(steps), "compensation_failed")

        // The cause of b is removed; c's handler is still missing here: only those two run again.
        world.refused.delete("b")
        const again = yield* Effect.flip(Compensation.run(runId, "retry"))
        assert.deepStrictEqual(again.failures.map((f) => f.step), ["mystery c"])
        assert.deepStrictEqual(world.undone, ["d", "a", "b"])
        const after = yield* stepsOf
        assert.deepStrictEqual(after.map((s) => s.state), ["done", "done", "failed", "done"])
        assert.isTrue(Option.isNone(after[1]?.lastError ?? Option.some("missing")))
      }).pipe(Effect.provide(Layer.merge(storeLayer(path.join(dir, "q.db")), world.layer)))
    }))

  it.scoped("the handlers survive the process: a new store on the same file runs the steps the first one recorded", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const db = path.join(dir, "q.db")
      yield* Effect.gen(function*() {
        yield* Workflow.create(createOptions(dir))
        yield* Compensation.register(runId, { handler: "delete-upload", name: "upload a", payload: { id: "a" } })
      }).pipe(Effect.provide(storeLayer(db)))
      const world = makeWorld()
      yield* Effect.gen(function*() {
        assert.strictEqual(Compensation.stateOf(yield* stepsOf), "pending")
        yield* Compensation.run(runId, "purged")
        assert.deepStrictEqual(world.undone, ["a"])
        assert.strictEqual(Compensation.stateOf(yield* stepsOf), "done")
        yield* Compensation.run(runId, "nothing left")
        assert.deepStrictEqual(world.undone, ["a"])
      }).pipe(Effect.provide(Layer.merge(storeLayer(db), world.layer)))
    }))
})

describe("Compensation in a workflow", () => {
  /** Records one step per batch before it "uploads"; `gate` holds a batch so that the test can cancel it there. */
  const undoingExtractor = (gate: Effect.Effect.Success<ReturnType<typeof makeGate>>) =>
    scriptedExtractor({
      before: (input) =>
        Effect.zipRight(
          input.compensate?.({
            handler: "delete-upload",
            name: `delete upload of batch ${input.batchIndex}`,
            payload: { id: `batch ${input.batchIndex}` }
          }).pipe(Effect.orDie) ?? Effect.dieMessage("no compensate in a workflow"),
          gate.before(input)
        )
    })

  it.scoped("a cancelled run undoes every batch's and the application's steps, newest first", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const world = makeWorld()
      const gate = yield* makeGate(2)
      yield* Effect.gen(function*() {
        const manager = yield* WorkflowManager.make()
        yield* Workflow.create(createOptions(dir))
        yield* Compensation.register(runId, { handler: "release-job", name: "release job", payload: { id: "app" } })
        yield* manager.resume(runId)
        yield* gate.reached
        const cancelled = yield* manager.cancel(runId)
        assert.strictEqual(cancelled.status, "cancelled")
        assert.isTrue(Option.isNone(cancelled.failureReason))
        assert.deepStrictEqual(world.undone, ["batch 2", "batch 1", "batch 0", "app"])
        assert.strictEqual(Compensation.stateOf(yield* stepsOf), "done")
        assert.strictEqual((yield* Effect.flip(manager.await(runId)))._tag, "RunCancelled")
      }).pipe(Effect.provide(Layer.merge(storeLayer(path.join(dir, "q.db"), [undoingExtractor(gate)]), world.layer)))
    }))

  it.scoped("a failing step does not hide the cancel: both are recorded, await reports both, a rerun fixes it", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const world = makeWorld()
      world.refused.add("batch 1")
      world.refused.add("app")
      const gate = yield* makeGate(2)
      yield* Effect.gen(function*() {
        const manager = yield* WorkflowManager.make()
        yield* Workflow.create(createOptions(dir))
        yield* Compensation.register(runId, { handler: "release-job", name: "release job", payload: { id: "app" } })
        yield* manager.resume(runId)
        yield* gate.reached
        const cancelled = yield* manager.cancel(runId)
        // The other steps still ran.
        assert.deepStrictEqual(world.undone, ["batch 2", "batch 0"])
        assert.strictEqual(cancelled.status, "cancelled")
        assert.deepStrictEqual(cancelled.failureReason, Option.some("compensation_failed"))
        const recorded = Option.getOrElse(cancelled.lastError, () => "")
        assert.include(recorded, "stopped (cancelled)")
        assert.include(recorded, "delete upload of batch 1 (batch 1 refused)")
        assert.include(recorded, "release job (app refused)")
        const errors = yield* (yield* RunStore.RunStore).errors(runId)
        assert.deepStrictEqual(errors.map((e) => e.reason), ["compensation_failed"])
        const error = yield* Effect.flip(manager.await(runId))
        assert.strictEqual(error._tag, "RunFailed")
        if (error._tag === "RunFailed") assert.strictEqual(error.reason, "compensation_failed")
        assert.strictEqual(Compensation.stateOf(yield* stepsOf), "compensation_failed")

        world.refused.clear()
        yield* Compensation.run(runId, "retried")
        assert.deepStrictEqual(world.undone, ["batch 2", "batch 0", "batch 1", "app"])
        assert.strictEqual(Compensation.stateOf(yield* stepsOf), "done")
      }).pipe(Effect.provide(Layer.merge(storeLayer(path.join(dir, "q.db"), [undoingExtractor(gate)]), world.layer)))
    }))

  it.scoped("a cancel the next claim honours for a holder that stopped first (paused, dead) undoes its steps there", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const world = makeWorld()
      yield* Effect.gen(function*() {
        const store = yield* RunStore.RunStore
        yield* Workflow.create(createOptions(dir))
        // A holder recorded its steps and was asked to cancel, but stopped before it saw the request.
        yield* store.claim(runId, "stalled", 1_000)
        yield* Compensation.register(runId, { handler: "delete-upload", name: "upload a", payload: { id: "a" } })
        yield* Compensation.register(runId, { handler: "release-job", name: "job b", payload: { id: "b" } })
        assert.isTrue((yield* store.requestCancel(runId)).cancelRequested)
        yield* TestClock.adjust(1_001)
        const error = yield* Effect.flip(Workflow.execute(runId))
        assert.strictEqual(error._tag, "RunCancelled")
        assert.deepStrictEqual(world.undone, ["b", "a"])
        assert.strictEqual(Compensation.stateOf(yield* stepsOf), "done")
        assert.strictEqual((yield* store.getRun(runId)).status, "cancelled")
        // An execution refused because the run was cancelled since it was requested undoes nothing (as a cancel of
        // a run nothing executes does not): its step stays for `quarry cancel --purge`.
        yield* Compensation.register(runId, { handler: "delete-upload", name: "upload c", payload: { id: "c" } })
        assert.strictEqual((yield* Effect.flip(Workflow.execute(runId, { requestedVersion: 0 })))._tag, "RunCancelled")
        assert.deepStrictEqual(world.undone, ["b", "a"])
        assert.strictEqual(Compensation.stateOf(yield* stepsOf), "pending")
      }).pipe(Effect.provide(Layer.merge(storeLayer(path.join(dir, "q.db")), world.layer)))
    }))

  it.scoped("a cancel seen at a checkpoint (another process asked) fails execute with CompensationFailed", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const world = makeWorld()
      world.refused.add("batch 0")
      const gate = yield* makeGate(2)
      yield* Effect.gen(function*() {
        const store = yield* RunStore.RunStore
        yield* Workflow.create(createOptions(dir))
        const execution = yield* Effect.fork(Workflow.execute(runId))
        yield* gate.reached
        yield* store.requestCancel(runId)
        yield* gate.open
        const error = yield* Effect.flip(Fiber.join(execution))
        assert.strictEqual(error._tag, "CompensationFailed")
        if (error._tag === "CompensationFailed") {
          assert.strictEqual(error.stoppedBecause, "cancelled")
          assert.deepStrictEqual(error.failures.map((f) => f.step), ["delete upload of batch 0"])
        }
        assert.deepStrictEqual(world.undone, ["batch 2", "batch 1"])
        const run = yield* store.getRun(runId)
        assert.strictEqual(run.status, "cancelled")
        assert.deepStrictEqual(run.failureReason, Option.some("compensation_failed"))
      }).pipe(Effect.provide(Layer.merge(storeLayer(path.join(dir, "q.db"), [undoingExtractor(gate)]), world.layer)))
    }))
})
