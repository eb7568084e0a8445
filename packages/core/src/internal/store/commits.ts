/**
 * Batch commits: each batch's output, its entities, its checkpoint and the run's progress in one transaction; a
 * group of consecutive batches shares that transaction (group commit).
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type * as SqlConnection from "@effect/sql/SqlConnection"
import type * as Statement from "@effect/sql/Statement"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { deflateRawSync } from "node:zlib"
import * as CrashPoint from "../../CrashPoint.js"
import * as Extractor from "../../Extractor.js"
import type * as RunStore from "../../RunStore.js"
import { entityKey, sha256 } from "../entities.js"
import * as SqliteConnection from "../sqliteConnection.js"
import type { Compiled } from "../sqliteConnection.js"
import { lockedBy, persistence, retryDisconnects, type StoreContext } from "./context.js"
import { ProgressRow } from "./rows.js"

/** Outputs larger than this many bytes of JSON are stored deflated (mention JSON deflates to about a fifth). */
export const compressAbove = 1024

/** Entity rows per INSERT statement (4 parameters each, far below SQLite's 32,766 and PostgreSQL's 65,535). */
const entityRowsPerInsert = 400

/** Batch and checkpoint rows per INSERT statement (13 parameters each at most). */
const batchRowsPerInsert = 64

/** The stored form of an output: its bytes (deflated when large) and the SHA-256 of its JSON. */
export const storedOutput = (output: Extractor.BatchOutput) => {
  const json = Extractor.canonicalJson(output)
  const raw = Buffer.from(json, "utf8")
  const [blob, encoding] = raw.length > compressAbove ? [deflateRawSync(raw), "deflate"] : [raw, "json"]
  return { blob, encoding, outputSha256: sha256(json) }
}

/** A batch ready to write: encoded, hashed and compressed before the transaction. */
interface Prepared {
  readonly commit: RunStore.BatchCommit
  readonly blob: Buffer
  readonly encoding: string
  readonly outputSha256: string
}

/** The connection of the transaction this runs in (`transaction` provides it). */
const transactionConnection = Effect.flatMap(
  Effect.serviceOption(SqlClient.TransactionConnection),
  Option.match({
    onNone: () => Effect.dieMessage("a commit's statements run inside its transaction"),
    onSome: ([connection]) => Effect.succeed(connection)
  })
)

/**
 * Runs statements, compiled by `@effect/sql`'s compiler, in order on the transaction's own connection: SQLite's runs
 * them in one synchronous step (`sqliteConnection`), PostgreSQL's one after another. Either way without the span,
 * fiber references and connection acquisition that each statement run through the client costs (50 µs to 70 µs of
 * CPU each, pnpm bench section 1).
 */
const executeAll = (connection: SqlConnection.Connection, statements: ReadonlyArray<Compiled>) =>
  SqliteConnection.isBatching(connection) ?
    connection.executeAll(statements) :
    Effect.forEach(statements, ([text, params]) => connection.execute(text, params, undefined), { discard: true })

/** `statement` compiled for each slice of at most `size` rows. */
const chunks = (
  rows: ReadonlyArray<Record<string, unknown>>,
  size: number,
  statement: (rows: ReadonlyArray<Record<string, unknown>>) => Statement.Statement<unknown>
): Array<Compiled> => {
  const compiled: Array<Compiled> = []
  for (let i = 0; i < rows.length; i += size) compiled.push(statement(rows.slice(i, i + size)).compile())
  return compiled
}

/**
 * SQLite's entity insert, one row per statement: prepared once and run in one step with the rest of a commit, 50 of
 * them cost less than one 50-row insert (pnpm bench section 1). PostgreSQL keeps multi-row inserts: each statement
 * is a round trip there.
 */
const insertEntitySqlite = `INSERT INTO entities (run_id, entity_key, label, first_batch) VALUES (?, ?, ?, ?)
  ON CONFLICT (run_id, entity_key) DO NOTHING`

/** The commit operations of the store. */
// A namespace of short operations over one context (each reads at once), not one long function.
export const make = (ctx: StoreContext) => {
  const { hooks, reread, sql, transaction } = ctx
  const decodeProgress = Schema.decodeUnknown(Schema.Array(ProgressRow))

  // One statement reads the progress columns with the current lease token, under the run's lock: the token it reads
  // cannot change until commit. PostgreSQL: the row's lock, taken by this update. SQLite: the database's write lock,
  // which the transaction's `BEGIN IMMEDIATE` (Database.ts) holds already, so a plain read (an UPDATE ... RETURNING
  // here cost about 80 µs more per commit, pnpm bench section 1); `updateRun` writes `updated_at`.
  const lockProgress = (connection: SqlConnection.Connection, id: string, now: number) =>
    connection.execute(
      ...sql.onDialectOrElse({
        pg: () =>
          sql`UPDATE runs SET updated_at = ${now} WHERE id = ${id}
            RETURNING committed_batches, entity_mentions, relations, digest, lease_token, cancel_requested`,
        orElse: () =>
          sql`SELECT committed_batches, entity_mentions, relations, digest, lease_token, cancel_requested
            FROM runs WHERE id = ${id}`
      }).compile(),
      undefined
    ).pipe(Effect.flatMap(decodeProgress))

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

  /** The group's new entity rows, each key once (its first mention's label), built before the transaction. */
  const entityRows = (group: ReadonlyArray<Prepared>) => {
    const seen = new Set<string>()
    const rows: Array<Record<string, unknown>> = []
    for (const { commit } of group) {
      for (const mention of commit.output.entities) {
        const key = entityKey(mention.label, mention.type)
        if (seen.has(key)) continue
        seen.add(key)
        rows.push(ctx.entityRow(commit.runId, mention, commit.batchIndex, key))
      }
    }
    return rows
  }

  const batchRow = ({ blob, commit, encoding, outputSha256 }: Prepared, now: number) => ({
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
    usage: commit.output.usage === undefined ? null : JSON.stringify(commit.output.usage),
    committed_at: now
  })

  /** The checkpoints of the group, each chained on the one before it. */
  const checkpoints = (group: ReadonlyArray<Prepared>, run: typeof ProgressRow.Type) => {
    let previous = { entityMentions: run.entityMentions, relations: run.relations, digest: run.digest }
    return group.map(({ commit, outputSha256 }): RunStore.Checkpoint => {
      const checkpoint = {
        runId: commit.runId,
        batchIndex: commit.batchIndex,
        committedBatches: commit.batchIndex + 1,
        entityMentions: previous.entityMentions + commit.output.entities.length,
        relations: previous.relations + commit.output.relations.length,
        digest: sha256(previous.digest + outputSha256),
        cancelRequested: run.cancelRequested !== 0
      }
      previous = checkpoint
      return checkpoint
    })
  }

  /** The run's progress after the group: the last checkpoint, plus the group's skipped batches and usage. */
  const updateRun = (group: ReadonlyArray<Prepared>, last: RunStore.Checkpoint, now: number) => {
    let skipped = 0, requests = 0, prompt = 0, completion = 0, cost = 0
    for (const { commit } of group) {
      const usage = commit.output.usage
      if (commit.skipped !== undefined) skipped++
      requests += usage?.requests ?? 0
      prompt += usage?.promptTokens ?? 0
      completion += usage?.completionTokens ?? 0
      cost += usage?.costUsd ?? 0
    }
    return sql`UPDATE runs SET
        updated_at = ${now},
        committed_batches = ${last.committedBatches},
        entity_mentions = ${last.entityMentions},
        relations = ${last.relations},
        digest = ${last.digest},
        skipped_batches = skipped_batches + ${skipped},
        usage_requests = usage_requests + ${requests},
        usage_prompt_tokens = usage_prompt_tokens + ${prompt},
        usage_completion_tokens = usage_completion_tokens + ${completion},
        usage_cost_usd = usage_cost_usd + ${cost}
      WHERE id = ${last.runId}`
  }

  /** The group's entity rows as statements. */
  const entityStatements = (entities: ReadonlyArray<Record<string, unknown>>): Array<Compiled> =>
    ctx.isPg ?
      chunks(entities, entityRowsPerInsert, (rows) =>
        sql`INSERT INTO entities ${sql.insert(rows)} ON CONFLICT (run_id, entity_key) DO NOTHING`) :
      entities.map((row) => [insertEntitySqlite, [row.run_id, row.entity_key, row.label, row.first_batch]])

  /** The writes of a group whose first batch is the run's next one: outputs and entities, then progress. */
  const writeGroup =
    (connection: SqlConnection.Connection, group: ReadonlyArray<Prepared>, entities: ReadonlyArray<Compiled>) =>
    (run: typeof ProgressRow.Type, now: number) =>
      Effect.gen(function*() {
        const batches = chunks(group.map((p) => batchRow(p, now)), batchRowsPerInsert, (rows) =>
          sql`INSERT INTO batches ${sql.insert(rows)}`)
        yield* executeAll(connection, [...batches, ...entities])
        if (hooks.beforeCheckpoint) {
          for (const { commit } of group) {
            yield* hooks.beforeCheckpoint(commit)
          }
        }
        const written = checkpoints(group, run)
        const rows = written.map((c) => ({
          run_id: c.runId,
          batch_index: c.batchIndex,
          entity_mentions: c.entityMentions,
          relations: c.relations,
          digest: c.digest,
          committed_at: now
        }))
        yield* executeAll(connection, [
          ...chunks(rows, batchRowsPerInsert, (chunk) =>
            sql`INSERT INTO checkpoints ${sql.insert(chunk)}`),
          updateRun(group, written[written.length - 1]!, now).compile()
        ])
        yield* CrashPoint.hit("commitBatch.transaction", group[0]!.commit.batchIndex)
        return written
      })

  /**
   * Commits consecutive batches of one run and holder in one transaction (one fsync). Batches committed already
   * (a retry) answer their stored checkpoints and are not written again; the rest must start at the run's next batch.
   */
  const commitBatches = (commits: ReadonlyArray<RunStore.BatchCommit>) =>
    Effect.gen(function*() {
      const first = commits[0]
      if (first === undefined) return []
      for (let i = 1; i < commits.length; i++) {
        const c = commits[i]!
        if (c.runId !== first.runId || c.holder.token !== first.holder.token || c.batchIndex !== first.batchIndex + i) {
          return yield* Effect.dieMessage("a group commit takes consecutive batches of one run and one holder")
        }
      }
      // Encoding, hashing and compression happen before the transaction: SQLite's holds the only connection.
      const prepared = commits.map((commit): Prepared => ({ commit, ...storedOutput(commit.output) }))
      const entities = entityStatements(entityRows(prepared))
      const txn = transaction(Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const connection = yield* transactionConnection
        const run = (yield* lockProgress(connection, first.runId, now))[0]
        // The fence: a holder whose claim was replaced writes nothing, for any batch of the group.
        if (run === undefined || run.leaseToken !== first.holder.token) {
          return yield* lockedBy(yield* reread(first.runId))
        }
        // Already committed (a retried commit): the stored checkpoints, nothing written.
        const done = Math.max(0, Math.min(commits.length, run.committedBatches - first.batchIndex))
        const stored = yield* Effect.forEach(commits.slice(0, done), (c) => storedCheckpoint(c, run))
        const rest = prepared.slice(done)
        if (rest.length === 0) return stored
        if (rest[0]!.commit.batchIndex !== run.committedBatches) {
          return yield* Effect.dieMessage(
            `batch ${rest[0]!.commit.batchIndex} committed out of order (next is ${run.committedBatches})`
          )
        }
        return [
          ...stored,
          ...yield* writeGroup(connection, rest, done === 0 ? entities : entityStatements(entityRows(rest)))(run, now)
        ]
      }))
      // Idempotent (committed batches answer their checkpoints), so a broken connection is retried; SQLite's never
      // breaks, and the retry's schedule costs CPU on every commit.
      return yield* (ctx.isPg ? retryDisconnects(txn) : txn)
    }).pipe(
      persistence("commitBatch"),
      Effect.withSpan("SqlRunStore.commitBatch", {
        attributes: { runId: commits[0]?.runId, batch: commits[0]?.batchIndex, batches: commits.length },
        // The caller's stack (an `Error` built per span) would be the same every time (see EngineMetrics's key).
        captureStackTrace: false
      })
    )

  const commitBatch = (commit: RunStore.BatchCommit) => Effect.map(commitBatches([commit]), (all) => all[0]!)

  return { commitBatch, commitBatches }
}
