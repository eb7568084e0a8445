import { assert, describe, it } from "@effect/vitest"
import type * as Extractor from "@quarry/core/Extractor"
import { type OutputFormat, RunId } from "@quarry/core/Run"
import * as RunStore from "@quarry/core/RunStore"
import * as Workflow from "@quarry/core/Workflow"
import * as WorkflowManager from "@quarry/core/WorkflowManager"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import * as fs from "node:fs"
import * as path from "node:path"
import {
  cleanArtifact,
  countRows,
  failingAt,
  makeGate,
  readBytes,
  readText,
  scriptedExtractor,
  sharedData,
  storeLayer,
  tempDir
} from "./fixtures.js"

const docA = readText(sharedData("texts", "long-multi-chapter.txt"))
const docB = readText(sharedData("texts", "long-chapter-001.txt"))
const chunking = { windowSize: 300, overlap: 50, batchSize: 2 }

const startOptions = (
  dir: string,
  id: string,
  input: string,
  format: OutputFormat = "turtle"
): Workflow.CreateOptions => ({
  runId: RunId.make(id),
  input,
  extractor: "capitalized",
  chunking,
  output: { path: path.join(dir, `${id}.${format}`), format }
})

/** An extractor that runs every gate's script in turn. */
const gated = (...befores: ReadonlyArray<(input: Extractor.BatchInput) => Effect.Effect<void>>) =>
  scriptedExtractor({ before: (input) => Effect.forEach(befores, (before) => before(input), { discard: true }) })

describe("WorkflowManager", () => {
  it.scoped("a duplicate start or resume while the run is active returns the same run (one fiber)", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const gate = yield* makeGate(1)
      const extracted: Array<number> = []
      const extractor = gated((input) => Effect.sync(() => extracted.push(input.batchIndex)), gate.before)
      yield* Effect.gen(function*() {
        const manager = yield* WorkflowManager.make()
        const options = startOptions(dir, "dup", docA)
        const first = yield* manager.start(options)
        yield* gate.reached
        const second = yield* manager.start(options)
        const [third, fourth] = yield* Effect.all([manager.resume(first.runId), manager.resume(first.runId)], {
          concurrency: "unbounded"
        })
        for (const handle of [second, third, fourth]) {
          assert.strictEqual(handle.runId, first.runId)
          assert.strictEqual(handle.fiber, first.fiber)
        }
        assert.deepStrictEqual(yield* manager.active, [first.runId])
        yield* gate.open
        const done = yield* manager.await(first.runId)
        assert.strictEqual(done.status, "completed")
        // Every batch was extracted exactly once.
        assert.deepStrictEqual(extracted, Array.from({ length: done.plan.totalBatches }, (_, i) => i))
        assert.deepStrictEqual(yield* manager.active, [])
      }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"), [extractor])))
    }))

  it.scoped("cancel records cancelled; the run resumes afterwards to the clean artifact", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const clean = yield* cleanArtifact(dir, "cancel", { input: docA, extractor: "capitalized", chunking })
      const gate = yield* makeGate(2)
      yield* Effect.gen(function*() {
        const manager = yield* WorkflowManager.make()
        const store = yield* RunStore.RunStore
        const options = startOptions(dir, "cancel", docA)
        const { runId } = yield* manager.start(options)
        yield* gate.reached
        const cancelled = yield* manager.cancel(runId)
        assert.strictEqual(cancelled.status, "cancelled")
        assert.isTrue(Option.isNone(cancelled.lease))
        assert.deepStrictEqual(yield* manager.active, [])
        const error = yield* Effect.flip(manager.await(runId))
        assert.strictEqual(error._tag, "RunCancelled")
        assert.strictEqual((yield* store.getRun(runId)).status, "cancelled")

        yield* gate.open
        yield* manager.resume(runId)
        const done = yield* manager.await(runId)
        assert.strictEqual(done.status, "completed")
        assert.deepStrictEqual(readBytes(options.output.path), clean)
      }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"), [gated(gate.before)])))
    }))

  it.scoped("a request at another version does not join the active execution: it follows its end, then executes", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const clean = yield* cleanArtifact(dir, "next", { input: docA, extractor: "capitalized", chunking })
      const gate = yield* makeGate(2)
      yield* Effect.gen(function*() {
        const manager = yield* WorkflowManager.make()
        const store = yield* RunStore.RunStore
        const options = startOptions(dir, "next", docA)
        const first = yield* manager.start(options)
        yield* gate.reached
        // As a cluster's `Execute` sent once the cancel below is stored (it moves the version on by one), delivered
        // while the cancelled execution is still active here.
        const version = (yield* store.getRun(first.runId)).statusVersion + 1
        const next = yield* Effect.fork(manager.resume(first.runId, { requestedVersion: version }))
        yield* Effect.yieldNow()
        assert.isNull(next.unsafePoll(), "it joined the active execution")
        yield* gate.open
        yield* manager.cancel(first.runId)
        const handle = yield* Fiber.join(next)
        assert.notStrictEqual(handle.fiber, first.fiber)
        const done = yield* manager.await(first.runId)
        assert.strictEqual(done.status, "completed")
        assert.deepStrictEqual(readBytes(options.output.path), clean)
      }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"), [gated(gate.before)])))
    }))

  it.scopedLive("await of a failing run gives its typed error, and the failure is recorded", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const gate = yield* makeGate(2)
      // Batch 2 waits for the gate, then fails: `await` is already joined when the error happens.
      const extractor = failingAt(2, { before: gate.before })
      yield* Effect.gen(function*() {
        const manager = yield* WorkflowManager.make()
        const store = yield* RunStore.RunStore
        const { runId } = yield* manager.start(startOptions(dir, "fails", docA))
        yield* gate.reached
        yield* Effect.fork(Effect.delay(gate.open, "50 millis"))
        const error = yield* Effect.flip(manager.await(runId))
        assert.strictEqual(error._tag, "ExtractorError")
        if (error._tag === "ExtractorError") assert.strictEqual(error.batchIndex, 2)

        const run = yield* store.getRun(runId)
        assert.strictEqual(run.status, "failed")
        assert.strictEqual(run.committedBatches, 2)
        assert.deepStrictEqual(run.failureReason, Option.some("ExtractorError"))
        assert.include(Option.getOrElse(run.lastError, () => ""), "scripted failure on batch 2")
        const errors = yield* store.errors(runId)
        assert.deepStrictEqual(errors.map((e) => e.reason), ["ExtractorError"])
        assert.include(errors[0]!.message, "scripted failure on batch 2")
        assert.strictEqual(yield* countRows("run_errors", runId), 1)
        // Once the fiber is gone, this manager still gives the typed error; another one, the recorded failure.
        assert.deepStrictEqual(yield* manager.active, [])
        const again = yield* Effect.flip(manager.await(runId))
        assert.strictEqual(again, error)
        const other = yield* WorkflowManager.make()
        const recorded = yield* Effect.flip(other.await(runId))
        assert.strictEqual(recorded._tag, "RunFailed")
        if (recorded._tag === "RunFailed") {
          assert.strictEqual(recorded.reason, "ExtractorError")
          assert.include(recorded.error, "scripted failure on batch 2")
        }
      }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"), [extractor])))
    }))

  it.scoped("awaitIdle waits until no run executes", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const gateA = yield* makeGate(1)
      const gateB = yield* makeGate(1)
      const extractor = gated((input) => input.runId === "idle-a" ? gateA.before(input) : gateB.before(input))
      yield* Effect.gen(function*() {
        const manager = yield* WorkflowManager.make()
        const store = yield* RunStore.RunStore
        yield* manager.awaitIdle // idle at once
        const a = yield* manager.start(startOptions(dir, "idle-a", docA))
        const b = yield* manager.start(startOptions(dir, "idle-b", docB))
        yield* gateA.reached
        yield* gateB.reached
        const idle = yield* Effect.fork(manager.awaitIdle)
        assert.sameMembers([...(yield* manager.active)], [a.runId, b.runId])
        yield* gateA.open
        yield* Fiber.await(a.fiber)
        yield* Effect.yieldNow()
        assert.isTrue(Option.isNone(yield* Fiber.poll(idle)), "one run is still active")
        yield* gateB.open
        yield* Fiber.join(idle)
        assert.deepStrictEqual(yield* manager.active, [])
        assert.strictEqual((yield* store.getRun(a.runId)).status, "completed")
        assert.strictEqual((yield* store.getRun(b.runId)).status, "completed")
      }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"), [extractor])))
    }))

  it.scoped("closing the manager's scope records its runs interrupted; a new manager resumes them identically", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const cleanA = yield* cleanArtifact(dir, "close-a", { input: docA, extractor: "capitalized", chunking })
      const cleanB = yield* cleanArtifact(dir, "close-b", { input: docB, extractor: "capitalized", chunking })
      const gateA = yield* makeGate(3)
      const gateB = yield* makeGate(2)
      const extractor = gated((input) => input.runId === "close-a" ? gateA.before(input) : gateB.before(input))
      yield* Effect.gen(function*() {
        const store = yield* RunStore.RunStore
        const scope = yield* Scope.make()
        const first = yield* WorkflowManager.make({ owner: "first" }).pipe(Scope.extend(scope))
        const a = yield* first.start(startOptions(dir, "close-a", docA))
        const b = yield* first.start(startOptions(dir, "close-b", docB))
        yield* gateA.reached
        yield* gateB.reached
        yield* Scope.close(scope, Exit.void)
        for (const runId of [a.runId, b.runId]) {
          const run = yield* store.getRun(runId)
          assert.strictEqual(run.status, "interrupted")
          assert.isTrue(Option.isNone(run.lease))
          assert.isAbove(run.committedBatches, 0)
          assert.isBelow(run.committedBatches, run.plan.totalBatches)
        }

        yield* gateA.open
        yield* gateB.open
        const second = yield* WorkflowManager.make({ owner: "second" })
        yield* second.resume(a.runId)
        yield* second.resume(b.runId)
        yield* second.awaitIdle
        assert.strictEqual((yield* second.await(a.runId)).status, "completed")
        assert.strictEqual((yield* second.await(b.runId)).status, "completed")
      }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"), [extractor])))
      assert.deepStrictEqual(readBytes(path.join(dir, "close-a.turtle")), cleanA)
      assert.deepStrictEqual(readBytes(path.join(dir, "close-b.turtle")), cleanB)
    }))

  it.scopedLive("per-run isolation: two runs executed concurrently give the artifacts each gives alone", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      // The output depends on the known entities, so any leak between runs would change the bytes.
      const contextual = scriptedExtractor({ contextual: true })
      const aloneA = yield* cleanArtifact(
        dir,
        "alone-a",
        { input: docA, extractor: "capitalized", chunking, concurrency: 2, format: "jsonl" },
        [contextual]
      )
      const aloneB = yield* cleanArtifact(
        dir,
        "alone-b",
        { input: docB, extractor: "capitalized", chunking, concurrency: 2, format: "jsonl" },
        [contextual]
      )
      let inFlight = 0
      let overlapped = false
      const interleaving = scriptedExtractor({
        contextual: true,
        before: (input) =>
          Effect.sync(() => {
            inFlight++
            if (inFlight > 2) overlapped = true
          }).pipe(
            Effect.zipRight(Effect.sleep(((input.batchIndex * 7) % 5) * 3)),
            Effect.ensuring(Effect.sync(() => inFlight--))
          )
      })
      yield* Effect.gen(function*() {
        const manager = yield* WorkflowManager.make()
        const a = yield* manager.start({ ...startOptions(dir, "iso-a", docA, "jsonl"), concurrency: 2 })
        const b = yield* manager.start({ ...startOptions(dir, "iso-b", docB, "jsonl"), concurrency: 2 })
        yield* manager.awaitIdle
        assert.strictEqual((yield* manager.await(a.runId)).status, "completed")
        assert.strictEqual((yield* manager.await(b.runId)).status, "completed")
      }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"), [interleaving])))
      assert.isTrue(overlapped, "the two runs must really execute at the same time")
      assert.deepStrictEqual(readBytes(path.join(dir, "iso-a.jsonl")), aloneA)
      assert.deepStrictEqual(readBytes(path.join(dir, "iso-b.jsonl")), aloneB)
    }))

  it.scoped("an output directory that does not exist is refused before any batch is extracted; then the run resumes", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const extracted: Array<number> = []
      const counting = gated((input) => Effect.sync(() => extracted.push(input.batchIndex)))
      const missing = path.join(dir, "not-yet")
      yield* Effect.gen(function*() {
        const manager = yield* WorkflowManager.make()
        const handle = yield* manager.start({ ...startOptions(missing, "nodir", docA) })
        const exit = yield* Effect.exit(manager.await(handle.runId))
        assert.isTrue(Exit.isFailure(exit))
        const error = Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined
        assert.strictEqual(error?._tag, "MergeError")
        assert.strictEqual(
          error?.message,
          `could not write the artifact ${path.join(missing, "nodir.turtle")}: its directory ${missing} does not ` +
            `exist; create it, then resume the run`
        )
        assert.deepStrictEqual(extracted, [], "nothing is extracted for an artifact that cannot be written")
        const stored = yield* (yield* RunStore.RunStore).getRun(handle.runId)
        assert.strictEqual(stored.committedBatches, 0)
        fs.mkdirSync(missing)
        yield* manager.resume(handle.runId)
        const done = yield* manager.await(handle.runId)
        assert.strictEqual(done.status, "completed")
        assert.strictEqual(extracted.length, done.plan.totalBatches)
        assert.isTrue(fs.statSync(path.join(missing, "nodir.turtle")).isFile())
      }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"), [counting])))
    }))

  describe("await after the run's fiber ended", () => {
    it.scoped("gives a failure of prepare (PlanMismatch) as it was, not the stored status", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const db = path.join(dir, "q.db")
        const run = yield* Workflow.create(startOptions(dir, "mismatch", docA)).pipe(Effect.provide(storeLayer(db)))
        const newer = scriptedExtractor({ version: "999" })
        yield* Effect.gen(function*() {
          const manager = yield* WorkflowManager.make()
          yield* manager.resume(run.id)
          yield* manager.awaitIdle
          assert.deepStrictEqual(yield* manager.active, [])
          const error = yield* Effect.flip(manager.await(run.id))
          assert.strictEqual(error._tag, "PlanMismatch")
          if (error._tag === "PlanMismatch") assert.strictEqual(error.current, "999")
          // Nothing was claimed or recorded: the store still says pending.
          assert.strictEqual((yield* (yield* RunStore.RunStore).getRun(run.id)).status, "pending")
        }).pipe(Effect.provide(storeLayer(db, [newer])))
      }))

    it.scoped("gives a failure of claim (RunLocked) as it was; the bound keeps only the newest exits", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        yield* Effect.gen(function*() {
          const store = yield* RunStore.RunStore
          const manager = yield* WorkflowManager.make({ owner: "late", recentExits: 1 })
          const held = yield* Workflow.create(startOptions(dir, "held-elsewhere", docA))
          yield* store.claim(held.id, "someone-else", 60_000)
          yield* manager.resume(held.id)
          yield* manager.awaitIdle
          const locked = yield* Effect.flip(manager.await(held.id))
          assert.strictEqual(locked._tag, "RunLocked")
          if (locked._tag === "RunLocked") assert.strictEqual(locked.owner, "someone-else")

          // A second run ends here: with room for one exit, the first run's await falls back to the store.
          const other = yield* manager.start(startOptions(dir, "second", docB))
          assert.strictEqual((yield* manager.await(other.runId)).status, "completed")
          const stale = yield* Effect.flip(manager.await(held.id))
          assert.strictEqual(stale._tag, "InvalidRunState")
        }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"))))
      }))
  })

  describe("lease", () => {
    it.scoped("a second manager cannot execute a run another live manager holds", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const gate = yield* makeGate(1)
        yield* Effect.gen(function*() {
          const store = yield* RunStore.RunStore
          const holder = yield* WorkflowManager.make({ owner: "holder", leaseMs: 60_000 })
          const other = yield* WorkflowManager.make({ owner: "other", leaseMs: 60_000 })
          const { runId } = yield* holder.start(startOptions(dir, "held", docA))
          yield* gate.reached
          const lease = Option.getOrThrow((yield* store.getRun(runId)).lease)
          const attempt = yield* other.resume(runId)
          const error = yield* Effect.flip(Fiber.join(attempt.fiber))
          assert.strictEqual(error._tag, "RunLocked")
          if (error._tag === "RunLocked") {
            assert.strictEqual(error.owner, "holder")
            assert.strictEqual(error.expiresAt, lease.expiresAt)
          }
          // The refused attempt recorded nothing over the holder's run.
          const run = yield* store.getRun(runId)
          assert.strictEqual(run.status, "running")
          assert.deepStrictEqual(Option.map(run.lease, (l) => l.owner), Option.some("holder"))
          yield* gate.open
          assert.strictEqual((yield* holder.await(runId)).status, "completed")
        }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"), [gated(gate.before)])))
      }))

    it.scoped("after the lease of a dead owner expires, another manager takes the run over", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const clean = yield* cleanArtifact(dir, "orphan", { input: docA, extractor: "capitalized", chunking })
        const leaseMs = 5_000
        yield* Effect.gen(function*() {
          const store = yield* RunStore.RunStore
          const run = yield* Workflow.create(startOptions(dir, "orphan", docA))
          // A process claimed the run and died without recording anything.
          const claimed = yield* store.claim(run.id, "dead-process", leaseMs)
          const expiresAt = Option.getOrThrow(claimed.run.lease).expiresAt
          const rescuer = yield* WorkflowManager.make({ owner: "rescuer", leaseMs })
          const refused = yield* Effect.flip(Fiber.join((yield* rescuer.resume(run.id)).fiber))
          assert.strictEqual(refused._tag, "RunLocked")
          if (refused._tag === "RunLocked") {
            assert.strictEqual(refused.owner, "dead-process")
            assert.strictEqual(refused.expiresAt, expiresAt)
          }
          yield* TestClock.adjust(leaseMs + 1)
          yield* rescuer.resume(run.id)
          const done = yield* rescuer.await(run.id)
          assert.strictEqual(done.status, "completed")
          assert.deepStrictEqual(readBytes(run.plan.outputPath), clean)
        }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"))))
      }))
  })
})
