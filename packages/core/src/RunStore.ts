/**
 * The run store capability: runs, their inputs, batch outputs with checkpoints, leases and status transitions.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import type * as Chunking from "./Chunking.js"
import type { InvalidRunState, PersistenceError, RunAlreadyExists, RunLocked, RunNotFound } from "./Errors.js"
import type * as Extractor from "./Extractor.js"
import type {
  Artifact,
  BatchErrorPolicy,
  ExtractorIdentity,
  OutputFormat,
  Run,
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
}

/**
 * One batch result to commit, with the lease owner that produced it.
 *
 * @since 0.1.0
 * @category models
 */
export interface BatchCommit {
  readonly runId: RunId
  readonly owner: string
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
 * The run store.
 *
 * @since 0.1.0
 * @category tags
 */
export class RunStore extends Context.Tag("@quarry/core/RunStore")<RunStore, {
  /** Writes the run row, its input and its plan in one transaction. */
  readonly createRun: (run: NewRun) => Effect.Effect<Run, RunAlreadyExists | PersistenceError>
  readonly getRun: (runId: RunId) => Effect.Effect<Run, RunNotFound | PersistenceError>
  readonly listRuns: (
    filter?: { readonly status?: RunStatus | undefined }
  ) => Effect.Effect<ReadonlyArray<Run>, PersistenceError>
  readonly readInput: (runId: RunId) => Effect.Effect<string, RunNotFound | PersistenceError>
  readonly readOntologySource: (sha256: string) => Effect.Effect<Option.Option<string>, PersistenceError>
  /**
   * Takes the run's lease and moves it to `running`. A completed run is returned unchanged. Fails with `RunLocked`
   * while another owner's lease is live; an expired lease is taken over.
   */
  readonly claim: (
    runId: RunId,
    owner: string,
    leaseMs: number,
    options?: { readonly reopen?: boolean | undefined }
  ) => Effect.Effect<Run, RunNotFound | RunLocked | PersistenceError>
  /** Extends the lease; fails with `RunLocked` when the lease was lost. Returns whether cancellation was requested. */
  readonly heartbeat: (
    runId: RunId,
    owner: string,
    leaseMs: number
  ) => Effect.Effect<{ readonly cancelRequested: boolean }, RunLocked | PersistenceError>
  /** Writes a batch output, its checkpoint and the run's progress in one transaction; idempotent per batch. */
  readonly commitBatch: (commit: BatchCommit) => Effect.Effect<Checkpoint, RunLocked | PersistenceError>
  /**
   * Replaces a skipped batch with the output of its retry and rechains every later checkpoint, in one transaction.
   * When the retry failed again (`skipped` set), the batch stays skipped with the new error. Either way the batch's
   * usage becomes its earlier usage plus the retry's, and the run's usage grows by the retry's. A batch that is not
   * skipped is left alone.
   */
  readonly replaceSkipped: (commit: BatchCommit) => Effect.Effect<void, RunLocked | PersistenceError>
  readonly skippedBatches: (runId: RunId) => Effect.Effect<ReadonlyArray<SkippedBatch>, PersistenceError>
  /** Records the usage of one extractor attempt as soon as it is known (its own small transaction). */
  readonly recordAttempt: (
    runId: RunId,
    batchIndex: number,
    usage: Extractor.Usage
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
    owner: string,
    artifact: Artifact
  ) => Effect.Effect<Run, RunLocked | PersistenceError>
  /** Records a run that stopped without completing and releases the lease. */
  readonly finish: (runId: RunId, owner: string, outcome: Outcome) => Effect.Effect<void, PersistenceError>
  /** Asks a run to stop. A run that is not executing is marked `cancelled` at once. */
  readonly requestCancel: (runId: RunId) => Effect.Effect<Run, RunNotFound | InvalidRunState | PersistenceError>
  /** Committed batch outputs with index greater than `after`, in order, at most `limit`. */
  readonly batchPage: (
    runId: RunId,
    after: number,
    limit: number
  ) => Effect.Effect<ReadonlyArray<StoredBatch>, PersistenceError>
  /** Entities first seen in batches before `beforeBatch`, in order of first appearance. */
  readonly knownEntities: (
    runId: RunId,
    beforeBatch: number
  ) => Effect.Effect<
    ReadonlyArray<{ readonly key: string; readonly label: string; readonly type: string }>,
    PersistenceError
  >
  readonly errors: (runId: RunId) => Effect.Effect<ReadonlyArray<RunErrorEntry>, PersistenceError>
  /**
   * Deletes a finished run (completed, failed, cancelled or interrupted): its rows and its artifact files, in one
   * transaction that the files are removed inside of, so a failed removal leaves everything in place. Answers with
   * the run as it was.
   */
  readonly deleteRun: (runId: RunId) => Effect.Effect<Run, RunNotFound | InvalidRunState | PersistenceError>
}>() {}
