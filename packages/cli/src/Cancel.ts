/**
 * `quarry cancel <run-id> [--purge]`: ask a run to stop. A run executing in another process stops at its next batch
 * boundary, runs its compensation steps and records `cancelled`; a run that is not executing is marked `cancelled`
 * at once. `--purge` also runs, in this process, every compensation step of the run that is not done (after waiting
 * for an executing holder to stop; a completed run is not cancelled, only compensated), and reports each.
 *
 * @since 0.1.0
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Compensation from "@quarry/core/Compensation"
import { RunNotFound } from "@quarry/core/Errors"
import type { RunId } from "@quarry/core/Run"
import { RunStore } from "@quarry/core/RunStore"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Errors from "./Errors.js"
import * as Flags from "./Flags.js"
import { Output } from "./Output.js"
import * as RunView from "./RunView.js"
import * as Start from "./Start.js"
import { withStore } from "./Status.js"

/** How long `--purge` waits for a live holder to stop at a batch boundary before giving up. */
const purgeWaitMs = 120_000

/**
 * Cancels the run, waiting while a live holder stops it (it compensates as it stops), then runs the steps that are
 * not done yet here. Succeeds with the run and its steps; fails with `CompensationFailed` after the run is read again.
 */
const purge = (runId: RunId, db: string) =>
  Effect.gen(function*() {
    const store = yield* RunStore
    const started = yield* Clock.currentTimeMillis
    // A completed run cannot be cancelled, but what it did outside the database can still be undone.
    const stored = yield* store.getRun(runId)
    let run = stored.status === "completed" ? stored : yield* store.requestCancel(runId)
    while (run.status !== "cancelled" && run.status !== "completed") {
      if ((yield* Clock.currentTimeMillis) - started > purgeWaitMs) {
        return yield* new Errors.RunEnded({
          exitCode: 1,
          message: `run ${runId} is still executing ${purgeWaitMs / 1000} s after its cancel was requested; ` +
            `its compensation steps were not run here; try again when \`quarry status ${runId}${
              Errors.dbFlag(db)
            }\` shows it cancelled`
        })
      }
      yield* Effect.sleep(250)
      run = yield* store.requestCancel(runId)
    }
    const compensated = yield* Effect.either(Compensation.run(runId, `${run.status}, purged by quarry cancel --purge`))
    return { run, compensated }
  })

/**
 * The `cancel` command.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = Command.make("cancel", {
  runId: Args.text({ name: "run-id" }).pipe(Args.withDescription("The run to stop.")),
  db: Flags.db,
  json: Flags.json,
  purge: Options.boolean("purge").pipe(
    Options.withDescription(
      "Also run the run's compensation steps that are not done (undo what it did outside the database); exit 1 " +
        "when any fails. Running it again retries the failed ones."
    )
  )
}, (flags) =>
  Effect.gen(function*() {
    const output = yield* Output
    const db = yield* Flags.resolveDb(flags.db)
    const runId = yield* Start.decodeRunId(flags.runId)
    if (flags.purge) return yield* purgeCommand(runId, db, flags.json)
    const { ledger, run } = yield* withStore(
      db,
      Effect.gen(function*() {
        const run = yield* Effect.flatMap(RunStore, (store) => store.requestCancel(runId))
        return { run, ledger: yield* RunView.ledger(run) }
      }),
      () => Effect.fail(new RunNotFound({ runId }))
    )
    const now = yield* Clock.currentTimeMillis
    if (flags.json) return yield* output.out(JSON.stringify(RunView.toJson(run, ledger, now, db)))
    if (run.status === "cancelled") {
      const pending = Compensation.stateOf(ledger.compensation)
      return yield* output.out(
        `run ${runId} is cancelled (${run.committedBatches}/${run.plan.totalBatches} batches committed); resume it ` +
          `with: ${Flags.resumeCommand(runId, db)}` +
          (pending === "pending" || pending === "compensation_failed" ?
            `; its compensation is ${pending}: run it with: quarry cancel ${runId} --purge${Errors.dbFlag(db)}` :
            "")
      )
    }
    const holder = Option.match(run.lease, {
      onNone: () => "its process",
      onSome: (lease) => Errors.describeHolder(lease.owner)
    })
    yield* output.out(
      `cancellation of run ${runId} requested; ${holder} stops it at its next batch boundary ` +
        `(check with: quarry status ${runId}${Errors.dbFlag(db)})`
    )
  })).pipe(Command.withDescription("Stop a run; it stays resumable. --purge also undoes what it did."))

const purgeCommand = (runId: RunId, db: string, json: boolean) =>
  Effect.gen(function*() {
    const output = yield* Output
    const { compensated, ledger, run } = yield* withStore(
      db,
      Effect.gen(function*() {
        const { compensated, run } = yield* purge(runId, db)
        return { run, compensated, ledger: yield* RunView.ledger(run) }
      }),
      () => Effect.fail(new RunNotFound({ runId }))
    )
    const now = yield* Clock.currentTimeMillis
    if (json) yield* output.out(JSON.stringify(RunView.toJson(run, ledger, now, db)))
    else {
      const state = Compensation.stateOf(ledger.compensation)
      yield* output.out(
        `run ${runId} is ${run.status} (${run.committedBatches}/${run.plan.totalBatches} batches committed); ` +
          `compensation ${state} (${ledger.compensation.length} steps)`
      )
      for (const line of RunView.compensationLines(ledger.compensation)) yield* output.out(line)
    }
    if (compensated._tag === "Left") return yield* compensated.left
  })
