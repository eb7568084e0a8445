import { assert, describe, it } from "@effect/vitest"
import * as CapitalizedExtractor from "@quarry/core/CapitalizedExtractor"
import * as Database from "@quarry/core/Database"
import * as Extractor from "@quarry/core/Extractor"
import { RunId } from "@quarry/core/Run"
import { RunStore } from "@quarry/core/RunStore"
import * as SqliteRunStore from "@quarry/core/SqliteRunStore"
import * as Workflow from "@quarry/core/Workflow"
import * as RunEvents from "@quarry/server/RunEvents"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Ref from "effect/Ref"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as os from "node:os"
import * as path from "node:path"

// A real SQLite file (ephemeral) and the real store; only its reads of the run are counted.
const layer = Layer.mergeAll(SqliteRunStore.layer, Extractor.layerRegistry(CapitalizedExtractor.make())).pipe(
  Layer.provideMerge(Database.layerEphemeral)
)

const countingStore = (reads: Ref.Ref<number>) =>
  Effect.map(
    RunStore,
    (store) =>
      RunStore.of({
        ...store,
        getRun: (runId) => Effect.zipRight(Ref.update(reads, (n) => n + 1), store.getRun(runId))
      })
  )

/** Lets the forked stream run until it waits on the clock or a notice. */
const settle = Effect.repeatN(Effect.yieldNow(), 100)

const pendingRun = Workflow.create({
  input: "Captain Ahab met Ishmael in Nantucket. ".repeat(20),
  extractor: "capitalized",
  output: { path: path.join(os.tmpdir(), "never-written.ttl"), format: "turtle" }
})

const follow = (runId: RunId, local: Option.Option<PubSub.PubSub<RunId>>, reads: Ref.Ref<number>) =>
  Effect.gen(function*() {
    const store = yield* countingStore(reads)
    return yield* RunEvents.stream(runId, {
      lastEventId: Option.none(),
      pollMs: 200,
      local,
      localPollMs: 5_000,
      heartbeatMs: 60_000,
      until: Effect.never
    }).pipe(Stream.provideService(RunStore, store), Stream.runDrain, Effect.fork)
  })

describe("RunEvents", () => {
  it.scoped("a run executing here is read on its change notices and a slow safety tick, not polled", () =>
    Effect.gen(function*() {
      const run = yield* pendingRun
      const reads = yield* Ref.make(0)
      const changes = yield* PubSub.sliding<RunId>(16)
      const fiber = yield* follow(run.id, Option.some(changes), reads)
      yield* settle
      assert.strictEqual(yield* Ref.get(reads), 1)
      // Polling every 200 ms would have read it 20 more times by now.
      yield* TestClock.adjust(4_000)
      yield* settle
      assert.strictEqual(yield* Ref.get(reads), 1)
      yield* PubSub.publish(changes, run.id)
      yield* settle
      assert.strictEqual(yield* Ref.get(reads), 2)
      // Notices of other runs do not make it read this one.
      yield* PubSub.publish(changes, RunId.make("another-run"))
      yield* settle
      assert.strictEqual(yield* Ref.get(reads), 2)
      yield* TestClock.adjust(1_000)
      yield* settle
      assert.strictEqual(yield* Ref.get(reads), 3)
      yield* Fiber.interrupt(fiber)
    }).pipe(Effect.provide(layer)))

  it.scoped("a run owned by another process is polled every pollMs", () =>
    Effect.gen(function*() {
      const run = yield* pendingRun
      const reads = yield* Ref.make(0)
      const fiber = yield* follow(run.id, Option.none(), reads)
      yield* settle
      assert.strictEqual(yield* Ref.get(reads), 1)
      for (let i = 0; i < 5; i++) {
        yield* TestClock.adjust(200)
        yield* settle
      }
      assert.strictEqual(yield* Ref.get(reads), 6)
      yield* Fiber.interrupt(fiber)
    }).pipe(Effect.provide(layer)))
})
