/**
 * `quarry resume <run-id>`: continue a run from its last checkpoint with its stored parameters.
 *
 * @since 0.1.0
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Chunking from "@quarry/core/Chunking"
import { RunNotFound } from "@quarry/core/Errors"
import * as Extractor from "@quarry/core/Extractor"
import * as Merge from "@quarry/core/Merge"
import * as Ontology from "@quarry/core/Ontology"
import type * as Run from "@quarry/core/Run"
import { RunStore } from "@quarry/core/RunStore"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import * as Errors from "./Errors.js"
import { UsageError } from "./Errors.js"
import * as Events from "./Events.js"
import * as Execution from "./Execution.js"
import * as Extractors from "./Extractors.js"
import * as Flags from "./Flags.js"
import * as Inputs from "./Inputs.js"
import * as Llm from "./Llm.js"
import { Output } from "./Output.js"
import { Settings } from "./Settings.js"
import * as Start from "./Start.js"
import * as Store from "./Store.js"

/** How many times resume waits for the lease of a holder that died on this host before giving up. */
const maxTakeovers = 3

const options = {
  runId: Args.text({ name: "run-id" }).pipe(Args.withDescription("The run to continue.")),
  db: Flags.db,
  out: Flags.out(
    "Also write the finished artifact here (re-merged from the stored batches; format from the extension, else the " +
      "run's own)."
  ),
  retrySkipped: Options.boolean("retry-skipped").pipe(
    Options.withDescription(
      "Extract again the batches skipped under --on-batch-error skip (also of a completed run); the artifact is " +
        "rewritten and its manifest removed once none is left."
    )
  ),
  ...Flags.limits,
  noBudget: Flags.noBudget,
  ...Llm.options,
  json: Flags.json
}

/**
 * The `resume` command.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = Command.make("resume", options, (flags) =>
  Effect.gen(function*() {
    const settings = yield* Settings
    const output = yield* Output
    const db = yield* Flags.resolveDb(flags.db)
    const runId = yield* Start.decodeRunId(flags.runId)
    const limits = yield* Flags.liftBudget(Flags.limitsOf(flags), flags.noBudget)
    const llm = yield* Llm.parse(flags)
    yield* Inputs.checkDatabase(db)
    if (Option.isSome(flags.out)) yield* Inputs.checkOutput(flags.out.value, { ...Inputs.outFlag, db })
    // Never create a database just to find that the run is not in it.
    if (!Inputs.isEphemeralDatabase(db) && !Inputs.databaseExists(db)) return yield* new RunNotFound({ runId })

    const execute = Execution.execute(runId, {
      db,
      json: flags.json,
      leaseMs: settings.leaseMs,
      shutdownDelayMs: Option.getOrUndefined(settings.testHooks.shutdownDelayMs),
      limits,
      retrySkipped: flags.retrySkipped,
      extractorArgs: llm.args
    })
    // A holder that died on this host leaves a lease that can only expire: wait for that, then take the run over.
    const attempt = (
      takeovers: number
    ): Effect.Effect<Run.Run, Effect.Effect.Error<typeof execute>, Effect.Effect.Context<typeof execute>> =>
      Effect.catchTag(execute, "RunLocked", (locked) =>
        Effect.gen(function*() {
          if (takeovers >= maxTakeovers || !Errors.holderIsGone(locked.owner)) return yield* locked
          const now = yield* Clock.currentTimeMillis
          const waitMs = Math.max(0, locked.expiresAt - now) + 50
          yield* output.err(
            `quarry: run ${runId} was held by ${Errors.describeHolder(locked.owner)}, which is no longer running; ` +
              `taking it over when its lease expires in ${Events.formatDuration(waitMs)}`
          )
          yield* Effect.sleep(waitMs)
          return yield* attempt(takeovers + 1)
        }))

    return yield* Effect.gen(function*() {
      // The run's extractor decides which one to build (the llm one only for an llm run), before anything is written.
      const stored = yield* Effect.flatMap(RunStore, (store) => store.getRun(runId))
      const extractor = stored.plan.extractor.name
      yield* Llm.refuseFor(extractor, llm, `run ${runId} uses the ${extractor} extractor`)
      const retry = Flags.resumeCommand(runId, db, [...llm.args, ...limits.args, "--retry-skipped"])
      if (Option.isSome(flags.out)) {
        const out = path.resolve(flags.out.value)
        yield* Inputs.checkNotStoredText(out, yield* storedTexts(stored), Inputs.outFlag)
        // Its copy gets the manifest too if the run skips batches, or a stale one there is removed.
        yield* checkManifest(out, Inputs.outFlag, db, stored)
      }
      const extracts = stored.status !== "completed" || (flags.retrySkipped && stored.skippedBatches > 0)
      // The run ends by writing its artifact where start planned it: a place that went away since is refused now,
      // not after every remaining batch was extracted.
      if (extracts) yield* Inputs.checkOutput(stored.plan.outputPath, artifactPlace(runId, db))
      // A completed run is reported with its artifact: that file must still be the one it wrote.
      else yield* restoreArtifact(stored, db, retry)
      const registry = extracts ?
        yield* Extractors.registryFor(settings, extractor, llm, {
          runId,
          needsPrice: limits.budget?.maxCostUsd !== undefined,
          stored: stored.plan.extractor.settings
        }) :
        Extractors.registry(settings)
      const run = yield* attempt(0).pipe(Effect.provideService(Extractor.Registry, registry))
      if (Option.isSome(flags.out)) yield* copyArtifact(run, path.resolve(flags.out.value), flags.json, retry)
    }).pipe(Effect.provide(Store.layer(db, settings)))
  }).pipe(Execution.reportErrorsAsJson(flags.json))).pipe(
    Command.withDescription("Continue a run from its last checkpoint, with its own parameters.")
  )

/** How the checks of a run's own artifact path name it: no option moves it. */
const artifactPlace = (runId: string, db: string): Inputs.OutputCheck => ({
  what: `run ${runId}'s artifact`,
  flag: undefined,
  instead: "move the database (with its -wal and -shm files) to another name and resume the run from there",
  db
})

/**
 * Makes sure a completed run's artifact file is the one the run wrote, before resume reports it: a missing one is
 * written again from the stored batches (the same bytes), and another file in its place (changed, or replaced) is
 * refused, not overwritten: its bytes may be someone's work, and `export --out` replaces it when asked to. A missing
 * manifest of skipped batches is written again too, `retry` as its command.
 */
const restoreArtifact = (run: Run.Run, db: string, retry: string) =>
  Effect.gen(function*() {
    if (Option.isNone(run.artifact)) return
    const artifact = run.artifact.value
    // A file that cannot be looked at or read is left to whoever reads it.
    const stat = yield* Effect.option(Effect.try(() => fs.statSync(artifact.path, { throwIfNoEntry: false })))
    if (Option.isNone(stat)) return
    if (stat.value === undefined) yield* writeAgain(run, artifact, db)
    else {
      const changed = !stat.value.isFile() || stat.value.size !== artifact.bytes ||
        Option.exists(yield* Effect.option(Inputs.fileSha256(artifact.path)), (sha256) => sha256 !== artifact.sha256)
      if (changed) {
        return yield* new UsageError({
          message: `run ${run.id} is completed, but its artifact ${artifact.path} is not the file it wrote ` +
            `(${artifact.bytes} bytes, sha256 ${artifact.sha256}): it was changed or replaced since, and resume does ` +
            `not overwrite it; write the artifact again with \`${exportCommand(run.id, artifact, db)}\``
        })
      }
    }
    yield* restoreManifest(run, artifact.path, retry)
  })

/** True when nothing is at `file`; a file that cannot be looked at is left to whoever reads it. */
const isMissing = (file: string): boolean => {
  try {
    return fs.lstatSync(file, { throwIfNoEntry: false }) === undefined
  } catch {
    return false
  }
}

/** Writes a completed run's missing manifest of skipped batches again; one that is there is left as it is. */
const restoreManifest = (run: Run.Run, artifactPath: string, retry: string) =>
  Effect.gen(function*() {
    const target = Merge.manifestPath(artifactPath)
    if (run.skippedBatches === 0 || !isMissing(target)) return
    yield* writeManifest(run, artifactPath, retry)
    yield* (yield* Output).err(
      `quarry: run ${run.id}'s manifest of skipped batches ${target} was missing; written again from the stored batches`
    )
  })

/**
 * Writes the manifest of a completed run's skipped batches beside `artifactPath`, as the run's merge does, with
 * `retry` as the command that retries them; its offsets come from the stored input, chunked as planned. The
 * manifest's path, or none for a run that skipped nothing: a manifest left there by an earlier artifact is removed
 * then (as the merge does), since it would call this complete one partial.
 *
 * @since 0.1.0
 * @category execution
 */
export const writeManifest = (run: Run.Run, artifactPath: string, retry: string) =>
  Effect.gen(function*() {
    if (run.skippedBatches === 0) {
      yield* Merge.writeSkippedManifest(run.id, artifactPath, [], [], retry)
      return Option.none<string>()
    }
    const store = yield* RunStore
    const batches = Chunking.plan(yield* store.readInput(run.id), run.plan.chunking)
    yield* Merge.writeSkippedManifest(run.id, artifactPath, yield* store.skippedBatches(run.id), batches, retry)
    return Option.some(Merge.manifestPath(artifactPath))
  })

/** The `quarry export` that writes a run's artifact again at its own path, in its own format. */
const exportCommand = (runId: string, artifact: Run.Artifact, db: string) => {
  const byExtension = Start.resolveFormat(Option.none(), Option.some(artifact.path), artifact.format)
  return `quarry export ${runId} --out ${Errors.shellQuote(artifact.path)}` +
    `${byExtension === artifact.format ? "" : ` --format ${artifact.format}`}${Errors.dbFlag(db)}`
}

/** Writes a completed run's missing artifact again where it was, from the stored batches. */
const writeAgain = (run: Run.Run, artifact: Run.Artifact, db: string) =>
  Effect.gen(function*() {
    const output = yield* Output
    yield* Inputs.checkOutput(artifact.path, artifactPlace(run.id, db))
    const written = yield* Merge.merge({
      runId: run.id,
      path: artifact.path,
      format: artifact.format,
      ontology: yield* loadOntology(run),
      provenance: provenanceOf(run)
    })
    // The merge is deterministic: other bytes from the same stored batches would mean a bug, not a state.
    if (written.sha256 !== artifact.sha256) {
      return yield* Effect.dieMessage(
        `run ${run.id}: its artifact, merged again, has sha256 ${written.sha256}, not ${artifact.sha256}`
      )
    }
    yield* output.err(
      `quarry: run ${run.id}'s artifact ${artifact.path} was missing; written again from the stored batches`
    )
  })

/**
 * Writes a completed run's artifact to another path, re-merged from the stored batches, in the format its extension
 * names (as `quarry export --out` does), else the run's own.
 */
const copyArtifact = (run: Run.Run, target: string, json: boolean, retry: string) =>
  Effect.gen(function*() {
    const output = yield* Output
    const ontology = yield* loadOntology(run)
    const artifact = yield* Merge.merge({
      runId: run.id,
      path: target,
      format: Start.resolveFormat(Option.none(), Option.some(target), run.plan.outputFormat),
      ontology,
      provenance: provenanceOf(run)
    })
    const manifest = yield* writeManifest(run, artifact.path, retry)
    const now = yield* Clock.currentTimeMillis
    yield* output.out(
      json ?
        Events.encode("artifact.written", now, {
          runId: run.id,
          artifact: Events.artifactJson(artifact),
          manifest: Option.getOrNull(manifest)
        }) :
        `artifact ${artifact.path} (${artifact.format}, ${artifact.bytes} bytes, sha256 ${artifact.sha256})` +
        Option.match(manifest, { onNone: () => "", onSome: (file) => `; its skipped batches are listed in ${file}` })
    )
  })

/**
 * Checks the place of the manifest of skipped batches beside an artifact written to `target` (written there for a
 * partial artifact, which without it would pass for complete; removed there otherwise), as `target`'s own place is
 * checked, before anything is written.
 *
 * @since 0.1.0
 * @category execution
 */
export const checkManifest = (target: string, naming: Omit<Inputs.OutputCheck, "db">, db: string, run: Run.Run) =>
  Effect.gen(function*() {
    const what = { ...naming, what: `the manifest of skipped batches of ${naming.what}` }
    const manifest = Merge.manifestPath(target)
    yield* Inputs.checkOutput(manifest, { ...what, db })
    yield* Inputs.checkNotStoredText(manifest, yield* storedTexts(run), what)
  })

/**
 * The provenance option of a re-merge: the run's own choice (`--provenance` at start).
 *
 * @since 0.1.0
 * @category execution
 */
export const provenanceOf = (run: Run.Run): { readonly extractor: Run.ExtractorIdentity } | undefined =>
  run.plan.provenance ? { extractor: run.plan.extractor } : undefined

/**
 * The texts a run stored (its input and its ontology), which an artifact written for it must not overwrite.
 *
 * @since 0.1.0
 * @category execution
 */
export const storedTexts = (run: Run.Run) =>
  Effect.gen(function*() {
    const store = yield* RunStore
    const ontology = Option.isNone(run.plan.ontologySha256) ?
      Option.none<string>() :
      yield* store.readOntologySource(run.plan.ontologySha256.value)
    const input: Inputs.StoredText = {
      what: `the input of run ${run.id}`,
      sha256: run.plan.inputSha256,
      length: run.plan.inputLength
    }
    return [
      input,
      ...Option.toArray(Option.map(ontology, (text): Inputs.StoredText => ({
        what: `the ontology of run ${run.id}`,
        sha256: createHash("sha256").update(text).digest("hex"),
        length: text.length
      })))
    ]
  })

/**
 * The ontology a run was planned with, loaded from the database.
 *
 * @since 0.1.0
 * @category execution
 */
export const loadOntology = (run: Run.Run) =>
  Effect.gen(function*() {
    const store = yield* RunStore
    if (Option.isNone(run.plan.ontologySha256)) return Option.none<Ontology.Ontology>()
    const source = yield* store.readOntologySource(run.plan.ontologySha256.value)
    if (Option.isNone(source)) return Option.none<Ontology.Ontology>()
    return Option.some(yield* Ontology.parse(source.value).pipe(Effect.orDie))
  })
