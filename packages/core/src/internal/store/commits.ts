/** Batch commits: a batch's output, its entities, its checkpoint and the run's progress in one transaction. */
import * as SqlSchema from "@effect/sql/SqlSchema"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { deflateRawSync } from "node:zlib"
import * as CrashPoint from "../../CrashPoint.js"
import * as Extractor from "../../Extractor.js"
import type * as RunStore from "../../RunStore.js"
import { entityKey, sha256 } from "../entities.js"
import { lockedBy, persistence, retryDisconnects, type StoreContext } from "./context.js"
import { ProgressRow } from "./rows.js"

/** Outputs larger than this many bytes of JSON are stored deflated (mention JSON deflates to about a fifth). */
export const compressAbove = 1024

/** Entity rows per INSERT statement (5 parameters each, far below SQLite's 32,766 and PostgreSQL's 65,535). */
const entityRowsPerInsert = 400

/** The stored form of an output: its bytes (deflated when large) and the SHA-256 of its JSON. */
export const storedOutput = (output: Extractor.BatchOutput) => {
  const json = Extractor.encodeOutput(output)
  const raw = Buffer.from(json, "utf8")
  const [blob, encoding] = raw.length > compressAbove ? [deflateRawSync(raw), "deflate"] : [raw, "json"]
  return { blob, encoding, outputSha256: sha256(json) }
}

/** The commit operation of the store. */
// A namespace of short operations over one context (each reads at once), not one long function.
export const make = (ctx: StoreContext) => {
  const { hooks, reread, sql, transaction } = ctx

  // One statement takes the run's lock (SQLite's write lock, PostgreSQL's row lock) and reads the progress columns
  // with the current lease token: this runs once per batch, and the token it reads cannot change until commit.
  const lockProgress = SqlSchema.findAll({
    Request: Schema.Struct({ id: Schema.String, now: Schema.Number }),
    Result: ProgressRow,
    execute: ({ id, now }) =>
      sql`UPDATE runs SET updated_at = ${now} WHERE id = ${id}
        RETURNING committed_batches, entity_mentions, relations, digest, lease_token, cancel_requested`
  })

  const storedCheckpoint = (commit: RunStore.BatchCommit, run: typeof ProgressRow.Type) =>
    Effect.gen(function*() {
      const rows = yield* sql<{ entity_mentions: number; relations: number; digest: string }>`
        SELECT entity_mentions, relations, digest FROM checkpoints
        WHERE run_id = ${commit.runId} AND batch_index = ${commit.batchIndex}`
      const stored = rows[0]
      if (stored === undefined) return yield* Effect.dieMessage(`checkpoint ${commit.batchIndex} is missing`)
      return {
        runId: commit.runId,
        batchIndex: commit.batchIndex,
        committedBatches: run.committedBatches,
        entityMentions: stored.entity_mentions,
        relations: stored.relations,
        digest: stored.digest,
        cancelRequested: run.cancelRequested !== 0
      } satisfies RunStore.Checkpoint
    })

  /** The batch's entity rows, each key once (its first mention's label), built before the transaction. */
  const entityRows = (commit: RunStore.BatchCommit) => {
    const seen = new Set<string>()
    const rows: Array<Record<string, unknown>> = []
    for (const mention of commit.output.entities) {
      const key = entityKey(mention.label, mention.type)
      if (seen.has(key)) continue
      seen.add(key)
      rows.push({
        run_id: commit.runId,
        entity_key: ctx.key(key),
        label: mention.label,
        type: mention.type,
        first_batch: commit.batchIndex
      })
    }
    return rows
  }

  // Multi-row inserts: one statement per entity cost ~35% of a commit's CPU (pnpm bench, section 1).
  const insertEntities = (rows: ReadonlyArray<Record<string, unknown>>) =>
    Effect.gen(function*() {
      for (let i = 0; i < rows.length; i += entityRowsPerInsert) {
        yield* sql`INSERT INTO entities ${sql.insert(rows.slice(i, i + entityRowsPerInsert))}
          ON CONFLICT (run_id, entity_key) DO NOTHING`
      }
    })

  const commitBatch = (commit: RunStore.BatchCommit) =>
    Effect.gen(function*() {
      // Encoding, hashing and compression happen before the transaction: SQLite's holds the only connection.
      const { blob, encoding, outputSha256 } = storedOutput(commit.output)
      const entities = entityRows(commit)
      const usage = commit.output.usage
      // Idempotent (a committed batch returns its checkpoint), so a broken connection is retried.
      return yield* retryDisconnects(transaction(Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const run = (yield* lockProgress({ id: commit.runId, now }))[0]
        // The fence: a holder whose claim was replaced writes nothing.
        if (run === undefined || run.leaseToken !== commit.holder.token) {
          return yield* lockedBy(yield* reread(commit.runId))
        }
        // Already committed (a retried commit): return the stored checkpoint, write nothing.
        if (commit.batchIndex < run.committedBatches) return yield* storedCheckpoint(commit, run)
        if (commit.batchIndex !== run.committedBatches) {
          return yield* Effect.dieMessage(
            `batch ${commit.batchIndex} committed out of order (next is ${run.committedBatches})`
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
            usage: usage === undefined ? null : JSON.stringify(usage),
            committed_at: now
          })
        }`
        yield* insertEntities(entities)
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
      })))
    }).pipe(
      persistence("commitBatch"),
      Effect.withSpan("SqlRunStore.commitBatch", { attributes: { runId: commit.runId, batch: commit.batchIndex } })
    )

  return { commitBatch }
}
