/**
 * The details of a page of runs (attempt usage, skipped batches, compensation steps), read with one query per kind
 * for the whole page: a run list (`quarry runs --json`, `GET /v1/runs`) used to cost two or three queries per run.
 */
import * as SqlSchema from "@effect/sql/SqlSchema"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { type Run, type RunId, UsageTotals } from "../../Run.js"
import type * as RunStore from "../../RunStore.js"
import { reportedCost } from "../usage.js"
import { persistence, retryDisconnects, type StoreContext } from "./context.js"
import { CompensationRow, SkippedRow, toCompensationStep, TotalsRow } from "./rows.js"

const Ids = Schema.Array(Schema.String)

const withRunId = <Fields extends Schema.Struct.Fields>(row: Schema.Struct<Fields>) =>
  Schema.Struct({ run_id: Schema.String, ...row.fields })

/** Groups rows by run id, keeping their order. */
const groupBy = <A extends { readonly run_id: string }, B>(rows: ReadonlyArray<A>, f: (row: A) => B) => {
  const groups = new Map<string, Array<B>>()
  for (const row of rows) {
    const group = groups.get(row.run_id)
    if (group === undefined) groups.set(row.run_id, [f(row)])
    else group.push(f(row))
  }
  return groups
}

/** The run-details operation of the store. */
export const make = (ctx: StoreContext) => {
  const { sql } = ctx

  const attempts = SqlSchema.findAll({
    Request: Ids,
    Result: withRunId(TotalsRow),
    execute: (ids) =>
      sql`SELECT run_id, SUM(requests) AS requests, SUM(prompt_tokens) AS prompt_tokens,
          SUM(completion_tokens) AS completion_tokens, SUM(cost_usd) AS cost_usd
        FROM usage_attempts WHERE run_id IN ${sql.in(ids)} GROUP BY run_id`
  })

  const skipped = SqlSchema.findAll({
    Request: Ids,
    Result: withRunId(SkippedRow),
    execute: (ids) =>
      sql`SELECT run_id, batch_index, error FROM batches
        WHERE run_id IN ${sql.in(ids)} AND status = 'skipped' ORDER BY run_id, batch_index`
  })

  const compensation = SqlSchema.findAll({
    Request: Ids,
    Result: withRunId(CompensationRow),
    execute: (ids) =>
      sql`SELECT run_id, seq, handler, name, payload, state, last_error FROM compensation_steps
        WHERE run_id IN ${sql.in(ids)} ORDER BY run_id, seq`
  })

  const runDetails = (runs: ReadonlyArray<Pick<Run, "id" | "skippedBatches">>) =>
    retryDisconnects(Effect.gen(function*() {
      if (runs.length === 0) return new Map<RunId, RunStore.RunDetails>()
      const ids = runs.map((run) => run.id)
      // The run's counter says whether it has skipped batches: most pages need no such query at all.
      const withSkipped = runs.filter((run) => run.skippedBatches > 0).map((run) => run.id)
      const totals = new Map((yield* attempts(ids)).map((row) => [row.run_id, row] as const))
      const skippedOf = groupBy(
        withSkipped.length === 0 ? [] : yield* skipped(withSkipped),
        (row): RunStore.SkippedBatch => ({ batchIndex: row.batch_index, error: row.error ?? "" })
      )
      const stepsOf = groupBy(yield* compensation(ids), toCompensationStep)
      return new Map(runs.map((run): [RunId, RunStore.RunDetails] => {
        const row = totals.get(run.id)
        return [run.id, {
          attempts: new UsageTotals({
            requests: row?.requests ?? 0,
            promptTokens: row?.prompt_tokens ?? 0,
            completionTokens: row?.completion_tokens ?? 0,
            costUsd: reportedCost(row?.cost_usd ?? 0)
          }),
          skipped: skippedOf.get(run.id) ?? [],
          compensation: stepsOf.get(run.id) ?? []
        }]
      }))
    })).pipe(persistence("runDetails"))

  return { runDetails }
}
