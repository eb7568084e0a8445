/**
 * `quarry export <run-id>`: re-merge a completed run into any format, without extracting anything.
 *
 * @since 0.1.0
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { InvalidRunState, RunNotFound } from "@quarry/core/Errors"
import * as Merge from "@quarry/core/Merge"
import { RunStore } from "@quarry/core/RunStore"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as path from "node:path"
import * as Events from "./Events.js"
import * as Flags from "./Flags.js"
import * as Inputs from "./Inputs.js"
import { Output } from "./Output.js"
import { loadOntology, provenanceOf } from "./Resume.js"
import * as Start from "./Start.js"
import { withStore } from "./Status.js"

/**
 * The `export` command.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = Command.make("export", {
  runId: Args.text({ name: "run-id" }).pipe(Args.withDescription("The completed run to export.")),
  db: Flags.db,
  format: Start.formatOption("The format (default: from the --out extension, else the run's own format)."),
  out: Options.text("out").pipe(
    Options.withPseudoName("FILE"),
    Options.withDescription("Where to write (default: next to the database, named after the run)."),
    Options.optional
  ),
  json: Flags.json
}, (flags) =>
  Effect.gen(function*() {
    const output = yield* Output
    const db = yield* Flags.resolveDb(flags.db)
    const runId = yield* Start.decodeRunId(flags.runId)
    if (Option.isSome(flags.out)) yield* Inputs.checkOutput(flags.out.value, { ...Inputs.outFlag, db })
    const artifact = yield* withStore(
      db,
      Effect.gen(function*() {
        const store = yield* RunStore
        const run = yield* store.getRun(runId)
        if (run.status !== "completed") {
          return yield* new InvalidRunState({ runId, status: run.status, expected: "completed (resume it first)" })
        }
        const format = Start.resolveFormat(flags.format, flags.out, run.plan.outputFormat)
        const target = path.resolve(Option.getOrElse(flags.out, () => Start.defaultOutput(db, runId, format)))
        // --out was checked before the database was opened; the default path needs the run's format.
        if (Option.isNone(flags.out)) {
          yield* Inputs.checkOutput(target, {
            what: "the default output",
            flag: "--out",
            instead: "pass --out FILE",
            db
          })
        }
        const ontology = yield* loadOntology(run)
        return yield* Merge.merge({ runId, path: target, format, ontology, provenance: provenanceOf(run) })
      }),
      () => Effect.fail(new RunNotFound({ runId }))
    )
    const now = yield* Clock.currentTimeMillis
    yield* output.out(
      flags.json ?
        JSON.stringify({ runId, time: new Date(now).toISOString(), artifact: Events.artifactJson(artifact) }) :
        `exported run ${runId}: ${artifact.path} (${artifact.format}, ${artifact.bytes} bytes, sha256 ${artifact.sha256})`
    )
  })).pipe(Command.withDescription("Write a completed run's artifact again, in any format."))
