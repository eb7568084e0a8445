/**
 * The `RunStore` on SQLite: one file, every multi-row write in one transaction.
 *
 * @since 0.1.0
 */
import * as SqlSchema from "@effect/sql/SqlSchema"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import { deflateRawSync, inflateRawSync } from "node:zlib"
import * as Chunking from "./Chunking.js"
import * as CrashPoint from "./CrashPoint.js"
import * as Database from "./Database.js"
import { InvalidRunState, PersistenceError, RunAlreadyExists, RunCancelled, RunLocked, RunNotFound } from "./Errors.js"
import * as Extractor from "./Extractor.js"
import { entityKey, sha256 } from "./internal/entities.js"
import * as Processes from "./internal/processes.js"
import { failOnSqlDefect, withTransaction } from "./internal/transaction.js"
import * as Usage from "./internal/usage.js"
import {
  Artifact,
  BatchErrorPolicy,
  ExtractorIdentity,
  ExtractorSettings,
  Lease,
  OutputFormat,
  Run,
  RunId,
  RunPlan,
  RunStatus,
  UsageTotals
} from "./Run.js"
import type * as RunStore from "./RunStore.js"
import { RunStore as RunStoreTag } from "./RunStore.js"

/** The digest a run starts from, before any batch. */
const genesisDigest = sha256("quarry")

/**
 * Outputs larger than this many bytes of JSON are stored deflated (mention JSON deflates to about a fifth).
 *
 * @since 0.1.0
 * @category constants
 */
export const compressAbove = 1024

/** Entity rows per INSERT statement (5 parameters each, far below SQLite's limit of 32,766). */
const entityRowsPerInsert = 400

const RunRow = Schema.Struct({
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
  cancel_requested: Schema.Number,
  extractor_status: Schema.parseJson(Schema.Record({ key: Schema.String, value: Schema.String }))
})

const toRun = (row: typeof RunRow.Type): Run =>
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
      costUsd: row.usage_cost_usd
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
      Option.some(new Lease({ owner: row.lease_owner, expiresAt: row.lease_expires_at })) :
      Option.none(),
    cancelRequested: row.cancel_requested !== 0,
    extractorStatus: row.extractor_status
  })

const encodeSettings = Schema.encode(Schema.parseJson(ExtractorSettings))

const ProgressRow = Schema.Struct({
  committedBatches: Schema.propertySignature(Schema.Int).pipe(Schema.fromKey("committed_batches")),
  entityMentions: Schema.propertySignature(Schema.Int).pipe(Schema.fromKey("entity_mentions")),
  relations: Schema.Int,
  digest: Schema.String,
  leaseToken: Schema.propertySignature(Schema.NullOr(Schema.String)).pipe(Schema.fromKey("lease_token")),
  cancelRequested: Schema.propertySignature(Schema.Number).pipe(Schema.fromKey("cancel_requested"))
})

const BatchRow = Schema.Struct({
  batch_index: Schema.Int,
  output: Schema.Uint8ArrayFromSelf,
  encoding: Schema.Literal("json", "deflate")
})

const EntityRow = Schema.Struct({
  entity_key: Schema.String,
  label: Schema.String,
  type: Schema.String,
  first_batch: Schema.Int
})

const HolderRow = Schema.Struct({
  lease_token: Schema.NullOr(Schema.String),
  lease_host: Schema.NullOr(Schema.String),
  lease_pid: Schema.NullOr(Schema.Int),
  lease_pid_started: Schema.NullOr(Schema.String)
})

const TotalsRow = Schema.Struct({
  requests: Schema.NullOr(Schema.Number),
  prompt_tokens: Schema.NullOr(Schema.Number),
  completion_tokens: Schema.NullOr(Schema.Number),
  cost_usd: Schema.NullOr(Schema.Number)
})

const SkippedRow = Schema.Struct({ batch_index: Schema.Int, error: Schema.NullOr(Schema.String) })

const SkippedUsageRow = Schema.Struct({ usage: Schema.NullOr(Schema.parseJson(Extractor.Usage)) })

const ChainRow = Schema.Struct({
  batch_index: Schema.Int,
  output_sha256: Schema.String,
  entity_mentions: Schema.Int,
  relations: Schema.Int
})

const ErrorRow = Schema.Struct({ at: Schema.Number, reason: Schema.String, message: Schema.String })

const CompensationRow = Schema.Struct({
  seq: Schema.Int,
  handler: Schema.String,
  name: Schema.String,
  payload: Schema.String,
  state: Schema.Literal("pending", "done", "failed"),
  last_error: Schema.NullOr(Schema.String)
})

const toCompensationStep = (row: typeof CompensationRow.Type): RunStore.CompensationStep => ({
  seq: row.seq,
  handler: row.handler,
  name: row.name,
  payload: row.payload,
  state: row.state,
  lastError: Option.fromNullable(row.last_error)
})

/**
 * Test-only hooks into the commit transaction, to inject a failure or an interruption between its writes.
 *
 * @since 0.1.0
 * @category models
 */
export interface Hooks {
  readonly beforeCheckpoint?: ((commit: RunStore.BatchCommit) => Effect.Effect<void, PersistenceError>) | undefined
}

const persistence = (operation: string) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.catchIf(
    effect,
    (
      e: unknown
    ): e is Exclude<
      E,
      { readonly _tag: "RunNotFound" | "RunLocked" | "RunAlreadyExists" | "InvalidRunState" | "PersistenceError" }
    > => typeof e === "object" && e !== null && "_tag" in e && (e._tag === "SqlError" || e._tag === "ParseError"),
    (cause) => new PersistenceError({ operation, cause })
  ).pipe(failOnSqlDefect((cause) => new PersistenceError({ operation, cause })))

/** A lease holder that provably died on this host: its lease is taken over without waiting for it to expire. */
const holderIsDead = (row: typeof HolderRow.Type) =>
  row.lease_host !== null && row.lease_pid !== null &&
  Processes.isDead({ host: row.lease_host, pid: row.lease_pid, started: row.lease_pid_started })

/**
 * Builds the store on the validated, migrated `Database` in context (`Database.layer` or `Database.layerEphemeral`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (hooks: Hooks = {}) =>
  Effect.gen(function*() {
    const { sql } = yield* Database.Database
    const me = Processes.self()
    const transaction = withTransaction(sql)

    const findRun = SqlSchema.findOne({
      Request: Schema.String,
      Result: RunRow,
      execute: (id) => sql`SELECT * FROM runs WHERE id = ${id}`
    })

    const getRun = (runId: RunId) =>
      findRun(runId).pipe(
        Effect.flatMap(Option.match({
          onNone: () => Effect.fail(new RunNotFound({ runId })),
          onSome: (row) => Effect.succeed(toRun(row))
        }))
      )

    // For a run this transaction has just read or written: it cannot have vanished (runs are never deleted).
    const reread = (runId: RunId) => getRun(runId).pipe(Effect.catchTag("RunNotFound", Effect.die))

    // One statement takes the write lock and reads the progress columns: this runs once per batch.
    const lockProgress = SqlSchema.findAll({
      Request: Schema.Struct({ id: Schema.String, now: Schema.Number }),
      Result: ProgressRow,
      execute: ({ id, now }) =>
        sql`UPDATE runs SET updated_at = ${now} WHERE id = ${id}
          RETURNING committed_batches, entity_mentions, relations, digest, lease_token, cancel_requested`
    })

    const lockedBy = (run: Run) =>
      Option.match(run.lease, {
        onNone: () => new RunLocked({ runId: run.id, owner: "unknown", expiresAt: 0 }),
        onSome: (lease) => new RunLocked({ runId: run.id, owner: lease.owner, expiresAt: lease.expiresAt })
      })

    const createRun = (input: RunStore.NewRun) =>
      Effect.gen(function*() {
        const settings = yield* encodeSettings(input.extractor.settings)
        return yield* transaction(Effect.gen(function*() {
          const now = yield* Clock.currentTimeMillis
          const existing = yield* sql<{ id: string }>`SELECT id FROM runs WHERE id = ${input.id}`
          if (existing.length > 0) return yield* new RunAlreadyExists({ runId: input.id })
          if (Option.isSome(input.ontology)) {
            yield* sql`INSERT INTO ontologies (sha256, source)
            VALUES (${input.ontology.value.sha256}, ${input.ontology.value.source})
            ON CONFLICT (sha256) DO NOTHING`
          }
          yield* sql`INSERT INTO runs ${
            sql.insert({
              id: input.id,
              status: "pending",
              status_version: 0,
              created_at: now,
              updated_at: now,
              input_sha256: input.inputSha256,
              input_length: input.input.length,
              chunking_strategy: input.chunking.strategy,
              window_size: input.chunking.windowSize,
              overlap: input.chunking.overlap,
              batch_size: input.chunking.batchSize,
              chunker_version: input.chunkerVersion,
              extractor_name: input.extractor.name,
              extractor_version: input.extractor.version,
              extractor_config_hash: input.extractor.configHash,
              extractor_settings: settings,
              ontology_sha256: Option.getOrNull(Option.map(input.ontology, (o) => o.sha256)),
              concurrency: input.concurrency,
              total_batches: input.totalBatches,
              output_path: input.outputPath,
              output_format: input.outputFormat,
              on_batch_error: input.onBatchError,
              provenance: input.provenance ? 1 : 0,
              digest: genesisDigest
            })
          }`
          yield* sql`INSERT INTO run_inputs (run_id, sha256, text) VALUES (${input.id}, ${input.inputSha256}, ${input.input})`
          yield* CrashPoint.hit("createRun.transaction")
          return yield* reread(input.id)
        }))
      }).pipe(persistence("createRun"), Effect.withSpan("SqliteRunStore.createRun"))

    const listRuns = (filter: { readonly status?: RunStatus | undefined } = {}) =>
      SqlSchema.findAll({
        Request: Schema.NullOr(Schema.String),
        Result: RunRow,
        execute: (status) =>
          status === null ?
            sql`SELECT * FROM runs ORDER BY created_at, id` :
            sql`SELECT * FROM runs WHERE status = ${status} ORDER BY created_at, id`
      })(filter.status ?? null).pipe(Effect.map((rows) => rows.map(toRun)), persistence("listRuns"))

    // Scrapes read this every few seconds: an aggregate, never the rows (50,000 decoded rows took 40 s).
    const countRuns = SqlSchema.findAll({
      Request: Schema.Void,
      Result: Schema.Struct({ status: RunStatus, n: Schema.Number }),
      execute: () => sql`SELECT status, COUNT(*) AS n FROM runs GROUP BY status`
    })(undefined).pipe(
      Effect.map((rows) => {
        const counts: Record<RunStatus, number> = {
          pending: 0,
          running: 0,
          completed: 0,
          failed: 0,
          cancelled: 0,
          interrupted: 0
        }
        for (const row of rows) counts[row.status] = row.n
        return counts
      }),
      persistence("countRuns")
    )

    const readInput = (runId: RunId) =>
      sql<{ text: string }>`SELECT text FROM run_inputs WHERE run_id = ${runId}`.pipe(
        Effect.flatMap((rows) =>
          rows[0] === undefined ? Effect.fail(new RunNotFound({ runId })) : Effect.succeed(rows[0].text)
        ),
        persistence("readInput")
      )

    const readOntologySource = (digest: string) =>
      sql<{ source: string }>`SELECT source FROM ontologies WHERE sha256 = ${digest}`.pipe(
        Effect.map((rows) => Option.fromNullable(rows[0]?.source)),
        persistence("readOntologySource")
      )

    // Every write transaction starts with a write, so that SQLite takes the write lock (waiting on `busy_timeout`)
    // before reading, instead of failing with SQLITE_BUSY when upgrading a read snapshot.
    const touch = (runId: RunId, now: number) => sql`UPDATE runs SET updated_at = ${now} WHERE id = ${runId}`

    // For a run this transaction has just written: it cannot have vanished.
    const readHolder = (runId: RunId) =>
      SqlSchema.single({
        Request: Schema.String,
        Result: HolderRow,
        execute: (id) => sql`SELECT lease_token, lease_host, lease_pid, lease_pid_started FROM runs WHERE id = ${id}`
      })(runId).pipe(Effect.catchTag("NoSuchElementException", Effect.die))

    // Read inside a write transaction, so the holder cannot change before the transaction commits.
    const holds = (runId: RunId, holder: RunStore.LeaseHolder) =>
      Effect.map(readHolder(runId), (row) => row.lease_token === holder.token)

    const claim = (
      runId: RunId,
      owner: string,
      leaseMs: number,
      options: { readonly reopen?: boolean | undefined; readonly expectedVersion?: number | undefined } = {}
    ) =>
      transaction(Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        yield* touch(runId, now)
        const run = yield* getRun(runId)
        const changed = options.expectedVersion !== undefined && options.expectedVersion !== run.statusVersion
        // Cancelled since the caller read the run (e.g. while it prepared): the cancel wins.
        if (changed && run.status === "cancelled") return yield* new RunCancelled({ runId })
        if (run.status === "completed" && options.reopen !== true) {
          return { run, holder: Option.none() } satisfies RunStore.Claimed
        }
        if (
          run.status === "running" && Option.isSome(run.lease) && run.lease.value.expiresAt > now &&
          !holderIsDead(yield* readHolder(runId))
        ) {
          return yield* lockedBy(run)
        }
        const holder: RunStore.LeaseHolder = { owner, token: randomBytes(16).toString("hex") }
        yield* sql`UPDATE runs SET
            status = 'running',
            status_version = status_version + 1,
            started_at = COALESCE(started_at, ${now}),
            finished_at = NULL,
            lease_owner = ${owner},
            lease_token = ${holder.token},
            lease_host = ${me.host},
            lease_pid = ${me.pid},
            lease_pid_started = ${me.started},
            lease_expires_at = ${now + leaseMs},
            cancel_requested = 0
          WHERE id = ${runId} AND status_version = ${run.statusVersion}`
        return { run: yield* reread(runId), holder: Option.some(holder) } satisfies RunStore.Claimed
      })).pipe(persistence("claim"), Effect.withSpan("SqliteRunStore.claim", { attributes: { runId } }))

    const heartbeat = (runId: RunId, holder: RunStore.LeaseHolder, leaseMs: number) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const rows = yield* sql<{ cancel_requested: number }>`UPDATE runs
          SET lease_expires_at = ${now + leaseMs}
          WHERE id = ${runId} AND lease_token = ${holder.token} AND status = 'running'
          RETURNING cancel_requested`
        if (rows[0] === undefined) return yield* lockedBy(yield* reread(runId))
        return { cancelRequested: rows[0].cancel_requested !== 0 }
      }).pipe(persistence("heartbeat"))

    const commitBatch = (commit: RunStore.BatchCommit) =>
      Effect.gen(function*() {
        // Encoding, hashing and compression happen before the transaction: it holds the only connection.
        const json = Extractor.encodeOutput(commit.output)
        const outputSha256 = sha256(json)
        const raw = Buffer.from(json, "utf8")
        const [blob, encoding] = raw.length > compressAbove ? [deflateRawSync(raw), "deflate"] : [raw, "json"]
        const entities = new Map<string, { label: string; type: string }>()
        for (const mention of commit.output.entities) {
          const key = entityKey(mention.label, mention.type)
          if (!entities.has(key)) entities.set(key, { label: mention.label, type: mention.type })
        }
        const usage = commit.output.usage
        const usageJson = usage === undefined ? null : JSON.stringify(usage)
        return yield* transaction(Effect.gen(function*() {
          const now = yield* Clock.currentTimeMillis
          const rows = yield* lockProgress({ id: commit.runId, now })
          const run = rows[0]
          if (run === undefined || run.leaseToken !== commit.holder.token) {
            return yield* lockedBy(yield* reread(commit.runId))
          }
          if (commit.batchIndex < run.committedBatches) {
            // Already committed (a retried commit): return the stored checkpoint, write nothing.
            const rows = yield* sql<{ entity_mentions: number; relations: number; digest: string }>`
              SELECT entity_mentions, relations, digest FROM checkpoints
              WHERE run_id = ${commit.runId} AND batch_index = ${commit.batchIndex}`
            const stored = rows[0]!
            return {
              runId: commit.runId,
              batchIndex: commit.batchIndex,
              committedBatches: run.committedBatches,
              entityMentions: stored.entity_mentions,
              relations: stored.relations,
              digest: stored.digest,
              cancelRequested: run.cancelRequested !== 0
            }
          }
          if (commit.batchIndex !== run.committedBatches) {
            return yield* Effect.die(
              new Error(`batch ${commit.batchIndex} committed out of order (next is ${run.committedBatches})`)
            )
          }
          yield* sql`INSERT INTO batches ${
            sql.insert({
              run_id: commit.runId,
              batch_index: commit.batchIndex,
              status: commit.skipped === undefined ? "ok" : "skipped",
              error: commit.skipped?.error ?? null,
              output: blob,
              encoding,
              output_sha256: outputSha256,
              entity_mentions: commit.output.entities.length,
              relations: commit.output.relations.length,
              attempts: commit.attempts,
              duration_ms: Math.round(commit.durationMs),
              usage: usageJson,
              committed_at: now
            })
          }`
          // Multi-row inserts: one statement per entity cost ~35% of a commit's CPU (pnpm bench, section 1).
          const entityRows = Array.from(entities, ([key, entity]) => ({
            run_id: commit.runId,
            entity_key: key,
            label: entity.label,
            type: entity.type,
            first_batch: commit.batchIndex
          }))
          for (let i = 0; i < entityRows.length; i += entityRowsPerInsert) {
            yield* sql`INSERT INTO entities ${sql.insert(entityRows.slice(i, i + entityRowsPerInsert))}
              ON CONFLICT (run_id, entity_key) DO NOTHING`
          }
          if (hooks.beforeCheckpoint) yield* hooks.beforeCheckpoint(commit)
          const checkpoint: RunStore.Checkpoint = {
            runId: commit.runId,
            batchIndex: commit.batchIndex,
            committedBatches: commit.batchIndex + 1,
            entityMentions: run.entityMentions + commit.output.entities.length,
            relations: run.relations + commit.output.relations.length,
            digest: sha256(run.digest + outputSha256),
            cancelRequested: run.cancelRequested !== 0
          }
          yield* sql`INSERT INTO checkpoints ${
            sql.insert({
              run_id: commit.runId,
              batch_index: commit.batchIndex,
              entity_mentions: checkpoint.entityMentions,
              relations: checkpoint.relations,
              digest: checkpoint.digest,
              committed_at: now
            })
          }`
          yield* sql`UPDATE runs SET
              committed_batches = ${checkpoint.committedBatches},
              entity_mentions = ${checkpoint.entityMentions},
              relations = ${checkpoint.relations},
              digest = ${checkpoint.digest},
              skipped_batches = skipped_batches + ${commit.skipped === undefined ? 0 : 1},
              usage_requests = usage_requests + ${usage?.requests ?? 0},
              usage_prompt_tokens = usage_prompt_tokens + ${usage?.promptTokens ?? 0},
              usage_completion_tokens = usage_completion_tokens + ${usage?.completionTokens ?? 0},
              usage_cost_usd = usage_cost_usd + ${usage?.costUsd ?? 0}
            WHERE id = ${commit.runId}`
          yield* CrashPoint.hit("commitBatch.transaction", commit.batchIndex)
          return checkpoint
        }))
      }).pipe(
        persistence("commitBatch"),
        Effect.withSpan("SqliteRunStore.commitBatch", {
          attributes: { runId: commit.runId, batch: commit.batchIndex }
        })
      )

    const complete = (runId: RunId, holder: RunStore.LeaseHolder, artifact: Artifact) =>
      transaction(Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const rows = yield* sql<{ id: string }>`UPDATE runs SET
            status = 'completed',
            status_version = status_version + 1,
            updated_at = ${now},
            finished_at = ${now},
            last_error = NULL,
            failure_reason = NULL,
            artifact_path = ${artifact.path},
            artifact_sha256 = ${artifact.sha256},
            artifact_bytes = ${artifact.bytes},
            artifact_format = ${artifact.format},
            lease_owner = NULL,
            lease_token = NULL,
            lease_expires_at = NULL
          WHERE id = ${runId} AND lease_token = ${holder.token} AND status = 'running'
          RETURNING id`
        const run = yield* reread(runId)
        if (rows.length === 0) return yield* lockedBy(run)
        return run
      })).pipe(persistence("complete"))

    const finish = (runId: RunId, holder: RunStore.LeaseHolder, outcome: RunStore.Outcome) =>
      transaction(Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const rows = yield* sql<{ id: string }>`UPDATE runs SET
            status = ${outcome.status},
            status_version = status_version + 1,
            updated_at = ${now},
            finished_at = ${now},
            last_error = ${outcome.error ?? null},
            failure_reason = ${outcome.reason ?? null},
            lease_owner = NULL,
            lease_token = NULL,
            lease_expires_at = NULL
          WHERE id = ${runId} AND lease_token = ${holder.token} AND status = 'running'
          RETURNING id`
        if (rows.length > 0 && outcome.error !== undefined) {
          yield* sql`INSERT INTO run_errors (run_id, at, reason, message)
            VALUES (${runId}, ${now}, ${outcome.reason ?? outcome.status}, ${outcome.error})`
        }
      })).pipe(persistence("finish"))

    const requestCancel = (runId: RunId) =>
      transaction(Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        yield* touch(runId, now)
        const run = yield* getRun(runId)
        switch (run.status) {
          case "completed":
            return yield* new InvalidRunState({ runId, status: run.status, expected: "not yet completed" })
          case "cancelled":
            return run
          case "running": {
            const live = Option.isSome(run.lease) && run.lease.value.expiresAt > now &&
              !holderIsDead(yield* readHolder(runId))
            if (live) {
              yield* sql`UPDATE runs SET cancel_requested = 1 WHERE id = ${runId}`
              return yield* reread(runId)
            }
            break
          }
        }
        // Not executing anywhere: cancel at once.
        yield* sql`UPDATE runs SET
            status = 'cancelled',
            status_version = status_version + 1,
            finished_at = ${now},
            cancel_requested = 1,
            lease_owner = NULL,
            lease_token = NULL,
            lease_expires_at = NULL
          WHERE id = ${runId} AND status_version = ${run.statusVersion}`
        return yield* reread(runId)
      })).pipe(persistence("requestCancel"))

    const decodeBatch = (row: typeof BatchRow.Type) =>
      Extractor.decodeOutput(
        Buffer.from(row.encoding === "deflate" ? inflateRawSync(row.output) : row.output).toString("utf8")
      ).pipe(Effect.map((output): RunStore.StoredBatch => ({ batchIndex: row.batch_index, output })))

    const batchPage = (runId: RunId, after: number, limit: number) =>
      SqlSchema.findAll({
        Request: Schema.Struct({ runId: Schema.String, after: Schema.Number, limit: Schema.Number }),
        Result: BatchRow,
        execute: (req) =>
          sql`SELECT batch_index, output, encoding FROM batches
            WHERE run_id = ${req.runId} AND batch_index > ${req.after}
            ORDER BY batch_index LIMIT ${req.limit}`
      })({ runId, after, limit }).pipe(
        Effect.flatMap(Effect.forEach(decodeBatch)),
        persistence("batchPage")
      )

    const knownEntities = (runId: RunId, beforeBatch: number, fromBatch = 0) =>
      SqlSchema.findAll({
        Request: Schema.Struct({ runId: Schema.String, from: Schema.Number, before: Schema.Number }),
        Result: EntityRow,
        execute: (req) =>
          sql`SELECT entity_key, label, type, first_batch FROM entities
            WHERE run_id = ${req.runId} AND first_batch >= ${req.from} AND first_batch < ${req.before}
            ORDER BY first_batch, entity_key`
      })({ runId, from: fromBatch, before: beforeBatch }).pipe(
        Effect.map((rows) =>
          rows.map((row): RunStore.KnownEntity => ({
            key: row.entity_key,
            label: row.label,
            type: row.type,
            firstBatch: row.first_batch
          }))
        ),
        persistence("knownEntities")
      )

    const attemptTotals = (runId: RunId) =>
      SqlSchema.single({
        Request: Schema.String,
        Result: TotalsRow,
        execute: (id) =>
          sql`SELECT SUM(requests) AS requests, SUM(prompt_tokens) AS prompt_tokens,
              SUM(completion_tokens) AS completion_tokens, SUM(cost_usd) AS cost_usd
            FROM usage_attempts WHERE run_id = ${id}`
      })(runId).pipe(
        Effect.map((row) =>
          new UsageTotals({
            requests: row.requests ?? 0,
            promptTokens: row.prompt_tokens ?? 0,
            completionTokens: row.completion_tokens ?? 0,
            costUsd: row.cost_usd ?? 0
          })
        ),
        Effect.catchTag("NoSuchElementException", Effect.die),
        persistence("attemptTotals")
      )

    const recordAttempt = (runId: RunId, batchIndex: number, usage: Extractor.Usage) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        yield* sql`INSERT INTO usage_attempts ${
          sql.insert({
            run_id: runId,
            batch_index: batchIndex,
            at: now,
            requests: usage.requests,
            prompt_tokens: usage.promptTokens,
            completion_tokens: usage.completionTokens,
            cost_usd: usage.costUsd ?? 0
          })
        }`
      }).pipe(persistence("recordAttempt"))

    const setExtractorStatus = (runId: RunId, status: Readonly<Record<string, string>>) =>
      sql`UPDATE runs SET extractor_status = ${JSON.stringify(status)} WHERE id = ${runId}`.pipe(
        Effect.asVoid,
        persistence("setExtractorStatus")
      )

    const skippedBatches = (runId: RunId) =>
      SqlSchema.findAll({
        Request: Schema.String,
        Result: SkippedRow,
        execute: (id) =>
          sql`SELECT batch_index, error FROM batches WHERE run_id = ${id} AND status = 'skipped' ORDER BY batch_index`
      })(runId).pipe(
        Effect.map((rows) => rows.map((row) => ({ batchIndex: row.batch_index, error: row.error ?? "" }))),
        persistence("skippedBatches")
      )

    const findSkippedUsage = SqlSchema.findOne({
      Request: Schema.Struct({ runId: Schema.String, batchIndex: Schema.Number }),
      Result: SkippedUsageRow,
      execute: (req) =>
        sql`SELECT usage FROM batches
          WHERE run_id = ${req.runId} AND batch_index = ${req.batchIndex} AND status = 'skipped'`
    })

    const replaceSkipped = (commit: RunStore.BatchCommit) =>
      Effect.gen(function*() {
        // Only the lease holder (checked below) changes a skipped batch, so its usage can be read before the write.
        const earlier = yield* findSkippedUsage({ runId: commit.runId, batchIndex: commit.batchIndex })
        if (Option.isNone(earlier)) return
        // The batch's usage covers every execution of it; the run's usage grows by this retry's.
        const usage = commit.output.usage
        const batchUsage = Usage.add(earlier.value.usage ?? undefined, usage)
        const output: Extractor.BatchOutput = batchUsage === undefined ?
          { entities: commit.output.entities, relations: commit.output.relations } :
          { entities: commit.output.entities, relations: commit.output.relations, usage: batchUsage }
        const json = Extractor.encodeOutput(output)
        const outputSha256 = sha256(json)
        const raw = Buffer.from(json, "utf8")
        const [blob, encoding] = raw.length > compressAbove ? [deflateRawSync(raw), "deflate"] : [raw, "json"]
        const stillSkipped = commit.skipped !== undefined
        yield* transaction(Effect.gen(function*() {
          const now = yield* Clock.currentTimeMillis
          yield* touch(commit.runId, now)
          if (!(yield* holds(commit.runId, commit.holder))) return yield* lockedBy(yield* reread(commit.runId))
          const replaced = yield* sql<{ batch_index: number }>`UPDATE batches SET
              status = ${stillSkipped ? "skipped" : "ok"}, error = ${commit.skipped?.error ?? null},
              output = ${blob}, encoding = ${encoding},
              output_sha256 = ${outputSha256}, entity_mentions = ${output.entities.length},
              relations = ${output.relations.length}, attempts = attempts + ${commit.attempts},
              duration_ms = ${Math.round(commit.durationMs)},
              usage = ${batchUsage === undefined ? null : JSON.stringify(batchUsage)}, committed_at = ${now}
            WHERE run_id = ${commit.runId} AND batch_index = ${commit.batchIndex} AND status = 'skipped'
            RETURNING batch_index`
          if (replaced.length === 0) return
          for (const mention of commit.output.entities) {
            yield* sql`INSERT INTO entities (run_id, entity_key, label, type, first_batch)
              VALUES (${commit.runId}, ${entityKey(mention.label, mention.type)}, ${mention.label}, ${mention.type},
                ${commit.batchIndex})
              ON CONFLICT (run_id, entity_key) DO UPDATE SET first_batch = MIN(first_batch, excluded.first_batch)`
          }
          // Rechain: every checkpoint from this batch on depends on its output hash and counts.
          const chain = yield* SqlSchema.findAll({
            Request: Schema.String,
            Result: ChainRow,
            execute: (id) =>
              sql`SELECT batch_index, output_sha256, entity_mentions, relations FROM batches
                WHERE run_id = ${id} ORDER BY batch_index`
          })(commit.runId)
          let digest = genesisDigest
          let entityMentions = 0
          let relations = 0
          for (const row of chain) {
            digest = sha256(digest + row.output_sha256)
            entityMentions += row.entity_mentions
            relations += row.relations
            if (row.batch_index < commit.batchIndex) continue
            yield* sql`UPDATE checkpoints SET digest = ${digest}, entity_mentions = ${entityMentions},
                relations = ${relations}
              WHERE run_id = ${commit.runId} AND batch_index = ${row.batch_index}`
          }
          yield* sql`UPDATE runs SET
              entity_mentions = ${entityMentions},
              relations = ${relations},
              digest = ${digest},
              skipped_batches = skipped_batches - ${stillSkipped ? 0 : 1},
              usage_requests = usage_requests + ${usage?.requests ?? 0},
              usage_prompt_tokens = usage_prompt_tokens + ${usage?.promptTokens ?? 0},
              usage_completion_tokens = usage_completion_tokens + ${usage?.completionTokens ?? 0},
              usage_cost_usd = usage_cost_usd + ${usage?.costUsd ?? 0}
            WHERE id = ${commit.runId}`
          yield* CrashPoint.hit("replaceSkipped.transaction", commit.batchIndex)
        }))
      }).pipe(persistence("replaceSkipped"), Effect.withSpan("SqliteRunStore.replaceSkipped"))

    const errors = (runId: RunId) =>
      SqlSchema.findAll({
        Request: Schema.String,
        Result: ErrorRow,
        execute: (id) => sql`SELECT at, reason, message FROM run_errors WHERE run_id = ${id} ORDER BY at, rowid`
      })(runId).pipe(persistence("errors"))

    const finished = new Set<RunStatus>(["completed", "failed", "cancelled", "interrupted"])
    const deleteRun = (runId: RunId) =>
      transaction(Effect.gen(function*() {
        const run = yield* getRun(runId)
        if (!finished.has(run.status)) {
          return yield* new InvalidRunState({
            runId,
            status: run.status,
            expected: "finished (completed, failed, cancelled or interrupted; cancel it first)"
          })
        }
        yield* sql`DELETE FROM runs WHERE id = ${runId} AND status_version = ${run.statusVersion}`
        // Inside the transaction: a file that cannot be removed rolls the rows back.
        for (const artifact of Option.toArray(run.artifact)) {
          yield* Effect.try({
            try: () => {
              fs.rmSync(artifact.path, { force: true })
              fs.rmSync(`${artifact.path}.skipped.json`, { force: true })
            },
            catch: (cause) => new PersistenceError({ operation: "deleteRun", cause })
          })
        }
        return run
      })).pipe(persistence("deleteRun"), Effect.withSpan("SqliteRunStore.deleteRun"))

    const addCompensation = (
      runId: RunId,
      step: { readonly handler: string; readonly name: string; readonly payload: string }
    ) =>
      transaction(Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        yield* touch(runId, now)
        // Under the write lock `touch` took: the sequence cannot be taken by another writer meanwhile.
        yield* getRun(runId)
        const rows = yield* SqlSchema.findAll({
          Request: Schema.Void,
          Result: CompensationRow,
          execute: () =>
            sql`INSERT INTO compensation_steps (run_id, seq, handler, name, payload, state, registered_at)
              SELECT ${runId}, COALESCE(MAX(seq), 0) + 1, ${step.handler}, ${step.name}, ${step.payload}, 'pending',
                ${now}
              FROM compensation_steps WHERE run_id = ${runId}
              RETURNING seq, handler, name, payload, state, last_error`
        })(undefined)
        const [row] = rows
        return row === undefined
          ? yield* Effect.dieMessage("INSERT ... RETURNING returned no row")
          : toCompensationStep(row)
      })).pipe(persistence("addCompensation"))

    const compensationSteps = (runId: RunId) =>
      SqlSchema.findAll({
        Request: Schema.String,
        Result: CompensationRow,
        execute: (id) =>
          sql`SELECT seq, handler, name, payload, state, last_error FROM compensation_steps
            WHERE run_id = ${id} ORDER BY seq`
      })(runId).pipe(Effect.map((rows) => rows.map(toCompensationStep)), persistence("compensationSteps"))

    const settleCompensation = (
      runId: RunId,
      seq: number,
      outcome: { readonly _tag: "done" } | { readonly _tag: "failed"; readonly error: string }
    ) =>
      transaction(Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        yield* sql`UPDATE compensation_steps SET
            state = ${outcome._tag},
            last_error = ${outcome._tag === "failed" ? outcome.error : null},
            settled_at = ${now}
          WHERE run_id = ${runId} AND seq = ${seq}`
      })).pipe(persistence("settleCompensation"))

    return RunStoreTag.of({
      createRun,
      getRun: (runId) => getRun(runId).pipe(persistence("getRun")),
      listRuns,
      countRuns,
      readInput,
      readOntologySource,
      claim,
      heartbeat,
      commitBatch,
      complete,
      finish,
      requestCancel,
      batchPage,
      knownEntities,
      replaceSkipped,
      skippedBatches,
      recordAttempt,
      setExtractorStatus,
      attemptTotals,
      errors,
      deleteRun,
      addCompensation,
      compensationSteps,
      settleCompensation
    })
  })

/**
 * The store as a layer over the validated `Database` in context.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<RunStoreTag, never, Database.Database> = Layer.effect(RunStoreTag, make())
