/**
 * `quarry export <run-id>`: re-merge a completed run into any format, without extracting anything; `--out -` writes
 * it to stdout (through a temp file, since the merge writes a file: memory stays flat) and the summary to stderr.
 *
 * @since 0.1.0
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import { InvalidRunState, MergeError, RunNotFound } from "@quarry/core/Errors"
import * as Merge from "@quarry/core/Merge"
import * as Run from "@quarry/core/Run"
import { RunStore } from "@quarry/core/RunStore"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { pipeline } from "node:stream/promises"
import * as Events from "./Events.js"
import * as Flags from "./Flags.js"
import * as Inputs from "./Inputs.js"
import { Output } from "./Output.js"
import { checkManifest, loadOntology, provenanceOf, storedTexts, writeManifest } from "./Resume.js"
import * as Start from "./Start.js"
import { withStore } from "./Status.js"

/** How the checks of `--out FILE` name it. */
const outFlag = { ...Inputs.outFlag, instead: "pass another --out (- for stdout)" }

/** How the checks of the default path name it. */
const defaultOutput = { what: "the default output", flag: "--out", instead: "pass --out FILE" }

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
  out: Flags.out(
    "Where to write, - for stdout (default: next to the database, named after the run).",
    "pass a file name (- for stdout)"
  ),
  json: Flags.json
}, (flags) =>
  Effect.gen(function*() {
    const output = yield* Output
    const db = yield* Flags.resolveDb(flags.db)
    const runId = yield* Start.decodeRunId(flags.runId)
    const toStdout = Option.contains(flags.out, "-")
    if (Option.isSome(flags.out) && !toStdout) yield* Inputs.checkOutput(flags.out.value, { ...outFlag, db })
    const retry = Flags.resumeCommand(runId, db, ["--retry-skipped"])
    const { artifact, manifest, skippedBatches } = yield* withStore(
      db,
      Effect.gen(function*() {
        const store = yield* RunStore
        const run = yield* store.getRun(runId)
        if (run.status !== "completed") {
          return yield* new InvalidRunState({ runId, status: run.status, expected: "completed (resume it first)" })
        }
        const format = Start.resolveFormat(flags.format, toStdout ? Option.none() : flags.out, run.plan.outputFormat)
        const ontology = yield* loadOntology(run)
        const merge = (target: string) =>
          Merge.merge({ runId, path: target, format, ontology, provenance: provenanceOf(run) })
        const skippedBatches = run.skippedBatches
        if (toStdout) {
          return { artifact: yield* toStandardOutput(runId, format, merge), manifest: Option.none(), skippedBatches }
        }
        const target = path.resolve(Option.getOrElse(flags.out, () => Start.defaultOutput(db, runId, format)))
        const naming = Option.isSome(flags.out) ? outFlag : defaultOutput
        // --out was checked before the database was opened; the default path needs the run's format.
        if (Option.isNone(flags.out)) yield* Inputs.checkOutput(target, { ...naming, db })
        yield* Inputs.checkNotStoredText(target, yield* storedTexts(run), naming)
        // The manifest is written beside the file, or a stale one removed there: its place is checked either way.
        yield* checkManifest(target, naming, db, run)
        const artifact = yield* merge(target)
        return { artifact, manifest: yield* writeManifest(run, artifact.path, retry), skippedBatches }
      }),
      () => Effect.fail(new RunNotFound({ runId }))
    )
    if (artifact === undefined) return
    const now = yield* Clock.currentTimeMillis
    const where = toStdout ? "stdout" : artifact.path
    // With --out - stdout holds the artifact alone.
    const say = toStdout ? output.err : output.out
    yield* say(
      flags.json ?
        JSON.stringify({
          runId,
          time: new Date(now).toISOString(),
          artifact: { ...Events.artifactJson(artifact), path: toStdout ? "-" : artifact.path },
          skippedBatches,
          manifest: Option.getOrNull(manifest)
        }) :
        `exported run ${runId}: ${where} (${artifact.format}, ${artifact.bytes} bytes, sha256 ${artifact.sha256})`
    )
    if (skippedBatches > 0 && !flags.json) {
      const one = skippedBatches === 1
      yield* output.err(
        `${Events.plural(skippedBatches, "batch", "batches")} of run ${runId} ${one ? "was" : "were"} skipped ` +
          `(--on-batch-error skip), so the artifact is partial; ` +
          Option.match(manifest, {
            onNone: () => "",
            onSome: (file) => `${one ? "it is" : "they are"} listed in ${file}; `
          }) +
          `retry ${one ? "it" : "them"} with: ${retry}`
      )
    }
  })).pipe(Command.withDescription("Write a completed run's artifact again, in any format."))

/**
 * Merges into a private temp folder and copies the file to stdout with backpressure, then removes the folder. A
 * reader that stops early (`| head`) ends the copy quietly: `undefined`, and nothing more is said.
 */
const toStandardOutput = <E, R>(
  runId: string,
  format: Run.OutputFormat,
  merge: (target: string) => Effect.Effect<Run.Artifact, E, R>
) =>
  Effect.acquireUseRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "quarry-export-"))),
    (dir) =>
      Effect.flatMap(merge(path.join(dir, `${runId}.${Run.formatExtension[format]}`)), (artifact) =>
        Effect.tryPromise({
          try: () =>
            pipeline(fs.createReadStream(artifact.path), process.stdout, { end: false }).then(
              () => artifact,
              (error: NodeJS.ErrnoException) => {
                if (error.code === "EPIPE") return undefined
                throw error
              }
            ),
          catch: (cause) => new MergeError({ path: "stdout", cause })
        })),
    (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
  )
