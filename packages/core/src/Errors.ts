/**
 * The typed errors of `@quarry/core`. Every message says what happened and what to do about it, in the library's
 * terms: a front end (the `quarry` CLI, the HTTP server) words its own commands and routes.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import { Usage } from "./internal/usage.js"
import { RunId } from "./Run.js"

/**
 * A run id that no run in the database has.
 *
 * @since 0.1.0
 * @category errors
 */
export class RunNotFound extends Schema.TaggedError<RunNotFound>()("RunNotFound", { runId: Schema.String }) {
  override get message() {
    return `run "${this.runId}" does not exist in this database`
  }
}

/**
 * A run id that is already taken.
 *
 * @since 0.1.0
 * @category errors
 */
export class RunAlreadyExists extends Schema.TaggedError<RunAlreadyExists>()("RunAlreadyExists", {
  runId: Schema.String
}) {
  override get message() {
    return `run "${this.runId}" already exists; choose another run id, or resume this run`
  }
}

/**
 * Another live process (or manager) holds the run's lease.
 *
 * @since 0.1.0
 * @category errors
 */
export class RunLocked extends Schema.TaggedError<RunLocked>()("RunLocked", {
  runId: RunId,
  owner: Schema.String,
  expiresAt: Schema.Number
}) {
  override get message() {
    return `run "${this.runId}" is being executed by ${this.owner} (lease valid until ${
      new Date(this.expiresAt).toISOString()
    }); wait for it to finish, or cancel it`
  }
}

/**
 * The run is not in a state that allows the operation (e.g. exporting a run that has not completed).
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidRunState extends Schema.TaggedError<InvalidRunState>()("InvalidRunState", {
  runId: RunId,
  status: Schema.String,
  expected: Schema.String
}) {
  override get message() {
    return `run "${this.runId}" is ${this.status}, but this needs a run that is ${this.expected}`
  }
}

/**
 * One extractor setting that differs between a run and this process (`unset` where one side has none).
 *
 * @since 0.1.0
 * @category errors
 */
export const SettingChange = Schema.Struct({ name: Schema.String, stored: Schema.String, current: Schema.String })

/**
 * @since 0.1.0
 * @category errors
 */
export type SettingChange = typeof SettingChange.Type

/**
 * The settings that differ, for people: `useKnownEntities: true when started, false now`.
 *
 * @since 0.1.0
 * @category errors
 */
export const describeSettingChanges = (changes: ReadonlyArray<SettingChange>): string =>
  changes.map((change) => `${change.name}: ${change.stored} when started, ${change.current} now`).join("; ")

/**
 * The environment no longer matches what the run was planned with (extractor, chunker, ontology). For an extractor
 * configuration, `settings` names the settings that differ, when the run's stored settings tell.
 *
 * @since 0.1.0
 * @category errors
 */
export class PlanMismatch extends Schema.TaggedError<PlanMismatch>()("PlanMismatch", {
  runId: RunId,
  field: Schema.String,
  stored: Schema.String,
  current: Schema.String,
  settings: Schema.optional(Schema.Array(SettingChange))
}) {
  override get message() {
    const start = `run "${this.runId}" was started with ${this.field} ${this.stored}, but this process has ` +
      this.current
    return this.settings === undefined || this.settings.length === 0 ?
      `${start}; resume it with the same ${this.field}, or start a new run` :
      `${start} (${describeSettingChanges(this.settings)}); resume it with the settings it was started with, or ` +
      "start a new run"
  }
}

/**
 * The stored input text no longer matches the SHA-256 recorded when the run was created.
 *
 * @since 0.1.0
 * @category errors
 */
export class InputMismatch extends Schema.TaggedError<InputMismatch>()("InputMismatch", {
  runId: RunId,
  expected: Schema.String,
  actual: Schema.String
}) {
  override get message() {
    return `the stored input of run "${this.runId}" has SHA-256 ${this.actual}, expected ${this.expected}; ` +
      `the database was modified outside Quarry, start a new run from the original document`
  }
}

/**
 * What kind of storage failure a `PersistenceError` is, read from the SQLite result code (or errno) of its cause:
 * `disk-full` (SQLITE_FULL, ENOSPC), `read-only` (SQLITE_READONLY*, EROFS, EACCES), `locked` (SQLITE_BUSY*,
 * SQLITE_LOCKED*), `corrupt` (SQLITE_CORRUPT*, SQLITE_NOTADB), `io` (SQLITE_IOERR*, SQLITE_CANTOPEN*, EIO) or
 * `other`; `connection` when the store found the connection to PostgreSQL lost, and still lost after its retries.
 *
 * @since 0.1.0
 * @category errors
 */
export const StorageFailure = Schema.Literal("disk-full", "read-only", "locked", "corrupt", "io", "connection", "other")

/**
 * @since 0.1.0
 * @category errors
 */
export type StorageFailure = typeof StorageFailure.Type

const failureByCode: ReadonlyArray<readonly [RegExp, StorageFailure]> = [
  [/^(SQLITE_FULL|ENOSPC|EDQUOT|EFBIG)$/, "disk-full"],
  [/^(SQLITE_READONLY(_\w+)?|SQLITE_PERM|SQLITE_AUTH|EROFS|EACCES|EPERM)$/, "read-only"],
  [/^(SQLITE_BUSY(_\w+)?|SQLITE_LOCKED(_\w+)?)$/, "locked"],
  [/^(SQLITE_CORRUPT(_\w+)?|SQLITE_NOTADB)$/, "corrupt"],
  [/^(SQLITE_IOERR(_\w+)?|SQLITE_CANTOPEN(_\w+)?|EIO)$/, "io"]
]

/** The result code of the first error in `cause`'s chain that carries one (`SqliteError.code`, a Node errno). */
const codeOf = (cause: unknown): string | undefined => {
  for (let current = cause, depth = 0; typeof current === "object" && current !== null && depth < 8; depth++) {
    if ("code" in current && typeof current.code === "string") return current.code
    current = "cause" in current ? current.cause : undefined
  }
  return undefined
}

/**
 * Classifies a storage failure by the result code in its cause chain.
 *
 * @since 0.1.0
 * @category errors
 */
export const classifyStorageFailure = (cause: unknown): StorageFailure => {
  const code = codeOf(cause)
  if (code === undefined) return "other"
  return failureByCode.find(([pattern]) => pattern.test(code))?.[1] ?? "other"
}

const advice: Record<StorageFailure, string> = {
  "disk-full": "the file system of the database is full; free space there, then try again",
  "read-only":
    "the database, its -wal/-shm files or its directory is not writable; make them writable by this user, then try again",
  locked: "another connection held the database's write lock for too long; stop the other writer, then try again",
  corrupt: "the database file is damaged; run `quarry doctor`, and restore it from a backup if that fails",
  io: "the operating system reported an I/O error on the database; check the disk and file system, then try again",
  connection: "the database server ended the connection or could not be reached; check that it is up and reachable, " +
    "then try again",
  other: "check the database, then try again"
}

/**
 * The storage layer failed (I/O, SQLite, a row that does not decode). `reason` classifies the failure (when not
 * given, it is read from the cause's SQLite result code) so that the message can say what to do.
 *
 * @since 0.1.0
 * @category errors
 */
export class PersistenceError extends Schema.TaggedError<PersistenceError>()("PersistenceError", {
  operation: Schema.String,
  reason: StorageFailure,
  cause: Schema.Defect
}) {
  constructor(
    props: { readonly operation: string; readonly cause: unknown; readonly reason?: StorageFailure | undefined },
    disableValidation?: boolean
  ) {
    super({ ...props, reason: props.reason ?? classifyStorageFailure(props.cause) }, disableValidation)
  }

  override get message() {
    const code = codeOf(this.cause)
    return `storage failed during ${this.operation}${this.reason === "other" ? "" : ` (${this.reason})`}: ` +
      `${describeCauses(this.cause)}${code === undefined ? "" : ` [${code}]`}; ${advice[this.reason]}`
  }
}

/** An error's message followed by its causes' messages: an `SqlError` only says "Failed to execute statement". */
const describeCauses = (cause: unknown): string => {
  const messages: Array<string> = []
  for (let current = cause; current instanceof Error && messages.length < 5; current = current.cause) {
    if (current.message !== "" && !messages.includes(current.message)) messages.push(current.message)
  }
  return messages.length === 0 ? String(cause) : messages.join(": ")
}

/**
 * The database cannot be trusted to keep committed work; lists every reason.
 *
 * @since 0.1.0
 * @category errors
 */
export class DurabilityError extends Schema.TaggedError<DurabilityError>()("DurabilityError", {
  filename: Schema.String,
  reasons: Schema.Array(Schema.String)
}) {
  override get message() {
    return `database ${this.filename} is not durable: ${this.reasons.join("; ")}`
  }
}

/**
 * An extractor failed on a batch. `retryable` says whether running the batch again may succeed. `usage` is what the
 * failed attempts consumed (an LLM extractor's requests and tokens, the same shape as `Extractor.Usage`): a workflow
 * that skips the batch commits it as the batch's usage, so that it counts in the run's usage rather than as lost
 * spend.
 *
 * @since 0.1.0
 * @category errors
 */
export class ExtractorError extends Schema.TaggedError<ExtractorError>()("ExtractorError", {
  extractor: Schema.String,
  batchIndex: Schema.Int,
  reason: Schema.String,
  retryable: Schema.Boolean,
  usage: Schema.optional(Usage),
  cause: Schema.optional(Schema.Defect)
}) {
  override get message() {
    return `extractor ${this.extractor} failed on batch ${this.batchIndex}: ${this.reason}`
  }
}

/**
 * No extractor of that name is registered in this process.
 *
 * @since 0.1.0
 * @category errors
 */
export class UnknownExtractor extends Schema.TaggedError<UnknownExtractor>()("UnknownExtractor", {
  name: Schema.String,
  available: Schema.Array(Schema.String)
}) {
  override get message() {
    return `unknown extractor "${this.name}"; available: ${this.available.join(", ")}`
  }
}

/**
 * Writing the merged artifact failed.
 *
 * @since 0.1.0
 * @category errors
 */
export class MergeError extends Schema.TaggedError<MergeError>()("MergeError", {
  path: Schema.String,
  cause: Schema.Defect
}) {
  override get message() {
    const cause = this.cause instanceof Error ? this.cause.message : String(this.cause)
    const reason = classifyStorageFailure(this.cause)
    const hint = reason === "disk-full" ?
      "; free space on its file system, then try again" :
      reason === "read-only" ?
      "; make its directory writable by this user, then try again" :
      ""
    return `could not write the artifact ${this.path}: ${cause}${hint}`
  }
}

/**
 * A run stopped because its cancellation was requested.
 *
 * @since 0.1.0
 * @category errors
 */
export class RunCancelled extends Schema.TaggedError<RunCancelled>()("RunCancelled", {
  runId: RunId,
  /**
   * Set when a claim recorded the cancel for a holder that stopped before it saw the request (paused, dead): the
   * claimer owes that execution's undo steps.
   */
  tookOver: Schema.optional(Schema.Boolean)
}) {
  override get message() {
    return `run "${this.runId}" was cancelled; it can be resumed`
  }
}

/**
 * A run failed earlier (in this or another process); carries the recorded error.
 *
 * @since 0.1.0
 * @category errors
 */
export class RunFailed extends Schema.TaggedError<RunFailed>()("RunFailed", {
  runId: RunId,
  reason: Schema.String,
  error: Schema.String
}) {
  override get message() {
    return `run "${this.runId}" failed (${this.reason}): ${this.error}; fix the cause, then resume it`
  }
}

/**
 * A run was interrupted (signal, shutdown) and can be resumed.
 *
 * @since 0.1.0
 * @category errors
 */
export class RunInterrupted extends Schema.TaggedError<RunInterrupted>()("RunInterrupted", { runId: RunId }) {
  override get message() {
    return `run "${this.runId}" was interrupted; it can be resumed`
  }
}

/**
 * A run ran past its deadline and was stopped; committed batches are kept. Resume it (with a longer deadline). Its
 * message is stored as the run's last error, so it names no front end's command (see `BudgetExceeded`).
 *
 * @since 0.1.0
 * @category errors
 */
export class DeadlineExceeded extends Schema.TaggedError<DeadlineExceeded>()("DeadlineExceeded", {
  runId: RunId,
  deadlineMs: Schema.Number
}) {
  override get message() {
    return `run "${this.runId}" did not finish within its deadline of ${this.deadlineMs} ms; committed batches are ` +
      "kept, and a resume continues it"
  }
}

/**
 * What the extractor estimated the run's first batch at (`Extractor.Estimate`), when that estimate is what did not fit
 * the budget: tokens as budgets count them (prompt plus completion), the cost, and what they are made of.
 *
 * @since 0.1.0
 * @category errors
 */
export const BudgetEstimate = Schema.Struct({
  tokens: Schema.Number,
  costUsd: Schema.Number,
  basis: Schema.String
})

/**
 * A run stopped before exceeding its cost or token budget. Resume it with a higher budget. The message is stored as
 * the run's last error, which the CLI, the API and the dashboard all show: it names no front end's command (the
 * CLI's own message adds `quarry resume`, the API's run view its `resume` route). `estimate` is there when the run
 * stopped before its first batch, which the extractor estimated above the budget: nothing was spent on it.
 *
 * @since 0.1.0
 * @category errors
 */
export class BudgetExceeded extends Schema.TaggedError<BudgetExceeded>()("BudgetExceeded", {
  runId: RunId,
  limit: Schema.Literal("cost", "tokens"),
  spent: Schema.Number,
  max: Schema.Number,
  estimate: Schema.optional(BudgetEstimate)
}) {
  override get message() {
    const [spent, max] = this.limit === "cost" ?
      [`$${this.spent.toFixed(4)}`, `its max cost of $${this.max}`] :
      [`${this.spent} tokens`, `its max of ${this.max} tokens`]
    if (this.estimate !== undefined) {
      return `run "${this.runId}" stopped before its first batch, which the extractor estimates at ` +
        `${estimateText(this.limit, this.estimate)}, more than ${max}; nothing was spent on it, and a resume with a ` +
        "higher budget continues it"
    }
    const why = this.spent > this.max ?
      `stopped over its budget: spent ${spent} of ${max} (a batch's cost is known once it is answered, so the ` +
      "first one, or one costlier than those before it, can go over)" :
      `stopped before exceeding its budget: spent ${spent} of ${max}, and the next batch would go over`
    return `run "${this.runId}" ${why}; committed batches are kept, and a resume with a higher budget continues it`
  }
}

/**
 * An estimate in words, the limit it is held to first: `$0.01134 (its prompt alone: about 1134 tokens, ...)`.
 *
 * @since 0.1.0
 * @category errors
 */
export const estimateText = (limit: "cost" | "tokens", estimate: typeof BudgetEstimate.Type): string =>
  `${limit === "cost" ? `$${estimate.costUsd}` : `${estimate.tokens} tokens`} (${estimate.basis})`
