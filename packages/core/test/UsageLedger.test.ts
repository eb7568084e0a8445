import * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import * as CapitalizedExtractor from "@quarry/core/CapitalizedExtractor"
import * as Database from "@quarry/core/Database"
import { PersistenceError } from "@quarry/core/Errors"
import * as Extractor from "@quarry/core/Extractor"
import type * as Run from "@quarry/core/Run"
import * as RunStore from "@quarry/core/RunStore"
import * as SqliteRunStore from "@quarry/core/SqliteRunStore"
import * as Workflow from "@quarry/core/Workflow"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as path from "node:path"
import { countRows, readText, sharedData, storeLayer, tempDir } from "./fixtures.js"

const text = readText(sharedData("texts", "long-multi-chapter.txt"))
const chunking = { windowSize: 300, overlap: 50, batchSize: 1 }
const cent = { requests: 1, promptTokens: 80, completionTokens: 20, costUsd: 0.01 }

/** Reports $0.01 per batch through the ledger and its status (`{ batch }`), and returns the same usage. */
const metered: Extractor.Extractor = {
  ...CapitalizedExtractor.make(),
  extract: (input) =>
    Effect.gen(function*() {
      if (input.recordUsage) yield* input.recordUsage(cent)
      if (input.reportStatus) yield* input.reportStatus({ batch: String(input.batchIndex) })
      return { ...CapitalizedExtractor.extractMentions(input), usage: cent }
    })
}

const create = (dir: string) =>
  Workflow.create({
    input: text,
    extractor: "capitalized",
    chunking,
    output: { path: path.join(dir, "out.ttl"), format: "turtle" }
  })

/** Makes SQLite refuse the usage writes of one batch: a real failing write, not a stubbed one. */
const refuseUsageOf = (batchIndex: number) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) =>
      sql`CREATE TRIGGER refuse_usage BEFORE INSERT ON usage_attempts WHEN NEW.batch_index = ${
        sql.literal(
          String(batchIndex)
        )
      } BEGIN SELECT RAISE(ABORT, 'usage refused by the test'); END`
  ).pipe(Effect.orDie)

const allowUsage = Effect.flatMap(SqlClient.SqlClient, (sql) => sql`DROP TRIGGER IF EXISTS refuse_usage`).pipe(
  Effect.orDie
)

/** The run's usage is every recorded attempt's: no spend left uncounted, none counted twice. */
const assertUsageMatchesAttempts = (run: Run.Run) =>
  Effect.gen(function*() {
    const attempts = yield* (yield* RunStore.RunStore).attemptTotals(run.id)
    assert.deepStrictEqual([run.usage.requests, run.usage.promptTokens], [attempts.requests, attempts.promptTokens])
    assert.closeTo(run.usage.costUsd, attempts.costUsd, 1e-9)
  })

/** The refused writes are logged as warnings; these tests expect them. */
const quiet = Logger.withMinimumLogLevel(LogLevel.Error)

describe("UsageLedger", () => {
  it.scopedLive("a usage write that keeps failing fails the batch before it commits; resume completes", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      yield* Effect.gen(function*() {
        const store = yield* RunStore.RunStore
        const run = yield* create(dir)
        yield* refuseUsageOf(2)
        const error = yield* Effect.flip(Workflow.execute(run.id))
        assert.strictEqual(error._tag, "PersistenceError")
        assert.include(error.message, "usage refused by the test")
        const failed = yield* store.getRun(run.id)
        assert.strictEqual(failed.status, "failed")
        assert.strictEqual(failed.committedBatches, 2, "batch 2 was not committed without its usage")
        assert.strictEqual(yield* countRows("batches", run.id), 2)
        yield* assertUsageMatchesAttempts(failed)

        yield* allowUsage
        const done = yield* Workflow.execute(run.id)
        assert.strictEqual(done.status, "completed")
        assert.strictEqual(done.usage.requests, done.plan.totalBatches)
        yield* assertUsageMatchesAttempts(done)
      }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"), [metered])))
    }).pipe(quiet))

  it.scopedLive("a usage write that fails twice is retried: every attempt counted exactly once", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      // The store as it is, except that after its second refused usage write the "disk" recovers.
      let refused = 0
      const healing = Layer.effect(
        RunStore.RunStore,
        Effect.gen(function*() {
          const store = yield* RunStore.RunStore
          const sql = yield* SqlClient.SqlClient
          return {
            ...store,
            recordAttempt: (runId, batchIndex, usage, attemptId) =>
              store.recordAttempt(runId, batchIndex, usage, attemptId).pipe(
                Effect.tapError(() =>
                  ++refused === 2 ? Effect.orDie(sql`DROP TRIGGER IF EXISTS refuse_usage`) : Effect.void
                )
              )
          } satisfies RunStore.RunStore["Type"]
        })
      ).pipe(Layer.provide(SqliteRunStore.layer))
      const layer = Layer.mergeAll(healing, Extractor.layerRegistry(metered)).pipe(
        Layer.provideMerge(Database.layer(path.join(dir, "q.db")))
      )
      yield* Effect.gen(function*() {
        const run = yield* create(dir)
        yield* refuseUsageOf(1)
        const done = yield* Workflow.execute(run.id)
        assert.strictEqual(refused, 2)
        assert.strictEqual(done.status, "completed")
        assert.strictEqual(done.usage.requests, done.plan.totalBatches)
        yield* assertUsageMatchesAttempts(done)
      }).pipe(Effect.provide(layer))
    }).pipe(quiet))

  it.scopedLive("a usage write that landed but whose answer was lost is retried without counting it twice", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      // Every third write lands, then reports a failure: what a client sees when the connection drops after COMMIT.
      let writes = 0
      let lost = 0
      const losing = Layer.effect(
        RunStore.RunStore,
        Effect.map(RunStore.RunStore, (store) => ({
          ...store,
          recordAttempt: (runId, batchIndex, usage, attemptId) =>
            Effect.flatMap(store.recordAttempt(runId, batchIndex, usage, attemptId), () => {
              if (++writes % 3 !== 0) return Effect.void
              lost++
              return Effect.fail(new PersistenceError({ operation: "recordAttempt", cause: "answer lost" }))
            })
        } satisfies RunStore.RunStore["Type"]))
      ).pipe(Layer.provide(SqliteRunStore.layer))
      const layer = Layer.mergeAll(losing, Extractor.layerRegistry(metered)).pipe(
        Layer.provideMerge(Database.layer(path.join(dir, "q.db")))
      )
      yield* Effect.gen(function*() {
        const done = yield* Workflow.execute((yield* create(dir)).id)
        assert.isAbove(lost, 0)
        assert.strictEqual(done.status, "completed")
        assert.strictEqual(done.usage.requests, done.plan.totalBatches)
        assert.strictEqual((yield* (yield* RunStore.RunStore).attemptTotals(done.id)).requests, done.plan.totalBatches)
        yield* assertUsageMatchesAttempts(done)
      }).pipe(Effect.provide(layer))
    }).pipe(quiet))

  it.scopedLive("an extractor status that cannot be stored fails the batch before it commits", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const store = yield* RunStore.RunStore
        const run = yield* create(dir)
        yield* sql`CREATE TRIGGER refuse_status BEFORE UPDATE OF extractor_status ON runs
          WHEN json_extract(NEW.extractor_status, '$.batch') = '3'
          BEGIN SELECT RAISE(ABORT, 'status refused by the test'); END`
        const error = yield* Effect.flip(Workflow.execute(run.id))
        assert.strictEqual(error._tag, "PersistenceError")
        assert.include(error.message, "status refused by the test")
        const failed = yield* store.getRun(run.id)
        assert.strictEqual(failed.committedBatches, 3)
        assert.deepStrictEqual(failed.extractorStatus, { batch: "2" })
        assert.deepStrictEqual(failed.failureReason, Option.some("PersistenceError"))
      }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"), [metered])))
    }).pipe(quiet))
})
