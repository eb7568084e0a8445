/**
 * Admission: at most `maxActiveRuns` runs execute at once; the others wait in FIFO order. The queue is durable: a
 * submission stores its run and its queued execution (budget, retrySkipped, request id) in one transaction, a resume
 * request stores its queued execution, and the row stays until the execution ends completed, failed or cancelled
 * for good (not a failure the server tries again, below).
 * On start the queue is rebuilt from these rows (and from pending runs without one), and boot recovery queues the
 * orphans of earlier processes (runs left `interrupted`, or `running` under an expired lease) with their rows'
 * options. An execution the database failed (before its claim, or by a lost connection after it) goes back to the
 * queue and starts again after a wait (see `DatabaseRetry`); a read the database failed does not stop admission.
 * An execution that cannot start here (see `Unstartable`) is recorded `failed`, and its row kept for the next start.
 * Drain stops taking work and interrupts every run here, which records them `interrupted` (resumable). Admission may
 * stop before it (`quarry serve --drain-delay`): not ready, no new work and no queued run started, while the runs
 * executing go on.
 *
 * @since 0.1.0
 */
import { InvalidRunState, type PersistenceError, type RunNotFound } from "@quarry/core/Errors"
import type { Run, RunId } from "@quarry/core/Run"
import { type QueuedExecution, RunStore } from "@quarry/core/RunStore"
import * as CoreRunView from "@quarry/core/RunView"
import * as Workflow from "@quarry/core/Workflow"
import * as WorkflowManager from "@quarry/core/WorkflowManager"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as HashMap from "effect/HashMap"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Queue from "effect/Queue"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as DatabaseRetry from "./DatabaseRetry.js"
import * as Metrics from "./Metrics.js"
import * as Unstartable from "./Unstartable.js"
import * as WaitingExecution from "./WaitingExecution.js"

/**
 * The queue is full: the run was not stored. Retry later.
 *
 * @since 0.1.0
 * @category errors
 */
export class QueueFull extends Schema.TaggedError<QueueFull>()("QueueFull", { maxQueuedRuns: Schema.Int }) {
  override get message(): string {
    return `the queue already holds ${this.maxQueuedRuns} waiting runs (--max-queued-runs); nothing was stored, ` +
      `retry later`
  }
}

/**
 * The server is draining (shutting down): it takes no new work. Retry against another instance or after restart.
 *
 * @since 0.1.0
 * @category errors
 */
export class Draining extends Schema.TaggedError<Draining>()("Draining", {}) {
  override get message(): string {
    return "the server is shutting down and takes no new runs; nothing was stored, retry after it restarts"
  }
}

/**
 * Options of admission.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly maxActiveRuns: number
  readonly maxQueuedRuns: number
  /** Queue the orphans of earlier processes on start and whenever a lease expires (default true). */
  readonly recover?: boolean | undefined
  /** The lease length of runs executed here (default `Workflow.defaultLeaseMs`). */
  readonly leaseMs?: number | undefined
  /** How often to look for orphaned runs and refill free slots (default a third of the lease). */
  readonly scanIntervalMs?: number | undefined
  /**
   * TEST-ONLY (`QUARRY_TEST_SETTLE_DELAY_MS`): how long a run's execution stays here after its end is stored, before
   * its slot frees, so that a test can land a request in that moment.
   */
  readonly settleDelayMs?: number | undefined
}

/**
 * What admission reports about itself.
 *
 * @since 0.1.0
 * @category models
 */
export interface Stats {
  readonly active: number
  readonly queued: number
  readonly draining: boolean
  /** Boot recovery has queued every orphan it found. */
  readonly started: boolean
  /** With `--cluster`: this runner, the shards it owns and the runs executing here. */
  readonly cluster?: ClusterStats | undefined
}

/**
 * What a cluster runner reports about itself.
 *
 * @since 0.1.0
 * @category models
 */
export interface ClusterStats {
  readonly runnerId: string
  readonly ownedShards: number
  readonly executing: ReadonlyArray<RunId>
  readonly maxActiveRuns: number
  readonly waiting: ReadonlyArray<RunId>
}

interface Entry {
  readonly runId: RunId
  readonly execution: WorkflowManager.ExecutionOptions
  /** The request that queued the run (none for recovered and pending runs found at boot). */
  readonly requestId?: string | undefined
  /** The executions of it in a row that the database failed, and the batches committed at the last one. */
  readonly databaseFailures?: DatabaseFailures | undefined
  /** Not started before this time (ms): it waits after a database failure, keeping its place meanwhile. */
  readonly notBefore?: number | undefined
}

interface DatabaseFailures {
  readonly count: number
  readonly committedBatches: number
}

/** The statuses after which a run's stored execution is done with (an `interrupted` one is resumed at start). */
const endedForGood: ReadonlySet<string> = new Set(["completed", "failed", "cancelled"])

/** The id of the request being answered, from the log annotations the request middleware sets. */
const currentRequestId = Effect.map(
  FiberRef.get(FiberRef.currentLogAnnotations),
  (annotations) =>
    Option.getOrUndefined(
      Option.filter(HashMap.get(annotations, "requestId"), (id): id is string => typeof id === "string")
    )
)

/** What admission's parts share: the store, the manager, the in-memory copy of the queue and its signals. */
interface Core {
  readonly settleDelayMs: number
  readonly store: RunStore["Type"]
  readonly manager: Effect.Effect.Success<ReturnType<typeof WorkflowManager.make>>
  readonly queue: Ref.Ref<ReadonlyArray<Entry>>
  readonly active: Ref.Ref<ReadonlySet<RunId>>
  /** Offered when a slot may have freed or an entry arrived: the dispatcher looks again. */
  readonly wake: Queue.Queue<void>
  readonly changes: PubSub.PubSub<RunId>
  /** Closing it interrupts every run executing here. */
  readonly runsScope: Scope.CloseableScope
}

const enqueue = (core: Core, entry: Entry) =>
  Ref.update(core.queue, (entries) => entries.some((e) => e.runId === entry.runId) ? entries : [...entries, entry])
    .pipe(Effect.zipRight(Queue.offer(core.wake, undefined)))

const entryOf = (row: QueuedExecution): Entry => ({
  runId: row.runId,
  execution: { retrySkipped: row.retrySkipped, budget: Option.getOrUndefined(row.budget) },
  requestId: Option.getOrUndefined(row.requestId)
})

/** Whether the run waits or executes in this process. */
const known = (core: Core, runId: RunId) =>
  Effect.zipWith(Ref.get(core.queue), Ref.get(core.active), (q, a) => a.has(runId) || q.some((e) => e.runId === runId))

/** Logs and counts the end of a run whose fiber ended. Answers the run as stored, if readable. */
const settle = (core: Core, runId: RunId) =>
  core.store.getRun(runId).pipe(
    Effect.tap((run) => Effect.logInfo("run ended").pipe(Effect.annotateLogs({ status: run.status }))),
    Effect.tap((run) => Metric.increment(Metric.tagged(Metrics.runsEnded, "status", run.status))),
    Effect.option
  )

/** Frees the slot of a run whose execution here is over. */
const release = (core: Core, runId: RunId) =>
  Ref.update(core.active, (set) => new Set([...set].filter((id) => id !== runId)))

/** What follows a run's end here: queued again, given up, dropped from the stored queue, or kept there. */
type NextStep =
  | { readonly _tag: "again"; readonly failures: DatabaseFailures; readonly error: PersistenceError }
  | { readonly _tag: "gaveUp" | "ended" | "kept" }

/**
 * What follows a run's end. When the database failed the execution (see `DatabaseRetry`): before its claim, the run
 * is still `pending` (or unreadable), and no scan looks for pending runs after boot, so it is tried again; after its
 * claim, a lost connection ended it `failed`, and it resumes, within the limit. Otherwise a run that ended for good
 * leaves the stored queue; an interrupted one (or one running elsewhere) stays there, so the next start resumes it
 * with its budget, and so does one that could not start here (recorded `failed`, see `Unstartable`).
 */
const nextStep = (entry: Entry, exit: Exit.Exit<Run, Workflow.ExecuteError>, run: Option.Option<Run>): NextStep => {
  // The next start may have the extractor, or its settings, back.
  if (Exit.isFailure(exit) && Unstartable.errorOf(exit.cause) !== undefined) return { _tag: "kept" }
  const error = Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined
  const status = Option.match(run, { onNone: () => "pending", onSome: (r) => r.status })
  if (
    error?._tag === "PersistenceError" &&
    (status === "pending" || (status === "failed" && error.reason === "connection"))
  ) {
    const previous = entry.databaseFailures
    const committedBatches = Option.match(run, {
      onNone: () => previous?.committedBatches ?? 0,
      onSome: (r) => r.committedBatches
    })
    const count = previous?.committedBatches === committedBatches ? previous.count + 1 : 1
    if (status === "pending" || count <= DatabaseRetry.maxFailuresWithoutProgress) {
      return { _tag: "again", failures: { count, committedBatches }, error }
    }
    return { _tag: "gaveUp" }
  }
  return endedForGood.has(status) ? { _tag: "ended" } : { _tag: "kept" }
}

/**
 * Queues the entry again at the end of the line, to start after the wait its failures in a row call for. It waits
 * in the queue: it shows its place, a cancel removes it, a resume request finds it there. (Its launch may not have
 * taken the old entry out of the queue yet: this one replaces it.)
 */
const requeue = (core: Core, entry: Entry, failures: DatabaseFailures, error: PersistenceError) =>
  Effect.gen(function*() {
    const delayMs = DatabaseRetry.delayMs(failures.count)
    yield* Effect.logWarning(`the database failed the execution, queued again in ${delayMs}ms: ${error.message}`)
    const now = yield* Clock.currentTimeMillis
    const again: Entry = { ...entry, databaseFailures: failures, notBefore: now + delayMs }
    yield* Ref.update(core.queue, (entries) => [...entries.filter((e) => e.runId !== entry.runId), again])
    // The dispatcher looks again when it is due.
    yield* Queue.offer(core.wake, undefined).pipe(Effect.delay(delayMs), Effect.forkIn(core.runsScope))
  })

/**
 * An execution that could not start is recorded `failed` (see `Unstartable`). When the database fails that write,
 * its failure is what `nextStep` judges: the execution is tried again.
 */
const recordUnstarted = (runId: RunId, exit: Exit.Exit<Run, Workflow.ExecuteError>) => {
  const error = Exit.isFailure(exit) ? Unstartable.errorOf(exit.cause) : undefined
  if (error === undefined) return Effect.succeed(exit)
  return Unstartable.record(runId, error).pipe(
    Effect.as(exit),
    Effect.catchAll((failed) => Effect.succeed(Exit.fail(failed)))
  )
}

/**
 * After a run's fiber ends: logs and counts the end, does what follows it (see `nextStep`), and only then frees its
 * slot, so that a resume waiting for the end (see `awaitEnd`) queues its own row after this one left the queue.
 */
const ended = (core: Core, entry: Entry, exit: Exit.Exit<Run, Workflow.ExecuteError>) =>
  Effect.gen(function*() {
    if (core.settleDelayMs > 0) yield* Effect.sleep(core.settleDelayMs)
    const judged = yield* recordUnstarted(entry.runId, exit)
    const run = yield* settle(core, entry.runId)
    const then = nextStep(entry, judged, run)
    // Out of the active set before it is queued again, so that its next launch is never taken for this one.
    if (then._tag === "again") {
      yield* Effect.zipRight(release(core, entry.runId), requeue(core, entry, then.failures, then.error))
    }
    if (then._tag === "gaveUp") {
      yield* Effect.logError(DatabaseRetry.gaveUp)
    }
    if (then._tag === "gaveUp" || then._tag === "ended") {
      yield* core.store.dequeueExecution(entry.runId).pipe(Effect.ignore)
    }
  }).pipe(
    Effect.ensuring(release(core, entry.runId)),
    Effect.zipRight(PubSub.publish(core.changes, entry.runId)),
    Effect.zipRight(Queue.offer(core.wake, undefined))
  )

/** How long a resume waits for the end of the run's execution here, once its end is stored. */
const endWaitMs = 10_000

/**
 * Waits until the run's execution here is over, when its end is stored but its fiber is still winding down (not in
 * the queue, no live lease). Taken for an execution still under way, a resume in that moment was answered `202`
 * and dropped: the run stayed `cancelled`. Answers whether it waited.
 */
const awaitEnd = (core: Core, run: Run, now: number) =>
  Effect.gen(function*() {
    const inQueue = (yield* Ref.get(core.queue)).some((entry) => entry.runId === run.id)
    const active = (yield* Ref.get(core.active)).has(run.id)
    if (inQueue || !active || CoreRunView.leaseLive(run, now)) return false
    yield* Effect.repeat(Ref.get(core.active), {
      until: (set) => !set.has(run.id),
      schedule: Schedule.spaced(Duration.millis(10))
    }).pipe(
      Effect.timeoutFail({
        duration: Duration.millis(endWaitMs),
        onTimeout: () =>
          new InvalidRunState({
            runId: run.id,
            status: run.status,
            expected: "not executing (its execution here is still ending; try again in a moment)"
          })
      })
    )
    return true
  })

// The run's fibers inherit these annotations: its logs carry the run id and the id of the request that queued it.
// Returns once the run has claimed (its first event) or ended, so that it leaves the queue only when its stored
// status says it executes: a reader never sees a queued run with its old status (e.g. `cancelled`) and no place.
const launch = (core: Core, entry: Entry) =>
  Effect.gen(function*() {
    yield* Ref.update(core.active, (set) => new Set([...set, entry.runId]))
    const started = yield* Deferred.make<void>()
    const given = entry.execution.onEvent
    const handle = yield* core.manager.resume(entry.runId, {
      ...entry.execution,
      onEvent: (event) =>
        Deferred.succeed(started, undefined).pipe(
          Effect.zipRight(given === undefined ? Effect.void : given(event)),
          Effect.zipRight(PubSub.publish(core.changes, entry.runId))
        )
    })
    yield* Metric.increment(Metrics.runsStarted)
    yield* Effect.logInfo("run started")
    yield* Fiber.await(handle.fiber).pipe(
      Effect.tap(() => Deferred.succeed(started, undefined)),
      Effect.flatMap((exit) => ended(core, entry, exit)),
      Effect.forkIn(core.runsScope)
    )
    yield* Deferred.await(started)
  }).pipe(
    Effect.annotateLogs(
      entry.requestId === undefined ? { runId: entry.runId } : { runId: entry.runId, requestId: entry.requestId }
    )
  )

// Orphans: `interrupted` by an earlier process (only at boot), or `running` under an expired lease. They resume
// with the options of their stored execution (its budget), if they had one.
const orphans = (core: Core, atBoot: boolean) =>
  Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    const running = yield* core.store.listRuns({ status: "running" })
    const expired = running.filter((run) => Option.isNone(run.lease) || run.lease.value.expiresAt <= now)
    const interrupted = atBoot ? yield* core.store.listRuns({ status: "interrupted" }) : []
    const found = [...interrupted, ...expired].sort((a, b) => a.createdAt - b.createdAt)
    const stored = found.length === 0 ?
      new Map<RunId, QueuedExecution>() :
      new Map((yield* core.store.queuedExecutions).map((row) => [row.runId, row]))
    for (const run of found) {
      if (!(yield* known(core, run.id))) {
        yield* Effect.logInfo("recovering run").pipe(Effect.annotateLogs({ runId: run.id, status: run.status }))
        const row = stored.get(run.id)
        yield* enqueue(core, row === undefined ? { runId: run.id, execution: {} } : entryOf(row))
      }
    }
  })

// The durable queue in FIFO order; the orphans among its rows are recovery's (they executed when the last process
// stopped, so they go first), then pending runs without a row (submitted before the queue was stored).
const boot = (core: Core, recover: boolean) =>
  Effect.gen(function*() {
    if (recover) yield* orphans(core, true)
    for (const row of yield* core.store.queuedExecutions) {
      const status = yield* core.store.getRun(row.runId).pipe(Effect.map((run) => run.status), Effect.option)
      // Completed meanwhile (e.g. by `quarry resume`): nothing left to do.
      if (Option.contains(status, "completed") && !row.retrySkipped) yield* core.store.dequeueExecution(row.runId)
      else if (Option.exists(status, (s) => s !== "running" && s !== "interrupted")) yield* enqueue(core, entryOf(row))
    }
    for (const run of yield* core.store.listRuns({ status: "pending" })) {
      yield* enqueue(core, { runId: run.id, execution: {} })
    }
  })

/** Starts queued runs while slots are free, unless admission is closed. */
const fill = (core: Core, maxActiveRuns: number, isClosed: Effect.Effect<boolean>) =>
  Effect.gen(function*() {
    while (!(yield* isClosed)) {
      const running = yield* Ref.get(core.active)
      if (running.size >= maxActiveRuns) return
      const now = yield* Clock.currentTimeMillis
      // The first in line that is due: one waiting after a database failure lets the others pass.
      const next = (yield* Ref.get(core.queue)).find((entry) => (entry.notBefore ?? 0) <= now)
      if (next === undefined) return
      yield* launch(core, next).pipe(
        Effect.ensuring(Ref.update(core.queue, (entries) => entries.filter((e) => e !== next)))
      )
    }
  })

const cancel = Effect.fn("Admission.cancel")(function*(core: Core, runId: RunId) {
  const wasQueued = yield* Ref.modify(
    core.queue,
    (entries) => [entries.some((e) => e.runId === runId), entries.filter((e) => e.runId !== runId)] as const
  )
  const run = yield* core.manager.cancel(runId).pipe(Effect.tap(() => PubSub.publish(core.changes, runId)))
  // A run cancelled while it waited never started here, but it ended here: count it with the others.
  if (wasQueued && run.status === "cancelled") {
    yield* Metric.increment(Metric.tagged(Metrics.runsEnded, "status", "cancelled"))
  }
  return run
})

const waitingRuns = (core: Core) =>
  Effect.map(Ref.get(core.queue), (entries) => {
    const byId = new Map(
      entries.map((e, index) => [e.runId, { position: Option.some(index + 1), execution: e.execution }])
    )
    return (run: Run): Option.Option<Waiting> => Option.fromNullable(byId.get(run.id))
  })

/**
 * A run waiting to execute: its 1-based place in this server's queue (none on a cluster, which has no queue order:
 * each runner starts the runs of its shards as its own slots free) and the options it will execute with.
 *
 * @since 0.1.0
 * @category models
 */
export interface Waiting {
  readonly position: Option.Option<number>
  readonly execution: WorkflowManager.ExecutionOptions
}

/**
 * The admission service.
 *
 * @since 0.1.0
 * @category tags
 */
export class Admission extends Context.Tag("@quarry/server/Admission")<Admission, {
  /** Stores a new run `pending` and queues it. */
  readonly submit: (
    options: Workflow.CreateOptions,
    execution: WorkflowManager.ExecutionOptions
  ) => Effect.Effect<Run, Workflow.CreateError | QueueFull | Draining>
  /** Queues a stored run to continue from its last checkpoint. */
  readonly resume: (
    runId: RunId,
    execution: WorkflowManager.ExecutionOptions
  ) => Effect.Effect<Run, QueueFull | Draining | RunNotFound | InvalidRunState | PersistenceError>
  /** Cancels a run, queued or executing. */
  readonly cancel: (runId: RunId) => Effect.Effect<Run, RunNotFound | InvalidRunState | PersistenceError>
  /**
   * The runs waiting to execute, as read now: of a run, its place in the queue and the options it waits with; none
   * when it does not wait (it executes, or ended, or waits for nothing).
   */
  readonly waitingRuns: Effect.Effect<(run: Run) => Option.Option<Waiting>, PersistenceError>
  /** `waitingRuns` read for the run `runId` (on a cluster, its stored row only): ask it of that run only. */
  readonly waitingRun: (runId: RunId) => Effect.Effect<(run: Run) => Option.Option<Waiting>, PersistenceError>
  /** Whether the run waits or executes in this process (its changes are announced on `changes`). */
  readonly isLocal: (runId: RunId) => Effect.Effect<boolean>
  /**
   * The ids of local runs as they change: started, a batch committed, merging, ended. Event streams read the run
   * again on these instead of polling the database.
   */
  readonly changes: PubSub.PubSub<RunId>
  readonly stats: Effect.Effect<Stats>
  /**
   * Stops admitting, before the drain: submissions and resumes are refused (`Draining`), `stats` reports draining (so
   * the server is not ready), and no queued run starts (it stays queued, durably, for the next start), while the runs
   * executing here, their event streams and every other request go on until `drain`.
   */
  readonly stopAdmitting: Effect.Effect<void>
  /** Completes when draining starts. */
  readonly draining: Deferred.Deferred<void>
  /**
   * Completes when the drain has stopped the runs here (recorded `interrupted`; on a cluster, handed to other
   * runners): an event stream reads its run a last time then, and ends.
   */
  readonly drained: Deferred.Deferred<void>
  /** Stops taking work and interrupts every run executing here (recorded `interrupted`). */
  readonly drain: Effect.Effect<void>
}>() {}

/**
 * Builds admission in the current scope and starts its dispatcher. (It wires the parts above and holds the two
 * requests that check the queue's limits, `submit` and `resume`; that is its length.)
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = Effect.fn("Admission.make")(function*(options: Options) {
  const store = yield* RunStore
  const context = yield* Effect.context<Workflow.ExecuteRequirements>()
  const leaseMs = options.leaseMs ?? Workflow.defaultLeaseMs
  const scanIntervalMs = options.scanIntervalMs ?? Math.max(50, Math.floor(leaseMs / 3))
  const recover = options.recover ?? true

  // The runs are interrupted by closing this scope, before the HTTP server and the database go away.
  const runsScope = yield* Scope.make()
  yield* Effect.addFinalizer(() => Scope.close(runsScope, Exit.void))
  const manager = yield* WorkflowManager.make({ leaseMs }).pipe(Scope.extend(runsScope), Effect.provide(context))

  const queue = yield* Ref.make<ReadonlyArray<Entry>>([])
  const active = yield* Ref.make<ReadonlySet<RunId>>(new Set())
  const started = yield* Ref.make(false)
  const stopped = yield* Ref.make(false)
  const draining = yield* Deferred.make<void>()
  const drained = yield* Deferred.make<void>()
  const wake = yield* Queue.sliding<void>(1)
  // Sliding: a subscriber that falls behind loses old notices, never blocks a run (it reads the run again anyway).
  const changes = yield* PubSub.sliding<RunId>(1024)

  const core: Core = {
    settleDelayMs: options.settleDelayMs ?? 0,
    store,
    manager,
    queue,
    active,
    wake,
    changes,
    runsScope
  }
  const isDraining = Deferred.isDone(draining)
  // Admitting nothing: stopped (the drain delay), or draining.
  const isClosed = Effect.zipWith(Ref.get(stopped), isDraining, (a, b) => a || b)

  // A read failing beyond the store's retries (the database down for a while) must not stop admission: boot is
  // tried again until it succeeds (the server reports not ready meanwhile), a scan at its next turn.
  const dispatcher = Effect.gen(function*() {
    yield* boot(core, recover).pipe(
      Effect.tapError((error) => Effect.logWarning("boot recovery failed on the database: trying again", error)),
      Effect.retry(Schedule.spaced(Duration.millis(scanIntervalMs)))
    )
    yield* Ref.set(started, true)
    while (true) {
      yield* fill(core, options.maxActiveRuns, isClosed)
      yield* Queue.take(wake).pipe(Effect.timeout(scanIntervalMs), Effect.ignore)
      if (recover) {
        yield* orphans(core, false).pipe(
          Effect.catchAll((error) => Effect.logWarning("the scan for orphaned runs failed on the database", error))
        )
      }
    }
  }).pipe(
    Effect.tapErrorCause((cause) => Effect.logError("admission stopped", cause)),
    Effect.interruptible
  )
  const dispatcherFiber = yield* Effect.forkIn(dispatcher, runsScope)

  const refuseWhenDraining = Effect.flatMap(isClosed, (d) => d ? Effect.fail(new Draining()) : Effect.void)
  const refuseWhenFull = Effect.flatMap(Ref.get(queue), (entries) =>
    entries.length >= options.maxQueuedRuns ?
      Effect.fail(new QueueFull({ maxQueuedRuns: options.maxQueuedRuns })) :
      Effect.void)

  const submit = Effect.fn("Admission.submit")(
    function*(create: Workflow.CreateOptions, execution: WorkflowManager.ExecutionOptions) {
      yield* refuseWhenDraining
      yield* refuseWhenFull
      const requestId = yield* currentRequestId
      const queued = { retrySkipped: execution.retrySkipped, budget: execution.budget, requestId }
      const run = yield* Workflow.create({ ...create, queued }).pipe(Effect.provide(context))
      yield* enqueue(core, { runId: run.id, execution, requestId })
      return run
    }
  )

  const resume = Effect.fn("Admission.resume")(
    function*(runId: RunId, execution: WorkflowManager.ExecutionOptions) {
      yield* refuseWhenDraining
      const read = yield* store.getRun(runId)
      // The run as it is once its execution here, ended, is over.
      const run = (yield* awaitEnd(core, read, yield* Clock.currentTimeMillis)) ? yield* store.getRun(runId) : read
      if (run.status === "completed" && execution.retrySkipped !== true) return run
      // Executing, here or elsewhere, is refused; waiting here already is a resume granted with the same options (it
      // keeps its place) and refused with others, which the waiting execution would not take.
      const now = yield* Clock.currentTimeMillis
      if (CoreRunView.leaseLive(run, now)) {
        return yield* new InvalidRunState({ runId, status: run.status, expected: "not executing (it is running)" })
      }
      const waiting = (yield* Ref.get(core.queue)).find((entry) => entry.runId === runId)
      if (waiting !== undefined && !WaitingExecution.same(waiting.execution, execution)) {
        return yield* WaitingExecution.conflict(run, waiting.execution, "a slot")
      }
      if (yield* known(core, runId)) return run
      yield* refuseWhenFull
      const requestId = yield* currentRequestId
      yield* store.queueExecution({ runId, retrySkipped: execution.retrySkipped, budget: execution.budget, requestId })
      yield* enqueue(core, { runId, execution, requestId })
      return run
    }
  )

  const stats = Effect.all({
    active: Effect.map(Ref.get(active), (set) => set.size),
    queued: Effect.map(Ref.get(queue), (entries) => entries.length),
    draining: isClosed,
    started: Ref.get(started)
  })

  const drain = Effect.gen(function*() {
    if (!(yield* Deferred.succeed(draining, undefined))) return
    yield* Fiber.interrupt(dispatcherFiber)
    yield* Scope.close(runsScope, Exit.void)
    yield* Deferred.succeed(drained, undefined)
  }).pipe(Effect.withSpan("Admission.drain"))

  return Admission.of({
    submit,
    resume,
    cancel: (runId) => cancel(core, runId),
    waitingRuns: waitingRuns(core),
    // The queue is in memory: reading it whole costs no more than reading one entry.
    waitingRun: () => waitingRuns(core),
    isLocal: (runId) => known(core, runId),
    changes,
    stats,
    stopAdmitting: Ref.set(stopped, true),
    draining,
    drained,
    drain
  })
})

/**
 * Admission as a scoped layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options
): Layer.Layer<Admission, never, Workflow.ExecuteRequirements> => Layer.scoped(Admission, make(options))
