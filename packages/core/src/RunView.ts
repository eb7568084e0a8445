/**
 * A run as JSON, one shape for every reader: `quarry status --json`, `quarry runs --json`, `quarry cancel --json`
 * and the HTTP API (`GET /v1/runs/{id}`, the dashboard). It lives in the core because both the CLI and the server
 * show it, and the server must not depend on the CLI. What differs between them is values, never keys: the server
 * hides its file paths (`null`) and knows queue positions; the CLI shows paths and its resume command.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Compensation from "./Compensation.js"
import type { PersistenceError } from "./Errors.js"
import { reportedCost } from "./internal/usage.js"
import {
  BatchErrorPolicy,
  ExtractorSettings,
  type Lease,
  OutputFormat,
  type Run,
  type RunBudget,
  type RunId,
  RunStatus,
  UsageTotals
} from "./Run.js"
import { type CompensationStep, type RunDetails, RunStore } from "./RunStore.js"

const Usage = Schema.Struct({
  requests: Schema.Int,
  promptTokens: Schema.Int,
  completionTokens: Schema.Int,
  costUsd: Schema.Number
})

const Timings = Schema.Struct({
  createdAt: Schema.String,
  updatedAt: Schema.String,
  startedAt: Schema.NullOr(Schema.String),
  finishedAt: Schema.NullOr(Schema.String),
  durationMs: Schema.NullOr(Schema.Number)
})

const Plan = Schema.Struct({
  extractor: Schema.Struct({ name: Schema.String, version: Schema.String, settings: ExtractorSettings }),
  chunking: Schema.Struct({
    strategy: Schema.String,
    windowSize: Schema.Int,
    overlap: Schema.Int,
    batchSize: Schema.Int
  }),
  concurrency: Schema.Int,
  onBatchError: BatchErrorPolicy,
  provenance: Schema.Boolean,
  input: Schema.Struct({ characters: Schema.Int, sha256: Schema.String }),
  ontologySha256: Schema.NullOr(Schema.String),
  /** `path` is null where the reader must not see server paths (the HTTP API). */
  output: Schema.Struct({ path: Schema.NullOr(Schema.String), format: OutputFormat })
})

const CompensationView = Schema.Struct({
  state: Schema.Literal("none", "pending", "done", "compensation_failed"),
  steps: Schema.Array(Schema.Struct({
    seq: Schema.Int,
    name: Schema.String,
    handler: Schema.String,
    state: Schema.Literal("pending", "done", "failed"),
    lastError: Schema.NullOr(Schema.String)
  }))
})

/**
 * The run JSON.
 *
 * @since 0.1.0
 * @category schemas
 */
export const RunView = Schema.Struct({
  id: Schema.String,
  status: RunStatus,
  /** Not completed and not executing under a live lease. */
  resumable: Schema.Boolean,
  /** How to resume it (a command for the CLI, a request for the API); null when not resumable. */
  resume: Schema.NullOr(Schema.String),
  /** 1-based place among the runs waiting for a slot of a server; null when not waiting (see its description). */
  queuePosition: Schema.NullOr(Schema.Int).annotations({
    description: "1-based place among the runs waiting for a slot of this server; null when the run does not wait " +
      "(it started at once, executes or ended), always in the CLI (no queue), and always with quarry serve " +
      "--cluster, where null says nothing about waiting: a cluster has no queue order, a run waits for a slot on " +
      "the runner that owns it (listed in that runner's /healthz cluster.waiting) and its status stays as stored " +
      "until that runner claims it"
  }),
  progress: Schema.Struct({ committedBatches: Schema.Int, totalBatches: Schema.Int, percent: Schema.Int }),
  counters: Schema.Struct({ entityMentions: Schema.Int, relations: Schema.Int, skippedBatches: Schema.Int }),
  /** Usage of committed batches; `attemptUsage` of every attempt; `lostUsage` the difference. */
  usage: Usage,
  attemptUsage: Usage,
  lostUsage: Usage,
  /** The budget in force (kept with the run; see `Workflow.ExecuteOptions.budget`), `null` without one. */
  budget: Schema.NullOr(
    Schema.Struct({ maxCostUsd: Schema.NullOr(Schema.Number), maxTokens: Schema.NullOr(Schema.Number) })
  ),
  skipped: Schema.Array(Schema.Struct({ batchIndex: Schema.Int, error: Schema.String })),
  extractorStatus: Schema.Record({ key: Schema.String, value: Schema.String }),
  timings: Timings,
  plan: Plan,
  artifact: Schema.NullOr(Schema.Struct({
    path: Schema.NullOr(Schema.String),
    format: OutputFormat,
    bytes: Schema.Int,
    sha256: Schema.String
  })),
  lastError: Schema.NullOr(Schema.String),
  failureReason: Schema.NullOr(Schema.String),
  compensation: CompensationView,
  lease: Schema.NullOr(Schema.Struct({ owner: Schema.String, expiresAt: Schema.String, live: Schema.Boolean })),
  cancelRequested: Schema.Boolean
}).annotations({ identifier: "Run" })

/**
 * @since 0.1.0
 * @category models
 */
export type RunView = typeof RunView.Type

/**
 * Whether a value (e.g. parsed from JSON) has the shape of the run JSON.
 *
 * @since 0.1.0
 * @category predicates
 */
export const isRunView: (value: unknown) => value is RunView = Schema.is(RunView)

/**
 * What is shown of a run beyond its row: its attempt ledger, skipped batches and compensation steps.
 *
 * @since 0.1.0
 * @category models
 */
export type Ledger = RunDetails

/** The ledger of `run` among those `RunStore.runDetails` read (it answers for every run it is given). */
const ledgerIn = (byId: ReadonlyMap<RunId, Ledger>, run: Run): Effect.Effect<Ledger> => {
  const found = byId.get(run.id)
  return found === undefined ? Effect.dieMessage(`no details were read for run ${run.id}`) : Effect.succeed(found)
}

/**
 * Reads a run's ledger.
 *
 * @since 0.1.0
 * @category loading
 */
export const ledger = (run: Run): Effect.Effect<Ledger, PersistenceError, RunStore> =>
  Effect.flatMap(RunStore, (store) => store.runDetails([run])).pipe(Effect.flatMap((byId) => ledgerIn(byId, run)))

/**
 * Reads the ledgers of a page of runs, paired with their runs in order: one query per kind of detail for the whole
 * page (`RunStore.runDetails`), not two or three per run.
 *
 * @since 0.1.0
 * @category loading
 */
export const ledgers = (
  runs: ReadonlyArray<Run>
): Effect.Effect<ReadonlyArray<{ readonly run: Run; readonly ledger: Ledger }>, PersistenceError, RunStore> =>
  Effect.flatMap(RunStore, (store) => store.runDetails(runs)).pipe(
    Effect.flatMap((byId) =>
      Effect.forEach(runs, (run) => Effect.map(ledgerIn(byId, run), (ledger) => ({ run, ledger })))
    )
  )

/** A lease holds at `now`: not expired, and its holder not provably gone. */
const holds = (lease: Lease, now: number): boolean => lease.expiresAt > now && !lease.holderGone

/**
 * Whether a run is executing under a live lease at `now`: not expired, and its holder not provably gone (a process
 * killed on this host, whose lease a claim takes over at once).
 *
 * @since 0.1.0
 * @category predicates
 */
export const leaseLive = (run: Run, now: number): boolean =>
  run.status === "running" && Option.isSome(run.lease) && holds(run.lease.value, now)

/**
 * Whether a resume would continue the run now: not completed, and not executing under a live lease.
 *
 * @since 0.1.0
 * @category predicates
 */
export const resumable = (run: Run, now: number): boolean => run.status !== "completed" && !leaseLive(run, now)

/**
 * The limits a resume must raise to continue the run: every limit of its budget when the budget stopped it (a resume
 * without a budget keeps it and stops again at once, and one with a budget replaces the whole), else none.
 *
 * @since 0.1.0
 * @category models
 */
export const limitsToRaise = (run: Run): ReadonlyArray<"maxCostUsd" | "maxTokens"> => {
  if (run.status !== "failed" || Option.getOrUndefined(run.failureReason) !== "budget") return []
  return Option.match(run.budget, {
    onNone: () => [],
    onSome: (budget) => (["maxCostUsd", "maxTokens"] as const).filter((limit) => budget[limit] !== undefined)
  })
}

/**
 * Spend on attempts whose results were not committed (lost to crashes, or spent on batches that failed the run; a
 * skipped batch commits its failed attempts' usage): the attempt ledger minus the usage of committed batches.
 *
 * @since 0.1.0
 * @category models
 */
export const lostUsage = (run: Run, ledger: Ledger): UsageTotals => {
  const minus = (a: number, b: number) => Math.max(0, a - b)
  return new UsageTotals({
    requests: minus(ledger.attempts.requests, run.usage.requests),
    promptTokens: minus(ledger.attempts.promptTokens, run.usage.promptTokens),
    completionTokens: minus(ledger.attempts.completionTokens, run.usage.completionTokens),
    // A difference of two reported costs: rounded again, or it has noise of its own.
    costUsd: reportedCost(minus(ledger.attempts.costUsd, run.usage.costUsd))
  })
}

/**
 * A run's progress in whole percent (100 for a run without batches).
 *
 * @since 0.1.0
 * @category models
 */
export const percent = (run: Run): number =>
  run.plan.totalBatches === 0 ? 100 : Math.floor((run.committedBatches / run.plan.totalBatches) * 100)

/**
 * How a reader shows what differs between readers.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly now: number
  readonly queuePosition: Option.Option<number>
  /** Show file paths (the CLI) or null them (the API: server paths are not the client's business). */
  readonly paths: boolean
  /** How to resume a resumable run. */
  readonly resume: (run: Run) => string
}

const iso = (ms: number) => new Date(ms).toISOString()

const usage = (u: UsageTotals) => ({
  requests: u.requests,
  promptTokens: u.promptTokens,
  completionTokens: u.completionTokens,
  costUsd: u.costUsd
})

/**
 * The compensation state and steps (in registration order) as shown.
 *
 * @since 0.1.0
 * @category encoding
 */
export const compensation = (steps: ReadonlyArray<CompensationStep>): RunView["compensation"] => ({
  state: Compensation.stateOf(steps),
  steps: steps.map((step) => ({
    seq: step.seq,
    name: step.name,
    handler: step.handler,
    state: step.state,
    lastError: Option.getOrNull(step.lastError)
  }))
})

const plan = (run: Run, paths: boolean): RunView["plan"] => ({
  extractor: {
    name: run.plan.extractor.name,
    version: run.plan.extractor.version,
    settings: run.plan.extractor.settings
  },
  chunking: {
    strategy: run.plan.chunking.strategy,
    windowSize: run.plan.chunking.windowSize,
    overlap: run.plan.chunking.overlap,
    batchSize: run.plan.chunking.batchSize
  },
  concurrency: run.plan.concurrency,
  onBatchError: run.plan.onBatchError,
  provenance: run.plan.provenance,
  input: { characters: run.plan.inputLength, sha256: run.plan.inputSha256 },
  ontologySha256: Option.getOrNull(run.plan.ontologySha256),
  output: { path: paths ? run.plan.outputPath : null, format: run.plan.outputFormat }
})

/**
 * A budget as shown: `null` without a limit (a budget of none is kept as none).
 *
 * @since 0.1.0
 * @category encoding
 */
export const budget = (limits: RunBudget): RunView["budget"] =>
  limits.maxCostUsd === undefined && limits.maxTokens === undefined ?
    null :
    { maxCostUsd: limits.maxCostUsd ?? null, maxTokens: limits.maxTokens ?? null }

/**
 * The view of a run.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (run: Run, ledger: Ledger, options: Options): RunView => {
  const { now } = options
  const canResume = resumable(run, now)
  return {
    id: run.id,
    status: run.status,
    resumable: canResume,
    resume: canResume ? options.resume(run) : null,
    queuePosition: Option.getOrNull(options.queuePosition),
    progress: { committedBatches: run.committedBatches, totalBatches: run.plan.totalBatches, percent: percent(run) },
    counters: { entityMentions: run.entityMentions, relations: run.relations, skippedBatches: run.skippedBatches },
    usage: usage(run.usage),
    attemptUsage: usage(ledger.attempts),
    lostUsage: usage(lostUsage(run, ledger)),
    budget: Option.getOrNull(Option.map(run.budget, budget)),
    skipped: ledger.skipped.map((s) => ({ batchIndex: s.batchIndex, error: s.error })),
    extractorStatus: run.extractorStatus,
    timings: {
      createdAt: iso(run.createdAt),
      updatedAt: iso(run.updatedAt),
      startedAt: Option.getOrNull(Option.map(run.startedAt, iso)),
      finishedAt: Option.getOrNull(Option.map(run.finishedAt, iso)),
      durationMs: Option.getOrNull(Option.zipWith(run.startedAt, run.finishedAt, (started, ended) => ended - started))
    },
    plan: plan(run, options.paths),
    artifact: Option.getOrNull(Option.map(run.artifact, (a) => ({
      path: options.paths ? a.path : null,
      format: a.format,
      bytes: a.bytes,
      sha256: a.sha256
    }))),
    lastError: Option.getOrNull(run.lastError),
    failureReason: Option.getOrNull(run.failureReason),
    compensation: compensation(ledger.compensation),
    lease: Option.getOrNull(Option.map(run.lease, (lease) => ({
      owner: lease.owner,
      expiresAt: iso(lease.expiresAt),
      live: holds(lease, now)
    }))),
    cancelRequested: run.cancelRequested
  }
}
