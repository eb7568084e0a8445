/** The rows of the store's tables as both dialects return them, and the domain values made from them. */
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Chunking from "../../Chunking.js"
import * as Extractor from "../../Extractor.js"
import {
  Artifact,
  BatchErrorPolicy,
  ExtractorIdentity,
  ExtractorSettings,
  Lease,
  OutputFormat,
  Run,
  RunBudget,
  RunId,
  RunPlan,
  RunStatus,
  UsageTotals
} from "../../Run.js"
import type * as RunStore from "../../RunStore.js"
import * as Processes from "../processes.js"
import { reportedCost } from "../usage.js"

/**
 * An entity key column: TEXT holding `type NUL label` on SQLite, BYTEA on PostgreSQL (whose TEXT refuses NUL).
 * Both compare bytewise, so `ORDER BY entity_key` is the same order on both.
 */
export const KeyColumn = Schema.transform(
  Schema.Union(Schema.String, Schema.Uint8ArrayFromSelf),
  Schema.String,
  {
    strict: true,
    decode: (value) => typeof value === "string" ? value : Buffer.from(value).toString("utf8"),
    encode: (key) => key
  }
)

/**
 * A budget's limits as the `budget` columns store them (JSON has no undefined): only the finite ones, since an
 * infinite limit is none. `null` when none is left: no limits.
 */
export const budgetJson = (budget: RunBudget | undefined): string | null => {
  const limits = {
    ...(Number.isFinite(budget?.maxCostUsd) ? { maxCostUsd: budget!.maxCostUsd } : {}),
    ...(Number.isFinite(budget?.maxTokens) ? { maxTokens: budget!.maxTokens } : {})
  }
  return Object.keys(limits).length === 0 ? null : JSON.stringify(limits)
}

export const RunRow = Schema.Struct({
  id: RunId,
  status: RunStatus,
  status_version: Schema.Int,
  created_at: Schema.Number,
  updated_at: Schema.Number,
  started_at: Schema.NullOr(Schema.Number),
  finished_at: Schema.NullOr(Schema.Number),
  input_sha256: Schema.String,
  input_length: Schema.Int,
  chunking_strategy: Chunking.Strategy,
  window_size: Schema.Int,
  overlap: Schema.Int,
  batch_size: Schema.Int,
  chunker_version: Schema.String,
  extractor_name: Schema.String,
  extractor_version: Schema.String,
  extractor_config_hash: Schema.String,
  extractor_settings: Schema.parseJson(ExtractorSettings),
  ontology_sha256: Schema.NullOr(Schema.String),
  concurrency: Schema.Int,
  total_batches: Schema.Int,
  output_path: Schema.String,
  output_format: OutputFormat,
  on_batch_error: BatchErrorPolicy,
  provenance: Schema.Number,
  committed_batches: Schema.Int,
  skipped_batches: Schema.Int,
  entity_mentions: Schema.Int,
  relations: Schema.Int,
  digest: Schema.String,
  usage_requests: Schema.Int,
  usage_prompt_tokens: Schema.Int,
  usage_completion_tokens: Schema.Int,
  usage_cost_usd: Schema.Number,
  last_error: Schema.NullOr(Schema.String),
  failure_reason: Schema.NullOr(Schema.String),
  artifact_path: Schema.NullOr(Schema.String),
  artifact_sha256: Schema.NullOr(Schema.String),
  artifact_bytes: Schema.NullOr(Schema.Int),
  artifact_format: Schema.NullOr(OutputFormat),
  lease_owner: Schema.NullOr(Schema.String),
  lease_expires_at: Schema.NullOr(Schema.Number),
  lease_host: Schema.NullOr(Schema.String),
  lease_pid: Schema.NullOr(Schema.Int),
  lease_pid_started: Schema.NullOr(Schema.String),
  cancel_requested: Schema.Number,
  budget: Schema.NullOr(Schema.parseJson(RunBudget)),
  extractor_status: Schema.parseJson(Schema.Record({ key: Schema.String, value: Schema.String }))
})

export const toRun = (row: typeof RunRow.Type): Run =>
  new Run({
    id: row.id,
    status: row.status,
    statusVersion: row.status_version,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    startedAt: Option.fromNullable(row.started_at),
    finishedAt: Option.fromNullable(row.finished_at),
    plan: new RunPlan({
      inputSha256: row.input_sha256,
      inputLength: row.input_length,
      chunking: new Chunking.ChunkingParams({
        strategy: row.chunking_strategy,
        windowSize: row.window_size,
        overlap: row.overlap,
        batchSize: row.batch_size
      }),
      chunkerVersion: row.chunker_version,
      extractor: new ExtractorIdentity({
        name: row.extractor_name,
        version: row.extractor_version,
        configHash: row.extractor_config_hash,
        settings: row.extractor_settings
      }),
      ontologySha256: Option.fromNullable(row.ontology_sha256),
      concurrency: row.concurrency,
      totalBatches: row.total_batches,
      outputPath: row.output_path,
      outputFormat: row.output_format,
      onBatchError: row.on_batch_error,
      provenance: row.provenance !== 0
    }),
    committedBatches: row.committed_batches,
    skippedBatches: row.skipped_batches,
    entityMentions: row.entity_mentions,
    relations: row.relations,
    digest: row.digest,
    usage: new UsageTotals({
      requests: row.usage_requests,
      promptTokens: row.usage_prompt_tokens,
      completionTokens: row.usage_completion_tokens,
      costUsd: reportedCost(row.usage_cost_usd)
    }),
    lastError: Option.fromNullable(row.last_error),
    failureReason: Option.fromNullable(row.failure_reason),
    artifact: row.artifact_path !== null && row.artifact_sha256 !== null && row.artifact_bytes !== null &&
        row.artifact_format !== null ?
      Option.some(
        new Artifact({
          path: row.artifact_path,
          sha256: row.artifact_sha256,
          bytes: row.artifact_bytes,
          format: row.artifact_format
        })
      ) :
      Option.none(),
    lease: row.lease_owner !== null && row.lease_expires_at !== null ?
      Option.some(
        new Lease({ owner: row.lease_owner, expiresAt: row.lease_expires_at, holderGone: holderIsDead(row) })
      ) :
      Option.none(),
    cancelRequested: row.cancel_requested !== 0,
    budget: Option.fromNullable(row.budget),
    extractorStatus: row.extractor_status
  })

export const encodeSettings = Schema.encode(Schema.parseJson(ExtractorSettings))

export const ProgressRow = Schema.Struct({
  committedBatches: Schema.propertySignature(Schema.Int).pipe(Schema.fromKey("committed_batches")),
  entityMentions: Schema.propertySignature(Schema.Int).pipe(Schema.fromKey("entity_mentions")),
  relations: Schema.Int,
  digest: Schema.String,
  leaseToken: Schema.propertySignature(Schema.NullOr(Schema.String)).pipe(Schema.fromKey("lease_token")),
  cancelRequested: Schema.propertySignature(Schema.Number).pipe(Schema.fromKey("cancel_requested"))
})

export const BatchRow = Schema.Struct({
  batch_index: Schema.Int,
  output: Schema.Uint8ArrayFromSelf,
  encoding: Schema.Literal("json", "deflate")
})

export const EntityRow = Schema.Struct({
  entity_key: KeyColumn,
  label: Schema.String,
  first_batch: Schema.Int
})

/** A lease holder that provably died on this host: its lease is taken over without waiting for it to expire. */
export const holderIsDead = (
  row: Pick<typeof HolderRow.Type, "lease_host" | "lease_pid" | "lease_pid_started">
): boolean =>
  row.lease_host !== null && row.lease_pid !== null &&
  Processes.isDead({ host: row.lease_host, pid: row.lease_pid, started: row.lease_pid_started })

export const HolderRow = Schema.Struct({
  lease_token: Schema.NullOr(Schema.String),
  lease_host: Schema.NullOr(Schema.String),
  lease_pid: Schema.NullOr(Schema.Int),
  lease_pid_started: Schema.NullOr(Schema.String)
})

export const TotalsRow = Schema.Struct({
  requests: Schema.NullOr(Schema.Number),
  prompt_tokens: Schema.NullOr(Schema.Number),
  completion_tokens: Schema.NullOr(Schema.Number),
  cost_usd: Schema.NullOr(Schema.Number)
})

export const SkippedRow = Schema.Struct({ batch_index: Schema.Int, error: Schema.NullOr(Schema.String) })

export const SkippedUsageRow = Schema.Struct({ usage: Schema.NullOr(Schema.parseJson(Extractor.Usage)) })

export const ChainRow = Schema.Struct({
  batch_index: Schema.Int,
  output_sha256: Schema.String,
  entity_mentions: Schema.Int,
  relations: Schema.Int
})

export const ErrorRow = Schema.Struct({ at: Schema.Number, reason: Schema.String, message: Schema.String })

export const CompensationRow = Schema.Struct({
  seq: Schema.Int,
  handler: Schema.String,
  name: Schema.String,
  payload: Schema.String,
  state: Schema.Literal("pending", "done", "failed"),
  last_error: Schema.NullOr(Schema.String)
})

export const toCompensationStep = (row: typeof CompensationRow.Type): RunStore.CompensationStep => ({
  seq: row.seq,
  handler: row.handler,
  name: row.name,
  payload: row.payload,
  state: row.state,
  lastError: Option.fromNullable(row.last_error)
})
