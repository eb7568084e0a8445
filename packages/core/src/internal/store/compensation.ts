/** Compensation steps: durable undo steps of a run, registered in order and settled one by one. */
import * as SqlSchema from "@effect/sql/SqlSchema"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type { RunId } from "../../Run.js"
import { persistence, retryDisconnects, type StoreContext } from "./context.js"
import { CompensationRow, toCompensationStep } from "./rows.js"

/** The compensation operations of the store. */
// A namespace of short operations over one context (each reads at once), not one long function.
export const make = (ctx: StoreContext) => {
  const { getRun, sql, touch, transaction } = ctx

  const addCompensation = (
    runId: RunId,
    step: { readonly handler: string; readonly name: string; readonly payload: string }
  ) =>
    transaction(Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      yield* touch(runId, now)
      // Under the lock `touch` took: the sequence cannot be taken by another writer meanwhile.
      yield* getRun(runId)
      const next = yield* sql<{ seq: number }>`SELECT COALESCE(MAX(seq), 0) + 1 AS seq FROM compensation_steps
        WHERE run_id = ${runId}`
      const rows = yield* SqlSchema.findAll({
        Request: Schema.Void,
        Result: CompensationRow,
        execute: () =>
          sql`INSERT INTO compensation_steps (run_id, seq, handler, name, payload, state, registered_at)
            VALUES (${runId}, ${next[0]?.seq ?? 1}, ${step.handler}, ${step.name}, ${step.payload}, 'pending', ${now})
            RETURNING seq, handler, name, payload, state, last_error`
      })(undefined)
      const [row] = rows
      return row === undefined
        ? yield* Effect.dieMessage("INSERT ... RETURNING returned no row")
        : toCompensationStep(row)
    })).pipe(persistence("addCompensation"))

  const compensationSteps = (runId: RunId) =>
    retryDisconnects(
      SqlSchema.findAll({
        Request: Schema.String,
        Result: CompensationRow,
        execute: (id) =>
          sql`SELECT seq, handler, name, payload, state, last_error FROM compensation_steps
          WHERE run_id = ${id} ORDER BY seq`
      })(runId)
    ).pipe(Effect.map((rows) => rows.map(toCompensationStep)), persistence("compensationSteps"))

  const settleCompensation = (
    runId: RunId,
    seq: number,
    outcome: { readonly _tag: "done" } | { readonly _tag: "failed"; readonly error: string }
  ) =>
    transaction(Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      yield* sql`UPDATE compensation_steps SET
          state = ${outcome._tag},
          last_error = ${outcome._tag === "failed" ? outcome.error : null},
          settled_at = ${now}
        WHERE run_id = ${runId} AND seq = ${seq}`
    })).pipe(persistence("settleCompensation"))

  return { addCompensation, compensationSteps, settleCompensation }
}
