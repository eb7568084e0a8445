import { assert, describe, it } from "@effect/vitest"
import type * as Extractor from "@quarry/core/Extractor"
import * as Merge from "@quarry/core/Merge"
import * as RunStore from "@quarry/core/RunStore"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import * as fs from "node:fs"
import * as path from "node:path"
import { storeLayer, tempDir } from "./fixtures.js"
import { newRun } from "./RunStoreSuite.js"

const leaseMs = 1_000

const output: Extractor.BatchOutput = {
  entities: [{
    label: "Ishmael",
    type: "http://xmlns.com/foaf/0.1/Person",
    span: { start: 0, end: 7 },
    confidence: 1,
    attributes: {}
  }],
  relations: []
}

/** A run with one committed batch whose lease `first` held and `second` took over once it expired. */
const takenOver = Effect.gen(function*() {
  const store = yield* RunStore.RunStore
  const run = yield* store.createRun(newRun("fenced", { totalBatches: 1 }))
  const first = Option.getOrThrow((yield* store.claim(run.id, "first", leaseMs)).holder)
  yield* store.commitBatch({ runId: run.id, holder: first, batchIndex: 0, output, attempts: 1, durationMs: 0 })
  yield* TestClock.adjust(leaseMs + 1)
  const second = Option.getOrThrow((yield* store.claim(run.id, "second", leaseMs)).holder)
  return { store, runId: run.id, first, second }
})

const temps = (dir: string) => fs.readdirSync(dir).filter((name) => name.endsWith(".tmp")).sort()

describe("Merge fencing", () => {
  it.scoped("a merge that lost its lease never replaces the artifact, and leaves no temp file", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const artifact = path.join(dir, "out.nt")
      yield* Effect.gen(function*() {
        const { first, runId, second, store } = yield* takenOver
        fs.writeFileSync(artifact, "the new holder's artifact\n")
        const merge = (holder: RunStore.LeaseHolder) =>
          Merge.merge({
            runId,
            path: artifact,
            format: "ntriples",
            ontology: Option.none(),
            fence: Effect.asVoid(store.heartbeat(runId, holder, leaseMs))
          })
        const lost = yield* Effect.flip(merge(first))
        assert.strictEqual(lost._tag, "RunLocked")
        assert.strictEqual(fs.readFileSync(artifact, "utf8"), "the new holder's artifact\n")
        assert.deepStrictEqual(temps(dir), [])

        const written = yield* merge(second)
        assert.strictEqual(written.bytes, fs.statSync(artifact).size)
        assert.include(fs.readFileSync(artifact, "utf8"), "Ishmael")
      }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"))))
    }))

  it.scoped("sweeps only the temp files older than the lease: a younger one may be a live merge's", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const artifact = path.join(dir, "out.nt")
      const stale = path.join(dir, ".out.nt.0123456789ab.tmp")
      const live = path.join(dir, ".out.nt.ba9876543210.tmp")
      const other = path.join(dir, ".out.nt.notours.tmp")
      for (const file of [stale, live, other]) fs.writeFileSync(file, "partial")
      const old = new Date(Date.now() - 60_000)
      fs.utimesSync(stale, old, old)
      fs.utimesSync(other, old, old)
      yield* Effect.gen(function*() {
        const { runId } = yield* takenOver
        yield* Merge.merge({ runId, path: artifact, format: "ntriples", ontology: Option.none(), staleAfterMs: 30_000 })
      }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"))))
      assert.deepStrictEqual(temps(dir), [path.basename(other), path.basename(live)].sort())
    }))
})
