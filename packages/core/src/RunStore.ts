/**
 * The run store capability: runs, their inputs, batch outputs with checkpoints, leases and status transitions.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type * as Chunking from "./Chunking.js"
import {
  type InvalidRunState,
  type PersistenceError,
  type RunAlreadyExists,
  RunCancelled,
  type RunLocked,
  type RunNotFound
} from "./Errors.js"
import type * as Extractor from "./Extractor.js"
import type {
  Artifact,
  BatchErrorPolicy,
  ExtractorIdentity,
  OutputFormat,
  Run,
  RunBudget,
  RunId,
  RunStatus,
  UsageTotals
} from "./Run.js"

/**
 * Everything needed to create a run; written in one transaction.
 *
 * @since 0.1.0
 * @category models
 */
export interface NewRun {
  readonly id: RunId
  readonly input: string
  readonly inputSha256: string
  readonly chunking: Chunking.ChunkingParams
  readonly chunkerVersion: string
  readonly extractor: ExtractorIdentity
  /** The ontology's canonical SHA-256 and its source text, stored so that resume loads the very same ontology. */
  readonly ontology: Option.Option<{ readonly sha256: string; readonly source: string }>
  readonly concurrency: number
  readonly totalBatches: number
  readonly outputPath: string
  readonly outputFormat: OutputFormat
  readonly onBatchError: BatchErrorPolicy
  readonly provenance: boolean
  /** Also queues the run's first execution, in the same transaction (admission's durable FIFO). */
  readonly queued?: Omit<NewQueuedExecution, "runId"> | undefined
}

/**
 * A request to execute a run, for the durable admission FIFO of `quarry serve`: what the execution needs that the
 * run's plan does not hold.
 *
 * @since 0.1.0
 * @category models
 */
export interface NewQueuedExecution {
  readonly runId: RunId
  readonly retrySkipped?: boolean | undefined
  readonly budget?: { readonly maxCostUsd?: number | undefined; readonly maxTokens?: number | undefined } | undefined
  /** The request that queued it, for the run's logs. */
  readonly requestId?: string | undefined
}

/**
 * A queued execution as stored: on a single server, kept from the request until the execution ends (completed,
 * failed or cancelled), so a restart requeues a waiting one and resumes an interrupted one with the same budget; in
 * a cluster, until the runner's claim (`ClaimOptions.dequeue`), after which its stored message is the request.
 *
 * @since 0.1.0
 * @category models
 */
export interface QueuedExecution {
  readonly runId: RunId
  /** The FIFO order: larger is later. */
  readonly seq: number
  readonly retrySkipped: boolean
  readonly budget: Option.Option<{ readonly maxCostUsd?: number | undefined; readonly maxTokens?: number | undefined }>
  readonly requestId: Option.Option<string>
  readonly queuedAt: number
}

/**
 * Who holds a run's lease: the owner's name, for people, and the random token of this claim, which every write of
 * the holder presents. Two executions with the same owner name hold different tokens: only the latest claim writes.
 *
 * @since 0.1.0
 * @category models
 */
export interface LeaseHolder {
  readonly owner: string
  readonly token: string
}

/**
 * Options of `claim`.
 *
 * @since 0.1.0
 * @category models
 */
export interface ClaimOptions {
  /** Reopen a completed run (to retry its skipped batches). */
  readonly reopen?: boolean | undefined
  /** The `statusVersion` the caller read: a run cancelled since then fails with `RunCancelled`. */
  readonly expectedVersion?: number | undefined
  /** Becomes the run's whole budget (one without a finite limit lifts it); without one the run keeps its own. */
  readonly budget?: RunBudget | undefined
  /**
   * Take the run's queued execution off the queue with the lease, in the claim's transaction: for an execution
   * whose request is kept elsewhere until it ends (a cluster's stored `Execute` message).
   */
  readonly dequeue?: boolean | undefined
}

/**
 * What `claim` gives: the run and, when it took the lease, the holder to present on every write. A completed run
 * that was not reopened is returned without a holder.
 *
 * @since 0.1.0
 * @category models
 */
export interface Claimed {
  readonly run: Run
  readonly holder: Option.Option<LeaseHolder>
}

/**
 * One batch result to commit, with the lease holder that produced it.
 *
 * @since 0.1.0
 * @category models
 */
export interface BatchCommit {
  readonly runId: RunId
  readonly holder: LeaseHolder
  readonly batchIndex: number
  readonly output: Extractor.BatchOutput
  readonly attempts: number
  readonly durationMs: number
  /** Set when the batch failed and the run's policy is `skip`: the output is empty and the error is kept. */
  readonly skipped?: { readonly error: string } | undefined
}

/**
 * The checkpoint written with a batch: cumulative counters and the chained digest
 * `sha256(previous digest || batch output sha256)`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Checkpoint {
  readonly runId: RunId
  readonly batchIndex: number
  readonly committedBatches: number
  readonly entityMentions: number
  readonly relations: number
  readonly digest: string
  /** Set when someone asked to cancel the run; the workflow stops at this batch boundary. */
  readonly cancelRequested: boolean
}

/**
 * A stored batch output, as read back for merging.
 *
 * @since 0.1.0
 * @category models
 */
export interface StoredBatch {
  readonly batchIndex: number
  readonly output: Extractor.BatchOutput
}

/**
 * The end of an execution that did not complete.
 *
 * @since 0.1.0
 * @category models
 */
export interface Outcome {
  readonly status: Extract<RunStatus, "failed" | "cancelled" | "interrupted">
  readonly reason?: string | undefined
  readonly error?: string | undefined
}

/**
 * Why an execution could not start (see `RunStore.failUnstarted`).
 *
 * @since 0.1.0
 * @category models
 */
export interface UnstartedOutcome {
  /** The error's tag, e.g. `UnknownExtractor`. */
  readonly reason: string
  readonly error: string
  /**
   * Also take the run's queued execution off the queue, for a request that ends here (a cluster's answered
   * message). Default false: a single server keeps it, and its next start tries the run again.
   */
  readonly dequeue?: boolean | undefined
}

/**
 * A batch that was skipped under the `skip` policy.
 *
 * @since 0.1.0
 * @category models
 */
export interface SkippedBatch {
  readonly batchIndex: number
  readonly error: string
}

/**
 * A recorded error of a run.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunErrorEntry {
  readonly at: number
  readonly reason: string
  readonly message: string
}

/**
 * An entity known to a run, as extractors see it in their context.
 *
 * @since 0.1.0
 * @category models
 */
export interface KnownEntity {
  readonly key: string
  readonly label: string
  readonly type: string
  /** The batch the entity was first seen in. */
  readonly firstBatch: number
}

/**
 * One durable compensation step of a run (see `Compensation`): `handler` names the registered code that undoes it,
 * `payload` (JSON text) is what that code is given.
 *
 * @since 0.1.0
 * @category models
 */
export interface CompensationStep {
  /** Registration order within the run, from 1; steps run in descending order. */
  readonly seq: number
  readonly handler: string
  /** Shown in errors and in the run's status, e.g. `delete upload file-123`. */
  readonly name: string
  readonly payload: string
  readonly state: "pending" | "done" | "failed"
  /** The error of the last failed attempt. */
  readonly lastError: Option.Option<string>
}

/**
 * What is shown of a run beyond its row (`RunView`): the usage of every recorded attempt, its skipped batches and
 * its compensation steps.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunDetails {
  /** Usage of every recorded extractor attempt, committed or not: what the run has spent. */
  readonly attempts: UsageTotals
  readonly skipped: ReadonlyArray<SkippedBatch>
  /** The run's compensation steps, in registration order. */
  readonly compensation: ReadonlyArray<CompensationStep>
}

/**
 * Which runs `listRuns` gives: by status, and a keyset page in `(createdAt, id)` order (newest first with
 * `newestFirst`) that starts after `after` in that order.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunFilter {
  readonly status?: RunStatus | undefined
  /** Newest first: a list that stops after a page shows the runs created last. */
  readonly newestFirst?: boolean | undefined
  /** The key of the last run of the previous page. */
  readonly after?: { readonly createdAt: number; readonly id: string } | undefined
  /** At most this many runs (default: all). */
  readonly limit?: number | undefined
}

/**
 * An entity of a merge workspace: its key (`type NUL normalised label`), its position of first appearance, and
 * the label, type and attributes (JSON text) of that first appearance.
 *
 * @since 0.1.0
 * @category merging
 */
export type WorkspaceEntity = {
  readonly ord: number
  readonly entity_key: string
  readonly label: string
  readonly type: string
  readonly attributes: string
}

/**
 * A mention (document span) of a workspace entity.
 *
 * @since 0.1.0
 * @category merging
 */
export type WorkspaceMention = {
  readonly entity_key: string
  readonly start: number
  readonly end: number
}

/**
 * A relation of a merge workspace; `identity` is what makes two relations the same one.
 *
 * @since 0.1.0
 * @category merging
 */
export type WorkspaceRelation = {
  readonly ord: number
  readonly subject_key: string
  readonly predicate: string
  readonly object_key: string | null
  readonly object_value: string | null
  readonly object_datatype: string | null
  readonly object_language: string | null
}

/**
 * What a merge adds to its workspace per page of batches.
 *
 * @since 0.1.0
 * @category merging
 */
export interface WorkspacePage {
  readonly entities: ReadonlyArray<WorkspaceEntity>
  readonly mentions: ReadonlyArray<WorkspaceMention>
  readonly relations: ReadonlyArray<WorkspaceRelation & { readonly identity: string }>
}

/**
 * Scratch tables of one merge, in the store's database (so merging uses bounded memory on every dialect). The
 * first row added for an entity key, mention or relation identity wins; reads are keyset pages by `ord`.
 *
 * @since 0.1.0
 * @category merging
 */
export interface MergeWorkspace {
  /** Adds one page's rows in one transaction. */
  readonly add: (page: WorkspacePage) => Effect.Effect<void, PersistenceError>
  readonly entities: (
    afterOrd: number,
    limit: number
  ) => Effect.Effect<ReadonlyArray<WorkspaceEntity>, PersistenceError>
  /** The mentions of these entities, grouped by key, each key's in document order. */
  readonly mentions: (keys: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<WorkspaceMention>, PersistenceError>
  readonly relations: (
    afterOrd: number,
    limit: number
  ) => Effect.Effect<ReadonlyArray<WorkspaceRelation>, PersistenceError>
}

/**
 * The run store.
 *
 * @since 0.1.0
 * @category tags
 */
export class RunStore extends Context.Tag("@quarry/core/RunStore")<RunStore, {
  /** Writes the run row, its input and its plan (and its queued execution, when given) in one transaction. */
  readonly createRun: (run: NewRun) => Effect.Effect<Run, RunAlreadyExists | PersistenceError>
  readonly getRun: (runId: RunId) => Effect.Effect<Run, RunNotFound | PersistenceError>
  /** Runs in `(createdAt, id)` order, filtered and paged by keyset in the database. */
  readonly listRuns: (filter?: RunFilter) => Effect.Effect<ReadonlyArray<Run>, PersistenceError>
  /** How many runs have each status (every status present, 0 when none): one aggregate query, for metrics. */
  readonly countRuns: Effect.Effect<Readonly<Record<RunStatus, number>>, PersistenceError>
  /** How many runs have `status`: a range of the status index, so cheap however many runs have other statuses. */
  readonly countStatus: (status: RunStatus) => Effect.Effect<number, PersistenceError>
  readonly readInput: (runId: RunId) => Effect.Effect<string, RunNotFound | PersistenceError>
  readonly readOntologySource: (sha256: string) => Effect.Effect<Option.Option<string>, PersistenceError>
  /**
   * Takes the run's lease with a fresh token and moves it to `running`. A completed run is returned unchanged.
   * Fails with `RunLocked` while another claim's lease is live; an expired lease, or one whose holder is provably
   * dead (same host, process gone), is taken over. With `expectedVersion` (the `statusVersion` the caller read),
   * a run cancelled since then fails with `RunCancelled`: a cancel that raced the caller sticks. Taking over a
   * `running` run whose cancel was requested (its holder stopped before it saw the request) records it `cancelled`
   * and fails with `RunCancelled`, instead of executing it again. See `ClaimOptions` for the budget and `dequeue`.
   */
  readonly claim: (
    runId: RunId,
    owner: string,
    leaseMs: number,
    options?: ClaimOptions
  ) => Effect.Effect<Claimed, RunNotFound | RunLocked | RunCancelled | PersistenceError>
  /** Extends the lease; fails with `RunLocked` when the lease was lost. Returns whether cancellation was requested. */
  readonly heartbeat: (
    runId: RunId,
    holder: LeaseHolder,
    leaseMs: number
  ) => Effect.Effect<{ readonly cancelRequested: boolean }, RunLocked | PersistenceError>
  /** Writes a batch output, its checkpoint and the run's progress in one transaction; idempotent per batch. */
  readonly commitBatch: (commit: BatchCommit) => Effect.Effect<Checkpoint, RunLocked | PersistenceError>
  /**
   * Group commit: writes consecutive batches of one run and holder in one transaction (one fsync), each with its own
   * batch row and chained checkpoint, exactly as `commitBatch` one by one would; a crash leaves all of them or none,
   * and a holder whose lease was taken over writes none. Idempotent per batch.
   */
  readonly commitBatches: (
    commits: ReadonlyArray<BatchCommit>
  ) => Effect.Effect<ReadonlyArray<Checkpoint>, RunLocked | PersistenceError>
  /**
   * Replaces a skipped batch with the output of its retry and rechains every later checkpoint, in one transaction.
   * When the retry failed again (`skipped` set), the batch stays skipped with the new error. Either way the batch's
   * usage becomes its earlier usage plus the retry's, and the run's usage grows by the retry's. A batch that is not
   * skipped is left alone.
   */
  readonly replaceSkipped: (commit: BatchCommit) => Effect.Effect<void, RunLocked | PersistenceError>
  readonly skippedBatches: (runId: RunId) => Effect.Effect<ReadonlyArray<SkippedBatch>, PersistenceError>
  /**
   * Records the usage of one extractor attempt as soon as it is known (its own small transaction). `attemptId` is
   * the caller's key for the attempt (unique within the run), the same on every try: recording it again stores
   * nothing, so a write whose answer was lost can be retried.
   */
  readonly recordAttempt: (
    runId: RunId,
    batchIndex: number,
    usage: Extractor.Usage,
    attemptId: string
  ) => Effect.Effect<void, PersistenceError>
  /** Stores what the executing extractor reports about itself. */
  readonly setExtractorStatus: (
    runId: RunId,
    status: Readonly<Record<string, string>>
  ) => Effect.Effect<void, PersistenceError>
  /** Usage of every recorded attempt, committed or not: what the run has actually spent. */
  readonly attemptTotals: (runId: RunId) => Effect.Effect<UsageTotals, PersistenceError>
  /** Records a completed run with its artifact and releases the lease. */
  readonly complete: (
    runId: RunId,
    holder: LeaseHolder,
    artifact: Artifact
  ) => Effect.Effect<Run, RunLocked | PersistenceError>
  /** Records a run that stopped without completing and releases the lease (a holder that lost it writes nothing). */
  readonly finish: (runId: RunId, holder: LeaseHolder, outcome: Outcome) => Effect.Effect<void, PersistenceError>
  /**
   * Records `failed` for a run whose execution stopped before its claim, where no retry helps (its extractor is not
   * registered there, its plan does not match): for a server, which has no terminal to say it on. Only while the run
   * still has `statusVersion` and is `pending`, `interrupted` or `failed` (not executing elsewhere, not ended for
   * good). Answers whether it was recorded. Its batches and its lease are left as they are.
   */
  readonly failUnstarted: (
    runId: RunId,
    statusVersion: number,
    outcome: UnstartedOutcome
  ) => Effect.Effect<boolean, PersistenceError>
  /**
   * Asks a run to stop. A run that is not executing is marked `cancelled` at once. Its queued execution is removed; a
   * `cancelled` run that had one (a resume waiting) gets a new status version, so that a claim expecting the version
   * the resume read is refused (`RunCancelled`).
   */
  readonly requestCancel: (runId: RunId) => Effect.Effect<Run, RunNotFound | InvalidRunState | PersistenceError>
  /** Committed batch outputs with index greater than `after`, in order, at most `limit`. */
  readonly batchPage: (
    runId: RunId,
    after: number,
    limit: number
  ) => Effect.Effect<ReadonlyArray<StoredBatch>, PersistenceError>
  /** A merge workspace that lives until the scope closes (its tables are dropped then). */
  readonly mergeWorkspace: Effect.Effect<MergeWorkspace, PersistenceError, Scope.Scope>
  /**
   * Entities first seen in batches `fromBatch <= b < beforeBatch` (default from 0), once each, in order of first
   * appearance (first batch, then key).
   */
  readonly knownEntities: (
    runId: RunId,
    beforeBatch: number,
    fromBatch?: number
  ) => Effect.Effect<ReadonlyArray<KnownEntity>, PersistenceError>
  readonly errors: (runId: RunId) => Effect.Effect<ReadonlyArray<RunErrorEntry>, PersistenceError>
  /**
   * Deletes a finished run (completed, failed, cancelled or interrupted): its rows and its artifact files, in one
   * transaction that the files are removed inside of, so a failed removal leaves everything in place. Answers with
   * the run as it was.
   */
  readonly deleteRun: (runId: RunId) => Effect.Effect<Run, RunNotFound | InvalidRunState | PersistenceError>
  /**
   * Queues an execution of a stored run after every queued one; a run queued already keeps its place and takes the
   * new options.
   */
  readonly queueExecution: (entry: NewQueuedExecution) => Effect.Effect<void, RunNotFound | PersistenceError>
  /**
   * Queues the run's execution unless one waits already, atomically (for requests that may arrive at two processes
   * at once: a cluster's nodes): answers the waiting one, whose options stand, or none when this one was queued. A
   * row queued before the run's last end (`finishedAt`) is not waiting: it is replaced.
   */
  readonly queueExecutionOnce: (
    entry: NewQueuedExecution
  ) => Effect.Effect<Option.Option<QueuedExecution>, RunNotFound | PersistenceError>
  /** Removes a run's queued execution (none is fine). `requestCancel` and `deleteRun` remove it too. */
  readonly dequeueExecution: (runId: RunId) => Effect.Effect<void, PersistenceError>
  /** Every queued execution in FIFO order. */
  readonly queuedExecutions: Effect.Effect<ReadonlyArray<QueuedExecution>, PersistenceError>
  /** The run's queued execution, if one is queued (whether it still waits: see `queueExecutionOnce`). */
  readonly queuedExecution: (runId: RunId) => Effect.Effect<Option.Option<QueuedExecution>, PersistenceError>
  /** Records a pending compensation step after the run's others (one transaction). */
  readonly addCompensation: (
    runId: RunId,
    step: { readonly handler: string; readonly name: string; readonly payload: string }
  ) => Effect.Effect<CompensationStep, RunNotFound | PersistenceError>
  /** The run's compensation steps in registration order. */
  readonly compensationSteps: (runId: RunId) => Effect.Effect<ReadonlyArray<CompensationStep>, PersistenceError>
  /**
   * The details of several runs (a page of a run list), each in the map under its id: one query per kind of detail
   * for the whole page, not two or three per run. Skipped batches are read only for runs that count some.
   */
  readonly runDetails: (
    runs: ReadonlyArray<Pick<Run, "id" | "skippedBatches">>
  ) => Effect.Effect<ReadonlyMap<RunId, RunDetails>, PersistenceError>
  /** Records the outcome of running one step: `done`, or `failed` with its error. */
  readonly settleCompensation: (
    runId: RunId,
    seq: number,
    outcome: { readonly _tag: "done" } | { readonly _tag: "failed"; readonly error: string }
  ) => Effect.Effect<void, PersistenceError>
}>() {}

/**
 * Keeps a lease alive: a heartbeat every third of `leaseMs`. A heartbeat that fails for a transient reason (e.g. the
 * write lock held by another process past `busy_timeout`) is retried with backoff for as long as the lease is still
 * valid; only a lost lease (`RunLocked`), a requested cancel (`RunCancelled`) or a lease that would expire before
 * a retry could renew it ends the loop. Never succeeds.
 *
 * @since 0.1.0
 * @category leases
 */
export const keepLease = (
  store: RunStore["Type"],
  runId: RunId,
  holder: LeaseHolder,
  leaseMs: number
): Effect.Effect<never, RunLocked | RunCancelled | PersistenceError> =>
  Effect.gen(function*() {
    const interval = Math.max(1, Math.floor(leaseMs / 3))
    let expiresAt = (yield* Clock.currentTimeMillis) + leaseMs
    let backoff = Math.max(1, Math.floor(interval / 8))
    yield* Effect.sleep(interval)
    while (true) {
      const started = yield* Clock.currentTimeMillis
      const beat = yield* Effect.either(store.heartbeat(runId, holder, leaseMs))
      const now = yield* Clock.currentTimeMillis
      if (beat._tag === "Right") {
        if (beat.right.cancelRequested) return yield* new RunCancelled({ runId })
        expiresAt = started + leaseMs
        backoff = Math.max(1, Math.floor(interval / 8))
        yield* Effect.sleep(interval)
        continue
      }
      if (beat.left._tag === "RunLocked") return yield* beat.left
      // Transient: retry while a retry can still renew the lease (it takes about as long as this attempt did).
      if (now + backoff + (now - started) >= expiresAt) return yield* beat.left
      yield* Effect.logWarning(`heartbeat failed, retrying in ${backoff} ms: ${beat.left.message}`)
      yield* Effect.sleep(backoff)
      backoff = Math.min(backoff * 2, interval)
    }
  }).pipe(Effect.withSpan("RunStore.keepLease", { attributes: { runId } }))

/**
 * A per-execution reader of `knownEntities` that reads each batch's entities once: a request for the entities
 * before batch `h` reads only those first seen in batches not read yet, so a batch's cost does not grow with the
 * length of the run. Answers are identical to `store.knownEntities(runId, h)` as long as the batches before `h`
 * are committed when it is asked (entities of committed batches never move to a later first batch).
 *
 * @since 0.1.0
 * @category readers
 */
export const knownEntitiesReader = (
  store: RunStore["Type"],
  runId: RunId
): Effect.Effect<(beforeBatch: number) => Effect.Effect<ReadonlyArray<KnownEntity>, PersistenceError>> =>
  Effect.gen(function*() {
    const lock = yield* Effect.makeSemaphore(1)
    const entities: Array<KnownEntity> = []
    // countBefore[b]: how many entities were first seen before batch b, for every b read so far.
    const countBefore: Array<number> = [0]
    return (beforeBatch: number) =>
      lock.withPermits(1)(Effect.gen(function*() {
        const readUpTo = countBefore.length - 1
        if (beforeBatch > readUpTo) {
          // Rows come in order of first batch: when a row of batch f arrives, every entity so far is from before f.
          for (const row of yield* store.knownEntities(runId, beforeBatch, readUpTo)) {
            while (countBefore.length <= row.firstBatch) countBefore.push(entities.length)
            entities.push(row)
          }
          while (countBefore.length <= beforeBatch) countBefore.push(entities.length)
        }
        return entities.slice(0, countBefore[beforeBatch] ?? 0)
      }))
  })
