/**
 * `quarry start <input>`: validate everything, create the run, execute it.
 *
 * @since 0.1.0
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Chunking from "@quarry/core/Chunking"
import * as DatabaseUrl from "@quarry/core/DatabaseUrl"
import * as DefaultOntology from "@quarry/core/DefaultOntology"
import { RunAlreadyExists } from "@quarry/core/Errors"
import * as Extractor from "@quarry/core/Extractor"
import * as Merge from "@quarry/core/Merge"
import * as Ontology from "@quarry/core/Ontology"
import * as Run from "@quarry/core/Run"
import { RunStore } from "@quarry/core/RunStore"
import * as Workflow from "@quarry/core/Workflow"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as path from "node:path"
import { badEnvironment, UsageError } from "./Errors.js"
import * as Execution from "./Execution.js"
import * as Extractors from "./Extractors.js"
import * as Flags from "./Flags.js"
import * as Inputs from "./Inputs.js"
import * as Llm from "./Llm.js"
import { Output } from "./Output.js"
import { Settings } from "./Settings.js"
import * as Store from "./Store.js"

const optionalText = Flags.optionalText

const formatsByExtension: Record<string, Run.OutputFormat> = {
  ".ttl": "turtle",
  ".turtle": "turtle",
  ".nt": "ntriples",
  ".jsonl": "jsonl",
  ".ndjson": "jsonl"
}

/**
 * `--format turtle|ntriples|jsonl`, for `start` and `export`.
 *
 * @since 0.1.0
 * @category options
 */
export const formatOption = (description: string) =>
  Flags.checked("format", "turtle|ntriples|jsonl", description, (raw) =>
    Schema.is(Run.OutputFormat)(raw) ?
      Effect.succeed(raw) :
      new UsageError({ message: `format "${raw}" is unknown; use turtle, ntriples or jsonl` }))

/**
 * The artifact format: `--format`, else the one the `--out` extension names, else `fallback`.
 *
 * @since 0.1.0
 * @category options
 */
export const resolveFormat = (
  format: Option.Option<Run.OutputFormat>,
  out: Option.Option<string>,
  fallback: Run.OutputFormat
): Run.OutputFormat =>
  Option.getOrElse(format, () =>
    Option.match(out, {
      onNone: () => fallback,
      onSome: (file) => formatsByExtension[path.extname(file).toLowerCase()] ?? fallback
    }))

/**
 * Where an artifact goes by default: next to the database (a SQLite file; for a PostgreSQL URL, the working
 * directory), named after the run, with the format's extension.
 *
 * @since 0.1.0
 * @category options
 */
export const defaultOutput = (db: string, runId: string, format: Run.OutputFormat): string =>
  // A server database has no directory: the artifact goes to the working directory.
  path.join(
    DatabaseUrl.isPostgres(db) ? process.cwd() : path.dirname(path.resolve(db)),
    `${runId}.${Run.formatExtension[format]}`
  )

/**
 * Decodes a run id given on the command line.
 *
 * @since 0.1.0
 * @category options
 */
export const decodeRunId = (raw: string): Effect.Effect<Run.RunId, UsageError> =>
  Either.match(Schema.decodeUnknownEither(Run.RunId)(raw), {
    onRight: Effect.succeed,
    onLeft: (error) =>
      new UsageError({
        message: `run id ${JSON.stringify(raw.length > 140 ? `${raw.slice(0, 140)}...` : raw)} is not valid: ${
          ParseResult.ArrayFormatter.formatErrorSync(error).map((issue) => issue.message).join("; ")
        }`
      })
  })

/** `--max-input-size`, else `QUARRY_MAX_INPUT_BYTES`, else 512 MiB. */
const maxInputBytes = (flag: Option.Option<number>) =>
  Option.match(flag, {
    onSome: Effect.succeed,
    onNone: () =>
      Config.integer("QUARRY_MAX_INPUT_BYTES").pipe(
        // Past the largest safe integer a number is rounded: 99999999999999999999 read as no limit at all.
        Config.validate({
          message: "must be a whole number of bytes greater than 0",
          validation: (n) => n > 0 && Number.isSafeInteger(n)
        }),
        Config.withDefault(Inputs.defaultMaxInputBytes),
        Effect.mapError(badEnvironment)
      )
  })

/** `--ontology FILE`, read and parsed: refused when unreadable, malformed, or without classes. */
const readOntology = (file: string, maxBytes: number) =>
  Effect.gen(function*() {
    const text = yield* Inputs.readTextFile(file, "ontology", maxBytes)
    // As Ontology.load reads a file: an extension that names no format (.owl, .txt) is read permissively.
    const format = Option.getOrUndefined(Ontology.formatOfPath(file))
    const parsed = yield* Ontology.parse(text, { source: file, format })
    // Nothing could be typed by it: every mention would be dropped, silently.
    if (parsed.classes.length === 0) {
      return yield* new UsageError({
        message: `ontology ${file} declares no classes (no rdfs:Class or owl:Class), so nothing could be ` +
          `extracted with it; pass an ontology with classes, or leave --ontology out for the built-in one`
      })
    }
    return { text, format }
  })

const options = {
  input: Args.text({ name: "input" }).pipe(Args.withDescription("The UTF-8 text file to extract from.")),
  db: Flags.db,
  runId: Flags.checked(
    "run-id",
    "ID",
    "The run's id: 1 to 128 of A-Z a-z 0-9 . _ - (default: run-<date>-<time>-<random>).",
    (raw) => decodeRunId(raw)
  ),
  chunking: Flags.checked(
    "chunking",
    "chars|sentences",
    "How the text is cut into chunks: fixed character windows, or whole sentences up to --window characters " +
      "(default chars).",
    (raw) =>
      Schema.is(Chunking.Strategy)(raw) ?
        Effect.succeed(raw) :
        new UsageError({ message: `chunking strategy "${raw}" is unknown; use "chars" or "sentences"` })
  ),
  window: Flags.number(
    "window",
    "Chunk size: characters (chars) or a character budget (sentences); default 1000.",
    "a whole number greater than 0"
  ),
  overlap: Flags.number(
    "overlap",
    "Characters shared by neighbouring chunks (default: window / 5, at most 200).",
    "a whole number of 0 or more"
  ),
  batchSize: Flags.number(
    "batch-size",
    "Chunks per extractor call, the unit of commit (default 10).",
    "a whole number greater than 0"
  ),
  concurrency: Flags.number(
    "concurrency",
    "Extractor calls in flight at once (default 1).",
    "a whole number greater than 0"
  ),
  extractor: optionalText(
    "extractor",
    "NAME",
    `The extractor: offline, llm (an OpenAI-compatible server, see --model), capitalized (default ` +
      `${Extractors.defaultName}).`
  ),
  ontology: optionalText(
    "ontology",
    "FILE",
    "An ontology in Turtle, N-Triples, N-Quads or TriG (default: the built-in FOAF + schema.org subset)."
  ),
  out: Flags.out("Where the artifact goes (default: next to the database, named after the run)."),
  format: formatOption("The artifact's format (default: from the --out extension, else turtle)."),
  onBatchError: Flags.checked(
    "on-batch-error",
    "fail|skip",
    "When a batch still fails after the extractor's retries: fail the run (resumable; the default), or skip the " +
      "batch, record its error and complete with a partial artifact plus a manifest (<artifact>.skipped.json). " +
      "Stored with the run.",
    (raw) => {
      const policy = raw.trim()
      return Schema.is(Run.BatchErrorPolicy)(policy) ?
        Effect.succeed(policy) :
        new UsageError({
          message: `on-batch-error ${JSON.stringify(raw)} is unknown; use fail (the run fails and stays ` +
            `resumable) or skip (the batch is recorded as skipped with its error, and the run goes on)`
        })
    }
  ),
  provenance: Options.boolean("provenance").pipe(
    Options.withDescription(
      "Add PROV-O provenance to the artifact: the run, the extractor, each entity's mentions as document offsets. " +
        "Stored with the run."
    )
  ),
  maxInputSize: Flags.checked(
    "max-input-size",
    "SIZE",
    "Refuse an input (or ontology) file larger than this, before reading it: bytes, or 64MB, 2GB (default 512MB, " +
      "or QUARRY_MAX_INPUT_BYTES).",
    (raw) => Inputs.parseSize("max-input-size", raw)
  ),
  ...Flags.limits,
  ...Llm.options,
  json: Flags.json
}

/**
 * The `start` command.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = Command.make("start", options, (flags) => {
  // What an interruption before the execution reports: the run's id once known, and whether the execution began
  // (then it reports its own, `run.interrupted`).
  const progress: Execution.BeforeExecution = { runId: Option.getOrUndefined(flags.runId), executing: false }
  return Effect.gen(function*() {
    const settings = yield* Settings
    const db = yield* Flags.resolveDb(flags.db)
    // Flags first: nothing below touches the disk until they are all valid.
    const chunking = yield* Either.match(
      Chunking.validate({
        strategy: Option.getOrUndefined(flags.chunking),
        windowSize: Option.getOrUndefined(flags.window),
        overlap: Option.getOrUndefined(flags.overlap),
        batchSize: Option.getOrUndefined(flags.batchSize)
      }),
      { onLeft: Effect.fail, onRight: Effect.succeed }
    )
    const concurrency = Option.getOrElse(flags.concurrency, () => 1)
    if (!Number.isSafeInteger(concurrency) || concurrency < 1) {
      return yield* new UsageError({
        message: `concurrency (${concurrency}) must be a whole number greater than 0`
      })
    }
    const format = resolveFormat(flags.format, flags.out, "turtle")
    const limits = Flags.limitsOf(flags)
    const llm = yield* Llm.parse(flags)
    const extractorName = Option.getOrElse(flags.extractor, () => Extractors.defaultName)
    yield* Llm.refuseFor(extractorName, llm, `pass --extractor llm, or leave ${llm.given.join(", ")} out`)
    // The extractor is built (the llm one from its configuration) before any file is touched.
    const registry = yield* Extractors.registryFor(settings, extractorName, llm, {
      needsPrice: limits.budget?.maxCostUsd !== undefined
    })
    const maxBytes = yield* maxInputBytes(flags.maxInputSize)
    // Files: the input, the ontology, the database's location, the artifact's location.
    const input = yield* Inputs.readTextFile(flags.input, "input file", maxBytes)
    const ontology = yield* Effect.transposeOption(Option.map(flags.ontology, (file) => readOntology(file, maxBytes)))
    // A run without --ontology is planned with the built-in one (stored with the run like any other).
    const ontologySource = Option.getOrElse(ontology, () => ({ text: DefaultOntology.turtle, format: "turtle" }))
    yield* Inputs.checkDatabase(db)
    const runId = Option.isSome(flags.runId) ? flags.runId.value : yield* Workflow.makeRunId
    progress.runId = runId
    const out = path.resolve(Option.getOrElse(flags.out, () => defaultOutput(db, runId, format)))
    const outputCheck: Inputs.OutputCheck = {
      ...(Option.isSome(flags.out) ?
        Inputs.outFlag :
        { what: "the default output", flag: "--out", instead: "pass --out FILE, or another --run-id" }),
      db,
      sources: [
        { what: "input file", path: flags.input },
        ...Option.toArray(Option.map(flags.ontology, (file) => ({ what: "ontology", path: file })))
      ]
    }
    yield* Inputs.checkOutput(out, outputCheck)
    // The merge writes the manifest of skipped batches there, or removes one left there: a place that cannot take
    // either would fail the run only after every batch was extracted.
    yield* Inputs.checkOutput(Merge.manifestPath(out), {
      ...outputCheck,
      what: `the manifest of skipped batches of ${outputCheck.what}`
    })

    if (input === "") {
      yield* Effect.flatMap(Output, (output) =>
        output.err(
          `quarry: input file ${flags.input} is empty: the run completes at once with an empty artifact (no entities)`
        ))
    }

    return yield* Effect.gen(function*() {
      const store = yield* RunStore
      const existing = yield* store.getRun(runId).pipe(Effect.option)
      if (Option.isSome(existing)) return yield* new RunAlreadyExists({ runId })
      yield* Workflow.create({
        runId,
        input,
        chunking,
        extractor: extractorName,
        ontology: ontologySource,
        concurrency,
        output: { path: out, format },
        onBatchError: Option.getOrUndefined(flags.onBatchError),
        provenance: flags.provenance
      })
      progress.executing = true
      return yield* Execution.execute(runId, {
        db,
        json: flags.json,
        leaseMs: settings.leaseMs,
        shutdownDelayMs: Option.getOrUndefined(settings.testHooks.shutdownDelayMs),
        limits,
        extractorArgs: llm.args
      })
    }).pipe(
      Effect.provideService(Extractor.Registry, registry),
      Effect.provide(Store.layer(db, settings))
    )
  }).pipe(Execution.reportInterruptBefore(flags.json, progress), Execution.reportErrorsAsJson(flags.json))
}).pipe(Command.withDescription("Create a run from a text file and execute it."))
