/**
 * `quarry status [run-id]` and `quarry runs [--status S]`: what runs there are and where they stand.
 *
 * @since 0.1.0
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as DatabaseUrl from "@quarry/core/DatabaseUrl"
import { RunNotFound } from "@quarry/core/Errors"
import * as Run from "@quarry/core/Run"
import { RunStore } from "@quarry/core/RunStore"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { UsageError } from "./Errors.js"
import * as Flags from "./Flags.js"
import * as Inputs from "./Inputs.js"
import { Output } from "./Output.js"
import * as RunView from "./RunView.js"
import { Settings } from "./Settings.js"
import * as Start from "./Start.js"
import * as Store from "./Store.js"

/**
 * Runs a read-only query against the database; `onMissing` answers when the database file does not exist (read
 * commands never create one). No `quick_check`: it reads the whole file, which made `status` on a database of
 * gigabytes take seconds; `doctor` runs it, and `start`/`resume` after an unclean shutdown.
 *
 * @since 0.1.0
 * @category utils
 */
export const withStore = <A, E, R>(
  db: string,
  effect: Effect.Effect<A, E, R>,
  onMissing: () => Effect.Effect<A, E | UsageError, Exclude<R, Store.Services>>
) =>
  Effect.gen(function*() {
    const settings = yield* Settings
    yield* Inputs.checkDatabase(db)
    if (!Inputs.isEphemeralDatabase(db) && !Inputs.databaseExists(db)) return yield* onMissing()
    return yield* effect.pipe(Effect.provide(Store.layer(db, settings, { quickCheck: "never" })))
  })

/**
 * The `status` command.
 *
 * @since 0.1.0
 * @category commands
 */
export const status = Command.make("status", {
  runId: Args.text({ name: "run-id" }).pipe(
    Args.withDescription("The run to show (default: the most recently created run)."),
    Args.optional
  ),
  db: Flags.db,
  json: Flags.json
}, (flags) =>
  Effect.gen(function*() {
    const output = yield* Output
    const db = yield* Flags.resolveDb(flags.db)
    const runId = yield* Effect.transposeOption(Option.map(flags.runId, Start.decodeRunId))
    const find = Effect.gen(function*() {
      const store = yield* RunStore
      const found = Option.isSome(runId) ?
        Option.some(yield* store.getRun(runId.value)) :
        Option.fromNullable((yield* store.listRuns()).at(-1))
      if (Option.isNone(found)) return Option.none()
      return Option.some({ run: found.value, ledger: yield* RunView.ledger(found.value) })
    })
    const run = yield* withStore(db, find, () =>
      Option.match(runId, {
        onSome: (id) => Effect.fail(new RunNotFound({ runId: id })),
        onNone: () => Effect.succeed(Option.none())
      }))
    const now = yield* Clock.currentTimeMillis
    if (Option.isNone(run)) {
      return yield* flags.json ? output.out("null") : output.out(`no runs in ${DatabaseUrl.redact(db)}`)
    }
    const { ledger, run: shown } = run.value
    if (flags.json) return yield* output.out(JSON.stringify(RunView.toJson(shown, ledger, now, db)))
    for (const line of RunView.details(shown, ledger, now, db)) yield* output.out(line)
  })).pipe(Command.withDescription("Show a run: status, progress, counters, timings, artifact, last error."))

/**
 * The `runs` command.
 *
 * @since 0.1.0
 * @category commands
 */
export const runs = Command.make("runs", {
  status: Flags.checked(
    "status",
    Run.RunStatus.literals.join("|"),
    "Only runs with this status.",
    (raw) =>
      Schema.is(Run.RunStatus)(raw) ?
        Effect.succeed(raw) :
        new UsageError({ message: `status "${raw}" is unknown; use one of ${Run.RunStatus.literals.join(", ")}` })
  ),
  db: Flags.db,
  json: Flags.json
}, (flags) =>
  Effect.gen(function*() {
    const output = yield* Output
    const db = yield* Flags.resolveDb(flags.db)
    const status = flags.status
    const listRuns = Effect.flatMap(RunStore, (store) => store.listRuns({ status: Option.getOrUndefined(status) }))
    const now = yield* Clock.currentTimeMillis
    if (flags.json) {
      // The ledgers of the whole list at once (one query per kind of detail, not per run).
      const rows = yield* withStore(db, Effect.flatMap(listRuns, RunView.ledgers), () => Effect.succeed([]))
      return yield* output.out(JSON.stringify(rows.map(({ ledger, run }) => RunView.toJson(run, ledger, now, db))))
    }
    // The table shows only the runs' rows.
    const list = yield* withStore(db, listRuns, () => Effect.succeed([]))
    if (list.length === 0) {
      return yield* output.out(Option.match(status, {
        onNone: () => `no runs in ${DatabaseUrl.redact(db)}`,
        onSome: (s) => `no ${s} runs in ${DatabaseUrl.redact(db)}`
      }))
    }
    for (const line of RunView.table(list, now)) yield* output.out(line)
  })).pipe(Command.withDescription("List the runs in the database, oldest first."))
