/**
 * `quarry cancel <run-id>`: ask a run to stop. A run executing in another process stops at its next batch
 * boundary and records `cancelled`; a run that is not executing is marked `cancelled` at once.
 *
 * @since 0.1.0
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import { RunNotFound } from "@quarry/core/Errors"
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

/**
 * The `cancel` command.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = Command.make("cancel", {
  runId: Args.text({ name: "run-id" }).pipe(Args.withDescription("The run to stop.")),
  db: Flags.db,
  json: Flags.json
}, (flags) =>
  Effect.gen(function*() {
    const output = yield* Output
    const db = yield* Flags.resolveDb(flags.db)
    const runId = yield* Start.decodeRunId(flags.runId)
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
      return yield* output.out(
        `run ${runId} is cancelled (${run.committedBatches}/${run.plan.totalBatches} batches committed); resume it ` +
          `with: ${Flags.resumeCommand(runId, db)}`
      )
    }
    const holder = Option.match(run.lease, {
      onNone: () => "its process",
      onSome: (lease) => Errors.describeHolder(lease.owner)
    })
    yield* output.out(
      `cancellation of run ${runId} requested; ${holder} stops it at its next batch boundary ` +
        `(check with: quarry status ${runId}${Flags.dbFlag(db)})`
    )
  })).pipe(Command.withDescription("Stop a run; it stays resumable."))
