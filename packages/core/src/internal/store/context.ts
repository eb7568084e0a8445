/** What every part of the SQL store shares: the client, the dialect helpers, and the reads that guard writes. */
import type * as SqlClient from "@effect/sql/SqlClient"
import * as SqlSchema from "@effect/sql/SqlSchema"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import { PersistenceError, RunLocked, RunNotFound } from "../../Errors.js"
import type { Run, RunId } from "../../Run.js"
import type * as RunStore from "../../RunStore.js"
import type { Hooks } from "../../SqlRunStore.js"
import { entityKey as entityKeyOf, sha256 } from "../entities.js"
import * as Processes from "../processes.js"
import { failOnSqlDefect, isSqlError, withTransaction } from "../transaction.js"
import { HolderRow, RunRow, toRun } from "./rows.js"

/** The digest a run starts from, before any batch. */
export const genesisDigest = sha256("quarry")

/** Turns the driver's and the decoder's errors into `PersistenceError`s; domain errors pass through. */
export const persistence = (operation: string) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.catchIf(
    effect,
    (
      e: unknown
    ): e is Exclude<
      E,
      { readonly _tag: "RunNotFound" | "RunLocked" | "RunAlreadyExists" | "InvalidRunState" | "PersistenceError" }
    > => typeof e === "object" && e !== null && "_tag" in e && (e._tag === "SqlError" || e._tag === "ParseError"),
    (cause) => persistenceError(operation, cause)
  ).pipe(failOnSqlDefect((cause) => persistenceError(operation, cause)))

const persistenceError = (operation: string, cause: unknown) =>
  new PersistenceError({ operation, cause, reason: isDisconnect(cause) ? "connection" : undefined })

const disconnectCodes = new Set(["57P01", "57P02", "57P03", "25P03", "25P04", "ECONNRESET", "EPIPE", "ECONNREFUSED"])

/**
 * True for a failure of the connection itself, not of the statement: PostgreSQL terminated the session
 * (`pg_terminate_backend`, a restart, a failover: SQLSTATE 57P0x or class 08; an idle-in-transaction or transaction
 * timeout: 25P03, 25P04; any error of severity FATAL ends the session) or the socket broke. The pool opens a new
 * connection for the next statement. SQLite never fails this way.
 *
 * A process frozen inside a transaction (SIGSTOP, a paused VM) wakes to the server's FATAL as the answer to its next
 * statement, not to a closed socket: that too is a disconnect, so that the retry meets the fence.
 */
const isDisconnect = (e: unknown): boolean => {
  if (!isSqlError(e) || typeof e !== "object" || e === null || !("cause" in e)) return false
  const cause = e.cause
  if (!(cause instanceof Error)) return false
  const code = "code" in cause && typeof cause.code === "string" ? cause.code : ""
  const fatal = "severity" in cause && cause.severity === "FATAL"
  return fatal || disconnectCodes.has(code) || code.startsWith("08") ||
    /Connection terminated|not queryable/i.test(cause.message)
}

/** A broken connection, as a failure or as a defect (a failed COMMIT or ROLLBACK dies, see `withTransaction`). */
const isDisconnectCause = <E>(cause: Cause.Cause<E>): boolean =>
  Option.exists(Cause.failureOption(cause), isDisconnect) || Option.exists(Cause.dieOption(cause), isDisconnect)

/**
 * Retries an operation whose every attempt is safe to repeat (a read, or an idempotent write such as
 * `commitBatch`, whose retry after a COMMIT that did land returns the stored checkpoint) when the connection broke
 * under it: a few attempts, 50 ms apart and doubling.
 */
export const retryDisconnects = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.sandbox(effect).pipe(
    Effect.retry({
      while: isDisconnectCause,
      schedule: Schedule.exponential("50 millis").pipe(Schedule.intersect(Schedule.recurs(5)))
    }),
    Effect.unsandbox
  )

/** The error for a write whose holder no longer holds the run. */
export const lockedBy = (run: Run) =>
  Option.match(run.lease, {
    onNone: () => new RunLocked({ runId: run.id, owner: "unknown", expiresAt: 0 }),
    onSome: (lease) => new RunLocked({ runId: run.id, owner: lease.owner, expiresAt: lease.expiresAt })
  })

/** Builds the shared context over the database's client. */
export const make = (sql: SqlClient.SqlClient, hooks: Hooks) => {
  const me = Processes.self()
  const transaction = withTransaction(sql)
  const isPg = sql.onDialectOrElse({ pg: () => true, orElse: () => false })

  /** An entity key as a statement parameter (see `rows.KeyColumn`). */
  const key = (entityKey: string): string | Buffer => isPg ? Buffer.from(entityKey, "utf8") : entityKey

  /**
   * The row of an entity first seen in batch `firstBatch` (`entityKey`: its key, when the caller has it already).
   * The class is read back from the key, and SQLite's schema 6 has no column for it. PostgreSQL's keeps its `type`
   * column, written and never read here: in a rolling upgrade of a cluster, runners of the version before read and
   * write it next to this one's.
   */
  const entityRow = (
    runId: RunId,
    mention: { readonly label: string; readonly type: string },
    firstBatch: number,
    entityKey: string = entityKeyOf(mention.label, mention.type)
  ) => {
    const row = { run_id: runId, entity_key: key(entityKey), label: mention.label, first_batch: firstBatch }
    return isPg ? { ...row, type: mention.type } : row
  }

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

  // For a run this transaction has just read or written: it cannot have vanished (it holds the row).
  const reread = (runId: RunId) => getRun(runId).pipe(Effect.catchTag("RunNotFound", Effect.die))

  // Every write transaction starts with a write to the run's row. SQLite then holds the write lock (waiting on
  // `busy_timeout`) before reading, instead of failing with SQLITE_BUSY when upgrading a read snapshot; PostgreSQL
  // holds the row's lock, so the reads that follow see the last committed claim and no claim can change it until
  // this transaction ends. That is what makes lease tokens fencing tokens on both.
  const touch = (runId: RunId, now: number) => sql`UPDATE runs SET updated_at = ${now} WHERE id = ${runId}`

  const readHolder = (runId: RunId) =>
    SqlSchema.single({
      Request: Schema.String,
      Result: HolderRow,
      execute: (id) => sql`SELECT lease_token, lease_host, lease_pid, lease_pid_started FROM runs WHERE id = ${id}`
    })(runId).pipe(Effect.catchTag("NoSuchElementException", Effect.die))

  // Read inside a write transaction after `touch`, so the holder cannot change before the transaction commits.
  const holds = (runId: RunId, holder: RunStore.LeaseHolder) =>
    Effect.map(readHolder(runId), (row) => row.lease_token === holder.token)

  return { sql, hooks, me, transaction, isPg, key, entityRow, getRun, reread, touch, readHolder, holds } as const
}

/** The shared context of the store's parts. */
export type StoreContext = ReturnType<typeof make>
