/**
 * A run as the API shows it: the shape of `quarry status --json` (status, progress, counters, usage, timings, plan,
 * artifact, last error, lease), plus its place in the admission queue. The artifact's server-side path is not shown.
 *
 * @since 0.1.0
 */
import * as Run from "@quarry/core/Run"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"

const Usage = Schema.Struct({
  requests: Schema.Int,
  promptTokens: Schema.Int,
  completionTokens: Schema.Int,
  costUsd: Schema.Number
})

/**
 * The run JSON.
 *
 * @since 0.1.0
 * @category schemas
 */
export const RunView = Schema.Struct({
  id: Schema.String,
  status: Run.RunStatus,
  /** 1-based place among the runs waiting for a slot; null when not waiting. */
  queuePosition: Schema.NullOr(Schema.Int),
  progress: Schema.Struct({ committedBatches: Schema.Int, totalBatches: Schema.Int, percent: Schema.Int }),
  counters: Schema.Struct({ entityMentions: Schema.Int, relations: Schema.Int, skippedBatches: Schema.Int }),
  usage: Usage,
  extractorStatus: Schema.Record({ key: Schema.String, value: Schema.String }),
  timings: Schema.Struct({
    createdAt: Schema.String,
    updatedAt: Schema.String,
    startedAt: Schema.NullOr(Schema.String),
    finishedAt: Schema.NullOr(Schema.String),
    durationMs: Schema.NullOr(Schema.Number)
  }),
  plan: Schema.Struct({
    extractor: Schema.Struct({ name: Schema.String, version: Schema.String }),
    chunking: Schema.Struct({
      strategy: Schema.String,
      windowSize: Schema.Int,
      overlap: Schema.Int,
      batchSize: Schema.Int
    }),
    concurrency: Schema.Int,
    onBatchError: Run.BatchErrorPolicy,
    provenance: Schema.Boolean,
    input: Schema.Struct({ characters: Schema.Int, sha256: Schema.String }),
    ontologySha256: Schema.NullOr(Schema.String),
    format: Run.OutputFormat
  }),
  artifact: Schema.NullOr(Schema.Struct({ format: Run.OutputFormat, bytes: Schema.Int, sha256: Schema.String })),
  lastError: Schema.NullOr(Schema.String),
  failureReason: Schema.NullOr(Schema.String),
  lease: Schema.NullOr(Schema.Struct({ owner: Schema.String, expiresAt: Schema.String, live: Schema.Boolean })),
  cancelRequested: Schema.Boolean
}).annotations({ identifier: "Run" })

/**
 * @since 0.1.0
 * @category models
 */
export type RunView = typeof RunView.Type

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

const iso = (ms: number) => new Date(ms).toISOString()

/**
 * The view of a run at time `now`, with its queue position when it waits for a slot.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (run: Run.Run, queuePosition: Option.Option<number>, now: number): RunView => ({
  id: run.id,
  status: run.status,
  queuePosition: Option.getOrNull(queuePosition),
  progress: {
    committedBatches: run.committedBatches,
    totalBatches: run.plan.totalBatches,
    percent: run.plan.totalBatches === 0 ? 100 : Math.floor((run.committedBatches / run.plan.totalBatches) * 100)
  },
  counters: { entityMentions: run.entityMentions, relations: run.relations, skippedBatches: run.skippedBatches },
  usage: {
    requests: run.usage.requests,
    promptTokens: run.usage.promptTokens,
    completionTokens: run.usage.completionTokens,
    costUsd: run.usage.costUsd
  },
  extractorStatus: run.extractorStatus,
  timings: {
    createdAt: iso(run.createdAt),
    updatedAt: iso(run.updatedAt),
    startedAt: Option.getOrNull(Option.map(run.startedAt, iso)),
    finishedAt: Option.getOrNull(Option.map(run.finishedAt, iso)),
    durationMs: Option.getOrNull(Option.zipWith(run.startedAt, run.finishedAt, (started, ended) => ended - started))
  },
  plan: {
    extractor: { name: run.plan.extractor.name, version: run.plan.extractor.version },
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
    format: run.plan.outputFormat
  },
  artifact: Option.getOrNull(
    Option.map(run.artifact, (a) => ({ format: a.format, bytes: a.bytes, sha256: a.sha256 }))
  ),
  lastError: Option.getOrNull(run.lastError),
  failureReason: Option.getOrNull(run.failureReason),
  lease: Option.getOrNull(Option.map(run.lease, (lease) => ({
    owner: lease.owner,
    expiresAt: iso(lease.expiresAt),
    live: lease.expiresAt > now
  }))),
  cancelRequested: run.cancelRequested
})
