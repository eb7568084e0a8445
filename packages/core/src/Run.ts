/**
 * Run identity, status and the stored description of a run.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import * as Chunking from "./Chunking.js"

/**
 * A run id: 1 to 128 characters of `[A-Za-z0-9._-]`, never `.` or `..` or containing `..`, so it is safe as a
 * file name.
 *
 * @since 0.1.0
 * @category models
 */
export const RunId = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9._-]{1,128}$/, {
    message: () => "a run id is 1 to 128 characters of letters, digits, '.', '_' or '-'"
  }),
  Schema.filter((s) => !s.includes("..") && s !== ".", {
    message: () => "a run id must not be '.' or contain '..'"
  }),
  Schema.brand("RunId")
)

/**
 * @since 0.1.0
 * @category models
 */
export type RunId = typeof RunId.Type

/**
 * The statuses a run ends in, until a resume: nothing executes it and it can be deleted. `RunStatus` is built from
 * this list, so a new status is either here or among the two that are not.
 *
 * @since 0.1.0
 * @category models
 */
export const FinishedStatus = Schema.Literal("completed", "failed", "cancelled", "interrupted")

/**
 * @since 0.1.0
 * @category models
 */
export type FinishedStatus = typeof FinishedStatus.Type

/**
 * Where a run is in its life: `pending -> running -> completed`; `running -> failed | cancelled | interrupted`;
 * the last three can be resumed.
 *
 * @since 0.1.0
 * @category models
 */
export const RunStatus = Schema.Literal("pending", "running", ...FinishedStatus.literals)

/**
 * @since 0.1.0
 * @category models
 */
export type RunStatus = typeof RunStatus.Type

/**
 * True for a status a run ends in (`FinishedStatus`): not `pending` or `running`.
 *
 * @since 0.1.0
 * @category predicates
 */
export const isFinished: (status: RunStatus) => status is FinishedStatus = Schema.is(FinishedStatus)

/**
 * Statuses from which `resume` continues a run.
 *
 * @since 0.1.0
 * @category predicates
 */
export const isResumable = (status: RunStatus): boolean =>
  status === "pending" || status === "failed" || status === "cancelled" || status === "interrupted" ||
  status === "running"

/**
 * Artifact formats the merge can write.
 *
 * @since 0.1.0
 * @category models
 */
export const OutputFormat = Schema.Literal("turtle", "ntriples", "jsonl")

/**
 * @since 0.1.0
 * @category models
 */
export type OutputFormat = typeof OutputFormat.Type

/**
 * The usual file extension of each format.
 *
 * @since 0.1.0
 * @category utils
 */
export const formatExtension: Record<OutputFormat, string> = { turtle: "ttl", ntriples: "nt", jsonl: "jsonl" }

/**
 * What a run does when a batch fails after the extractor's own retries: `fail` the run (resumable), or `skip` the
 * batch (recorded with its error; the run completes with a partial artifact and a manifest of skipped batches).
 *
 * @since 0.1.0
 * @category models
 */
export const BatchErrorPolicy = Schema.Literal("fail", "skip")

/**
 * @since 0.1.0
 * @category models
 */
export type BatchErrorPolicy = typeof BatchErrorPolicy.Type

/**
 * Usage summed over batches (LLM extractors report it; offline extractors leave it at zero).
 *
 * @since 0.1.0
 * @category models
 */
export class UsageTotals extends Schema.Class<UsageTotals>("@quarry/core/Run/UsageTotals")({
  requests: Schema.Int,
  promptTokens: Schema.Int,
  completionTokens: Schema.Int,
  costUsd: Schema.Number
}) {
  /** Prompt plus completion tokens. */
  get tokens(): number {
    return this.promptTokens + this.completionTokens
  }
}

/**
 * The settings an extractor publishes about itself (`Extractor.settings`): everything that changes its output and is
 * not a secret, stored with the run as JSON. Numbers are finite so that they survive JSON.
 *
 * @since 0.1.0
 * @category models
 */
export const ExtractorSettings = Schema.Record({
  key: Schema.String,
  value: Schema.Union(Schema.String, Schema.Finite, Schema.Boolean)
})

/**
 * @since 0.1.0
 * @category models
 */
export type ExtractorSettings = typeof ExtractorSettings.Type

/**
 * The extractor a run was planned with; resume refuses a different one. `settings` are what the extractor published
 * when the run was created (empty for an extractor that publishes none), so that it can be rebuilt the same way.
 *
 * @since 0.1.0
 * @category models
 */
export class ExtractorIdentity extends Schema.Class<ExtractorIdentity>("@quarry/core/Run/ExtractorIdentity")({
  name: Schema.String,
  version: Schema.String,
  configHash: Schema.String,
  settings: ExtractorSettings
}) {}

/**
 * Everything the output of a run depends on, fixed when the run is created.
 *
 * @since 0.1.0
 * @category models
 */
export class RunPlan extends Schema.Class<RunPlan>("@quarry/core/Run/RunPlan")({
  inputSha256: Schema.String,
  inputLength: Schema.Int,
  chunking: Chunking.ChunkingParams,
  chunkerVersion: Schema.String,
  extractor: ExtractorIdentity,
  ontologySha256: Schema.OptionFromNullOr(Schema.String),
  concurrency: Schema.Int,
  totalBatches: Schema.Int,
  outputPath: Schema.String,
  outputFormat: OutputFormat,
  onBatchError: BatchErrorPolicy,
  /** Whether the artifact carries PROV-O provenance (mentions with offsets, run, extractor). */
  provenance: Schema.Boolean
}) {}

/**
 * The artifact of a completed run.
 *
 * @since 0.1.0
 * @category models
 */
export class Artifact extends Schema.Class<Artifact>("@quarry/core/Run/Artifact")({
  path: Schema.String,
  sha256: Schema.String,
  bytes: Schema.Int,
  format: OutputFormat
}) {}

/**
 * Who holds a run's lease and until when (epoch milliseconds).
 *
 * @since 0.1.0
 * @category models
 */
export class Lease extends Schema.Class<Lease>("@quarry/core/Run/Lease")({
  owner: Schema.String,
  expiresAt: Schema.Number,
  /**
   * The holder ran on the reading process's host and is provably gone (killed): a claim takes the lease over at once,
   * without waiting for it to expire, so the run is not executing whatever `expiresAt` says.
   */
  holderGone: Schema.optionalWith(Schema.Boolean, { default: () => false })
}) {}

/**
 * The spend limits in force for a run: those of its last execution that gave any, which a resume without limits
 * keeps (see `Workflow.ExecuteOptions.budget`).
 *
 * @since 0.1.0
 * @category models
 */
export const RunBudget = Schema.Struct({
  // Finite: JSON would turn Infinity into null, and a stored row that no longer decodes makes its run unreadable.
  maxCostUsd: Schema.optional(Schema.Number.pipe(Schema.finite())),
  maxTokens: Schema.optional(Schema.Number.pipe(Schema.finite()))
})

/**
 * @since 0.1.0
 * @category models
 */
export type RunBudget = typeof RunBudget.Type

/**
 * A run as stored.
 *
 * @since 0.1.0
 * @category models
 */
export class Run extends Schema.Class<Run>("@quarry/core/Run/Run")({
  id: RunId,
  status: RunStatus,
  statusVersion: Schema.Int,
  createdAt: Schema.Number,
  updatedAt: Schema.Number,
  startedAt: Schema.Option(Schema.Number),
  finishedAt: Schema.Option(Schema.Number),
  plan: RunPlan,
  committedBatches: Schema.Int,
  skippedBatches: Schema.Int,
  entityMentions: Schema.Int,
  relations: Schema.Int,
  digest: Schema.String,
  /** Usage of committed batches: what the artifact cost. */
  usage: UsageTotals,
  lastError: Schema.Option(Schema.String),
  failureReason: Schema.Option(Schema.String),
  artifact: Schema.Option(Artifact),
  lease: Schema.Option(Lease),
  cancelRequested: Schema.Boolean,
  budget: Schema.Option(RunBudget),
  /** What the executing extractor last reported about itself (e.g. an LLM endpoint's circuit breaker state). */
  extractorStatus: Schema.Record({ key: Schema.String, value: Schema.String })
}) {
  /** True when every batch has been committed. */
  get allBatchesCommitted(): boolean {
    return this.committedBatches >= this.plan.totalBatches
  }
}
