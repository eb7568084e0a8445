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
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import { createHash } from "node:crypto"
import * as path from "node:path"
import * as KnownContext from "../src/internal/knownContext.js"
import { coreDist, holdWriteLock, spawnNode } from "./children.js"
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

/** The store, with every `knownEntities` read recorded as `[from, before]`. */
const recordingReads = (store: RunStore.RunStore["Type"]) => {
  const reads: Array<[number, number]> = []
  const recording: RunStore.RunStore["Type"] = {
    ...store,
    knownEntities: (runId, before, from) => {
      reads.push([from ?? 0, before])
      return store.knownEntities(runId, before, from)
    }
  }
  return { reads, recording }
}

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

  it.scoped("a failure inside a group commit leaves none of the group; the retried group writes all of it", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      let armed = true
      const hook = (_: SqlClient.SqlClient, commit: RunStore.BatchCommit) =>
        armed && commit.batchIndex === 2 ?
          new PersistenceError({ operation: "commitBatch", cause: new Error("injected failure") }) :
          Effect.void
      yield* Effect.gen(function*() {
        const store = yield* RunStore.RunStore
        const run = yield* store.createRun(newRun("group-crash", { totalBatches: 4 }))
        const holder = holderOf(yield* store.claim(run.id, "me", 60_000))
        const group = [0, 1, 2, 3].map((batchIndex): RunStore.BatchCommit => ({
          runId: run.id,
          holder,
          batchIndex,
          output: syntheticOutput(batchIndex),
          attempts: 1,
          durationMs: 1
        }))
        const error = yield* Effect.flip(store.commitBatches(group))
        assert.strictEqual(error._tag, "PersistenceError")
        for (const table of ["batches", "checkpoints", "entities"] as const) {
          assert.strictEqual(yield* countRows(table, run.id), 0, table)
        }
        assert.strictEqual((yield* store.getRun(run.id)).committedBatches, 0)
        armed = false
        const checkpoints = yield* store.commitBatches(group)
        assert.deepStrictEqual(checkpoints.map((c) => c.committedBatches), [1, 2, 3, 4])
        assert.strictEqual(yield* countRows("batches", run.id), 4)
      }).pipe(Effect.provide(layerWithHook(path.join(dir, "q.db"), hook)))
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

  it.scoped("merge workspaces bound the main page cache while any is open, then give the previous size back", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { sql, store } = yield* openStore(path.join(dir, "q.db"))
      const cacheSize = Effect.map(sql<{ cache_size: number }>`PRAGMA main.cache_size`, (rows) => rows[0]!.cache_size)
      yield* sql.unsafe("PRAGMA main.cache_size = -8000")
      const first = yield* Scope.make()
      yield* Scope.extend(store.mergeWorkspace, first)
      assert.strictEqual(yield* cacheSize, -2048)
      const second = yield* Scope.make()
      yield* Scope.extend(store.mergeWorkspace, second)
      yield* Scope.close(first, Exit.void)
      assert.strictEqual(yield* cacheSize, -2048, "a merge still runs")
      yield* Scope.close(second, Exit.void)
      assert.strictEqual(yield* cacheSize, -8000)
    }))
})

/** A store on a real file, built for the test's scope. */
const openStore = (filename: string, options: Database.Options = {}) =>
  Effect.map(
    Layer.build(SqliteRunStore.layer.pipe(Layer.provideMerge(Database.layer(filename, options)))),
    (context) => ({ store: Context.get(context, RunStore.RunStore), sql: Context.get(context, SqlClient.SqlClient) })
  )

const holderOf = (claimed: RunStore.Claimed) => Option.getOrThrow(claimed.holder)

describe("SqliteRunStore concurrency", () => {
  it.scoped("a write outside any transaction never lands inside another fiber's transaction (forced interleaving)", () =>
    Effect.gen(function*() {
      const { sql, store } = yield* openStore(path.join(yield* tempDir, "q.db"))
      const run = yield* store.createRun(newRun("interleaved"))
      // Fiber B records usage (one statement, no transaction) while fiber A runs a transaction that yields and rolls
      // back. Sweeping B's yield points and A's start covers the moment between B's connection permit and B's
      // statement: with the driver's own client B's row ran inside A's transaction and vanished (17 of 480 here).
      const rollback = (delay: number) =>
        Effect.zipRight(
          Effect.forEach(Array.from({ length: delay }), () => Effect.yieldNow(), { discard: true }),
          sql.withTransaction(
            sql`UPDATE runs SET updated_at = updated_at + 1 WHERE id = ${run.id}`.pipe(
              Effect.zipRight(Effect.yieldNow()),
              Effect.zipRight(Effect.fail("rolled back"))
            )
          )
        ).pipe(Effect.either)
      const rounds = 480
      for (let round = 0; round < rounds; round++) {
        const write = store.recordAttempt(
          run.id,
          round,
          { requests: 1, promptTokens: 1, completionTokens: 1 },
          `a${round}`
        ).pipe(
          Effect.locally(FiberRef.currentMaxOpsBeforeYield, 16 + (round % 48))
        )
        yield* Effect.all([write, rollback(Math.floor(round / 48))], { concurrency: 2 })
      }
      const rows = yield* sql<{ n: number }>`SELECT COUNT(*) AS n FROM usage_attempts WHERE run_id = ${run.id}`
      assert.strictEqual(rows[0]!.n, rounds)
    }))

  it.live("createRun waits for another process's write lock instead of failing (transactions begin IMMEDIATE)", () =>
    Effect.gen(function*() {
      const file = path.join(yield* tempDir, "q.db")
      const { store } = yield* openStore(file)
      yield* store.createRun(newRun("first"))
      const holder = holdWriteLock(file, 600)
      yield* Effect.promise(() => holder.waitFor("locked"))
      // A transaction that began with a read would fail at its first write with SQLITE_BUSY, busy handler skipped.
      const created = yield* store.createRun(newRun("second", { ontology: Option.none() }))
      assert.strictEqual(created.status, "pending")
      yield* Effect.promise(() => holder.waitFor("released"))
      assert.strictEqual(yield* Effect.promise(() => holder.exited), 0)
    }).pipe(Effect.scoped))

  it.scoped("a cancel that lands while execute prepares sticks: the claim is refused and the run stays cancelled", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      let cancels = 0
      // `prepare` reads the input; cancel the run at that moment, after execute read its status version.
      const cancelling = Layer.effect(
        RunStore.RunStore,
        Effect.map(SqliteRunStore.make(), (store) => ({
          ...store,
          readInput: (runId: RunId) =>
            Effect.zipRight(
              Effect.tap(store.requestCancel(runId).pipe(Effect.orDie), () => cancels++),
              store.readInput(runId)
            )
        }))
      )
      yield* Effect.gen(function*() {
        const run = yield* Workflow.create({
          ...createOptions,
          output: { path: path.join(dir, "out.ttl"), format: "turtle" }
        })
        const error = yield* Effect.flip(Workflow.execute(run.id))
        assert.strictEqual(error._tag, "RunCancelled")
        assert.strictEqual(cancels, 1)
        const store = yield* RunStore.RunStore
        const after = yield* store.getRun(run.id)
        assert.strictEqual(after.status, "cancelled")
        assert.strictEqual(after.committedBatches, 0)
      }).pipe(
        Effect.provide(
          Layer.mergeAll(cancelling, Extractor.layerRegistry(CapitalizedExtractor.make())).pipe(
            Layer.provideMerge(Database.layer(path.join(dir, "q.db")))
          )
        )
      )
    }))

  it.live("keepLease retries heartbeats that fail while another process holds the write lock, and keeps the lease", () =>
    Effect.gen(function*() {
      const file = path.join(yield* tempDir, "q.db")
      // A short busy timeout makes the heartbeat fail (SQLITE_BUSY) while the other process holds the lock.
      const { store } = yield* openStore(file, { busyTimeoutMs: 50 })
      const run = yield* store.createRun(newRun("beating"))
      const leaseMs = 1_500
      const holder = holderOf(yield* store.claim(run.id, "me", leaseMs))
      let failures = 0
      let successes = 0
      const counting: RunStore.RunStore["Type"] = {
        ...store,
        heartbeat: (runId, h, ms) =>
          store.heartbeat(runId, h, ms).pipe(
            Effect.tap(() => successes++),
            Effect.tapError(() => Effect.sync(() => failures++))
          )
      }
      const locker = holdWriteLock(file, 900)
      yield* Effect.promise(() => locker.waitFor("locked"))
      // Its retry warnings are expected here: keep the test quiet.
      const fiber = yield* Effect.fork(
        RunStore.keepLease(counting, run.id, holder, leaseMs).pipe(Logger.withMinimumLogLevel(LogLevel.Error))
      )
      yield* Effect.promise(() => locker.exited)
      // Wait for a heartbeat after the lock was released.
      const released = Date.now()
      const before = successes
      while (successes === before && Date.now() - released < 3_000) yield* Effect.sleep(20)
      assert.isAbove(failures, 0, "a heartbeat failed while the lock was held")
      assert.isAbove(successes, before, "a heartbeat succeeded after the lock was released")
      assert.isTrue(Option.isNone(yield* fiber.poll), "the loop is still running")
      const lease = Option.getOrThrow((yield* store.getRun(run.id)).lease)
      assert.isAbove(lease.expiresAt, released)
      yield* Fiber.interrupt(fiber)
      // A lost lease ends the loop at once.
      const lost = yield* Effect.flip(RunStore.keepLease(store, run.id, { owner: "me", token: "stale" }, 30))
      assert.strictEqual(lost._tag, "RunLocked")
    }).pipe(Effect.scoped))

  it.scoped("the known-entity context answers as knownEntities, reads each batch once, never changes a held answer", () =>
    Effect.gen(function*() {
      const { store } = yield* openStore(path.join(yield* tempDir, "q.db"))
      const run = yield* store.createRun(newRun("context", { totalBatches: 12 }))
      const holder = holderOf(yield* store.claim(run.id, "me", 60_000))
      const commit = (batchIndex: number) =>
        store.commitBatch({
          runId: run.id,
          holder,
          batchIndex,
          output: syntheticOutput(batchIndex, batchIndex > 0 ? syntheticOutput(0).entities : []),
          attempts: 1,
          durationMs: 1
        })
      const { reads, recording } = recordingReads(store)
      const context = yield* KnownContext.make(recording, run.id)
      const expected = (before: number) =>
        Effect.map(store.knownEntities(run.id, before), (rows) => rows.map((e) => `${e.label}|${e.type}`))
      const labels = (known: ReadonlyArray<{ label: string; type: string }>) => known.map((e) => `${e.label}|${e.type}`)
      for (let i = 0; i < 4; i++) yield* commit(i)
      // Batch 4 holds the whole context; batch 5 (concurrency 2) then needs more while batch 4 still extracts.
      const held = yield* context.read(4, 4)
      const heldCopy = [...held]
      yield* commit(4)
      const next = yield* context.read(5, 5)
      assert.deepStrictEqual(held, heldCopy, "a held answer never changes")
      assert.deepStrictEqual(labels(held), yield* expected(4))
      assert.deepStrictEqual(labels(next), yield* expected(5))
      // Once batches are released, the array grows in place (no copy per batch): the same array comes back.
      yield* context.release(4)
      yield* context.release(5)
      yield* commit(5)
      const six = yield* context.read(6, 6)
      yield* context.release(6)
      yield* commit(6)
      const seven = yield* context.read(7, 7)
      assert.strictEqual(seven, six)
      assert.deepStrictEqual(labels(seven), yield* expected(7))
      // Earlier horizons come from memory, as a prefix.
      assert.deepStrictEqual(labels(yield* context.read(8, 2)), yield* expected(2))
      assert.deepStrictEqual(reads, [[0, 4], [4, 5], [5, 6], [6, 7]])
    }).pipe(Effect.scoped))

  it.scoped("knownEntitiesReader reads each batch's entities once and answers exactly as knownEntities", () =>
    Effect.gen(function*() {
      const { store } = yield* openStore(path.join(yield* tempDir, "q.db"))
      const run = yield* store.createRun(newRun("known", { totalBatches: 12 }))
      const holder = holderOf(yield* store.claim(run.id, "me", 60_000))
      for (let batchIndex = 0; batchIndex < 12; batchIndex++) {
        // Batch i mentions its own entity and re-mentions entity 0 (already known: not new).
        const output = syntheticOutput(batchIndex, batchIndex > 0 ? syntheticOutput(0).entities : [])
        yield* store.commitBatch({ runId: run.id, holder, batchIndex, output, attempts: 1, durationMs: 1 })
      }
      const { reads, recording } = recordingReads(store)
      const read = yield* RunStore.knownEntitiesReader(recording, run.id)
      // Concurrent batches ask out of order; earlier horizons come from memory.
      for (const horizon of [0, 1, 3, 2, 3, 7, 5, 12, 12]) {
        assert.deepStrictEqual(yield* read(horizon), yield* store.knownEntities(run.id, horizon), `horizon ${horizon}`)
      }
      // Each batch's entities were read once: the ranges are disjoint and cover 0..12.
      assert.deepStrictEqual(reads, [[0, 1], [1, 3], [3, 7], [7, 12]])
    }))

  it.live("a lease holder killed with SIGKILL is taken over at once; a live holder is not", () =>
    Effect.gen(function*() {
      const file = path.join(yield* tempDir, "q.db")
      const { store } = yield* openStore(file)
      const run = yield* store.createRun(newRun("orphaned"))
      const claimant = spawnNode(`
        import * as Effect from "effect/Effect"
        import * as Layer from "effect/Layer"
        import * as Database from ${JSON.stringify(coreDist("Database"))}
        import * as RunStore from ${JSON.stringify(coreDist("RunStore"))}
        import * as SqliteRunStore from ${JSON.stringify(coreDist("SqliteRunStore"))}
        const program = Effect.gen(function*() {
          const store = yield* RunStore.RunStore
          yield* store.claim(${JSON.stringify(run.id)}, "doomed", 600000)
          console.log("claimed")
          return yield* Effect.never
        })
        Effect.runFork(program.pipe(
          Effect.provide(SqliteRunStore.layer.pipe(Layer.provideMerge(Database.layer(${JSON.stringify(file)}))))
        ))
      `)
      yield* Effect.promise(() => claimant.waitFor("claimed"))
      // Alive (same host, same process start time): its ten-minute lease holds.
      const locked = yield* Effect.flip(store.claim(run.id, "rescuer", 60_000))
      assert.strictEqual(locked._tag, "RunLocked")
      claimant.process.kill("SIGKILL")
      yield* Effect.promise(() => claimant.exited)
      const taken = yield* store.claim(run.id, "rescuer", 60_000)
      assert.deepStrictEqual(Option.map(taken.run.lease, (l) => l.owner), Option.some("rescuer"))
      assert.isTrue(Option.isSome(taken.holder))
    }).pipe(Effect.scoped))

  it.scoped("a lease whose pid now belongs to a process with another start time (pid reused) is dead: cancel and claim act at once", () =>
    Effect.gen(function*() {
      const { sql, store } = yield* openStore(path.join(yield* tempDir, "q.db"))
      const run = yield* store.createRun(newRun("reused"))
      yield* store.claim(run.id, "first", 600_000)
      assert.strictEqual((yield* Effect.flip(store.claim(run.id, "second", 600_000)))._tag, "RunLocked")
      // The recorded holder is this (live) pid, but with a start time that is not this process's.
      yield* sql`UPDATE runs SET lease_pid_started = '1' WHERE id = ${run.id}`
      // Nobody executes it any more: a cancel takes effect at once instead of waiting for a holder to notice.
      assert.strictEqual((yield* store.requestCancel(run.id)).status, "cancelled")
      const taken = yield* store.claim(run.id, "second", 600_000)
      assert.deepStrictEqual(Option.map(taken.run.lease, (l) => l.owner), Option.some("second"))
    }))
})
