/**
 * A run as the API shows it: the shared view of `@quarry/core/RunView` (the shape of `quarry status --json`), with
 * the server's file paths hidden, its queue position, and the request that resumes it.
 *
 * @since 0.1.0
 */
import type { PersistenceError } from "@quarry/core/Errors"
import type * as Run from "@quarry/core/Run"
import type { RunStore } from "@quarry/core/RunStore"
import * as CoreRunView from "@quarry/core/RunView"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Admission from "./Admission.js"

/**
 * The run JSON.
 *
 * @since 0.1.0
 * @category schemas
 */
export const RunView = CoreRunView.RunView

/**
 * @since 0.1.0
 * @category models
 */
export type RunView = CoreRunView.RunView

/**
 * A page of runs and the cursor of the next page (null on the last one).
 *
 * @since 0.1.0
 * @category schemas
 */
export const RunPage = Schema.Struct({
  runs: Schema.Array(RunView),
  nextCursor: Schema.NullOr(Schema.String)
}).annotations({ identifier: "RunPage" })

const options = (waiting: Option.Option<Admission.Waiting>, now: number): CoreRunView.Options => ({
  now,
  queuePosition: Option.flatMap(waiting, (w) => w.position),
  paths: false,
  // A run its budget stopped continues only with a higher one (`<USD>`, `<N>`: the caller's numbers).
  resume: (r) => {
    const raise = CoreRunView.limitsToRaise(r).map((limit) => `${limit}=${limit === "maxCostUsd" ? "<USD>" : "<N>"}`)
    return `POST /v1/runs/${r.id}/resume${raise.length === 0 ? "" : `?${raise.join("&")}`}`
  }
})

/**
 * What a run waiting for a slot here will be: `pending` (a resumed run's stored status is still its last end, which a
 * client polling for an end would take for this execution's), with the budget it waits with, when it gives one.
 */
const asWaiting = (view: RunView, waiting: Option.Option<Admission.Waiting>): RunView => {
  if (Option.isNone(waiting)) return view
  const budget = waiting.value.execution.budget
  return {
    ...view,
    status: "pending",
    budget: budget === undefined ? view.budget : CoreRunView.budget(budget)
  }
}

/**
 * The view of a run at time `now`, with its queue position and waiting options when it waits for a slot.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  run: Run.Run,
  waiting: Option.Option<Admission.Waiting>,
  now: number
): Effect.Effect<RunView, PersistenceError, RunStore> =>
  Effect.map(
    CoreRunView.ledger(run),
    (ledger) => asWaiting(CoreRunView.make(run, ledger, options(waiting, now)), waiting)
  )

/**
 * The views of a page of runs, their ledgers read for the whole page at once (one query per kind of detail).
 *
 * @since 0.1.0
 * @category constructors
 */
export const makePage = (
  runs: ReadonlyArray<Run.Run>,
  waitingOf: (run: Run.Run) => Option.Option<Admission.Waiting>,
  now: number
): Effect.Effect<ReadonlyArray<RunView>, PersistenceError, RunStore> =>
  Effect.map(CoreRunView.ledgers(runs), (rows) =>
    rows.map(({ ledger, run }) => {
      const waiting = waitingOf(run)
      return asWaiting(CoreRunView.make(run, ledger, options(waiting, now)), waiting)
    }))
