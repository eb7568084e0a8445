/** Runs: creating, reading, listing (keyset pages), cancelling, failing before a start, and deleting them. */
import * as SqlSchema from "@effect/sql/SqlSchema"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as fs from "node:fs"
import * as CrashPoint from "../../CrashPoint.js"
import { InvalidRunState, PersistenceError, RunAlreadyExists, RunNotFound } from "../../Errors.js"
import { isFinished, type RunId, RunStatus } from "../../Run.js"
import type * as RunStore from "../../RunStore.js"
import { genesisDigest, persistence, retryDisconnects, type StoreContext } from "./context.js"
import { insertQueued } from "./queue.js"
import { budgetJson, encodeSettings, ErrorRow, holderIsDead, RunRow, toRun } from "./rows.js"

const runRow = (input: RunStore.NewRun, settings: string, now: number) => ({
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
  digest: genesisDigest,
  // A submission's budget is the run's from the start (its view shows it while it waits).
  budget: budgetJson(input.queued?.budget)
})

const ListRequest = Schema.Struct({
  status: Schema.NullOr(Schema.String),
  createdAt: Schema.NullOr(Schema.Number),
  id: Schema.String,
  limit: Schema.Number,
  newestFirst: Schema.Boolean
})

/** The run-level operations of the store. */
// A namespace of short operations over one context (each reads at once), not one long function.
export const make = (ctx: StoreContext) => {
  const { getRun, reread, sql, touch, transaction } = ctx

  const createRun = (input: RunStore.NewRun) =>
    Effect.gen(function*() {
      const settings = yield* encodeSettings(input.extractor.settings)
      return yield* transaction(Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        if (Option.isSome(input.ontology)) {
          yield* sql`INSERT INTO ontologies (sha256, source)
            VALUES (${input.ontology.value.sha256}, ${input.ontology.value.source})
            ON CONFLICT (sha256) DO NOTHING`
        }
        // A conditional insert: two processes creating the same id at once get one run and one RunAlreadyExists.
        const inserted = yield* sql<{ id: string }>`INSERT INTO runs ${sql.insert(runRow(input, settings, now))}
          ON CONFLICT (id) DO NOTHING RETURNING id`
        if (inserted.length === 0) return yield* new RunAlreadyExists({ runId: input.id })
        yield* sql`INSERT INTO run_inputs (run_id, sha256, text) VALUES (${input.id}, ${input.inputSha256}, ${input.input})`
        if (input.queued !== undefined) yield* insertQueued(ctx, { ...input.queued, runId: input.id })
        yield* CrashPoint.hit("createRun.transaction")
        return yield* reread(input.id)
      }))
    }).pipe(persistence("createRun"), Effect.withSpan("SqlRunStore.createRun"))

  // Keyset pages over (created_at, id), either way: a page costs the same wherever it starts.
  const findRuns = SqlSchema.findAll({
    Request: ListRequest,
    Result: RunRow,
    execute: (req) =>
      sql`SELECT * FROM runs WHERE ${
        sql.and([
          ...(req.status === null ? [] : [sql`status = ${req.status}`]),
          ...(req.createdAt === null ? [] : [
            req.newestFirst ?
              sql`(created_at < ${req.createdAt} OR (created_at = ${req.createdAt} AND id < ${req.id}))` :
              sql`(created_at > ${req.createdAt} OR (created_at = ${req.createdAt} AND id > ${req.id}))`
          ])
        ])
      } ORDER BY ${req.newestFirst ? sql`created_at DESC, id DESC` : sql`created_at, id`} ${
        req.limit > 0 ? sql`LIMIT ${req.limit}` : sql``
      }`
  })

  const listRuns = (filter: RunStore.RunFilter = {}) =>
    retryDisconnects(findRuns({
      status: filter.status ?? null,
      createdAt: filter.after?.createdAt ?? null,
      id: filter.after?.id ?? "",
      limit: filter.limit ?? 0,
      newestFirst: filter.newestFirst ?? false
    })).pipe(Effect.map((rows) => rows.map(toRun)), persistence("listRuns"))

  // Scrapes read this every few seconds: an aggregate, never the rows (50,000 decoded rows took 40 s). The cast: a
  // PostgreSQL COUNT is a bigint, which its driver returns as a string.
  const countRuns = retryDisconnects(
    SqlSchema.findAll({
      Request: Schema.Void,
      Result: Schema.Struct({ status: RunStatus, n: Schema.Number }),
      execute: () => sql`SELECT status, CAST(COUNT(*) AS INTEGER) AS n FROM runs GROUP BY status`
    })(undefined)
  ).pipe(
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

  // A count over the `(status, created_at)` index's range of one status: what a queue check needs, whatever the
  // number of ended runs (`countRuns` reads every run's index entry).
  const countStatus = (status: RunStatus) =>
    retryDisconnects(
      SqlSchema.findAll({
        Request: RunStatus,
        Result: Schema.Struct({ n: Schema.Number }),
        execute: (status) => sql`SELECT CAST(COUNT(*) AS INTEGER) AS n FROM runs WHERE status = ${status}`
      })(status)
    ).pipe(Effect.map((rows) => rows[0]?.n ?? 0), persistence("countStatus"))

  const readInput = (runId: RunId) =>
    retryDisconnects(sql<{ text: string }>`SELECT text FROM run_inputs WHERE run_id = ${runId}`).pipe(
      Effect.flatMap((rows) =>
        rows[0] === undefined ? Effect.fail(new RunNotFound({ runId })) : Effect.succeed(rows[0].text)
      ),
      persistence("readInput")
    )

  const readOntologySource = (digest: string) =>
    retryDisconnects(sql<{ source: string }>`SELECT source FROM ontologies WHERE sha256 = ${digest}`).pipe(
      Effect.map((rows) => Option.fromNullable(rows[0]?.source)),
      persistence("readOntologySource")
    )

  const requestCancel = (runId: RunId) =>
    transaction(Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      yield* touch(runId, now)
      const run = yield* getRun(runId)
      // A cancelled run must not start from the admission queue, here or after a restart.
      const withdrawn = run.status === "completed" ?
        [] :
        yield* sql<{ run_id: string }>`DELETE FROM queued_executions WHERE run_id = ${runId} RETURNING run_id`
      switch (run.status) {
        case "completed":
          return yield* new InvalidRunState({ runId, status: run.status, expected: "not yet completed" })
        case "cancelled": {
          if (withdrawn.length === 0) return run
          // A resume waiting for its execution is withdrawn: the new version makes an execution requested before
          // this cancel (a cluster's stored message) find the run cancelled since, and not start (`RunCancelled`).
          yield* sql`UPDATE runs SET status_version = status_version + 1 WHERE id = ${runId}`
          return yield* reread(runId)
        }
        case "running": {
          const live = Option.isSome(run.lease) && run.lease.value.expiresAt > now &&
            !holderIsDead(yield* ctx.readHolder(runId))
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

  // Retried on a lost connection: a retry after a COMMIT that did land updates nothing (the version moved on).
  const failUnstarted = (runId: RunId, statusVersion: number, outcome: RunStore.UnstartedOutcome) =>
    retryDisconnects(transaction(Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      const rows = yield* sql<{ id: string }>`UPDATE runs SET
          status = 'failed',
          status_version = status_version + 1,
          updated_at = ${now},
          finished_at = ${now},
          last_error = ${outcome.error},
          failure_reason = ${outcome.reason}
        WHERE id = ${runId} AND status_version = ${statusVersion} AND status IN ('pending', 'interrupted', 'failed')
        RETURNING id`
      if (rows.length === 0) return false
      yield* sql`INSERT INTO run_errors (run_id, at, reason, message)
        VALUES (${runId}, ${now}, ${outcome.reason}, ${outcome.error})`
      if (outcome.dequeue === true) yield* sql`DELETE FROM queued_executions WHERE run_id = ${runId}`
      return true
    }))).pipe(persistence("failUnstarted"))

  const errors = (runId: RunId) =>
    retryDisconnects(
      SqlSchema.findAll({
        Request: Schema.String,
        Result: ErrorRow,
        // Errors of one millisecond keep their insertion order: SQLite's rowid, PostgreSQL's serial.
        execute: (id) =>
          sql`SELECT at, reason, message FROM run_errors WHERE run_id = ${id} ORDER BY at, ${
            sql.onDialectOrElse({ pg: () => sql`seq`, orElse: () => sql`rowid` })
          }`
      })(runId)
    ).pipe(persistence("errors"))

  const setExtractorStatus = (runId: RunId, status: Readonly<Record<string, string>>) =>
    sql`UPDATE runs SET extractor_status = ${JSON.stringify(status)} WHERE id = ${runId}`.pipe(
      Effect.asVoid,
      persistence("setExtractorStatus")
    )

  const deleteRun = (runId: RunId) =>
    transaction(Effect.gen(function*() {
      yield* touch(runId, yield* Clock.currentTimeMillis)
      const run = yield* getRun(runId)
      if (!isFinished(run.status)) {
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
    })).pipe(persistence("deleteRun"), Effect.withSpan("SqlRunStore.deleteRun"))

  return {
    createRun,
    getRun: (runId: RunId) => retryDisconnects(getRun(runId)).pipe(persistence("getRun")),
    listRuns,
    countRuns,
    countStatus,
    readInput,
    readOntologySource,
    requestCancel,
    failUnstarted,
    errors,
    setExtractorStatus,
    deleteRun
  }
}
