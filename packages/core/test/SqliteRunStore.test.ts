import * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import * as CapitalizedExtractor from "@quarry/core/CapitalizedExtractor"
import * as Database from "@quarry/core/Database"
import { PersistenceError } from "@quarry/core/Errors"
import * as Extractor from "@quarry/core/Extractor"
import type { RunId } from "@quarry/core/Run"
import * as RunStore from "@quarry/core/RunStore"
import * as SqliteRunStore from "@quarry/core/SqliteRunStore"
import * as Workflow from "@quarry/core/Workflow"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { createHash } from "node:crypto"
import * as path from "node:path"
import { cleanArtifact, countRows, readBytes, readText, sharedData, snapshot, tempDir } from "./fixtures.js"
import { newRun, runStoreSuite, syntheticOutput } from "./RunStoreSuite.js"

runStoreSuite(
  "SqliteRunStore",
  (dir) => SqliteRunStore.layer.pipe(Layer.provide(Database.layer(path.join(dir, "q.db"))))
)

const sha256 = (data: string) => createHash("sha256").update(data).digest("hex")

const text = readText(sharedData("texts", "long-multi-chapter.txt"))
const createOptions = {
  input: text,
  extractor: "capitalized",
  chunking: { windowSize: 300, overlap: 50, batchSize: 2 }
} as const
const failAt = 3

/**
 * A store on `filename` whose commit transaction runs `hook` between the batch write and the checkpoint write.
 * The hook gets the transaction's own client, so it can look at what the transaction has written so far.
 */
const layerWithHook = (
  filename: string,
  hook: (sql: SqlClient.SqlClient, commit: RunStore.BatchCommit) => Effect.Effect<void, PersistenceError>
) =>
  Layer.mergeAll(
    Layer.effect(
      RunStore.RunStore,
      Effect.flatMap(SqlClient.SqlClient, (sql) => SqliteRunStore.make({ beforeCheckpoint: (c) => hook(sql, c) }))
    ),
    Extractor.layerRegistry(CapitalizedExtractor.make())
  ).pipe(Layer.provideMerge(Database.layer(filename)))

/** What must hold after batch `failAt` was rolled back: exactly batches `< failAt`, and progress that says so. */
const assertRolledBack = (runId: RunId) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    assert.strictEqual(yield* countRows("batches", runId), failAt)
    assert.strictEqual(yield* countRows("checkpoints", runId), failAt)
    const late = yield* sql<{ n: number }>`SELECT COUNT(*) AS n FROM entities
      WHERE run_id = ${runId} AND first_batch >= ${failAt}`
    assert.strictEqual(late[0]!.n, 0)
    const store = yield* RunStore.RunStore
    const run = yield* store.getRun(runId)
    assert.strictEqual(run.committedBatches, failAt)
    const last = yield* sql<{ digest: string; entity_mentions: number }>`SELECT digest, entity_mentions
      FROM checkpoints WHERE run_id = ${runId} AND batch_index = ${failAt - 1}`
    assert.strictEqual(run.digest, last[0]!.digest)
    assert.strictEqual(run.entityMentions, last[0]!.entity_mentions)
    const sum = yield* sql<{ n: number }>`SELECT SUM(entity_mentions) AS n FROM batches WHERE run_id = ${runId}`
    assert.strictEqual(run.entityMentions, sum[0]!.n)
  })

describe("SqliteRunStore", () => {
  it.scoped("a failure injected before the checkpoint write (hook) leaves neither row; a later execute is identical", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const clean = yield* cleanArtifact(dir, "hook", createOptions)
      const out = path.join(dir, "out.ttl")
      let armed = true
      let batchRowsSeenInside = -1
      const hook = (sql: SqlClient.SqlClient, commit: RunStore.BatchCommit) =>
        !armed || commit.batchIndex !== failAt ? Effect.void : Effect.gen(function*() {
          // Prove the hook sits after the batch write: the transaction sees its own batch row.
          const rows = yield* sql<{ n: number }>`SELECT COUNT(*) AS n FROM batches
            WHERE run_id = ${commit.runId} AND batch_index = ${commit.batchIndex}`.pipe(Effect.orDie)
          batchRowsSeenInside = rows[0]!.n
          return yield* new PersistenceError({ operation: "commitBatch", cause: new Error("injected failure") })
        })
      yield* Effect.gen(function*() {
        const run = yield* Workflow.create({ ...createOptions, output: { path: out, format: "turtle" } })
        assert.isAbove(run.plan.totalBatches, failAt + 1)
        const error = yield* Effect.flip(Workflow.execute(run.id))
        assert.strictEqual(error._tag, "PersistenceError")
        assert.strictEqual(batchRowsSeenInside, 1)
        yield* assertRolledBack(run.id)
        const store = yield* RunStore.RunStore
        assert.strictEqual((yield* store.getRun(run.id)).status, "failed")

        armed = false
        const done = yield* Workflow.execute(run.id)
        assert.strictEqual(done.status, "completed")
        assert.strictEqual(done.committedBatches, run.plan.totalBatches)
      }).pipe(Effect.provide(layerWithHook(path.join(dir, "q.db"), hook)))
      assert.deepStrictEqual(readBytes(out), clean)
    }))

  it.scoped("a failure raised by SQLite on the checkpoint insert (trigger) rolls the batch back; resume is identical", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const clean = yield* cleanArtifact(dir, "trigger", createOptions)
      const out = path.join(dir, "out.ttl")
      yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* sql.unsafe(`CREATE TRIGGER inject_failure BEFORE INSERT ON checkpoints
          WHEN NEW.batch_index = ${failAt} BEGIN SELECT RAISE(ABORT, 'injected failure'); END`)
        const run = yield* Workflow.create({ ...createOptions, output: { path: out, format: "turtle" } })
        const error = yield* Effect.flip(Workflow.execute(run.id))
        assert.strictEqual(error._tag, "PersistenceError")
        assert.include(error.message, "injected failure")
        yield* assertRolledBack(run.id)
        const store = yield* RunStore.RunStore
        const failed = yield* store.getRun(run.id)
        assert.strictEqual(failed.status, "failed")
        assert.include((yield* store.errors(run.id)).map((e) => e.message).join("\n"), "injected failure")

        yield* sql`DROP TRIGGER inject_failure`
        const done = yield* Workflow.execute(run.id)
        assert.strictEqual(done.status, "completed")
      }).pipe(Effect.provide(layerWithHook(path.join(dir, "q.db"), () => Effect.void)))
      assert.deepStrictEqual(readBytes(out), clean)
    }))

  it.scoped("interrupting commitBatch inside its transaction rolls it back; the connection stays usable", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const reached = yield* Deferred.make<void>()
      let armed = true
      const hook = (_: SqlClient.SqlClient, commit: RunStore.BatchCommit) =>
        armed && commit.batchIndex === 2 ?
          Deferred.succeed(reached, undefined).pipe(Effect.zipRight(Effect.never)) :
          Effect.void
      yield* Effect.gen(function*() {
        const store = yield* RunStore.RunStore
        const created = yield* store.createRun(newRun("interrupted"))
        const holder = Option.getOrThrow((yield* store.claim(created.id, "me", 60_000)).holder)
        const commit = (batchIndex: number) =>
          store.commitBatch({
            runId: created.id,
            holder,
            batchIndex,
            output: syntheticOutput(batchIndex),
            attempts: 1,
            durationMs: 1
          })
        yield* commit(0)
        const one = yield* commit(1)
        const before = yield* snapshot(created.id)
        const fiber = yield* Effect.fork(commit(2))
        yield* Deferred.await(reached)
        yield* Fiber.interrupt(fiber)
        assert.deepStrictEqual(yield* snapshot(created.id), before)
        armed = false
        // The same connection commits the batch afterwards: no transaction was left open.
        const two = yield* commit(2)
        assert.strictEqual(two.committedBatches, 3)
        const expected = Extractor.encodeOutput(syntheticOutput(2))
        assert.strictEqual(two.digest, sha256(one.digest + sha256(expected)))
      }).pipe(Effect.provide(layerWithHook(path.join(dir, "q.db"), hook)))
    }))

  it.scoped("a run interrupted inside commitBatch is recorded interrupted and resumes to the clean artifact", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const clean = yield* cleanArtifact(dir, "interrupt", createOptions)
      const out = path.join(dir, "out.ttl")
      const reached = yield* Deferred.make<void>()
      let armed = true
      const hook = (_: SqlClient.SqlClient, commit: RunStore.BatchCommit) =>
        armed && commit.batchIndex === failAt ?
          Deferred.succeed(reached, undefined).pipe(Effect.zipRight(Effect.never)) :
          Effect.void
      yield* Effect.gen(function*() {
        const store = yield* RunStore.RunStore
        const run = yield* Workflow.create({ ...createOptions, output: { path: out, format: "turtle" } })
        const fiber = yield* Effect.fork(Workflow.execute(run.id))
        yield* Deferred.await(reached)
        yield* Fiber.interrupt(fiber)
        yield* assertRolledBack(run.id)
        const interrupted = yield* store.getRun(run.id)
        assert.strictEqual(interrupted.status, "interrupted")
        assert.isTrue(Option.isNone(interrupted.lease))
        armed = false
        const done = yield* Workflow.execute(run.id)
        assert.strictEqual(done.status, "completed")
      }).pipe(Effect.provide(layerWithHook(path.join(dir, "q.db"), hook)))
      assert.deepStrictEqual(readBytes(out), clean)
    }))

  it.scoped("large outputs are stored compressed and read back exactly", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      yield* Effect.gen(function*() {
        const store = yield* RunStore.RunStore
        const sql = yield* SqlClient.SqlClient
        const created = yield* store.createRun(newRun("big", { totalBatches: 2 }))
        const holder = Option.getOrThrow((yield* store.claim(created.id, "me", 60_000)).holder)
        const big: Extractor.BatchOutput = {
          entities: Array.from({ length: 300 }, (_, i) => ({
            label: `Person ${i} 田中優子 Ελένη`,
            type: "http://xmlns.com/foaf/0.1/Person",
            span: { start: i, end: i + 5 },
            confidence: 0.75,
            attributes: { note: "😀".repeat(i % 5) }
          })),
          relations: []
        }
        yield* store.commitBatch({
          runId: created.id,
          holder,
          batchIndex: 0,
          output: big,
          attempts: 1,
          durationMs: 1
        })
        yield* store.commitBatch({
          runId: created.id,
          holder,
          batchIndex: 1,
          output: syntheticOutput(1),
          attempts: 1,
          durationMs: 1
        })
        const encodings = yield* sql<{ encoding: string }>`SELECT encoding FROM batches
          WHERE run_id = ${created.id} ORDER BY batch_index`
        assert.deepStrictEqual(encodings.map((r) => r.encoding), ["deflate", "json"])
        const page = yield* store.batchPage(created.id, -1, 10)
        assert.deepStrictEqual(page[0]!.output, big)
        assert.deepStrictEqual(page[1]!.output, syntheticOutput(1))
      }).pipe(Effect.provide(layerWithHook(path.join(dir, "q.db"), () => Effect.void)))
    }))
})
