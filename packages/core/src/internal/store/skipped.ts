/** Skipped batches: listing them, and replacing one with its retry while rechaining later checkpoints. */
import * as SqlSchema from "@effect/sql/SqlSchema"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as CrashPoint from "../../CrashPoint.js"
import type * as Extractor from "../../Extractor.js"
import type { RunId } from "../../Run.js"
import type * as RunStore from "../../RunStore.js"
import { sha256 } from "../entities.js"
import * as Usage from "../usage.js"
import { storedOutput } from "./commits.js"
import { genesisDigest, lockedBy, persistence, retryDisconnects, type StoreContext } from "./context.js"
import { ChainRow, SkippedRow, SkippedUsageRow } from "./rows.js"

/** The skipped-batch operations of the store. */
// A namespace of short operations over one context (each reads at once), not one long function.
export const make = (ctx: StoreContext) => {
  const { holds, reread, sql, touch, transaction } = ctx

  const skippedBatches = (runId: RunId) =>
    retryDisconnects(
      SqlSchema.findAll({
        Request: Schema.String,
        Result: SkippedRow,
        execute: (id) =>
          sql`SELECT batch_index, error FROM batches WHERE run_id = ${id} AND status = 'skipped' ORDER BY batch_index`
      })(runId)
    ).pipe(
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

  const readChain = SqlSchema.findAll({
    Request: Schema.String,
    Result: ChainRow,
    execute: (id) =>
      sql`SELECT batch_index, output_sha256, entity_mentions, relations FROM batches
        WHERE run_id = ${id} ORDER BY batch_index`
  })

  // An entity's first batch is the earliest batch that mentions it: SQLite's two-argument MIN is LEAST elsewhere.
  const earliest = sql.onDialectOrElse({
    pg: () => sql`LEAST(entities.first_batch, excluded.first_batch)`,
    orElse: () => sql`MIN(first_batch, excluded.first_batch)`
  })

  /** Every checkpoint from `from` on depends on its output hash and counts: recompute them; returns the totals. */
  const rechain = (runId: RunId, from: number) =>
    Effect.gen(function*() {
      let digest = genesisDigest
      let entityMentions = 0
      let relations = 0
      for (const row of yield* readChain(runId)) {
        digest = sha256(digest + row.output_sha256)
        entityMentions += row.entity_mentions
        relations += row.relations
        if (row.batch_index < from) continue
        yield* sql`UPDATE checkpoints SET digest = ${digest}, entity_mentions = ${entityMentions},
            relations = ${relations}
          WHERE run_id = ${runId} AND batch_index = ${row.batch_index}`
      }
      return { digest, entityMentions, relations }
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
      const { blob, encoding, outputSha256 } = storedOutput(output)
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
          yield* sql`INSERT INTO entities ${sql.insert(ctx.entityRow(commit.runId, mention, commit.batchIndex))}
            ON CONFLICT (run_id, entity_key) DO UPDATE SET first_batch = ${earliest}`
        }
        const totals = yield* rechain(commit.runId, commit.batchIndex)
        yield* sql`UPDATE runs SET
            entity_mentions = ${totals.entityMentions},
            relations = ${totals.relations},
            digest = ${totals.digest},
            skipped_batches = skipped_batches - ${stillSkipped ? 0 : 1},
            usage_requests = usage_requests + ${usage?.requests ?? 0},
            usage_prompt_tokens = usage_prompt_tokens + ${usage?.promptTokens ?? 0},
            usage_completion_tokens = usage_completion_tokens + ${usage?.completionTokens ?? 0},
            usage_cost_usd = usage_cost_usd + ${usage?.costUsd ?? 0}
          WHERE id = ${commit.runId}`
        yield* CrashPoint.hit("replaceSkipped.transaction", commit.batchIndex)
      }))
    }).pipe(persistence("replaceSkipped"), Effect.withSpan("SqlRunStore.replaceSkipped"))

  return { skippedBatches, replaceSkipped }
}
