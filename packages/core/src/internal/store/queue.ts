/** The durable admission FIFO: executions requested of `quarry serve`, kept until they end. */
import * as SqlSchema from "@effect/sql/SqlSchema"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { RunBudget, RunId } from "../../Run.js"
import type * as RunStore from "../../RunStore.js"
import { persistence, retryDisconnects, type StoreContext } from "./context.js"

const BudgetJson = Schema.parseJson(RunBudget)

const QueuedRow = Schema.Struct({
  seq: Schema.Number,
  run_id: RunId,
  retry_skipped: Schema.Number,
  budget: Schema.NullOr(BudgetJson),
  request_id: Schema.NullOr(Schema.String),
  queued_at: Schema.Number
})

/** The row's values, for an insert in the caller's transaction (`createRun`'s or its own). */
export const queuedRow = (entry: RunStore.NewQueuedExecution, now: number) =>
  Effect.map(
    entry.budget === undefined ?
      Effect.succeed(null) :
      // Refuses a limit JSON cannot hold (see `RunBudget`).
      Schema.encode(BudgetJson)({
        // Only the limits that are set: JSON has no undefined.
        ...(entry.budget.maxCostUsd === undefined ? {} : { maxCostUsd: entry.budget.maxCostUsd }),
        ...(entry.budget.maxTokens === undefined ? {} : { maxTokens: entry.budget.maxTokens })
      }),
    (budget) => ({
      run_id: entry.runId,
      retry_skipped: entry.retrySkipped === true ? 1 : 0,
      budget,
      request_id: entry.requestId ?? null,
      queued_at: now
    })
  )

/** Inserts or refreshes a run's queued execution; an existing row keeps its `seq` (its place in the FIFO). */
export const insertQueued = (ctx: StoreContext, entry: RunStore.NewQueuedExecution) =>
  Effect.gen(function*() {
    const { sql } = ctx
    const row = yield* queuedRow(entry, yield* Clock.currentTimeMillis)
    yield* sql`INSERT INTO queued_executions ${sql.insert(row)}
      ON CONFLICT (run_id) DO UPDATE SET
        retry_skipped = excluded.retry_skipped,
        budget = excluded.budget,
        request_id = excluded.request_id`
  })

const toQueued = (row: typeof QueuedRow.Type): RunStore.QueuedExecution => ({
  runId: row.run_id,
  seq: row.seq,
  retrySkipped: row.retry_skipped === 1,
  budget: Option.fromNullable(row.budget),
  requestId: Option.fromNullable(row.request_id),
  queuedAt: row.queued_at
})

/** The queue's operations of the store. */
export const make = (ctx: StoreContext) => {
  const { sql, transaction } = ctx

  const queueExecution = (entry: RunStore.NewQueuedExecution) =>
    transaction(Effect.gen(function*() {
      yield* ctx.touch(entry.runId, yield* Clock.currentTimeMillis)
      yield* ctx.getRun(entry.runId)
      yield* insertQueued(ctx, entry)
    })).pipe(persistence("queueExecution"), Effect.withSpan("SqlRunStore.queueExecution"))

  // A DELETE by key: repeating it after a lost answer deletes nothing more.
  const dequeueExecution = (runId: RunId) =>
    retryDisconnects(sql`DELETE FROM queued_executions WHERE run_id = ${runId}`).pipe(
      Effect.asVoid,
      persistence("dequeueExecution")
    )

  const queuedExecutions = retryDisconnects(
    SqlSchema.findAll({
      Request: Schema.Void,
      Result: QueuedRow,
      execute: () => sql`SELECT * FROM queued_executions ORDER BY seq`
    })(undefined)
  ).pipe(Effect.map((rows) => rows.map(toQueued)), persistence("queuedExecutions"))

  const byRunId = {
    Request: RunId,
    Result: QueuedRow,
    execute: (runId: string) => sql`SELECT * FROM queued_executions WHERE run_id = ${runId}`
  }
  const queuedOf = SqlSchema.single(byRunId)

  // One row by key: a single run's answer or event stream reads no other run's row.
  const queuedExecution = (runId: RunId) =>
    retryDisconnects(SqlSchema.findOne(byRunId)(runId)).pipe(
      Effect.map(Option.map(toQueued)),
      persistence("queuedExecution")
    )

  // The first request wins: `touch` locks the run's row, so a second caller (another cluster node) waits for the
  // first's COMMIT and then finds its row.
  const queueExecutionOnce = (entry: RunStore.NewQueuedExecution) =>
    transaction(Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      yield* ctx.touch(entry.runId, now)
      const run = yield* ctx.getRun(entry.runId)
      // A row queued before the run's last end was left by an execution that ran: nothing waits on it.
      if (Option.isSome(run.finishedAt)) {
        yield* sql`DELETE FROM queued_executions
          WHERE run_id = ${entry.runId} AND queued_at < ${run.finishedAt.value}`
      }
      const inserted = yield* sql`INSERT INTO queued_executions ${sql.insert(yield* queuedRow(entry, now))}
        ON CONFLICT (run_id) DO NOTHING RETURNING run_id`
      return inserted.length > 0 ? Option.none() : Option.some(toQueued(yield* queuedOf(entry.runId)))
    })).pipe(persistence("queueExecutionOnce"), Effect.withSpan("SqlRunStore.queueExecutionOnce"))

  return { queueExecution, queueExecutionOnce, dequeueExecution, queuedExecutions, queuedExecution }
}
