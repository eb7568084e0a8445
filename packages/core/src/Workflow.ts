/**
 * One run's program. `create` plans and stores a run; `execute` is the single code path for start and resume:
 * it reads the stored plan, skips committed batches, extracts the rest with bounded concurrency, commits them in
 * order and merges the artifact.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import * as Budget from "./Budget.js"
import * as Cancellation from "./Cancellation.js"
import * as Chunking from "./Chunking.js"
import * as Compensation from "./Compensation.js"
import * as CrashPoint from "./CrashPoint.js"
import * as Deadline from "./Deadline.js"
import * as EngineMetrics from "./EngineMetrics.js"
import {
  BudgetExceeded,
  DeadlineExceeded,
  InputMismatch,
  MergeError,
  type PersistenceError,
  PlanMismatch,
  RunCancelled,
  type RunNotFound
} from "./Errors.js"
import * as Extractor from "./Extractor.js"
import * as FairScheduler from "./FairScheduler.js"
import { sha256 } from "./internal/entities.js"
import * as KnownContext from "./internal/knownContext.js"
import * as Lease from "./Lease.js"
import * as Merge from "./Merge.js"
import * as Ontology from "./Ontology.js"
import { BatchErrorPolicy, ExtractorIdentity, OutputFormat, type Run, RunId } from "./Run.js"
import { type BatchCommit, type Checkpoint, type NewQueuedExecution, type Outcome, RunStore } from "./RunStore.js"
import * as SkipPolicy from "./SkipPolicy.js"
import * as UsageLedger from "./UsageLedger.js"

/**
 * Progress of an execution, for progress bars and JSON event streams.
 *
 * @since 0.1.0
 * @category models
 */
export type WorkflowEvent =
  | {
    readonly _tag: "RunStarted"
    readonly runId: RunId
    readonly totalBatches: number
    readonly committedBatches: number
  }
  | {
    readonly _tag: "BatchCommitted"
    readonly runId: RunId
    readonly batchIndex: number
    readonly committedBatches: number
    readonly totalBatches: number
    readonly entityMentions: number
    readonly relations: number
  }
  | { readonly _tag: "MergeStarted"; readonly runId: RunId }
  /** The extractor announced a wait (e.g. an endpoint's rate limit) before it can go on with the batch. */
  | {
    readonly _tag: "ExtractorWaiting"
    readonly runId: RunId
    readonly batchIndex: number
    readonly wait: Extractor.Wait
  }

/**
 * Options of `execute`.
 *
 * @since 0.1.0
 * @category models
 */
export interface ExecuteOptions {
  /** Who holds the lease (default: a fresh id naming this host and process). */
  readonly owner?: string | undefined
  /** How long a lease lasts without a heartbeat (default 30 s); a heartbeat renews it every third of that. */
  readonly leaseMs?: number | undefined
  readonly onEvent?: ((event: WorkflowEvent) => Effect.Effect<void>) | undefined
  /**
   * Stop (status `failed`, reason `budget`) before spend would exceed these limits. Spend counts every recorded
   * attempt, also attempts lost to earlier crashes; batches in flight reserve their projected spend, the first one
   * the extractor's estimate of it (see `Budget`).
   * Not part of the plan: stored with the run when it is claimed, and kept by a resume that gives no budget (resume
   * with a higher budget to go on after one stopped it). A budget given replaces the run's whole: `{}` lifts it.
   * A limit must be above 0 (`Infinity` is none) and tokens whole: else `execute` dies with an
   * `IllegalArgumentException` before anything is written.
   */
  readonly budget?: Budget.Limits | undefined
  /** Stop the execution (status `failed`, reason `deadline`) when it runs longer than this. */
  readonly deadlineMs?: number | undefined
  /** Re-extract the batches that were skipped under the `skip` policy (reopens a completed run). */
  readonly retrySkipped?: boolean | undefined
  /**
   * The command the manifest of skipped batches gives for retrying them (default `quarry resume <run>
   * --retry-skipped`): the CLI's names the database it used.
   */
  readonly retryCommand?: string | undefined
  /**
   * Commit the batches that are extracted and next in order together, in one transaction (default true); false
   * commits each batch in its own transaction. Either way each batch has its own row, checkpoint and event.
   */
  readonly groupCommit?: boolean | undefined
  /**
   * The directory a run's relative output path is resolved against (default the working directory). A cluster
   * stores its runs' output paths relative (`<run>.<ext>`), so that the runner finishing a run writes the artifact
   * into its own directory; the CLI and a single server store absolute paths, which are used as they are.
   */
  readonly artifactsDir?: string | undefined
  /**
   * The run's status version when this execution was requested, for a request stored before it executes (a
   * cluster's `Execute` message): a cancel since then wins (`RunCancelled`), as one since `execute` read the run
   * does. Default: the version `execute` reads.
   */
  readonly requestedVersion?: number | undefined
  /**
   * The claim takes the run's queued execution off the queue, for a request kept elsewhere until the run ends (a
   * cluster's `Execute` message). Default false: a single server keeps the row until the execution ends, and
   * executes it again from there after a crash.
   */
  readonly dequeue?: boolean | undefined
}

/**
 * Options of `create`. Everything the output depends on is stored with the run; resume never reads these again.
 *
 * @since 0.1.0
 * @category models
 */
export interface CreateOptions {
  readonly runId?: RunId | undefined
  readonly input: string
  readonly chunking?: {
    readonly strategy?: string | undefined
    readonly windowSize?: number | undefined
    readonly overlap?: number | undefined
    readonly batchSize?: number | undefined
  } | undefined
  readonly extractor: string
  /** Ontology source text (Turtle, N-Triples or N-Quads). */
  readonly ontology?: { readonly text: string; readonly format?: string | undefined } | undefined
  /** Extractor calls in flight at once (default 1). */
  readonly concurrency?: number | undefined
  readonly output: { readonly path: string; readonly format: OutputFormat }
  /** What to do when a batch fails after the extractor's retries (default `fail`). */
  readonly onBatchError?: BatchErrorPolicy | undefined
  /** Write PROV-O provenance into the artifact (default false). */
  readonly provenance?: boolean | undefined
  /** Also queue the run's execution in the durable admission FIFO, in the run's own transaction. */
  readonly queued?: Omit<NewQueuedExecution, "runId"> | undefined
}

/**
 * The default lease length.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultLeaseMs = Lease.defaultLeaseMs

/**
 * A lease owner id naming this host and process, unique per call.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeOwnerId = Lease.makeOwnerId

/**
 * A fresh run id: the creation time plus random letters.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeRunId = Effect.map(Clock.currentTimeMillis, (now) =>
  RunId.make(
    `run-${new Date(now).toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15)}-${
      randomBytes(3).toString("hex")
    }`
  ))

const choices = (values: ReadonlyArray<string>) =>
  values.map((v) => JSON.stringify(v)).join(", ").replace(/, ([^,]*)$/, " or $1")

/**
 * A choice the types allow only among a few words, given otherwise (by a program in JavaScript, or from a settings
 * file): the store would refuse the row with its whole schema as the message.
 */
const invalidChoice = (options: CreateOptions): string | undefined => {
  const checks = [
    ["output.format", options.output.format, OutputFormat.literals],
    ["onBatchError", options.onBatchError ?? "fail", BatchErrorPolicy.literals]
  ] as const
  for (const [name, value, allowed] of checks) {
    if (!(allowed as ReadonlyArray<unknown>).includes(value)) {
      return `${name} is ${JSON.stringify(value)}; expected ${choices(allowed)}`
    }
  }
  return undefined
}

/**
 * The first lone UTF-16 surrogate of a text, if any: UTF-8 cannot store one (it becomes U+FFFD), so the stored text
 * would no longer match its digest and every execution would refuse it as modified.
 *
 * @since 0.1.0
 * @category validation
 */
export const loneSurrogateAt = (text: string): number | undefined => {
  const at = text.search(/\p{Surrogate}/u)
  return at === -1 ? undefined : at
}

/**
 * Validates options, plans the batches and stores the run with its input and plan in one transaction.
 * Nothing is written when any option is invalid. An input or ontology that is not well-formed UTF-16 text (a lone
 * surrogate, `loneSurrogateAt`) is a caller's mistake: `create` dies with an `IllegalArgumentException` (the CLI reads
 * files as UTF-8 and cannot produce one; the API refuses one first).
 *
 * @since 0.1.0
 * @category operations
 */
export const create = Effect.fn("Workflow.create")(function*(options: CreateOptions) {
  for (const [name, text] of [["input", options.input], ["ontology", options.ontology?.text ?? ""]] as const) {
    const at = loneSurrogateAt(text)
    if (at !== undefined) {
      return yield* Effect.die(
        new Cause.IllegalArgumentException(`Workflow.create: the ${name} holds a lone UTF-16 surrogate at ${at}`)
      )
    }
  }
  const invalid = invalidChoice(options)
  if (invalid !== undefined) return yield* Effect.die(new Cause.IllegalArgumentException(`Workflow.create: ${invalid}`))
  const store = yield* RunStore
  const registry = yield* Extractor.Registry
  const chunking = yield* Either.match(Chunking.validate(options.chunking ?? {}), {
    onLeft: Effect.fail,
    onRight: Effect.succeed
  })
  const concurrency = options.concurrency ?? 1
  if (!Number.isSafeInteger(concurrency) || concurrency < 1) {
    return yield* new Chunking.ChunkingError({
      parameter: "batchSize",
      value: concurrency,
      reason: `concurrency (${concurrency}) must be a whole number greater than 0`
    })
  }
  const extractor = yield* registry.get(options.extractor)
  const ontology = options.ontology === undefined ?
    Option.none() :
    Option.some(yield* Ontology.parse(options.ontology.text, { format: options.ontology.format }))
  const runId = options.runId ?? (yield* makeRunId)
  yield* Effect.annotateCurrentSpan("quarry.run_id", runId)
  const batches = Chunking.plan(options.input, chunking)
  return yield* store.createRun({
    id: runId,
    input: options.input,
    inputSha256: sha256(options.input),
    chunking,
    chunkerVersion: Chunking.chunkerVersion,
    extractor: new ExtractorIdentity({
      name: extractor.name,
      version: extractor.version,
      configHash: extractor.configHash,
      settings: extractor.settings ?? {}
    }),
    ontology: Option.map(ontology, (o) => ({ sha256: o.sha256, source: options.ontology!.text })),
    concurrency,
    totalBatches: batches.length,
    outputPath: options.output.path,
    outputFormat: options.output.format,
    onBatchError: options.onBatchError ?? "fail",
    provenance: options.provenance ?? false,
    queued: options.queued
  })
})

/** The extractor of this process must be the very one the run was planned with. */
const checkExtractor = (run: Run, extractor: Extractor.Extractor): Effect.Effect<void, PlanMismatch> => {
  const stored = run.plan.extractor
  const mismatch = (field: string, was: string, now: string) =>
    new PlanMismatch({ runId: run.id, field: `extractor ${extractor.name} ${field}`, stored: was, current: now })
  if (extractor.version !== stored.version) return mismatch("version", stored.version, extractor.version)
  if (extractor.configHash === stored.configHash) return Effect.void
  // The hash decides; the settings that changed name what did. Nothing is named when either side published none (a
  // run stored before its extractor published settings would read as every setting changed).
  const current = extractor.settings ?? {}
  const published = Object.keys(stored.settings).length > 0 && Object.keys(current).length > 0
  const show = (value: string | number | boolean | undefined) => value === undefined ? "unset" : String(value)
  const settings = !published ? [] : [...new Set([...Object.keys(stored.settings), ...Object.keys(current)])].sort()
    .filter((key) => stored.settings[key] !== current[key])
    .map((name) => ({ name, stored: show(stored.settings[name]), current: show(current[name]) }))
  return new PlanMismatch({
    runId: run.id,
    field: `extractor ${extractor.name} configuration`,
    stored: stored.configHash,
    current: extractor.configHash,
    ...(settings.length === 0 ? {} : { settings })
  })
}

/** The run's stored ontology, parsed and checked against its recorded hash. */
const loadOntology = Effect.fnUntraced(function*(run: Run) {
  if (Option.isNone(run.plan.ontologySha256)) return Option.none<Ontology.Ontology>()
  const expected = run.plan.ontologySha256.value
  const mismatch = (current: string) =>
    new PlanMismatch({ runId: run.id, field: "ontology", stored: expected, current })
  const source = yield* (yield* RunStore).readOntologySource(expected)
  if (Option.isNone(source)) return yield* mismatch("none stored")
  const parsed = yield* Ontology.parse(source.value).pipe(
    Effect.mapError((e) => mismatch(`an unreadable ontology (${e.message})`))
  )
  if (parsed.sha256 !== expected) return yield* mismatch(parsed.sha256)
  return Option.some(parsed)
})

/** What `execute` works from once `prepare` has checked it. */
interface Prepared {
  readonly extractor: Extractor.Extractor
  readonly batches: ReadonlyArray<Chunking.Batch>
  readonly ontology: Option.Option<Ontology.Ontology>
}

/** Everything `execute` checks before it writes anything. */
const prepare = Effect.fn("Workflow.prepare")(function*(run: Run) {
  const store = yield* RunStore
  const extractor = yield* (yield* Extractor.Registry).get(run.plan.extractor.name)
  yield* checkExtractor(run, extractor)
  const { plan } = run
  if (plan.chunkerVersion !== Chunking.chunkerVersion) {
    return yield* new PlanMismatch({
      runId: run.id,
      field: "chunker version",
      stored: plan.chunkerVersion,
      current: Chunking.chunkerVersion
    })
  }
  const input = yield* store.readInput(run.id)
  const actual = sha256(input)
  if (actual !== plan.inputSha256) {
    return yield* new InputMismatch({ runId: run.id, expected: plan.inputSha256, actual })
  }
  const ontology = yield* loadOntology(run)
  const batches = Chunking.plan(input, plan.chunking)
  if (batches.length !== plan.totalBatches) {
    return yield* new PlanMismatch({
      runId: run.id,
      field: "batch count",
      stored: String(plan.totalBatches),
      current: String(batches.length)
    })
  }
  return { extractor, batches, ontology } satisfies Prepared
})

/** How an execution that did not complete ended, as recorded; `undefined` when it must not be recorded. */
const outcomeOf = (
  runId: RunId,
  cause: Cause.Cause<unknown>
): Effect.Effect<Outcome | undefined, RunNotFound | PersistenceError, RunStore> => {
  const failure = Cause.failureOption(cause)
  if (Option.isNone(failure)) {
    return Cause.isInterruptedOnly(cause) ?
      Effect.map(
        Effect.flatMap(RunStore, (store) => store.getRun(runId)),
        (run): Outcome => ({ status: run.cancelRequested ? "cancelled" : "interrupted" })
      ) :
      Effect.succeed({ status: "failed", reason: "defect", error: Cause.pretty(cause) })
  }
  const error = failure.value
  if (error instanceof RunCancelled) return Effect.succeed({ status: "cancelled" })
  if (error instanceof Compensation.CompensationFailed) {
    return Effect.succeed({ status: "cancelled", reason: "compensation_failed", error: error.message })
  }
  if (tagOf(error) === "RunLocked") return Effect.succeed(undefined) // the lease was lost: the new holder records
  const reason = error instanceof BudgetExceeded ?
    "budget" :
    error instanceof DeadlineExceeded ?
    "deadline" :
    tagOf(error) ?? "error"
  return Effect.succeed({ status: "failed", reason, error: error instanceof Error ? error.message : String(error) })
}

/**
 * Records how an execution that held the lease ended; only the lease holder's record counts. A run cancelled by
 * interruption is compensated here (a finalizer is the only place an interrupted fiber still runs).
 */
const recordExit = (lease: Lease.Lease, exit: Exit.Exit<Run, unknown>) =>
  Exit.isSuccess(exit) ? Effect.void : Effect.gen(function*() {
    let outcome = yield* outcomeOf(lease.runId, exit.cause)
    if (outcome?.status === "cancelled" && outcome.reason === undefined) {
      const undone = yield* Effect.either(Compensation.run(lease.runId, "cancelled"))
      if (undone._tag === "Left") outcome = { ...outcome, reason: "compensation_failed", error: undone.left.message }
    }
    if (outcome !== undefined) yield* (yield* RunStore).finish(lease.runId, lease.holder, outcome)
  }).pipe(
    // The cause (with its stack) only at debug level: the command reports the run's error itself.
    Effect.catchAllCause((cause) =>
      Effect.zipRight(
        Effect.logError(`could not record the end of the run: ${Cause.squash(cause)}`),
        Effect.logDebug("could not record the end of the run", cause)
      )
    ),
    Effect.annotateLogs({ runId: lease.runId })
  )

/** A run stopped by a cancel undoes what it did; a failing undo step is reported with the cancel, never instead. */
const compensatingCancel = (runId: RunId) => <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.catchIf(
    self,
    (error): error is E & RunCancelled => error instanceof RunCancelled,
    (cancelled) => Effect.zipRight(Compensation.run(runId, "cancelled"), Effect.fail(cancelled))
  )

const tagOf = (u: unknown): string | undefined =>
  typeof u === "object" && u !== null && "_tag" in u && typeof u._tag === "string" ? u._tag : undefined

/** How many batches are committed, and a way to wait for more. */
const makeCommitted = (initial: number) =>
  Effect.sync(() => {
    let current = initial
    // Waiters by the count they wait for. A `SubscriptionRef`'s `changes` stream cost about 1 ms of CPU per waiter
    // and batch (pnpm bench, sections 1 and 4); a latch per waiter is released once, by the commit that reaches it.
    const waiters: Array<{ readonly n: number; readonly latch: Deferred.Deferred<void> }> = []
    return {
      set: (n: number) =>
        Effect.suspend(() => {
          current = n
          const ready: Array<Deferred.Deferred<void>> = []
          for (let i = waiters.length - 1; i >= 0; i--) {
            if (waiters[i]!.n <= n) ready.push(waiters.splice(i, 1)[0]!.latch)
          }
          return Effect.forEach(ready, (latch) => Deferred.succeed(latch, undefined), { discard: true })
        }),
      atLeast: (n: number) =>
        Effect.suspend(() => {
          if (current >= n) return Effect.void
          return Effect.flatMap(Deferred.make<void>(), (latch) => {
            waiters.push({ n, latch })
            return Deferred.await(latch)
          })
        })
    }
  })

/** One execution after its claim: the run, what `prepare` checked, and the policies in force. */
interface Execution extends Prepared {
  readonly run: Run
  readonly lease: Lease.Lease
  readonly budget: Budget.Budget
  readonly ledger: UsageLedger.UsageLedger
  readonly committed: Effect.Effect.Success<ReturnType<typeof makeCommitted>>
  /** The entities known before a batch, read incrementally (see `internal/knownContext`). */
  readonly known: KnownContext.KnownContext
  readonly emit: (event: WorkflowEvent) => Effect.Effect<void>
  /** Extracted batches waiting for their commit, by batch index. */
  readonly pending: Map<number, Pending>
  readonly groupCommit: boolean
  /** Where the artifact is written: the run's output path, resolved when it is relative (`artifactsDir`). */
  readonly artifactPath: string
  /** The command the manifest of skipped batches gives for retrying them. */
  readonly retryCommand: string | undefined
}

// Batch i sees the entities of batches < i - concurrency + 1 only: those are committed before it can start whatever
// the timing, so its context (and output) never depends on scheduling.
const knownEntities = (x: Execution, batchIndex: number) => {
  const horizon = batchIndex - x.run.plan.concurrency + 1
  if (horizon <= 0) return Effect.succeed([])
  return Effect.zipRight(x.committed.atLeast(horizon), x.known.read(batchIndex, horizon))
}

/** Before committing, writes the batch's usage the ledger still keeps, also when the batch failed. */
const flushingUsage =
  (ledger: UsageLedger.UsageLedger, batchIndex: number) =>
  <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E | PersistenceError, R> =>
    Effect.matchCauseEffect(self, {
      onSuccess: (a) => Effect.as(ledger.flush(batchIndex), a),
      onFailure: (cause) =>
        Effect.matchCauseEffect(ledger.flush(batchIndex), {
          onSuccess: () => Effect.failCause(cause),
          // Neither failure hides the other.
          onFailure: (flushed) => Effect.failCause(Cause.parallel(cause, flushed))
        })
    })

/** Extracts one batch under the run's policies: usage into the ledger and the budget, output checked, skip policy. */
const extract = (x: Execution, batch: Chunking.Batch) =>
  Effect.gen(function*() {
    const started = yield* Clock.currentTimeMillis
    const store = yield* RunStore
    const result = yield* Extractor.extractBatch(x.extractor, {
      runId: x.run.id,
      batchIndex: batch.index,
      chunks: batch.chunks,
      ontology: x.ontology,
      knownEntities: Effect.provideService(knownEntities(x, batch.index), RunStore, store),
      recordUsage: (usage) => Effect.zipRight(x.budget.record(batch.index, usage), x.ledger.record(batch.index, usage)),
      reportStatus: x.ledger.reportStatus,
      reportWait: (wait) => x.emit({ _tag: "ExtractorWaiting", runId: x.run.id, batchIndex: batch.index, wait }),
      compensate: (step) =>
        Compensation.register(x.run.id, step).pipe(
          Effect.asVoid,
          Effect.catchTag("RunNotFound", Effect.die), // the run being executed exists
          Effect.provideService(RunStore, store)
        )
    }).pipe(
      Effect.flatMap(Extractor.checkOutput(x.extractor.name, batch.index, x.run.plan.inputLength)),
      EngineMetrics.trackExtraction(x.extractor.name),
      SkipPolicy.apply(x.run.plan.onBatchError),
      Effect.ensuring(Effect.zipRight(x.budget.settle(batch.index), x.known.release(batch.index))),
      flushingUsage(x.ledger, batch.index)
    )
    const finished = yield* Clock.currentTimeMillis
    return { ...result, durationMs: finished - started }
  }).pipe(Effect.annotateLogs({ batch: batch.index }))

/** The extractor's estimate of a batch, for a budget that has no measured projection yet. */
const estimateOf = (x: Execution, batch: Chunking.Batch) => {
  const estimate = x.extractor.estimate
  return estimate === undefined ? undefined : Effect.asSome(
    estimate({ runId: x.run.id, batchIndex: batch.index, chunks: batch.chunks, ontology: x.ontology })
  )
}

/**
 * Reserves the batch's budget. When the budget is exhausted, first lets every earlier batch commit: they are
 * extracted and paid for already.
 */
const reserve = (x: Execution, batch: Chunking.Batch) =>
  x.budget.reserve(batch.index, estimateOf(x, batch)).pipe(
    Effect.tapError(() => x.committed.atLeast(batch.index)),
    Effect.as(batch)
  )

/** An extracted batch waiting for its turn to commit; `checkpoint` is set once a group commit wrote it. */
interface Pending {
  readonly commit: BatchCommit
  checkpoint: Checkpoint | undefined
}

/**
 * Commits the batch whose turn it is together with the extracted batches right after it (group commit: one
 * transaction, one fsync), then reports each in order. Each keeps its own batch row, checkpoint and event.
 */
const commitGroup = (x: Execution, from: number) =>
  Effect.gen(function*() {
    const group: Array<Pending> = []
    for (let i = from; x.pending.has(i) && (i === from || x.groupCommit); i++) {
      group.push(x.pending.get(i)!)
      x.pending.delete(i)
    }
    const store = yield* RunStore
    const commits = group.map((p) => p.commit)
    const skipped = commits.filter((c) => c.skipped !== undefined).length
    // A group of one is the plain commit (what wrappers of `commitBatch` see at concurrency 1).
    const checkpoints = yield* (commits.length === 1 ?
      Effect.map(store.commitBatch(commits[0]!), (c) => [c]) :
      store.commitBatches(commits)).pipe(EngineMetrics.trackCommit(commits.length, skipped))
    group.forEach((p, i) => (p.checkpoint = checkpoints[i]))
    for (const checkpoint of checkpoints) {
      yield* CrashPoint.hit("commit.beforeEvent", checkpoint.batchIndex)
      yield* x.emit({
        _tag: "BatchCommitted",
        runId: x.run.id,
        batchIndex: checkpoint.batchIndex,
        committedBatches: checkpoint.committedBatches,
        totalBatches: x.run.plan.totalBatches,
        entityMentions: checkpoint.entityMentions,
        relations: checkpoint.relations
      })
    }
    yield* x.committed.set(checkpoints[checkpoints.length - 1]!.committedBatches)
  })

/**
 * Before a group commit, lets the batches right after `from` that are already extracted join it: each batch resumes
 * from its extraction's yield one scheduler turn after the one before it, so without this every batch found itself
 * alone when its turn came (pnpm bench, section 1). Bounded by yields, not by time: at most `concurrency - 1`
 * scheduler turns, never a wait for an extractor still running, and nothing at concurrency 1.
 */
const gatherGroup = (x: Execution, from: number) =>
  Effect.gen(function*() {
    const { concurrency, totalBatches } = x.run.plan
    if (!x.groupCommit) return
    for (let turn = 1; turn < concurrency; turn++) {
      let next = from + 1
      while (x.pending.has(next)) next++
      if (next >= totalBatches || next - from >= concurrency) return
      yield* Effect.yieldNow()
    }
  })

/** Commits a batch once every batch before it is committed (possibly in an earlier batch's group), and reports it. */
const commit = (x: Execution, batch: Chunking.Batch, result: SkipPolicy.Extracted & { readonly durationMs: number }) =>
  Effect.gen(function*() {
    yield* CrashPoint.hit("extract.beforeCommit", batch.index)
    const pending: Pending = {
      commit: {
        runId: x.run.id,
        holder: x.lease.holder,
        batchIndex: batch.index,
        output: result.output,
        attempts: SkipPolicy.attemptsOf(result.output),
        durationMs: result.durationMs,
        skipped: result.skipped
      },
      checkpoint: undefined
    }
    x.pending.set(batch.index, pending)
    yield* x.committed.atLeast(batch.index)
    if (pending.checkpoint === undefined) {
      yield* gatherGroup(x, batch.index)
      yield* commitGroup(x, batch.index)
    }
    yield* Cancellation.afterCommit(x.run.id, pending.checkpoint!)
  })

/**
 * Extracts and commits the batches not committed yet. Budgets are reserved in batch order; a batch keeps its
 * concurrency slot until it is committed (in batch order), so at most `concurrency` batches are ever extracted but
 * not committed: all that a crash can make us redo.
 */
const extractAndCommit = (x: Execution) =>
  Stream.fromIterable(x.batches.slice(x.run.committedBatches)).pipe(
    Stream.mapEffect((batch) => reserve(x, batch)),
    Stream.mapEffect(
      (batch) =>
        extract(x, batch).pipe(
          // The stream runs an element's synchronous steps inside one step of its fiber, so a synchronous extractor
          // would never reach a point where the scheduler can yield: the lease's heartbeat timer and signals would
          // wait for the whole run. Yield once per batch.
          Effect.zipLeft(Effect.yieldNow()),
          Effect.flatMap((result) => commit(x, batch, result))
        ),
      { concurrency: x.run.plan.concurrency }
    ),
    Stream.runDrain
  )

/**
 * The artifact replaces an earlier one only while this execution still holds the lease (checked right before the
 * rename), and only temp files older than a lease are swept as left over by a killed merge.
 */
const fencing = (store: RunStore["Type"], lease: Lease.Lease) => ({
  fence: Effect.asVoid(store.heartbeat(lease.runId, lease.holder, lease.leaseMs)),
  staleAfterMs: lease.leaseMs
})

/** Merges the committed batches into the artifact and completes the run. */
const mergeAndComplete = Effect.fnUntraced(function*(x: Execution) {
  const store = yield* RunStore
  const { plan } = x.run
  yield* x.emit({ _tag: "MergeStarted", runId: x.run.id })
  const artifact = yield* Merge.merge({
    runId: x.run.id,
    path: x.artifactPath,
    format: plan.outputFormat,
    ontology: x.ontology,
    provenance: plan.provenance ? { extractor: plan.extractor } : undefined,
    ...fencing(store, x.lease)
  })
  yield* Merge.writeSkippedManifest(
    x.run.id,
    artifact.path,
    yield* store.skippedBatches(x.run.id),
    x.batches,
    x.retryCommand
  )
  yield* CrashPoint.hit("merge.afterRename")
  return yield* store.complete(x.run.id, x.lease.holder, artifact)
})

/** Where the artifact is written: the run's output path, resolved when it is relative. */
const artifactPathOf = (run: Run, options: ExecuteOptions) =>
  path.isAbsolute(run.plan.outputPath) ?
    run.plan.outputPath :
    path.resolve(options.artifactsDir ?? ".", run.plan.outputPath)

/**
 * The artifact's directory must be there before anything is extracted: the merge would find it missing only after
 * every batch was extracted (and paid for).
 */
const checkArtifactDirectory = (artifactPath: string) => {
  const directory = path.dirname(artifactPath)
  const refuse = (problem: string) => new MergeError({ path: artifactPath, cause: new Error(problem) })
  return Effect.tryPromise({ try: () => fs.stat(directory), catch: (error) => error }).pipe(
    Effect.mapError((error) =>
      (error as NodeJS.ErrnoException).code === "ENOENT" ?
        refuse(`its directory ${directory} does not exist; create it, then resume the run`) :
        new MergeError({ path: artifactPath, cause: error })
    ),
    Effect.flatMap((stat) =>
      stat.isDirectory() ?
        Effect.void :
        Effect.fail(refuse(`${directory} is not a directory; make it one, then resume the run`))
    )
  )
}

/** The execution's policies, starting from what the run recorded before. */
const makeExecution = Effect.fnUntraced(function*(
  run: Run,
  prepared: Prepared,
  lease: Lease.Lease,
  options: ExecuteOptions
) {
  const store = yield* RunStore
  return {
    ...prepared,
    run,
    lease,
    budget: yield* Budget.make({
      runId: run.id,
      // As claimed: the execution's own, or else the run's.
      limits: Option.getOrUndefined(run.budget),
      spent: yield* store.attemptTotals(run.id),
      settledBatches: run.committedBatches
    }),
    ledger: yield* UsageLedger.make(run.id),
    committed: yield* makeCommitted(run.committedBatches),
    known: yield* KnownContext.make(store, run.id),
    emit: options.onEvent ?? (() => Effect.void),
    pending: new Map(),
    groupCommit: options.groupCommit ?? true,
    artifactPath: artifactPathOf(run, options),
    retryCommand: options.retryCommand
  } satisfies Execution
})

/**
 * Runs `self` in a fiber of its own that an interruption interrupts and awaits. An interrupted `raceFirst` only signals
 * its two fibers and goes on: the extraction's finalizers (the usage of a request in flight) ran after the run's exit
 * was recorded, when the store could already be closed. Here they end before the interruption does.
 */
const awaitingInterruption = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(
      Effect.fork(restore(self)),
      (fiber) => restore(Fiber.join(fiber)).pipe(Effect.onInterrupt(() => Fiber.interrupt(fiber)))
    )
  )

/** The run once claimed: retry skipped batches when reopened, extract and commit the rest, merge, complete. */
const run = Effect.fnUntraced(function*(x: Execution, reopen: boolean) {
  const { committedBatches, id, plan } = x.run
  yield* x.emit({ _tag: "RunStarted", runId: id, totalBatches: plan.totalBatches, committedBatches })
  yield* Effect.logDebug(`executing run ${id}: ${committedBatches}/${plan.totalBatches} batches committed`)
  const store = yield* RunStore
  if (plan.totalBatches === 0) {
    const artifact = yield* Merge.writeEmpty({
      path: x.artifactPath,
      format: plan.outputFormat,
      ontology: x.ontology,
      ...fencing(store, x.lease)
    })
    return yield* store.complete(id, x.lease.holder, artifact)
  }
  if (reopen) {
    yield* SkipPolicy.retrySkipped(x.lease, (batchIndex) => {
      const batch = x.batches[batchIndex]!
      return Effect.zipRight(x.budget.reserve(batchIndex, estimateOf(x, batch)), extract(x, batch))
    })
  }
  yield* extractAndCommit(x)
  return yield* mergeAndComplete(x)
})

/**
 * Executes a run: the one code path for start and resume (prepare, claim, extract, commit, merge, complete). A
 * completed run is returned as it is.
 *
 * @since 0.1.0
 * @category operations
 */
export const execute = Effect.fn("Workflow.execute")(function*(runId: RunId, options: ExecuteOptions = {}) {
  // A caller's mistake, refused before anything is read or written (a budget of 0 would stop the run at once).
  const invalidBudget = options.budget === undefined ? undefined : Budget.invalidLimits(options.budget)
  if (invalidBudget !== undefined) {
    return yield* Effect.die(new Cause.IllegalArgumentException(`Workflow.execute: ${invalidBudget}`))
  }
  const store = yield* RunStore
  const stored = yield* store.getRun(runId)
  const reopen = options.retrySkipped === true && stored.skippedBatches > 0
  if (stored.status === "completed" && !reopen) return stored
  const prepared = yield* prepare(stored)
  yield* checkArtifactDirectory(artifactPathOf(stored, options))
  const { lease: claimedLease, run: claimed } = yield* Lease.claim(runId, options, {
    reopen,
    expectedVersion: options.requestedVersion ?? stored.statusVersion,
    budget: options.budget,
    dequeue: options.dequeue
  }).pipe(
    // The cancel of a holder that stopped before it saw it: its undo steps run here, as they would have there.
    Effect.tapErrorTag(
      "RunCancelled",
      (cancelled) => cancelled.tookOver === true ? Compensation.run(runId, "cancelled") : Effect.void
    )
  )
  if (Option.isNone(claimedLease)) return claimed
  const lease = claimedLease.value
  return yield* awaitingInterruption(Effect.raceFirst(
    makeExecution(claimed, prepared, lease, options).pipe(
      Effect.flatMap((execution) => run(execution, reopen)),
      Deadline.bound(runId, options.deadlineMs)
    ),
    Cancellation.watch(lease)
  )).pipe(
    compensatingCancel(runId),
    Effect.onExit((exit) => recordExit(lease, exit)),
    // Synchronous extractors and SQLite calls would otherwise starve the event loop: the heartbeat's timer would
    // not fire (the lease would expire under a live run) and signals would wait until the run suspends.
    Effect.withScheduler(FairScheduler.shared)
  )
}, (effect, runId) =>
  // The run id on this span and on every span under it (exported when tracing is on).
  Effect.zipRight(Effect.annotateCurrentSpan("quarry.run_id", runId), effect).pipe(
    Effect.annotateSpans("quarry.run_id", runId),
    Effect.annotateLogs({ runId })
  ))

/**
 * The errors `execute` can fail with.
 *
 * @since 0.1.0
 * @category models
 */
export type ExecuteError = Effect.Effect.Error<ReturnType<typeof execute>>

/**
 * The services `execute` needs.
 *
 * @since 0.1.0
 * @category models
 */
export type ExecuteRequirements = RunStore | Extractor.Registry

/**
 * The errors `create` can fail with.
 *
 * @since 0.1.0
 * @category models
 */
export type CreateError = Effect.Effect.Error<ReturnType<typeof create>>
