/** Reads for executing and merging a run: committed outputs by keyset pages, known entities, usage of attempts. */
import * as SqlSchema from "@effect/sql/SqlSchema"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { inflateRawSync } from "node:zlib"
import { PersistenceError } from "../../Errors.js"
import type * as Extractor from "../../Extractor.js"
import { type RunId, UsageTotals } from "../../Run.js"
import type * as RunStore from "../../RunStore.js"
import { splitKey } from "../entities.js"
import { reportedCost } from "../usage.js"
import { persistence, retryDisconnects, type StoreContext } from "./context.js"
import { BatchRow, EntityRow, TotalsRow } from "./rows.js"

/**
 * A stored output's bytes were written by `commits.storedOutput` (`Extractor.encodeOutput`) from an output that
 * `Extractor.checkOutput` had accepted, so they are the schema's encoded form, which for `BatchOutput` is its type
 * too (every default is written). They are parsed without a second Schema pass: the merge reads every output of a
 * run, and decoding them again was a third of its allocations (docs/benchmarks.md, section 2).
 */
const parseStored = (json: string): Extractor.BatchOutput => JSON.parse(json)

const decodeBatch = (row: typeof BatchRow.Type) =>
  Effect.try({
    try: (): RunStore.StoredBatch => ({
      batchIndex: row.batch_index,
      output: parseStored(
        Buffer.from(row.encoding === "deflate" ? inflateRawSync(row.output) : row.output).toString("utf8")
      )
    }),
    catch: (cause) => new PersistenceError({ operation: "batchPage", cause })
  })

/** The read operations of the store (and the one write of usage, which shares their tables). */
// A namespace of short operations over one context (each reads at once), not one long function.
export const make = (ctx: StoreContext) => {
  const { sql } = ctx

  const findPage = SqlSchema.findAll({
    Request: Schema.Struct({ runId: Schema.String, after: Schema.Number, limit: Schema.Number }),
    Result: BatchRow,
    execute: (req) =>
      sql`SELECT batch_index, output, encoding FROM batches
        WHERE run_id = ${req.runId} AND batch_index > ${req.after}
        ORDER BY batch_index LIMIT ${req.limit}`
  })

  const batchPage = (runId: RunId, after: number, limit: number) =>
    retryDisconnects(findPage({ runId, after, limit })).pipe(
      Effect.flatMap(Effect.forEach(decodeBatch)),
      persistence("batchPage")
    )

  const findEntities = SqlSchema.findAll({
    Request: Schema.Struct({ runId: Schema.String, from: Schema.Number, before: Schema.Number }),
    Result: EntityRow,
    execute: (req) =>
      sql`SELECT entity_key, label, first_batch FROM entities
        WHERE run_id = ${req.runId} AND first_batch >= ${req.from} AND first_batch < ${req.before}
        ORDER BY first_batch, entity_key`
  })

  const knownEntities = (runId: RunId, beforeBatch: number, fromBatch = 0) =>
    retryDisconnects(findEntities({ runId, from: fromBatch, before: beforeBatch })).pipe(
      Effect.map((rows) =>
        rows.map((row): RunStore.KnownEntity => ({
          key: row.entity_key,
          label: row.label,
          type: splitKey(row.entity_key).type,
          firstBatch: row.first_batch
        }))
      ),
      persistence("knownEntities")
    )

  const attemptTotals = (runId: RunId) =>
    retryDisconnects(
      SqlSchema.single({
        Request: Schema.String,
        Result: TotalsRow,
        execute: (id) =>
          sql`SELECT SUM(requests) AS requests, SUM(prompt_tokens) AS prompt_tokens,
            SUM(completion_tokens) AS completion_tokens, SUM(cost_usd) AS cost_usd
          FROM usage_attempts WHERE run_id = ${id}`
      })(runId)
    ).pipe(
      Effect.map((row) =>
        new UsageTotals({
          requests: row.requests ?? 0,
          promptTokens: row.prompt_tokens ?? 0,
          completionTokens: row.completion_tokens ?? 0,
          costUsd: reportedCost(row.cost_usd ?? 0)
        })
      ),
      Effect.catchTag("NoSuchElementException", Effect.die),
      persistence("attemptTotals")
    )

  // Retried on a lost connection: the attempt's key makes a retry of an insert that landed store nothing.
  const recordAttempt = (runId: RunId, batchIndex: number, usage: Extractor.Usage, attemptId: string) =>
    Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      yield* retryDisconnects(sql`INSERT INTO usage_attempts ${
        sql.insert({
          run_id: runId,
          batch_index: batchIndex,
          attempt_id: attemptId,
          at: now,
          requests: usage.requests,
          prompt_tokens: usage.promptTokens,
          completion_tokens: usage.completionTokens,
          cost_usd: usage.costUsd ?? 0
        })
      } ON CONFLICT (run_id, attempt_id) DO NOTHING`)
    }).pipe(persistence("recordAttempt"))

  return { batchPage, knownEntities, attemptTotals, recordAttempt }
}
