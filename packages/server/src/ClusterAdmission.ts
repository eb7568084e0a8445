/**
 * Admission for `quarry serve --cluster`: the same service as `Admission`, but a run executes on the runner that
 * owns its entity (`ClusterRun.QuarryRun`), wherever it was submitted. Submission stores the run with its queued
 * execution, then sends the persisted `Execute` message; cancel sets Quarry's flag in the store, then sends `Cancel`
 * to the owner; resume sends `Execute` again. The node's `WorkflowManager` (owner id = runner id) executes the runs
 * whose shards this node owns.
 *
 * @since 0.1.0
 */
import * as EntityAddress from "@effect/cluster/EntityAddress"
import * as EntityId from "@effect/cluster/EntityId"
import * as MessageStorage from "@effect/cluster/MessageStorage"
import * as ShardId from "@effect/cluster/ShardId"
import * as Sharding from "@effect/cluster/Sharding"
import { InvalidRunState, PersistenceError } from "@quarry/core/Errors"
import type { Run, RunId } from "@quarry/core/Run"
import { type QueuedExecution, RunStore } from "@quarry/core/RunStore"
import * as CoreRunView from "@quarry/core/RunView"
import * as Workflow from "@quarry/core/Workflow"
import type * as WorkflowManager from "@quarry/core/WorkflowManager"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as path from "node:path"
import { Admission, Draining, QueueFull, type Waiting } from "./Admission.js"
import * as ClusterRun from "./ClusterRun.js"
import * as WaitingExecution from "./WaitingExecution.js"

/**
 * The runs executing on this node, shared by the entity handlers and admission.
 *
 * @since 0.1.0
 * @category models
 */
export interface LocalRuns {
  readonly executing: Ref.Ref<ReadonlySet<RunId>>
  /** Runs of this runner's shards waiting for a slot (`--max-active-runs`). */
  readonly waiting: Ref.Ref<ReadonlySet<RunId>>
  readonly slots: Effect.Semaphore
  readonly maxActiveRuns: number
  readonly changes: PubSub.PubSub<RunId>
  readonly draining: Deferred.Deferred<void>
  /** Completes when the drain has seen every run here stop. */
  readonly drained: Deferred.Deferred<void>
  /** Completes when admission stops before the drain (`stopAdmitting`): no new work; the runs here go on. */
  readonly stopped: Deferred.Deferred<void>
}

/**
 * Makes the shared record of local runs.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeLocalRuns = (maxActiveRuns: number): Effect.Effect<LocalRuns> =>
  Effect.all({
    executing: Ref.make<ReadonlySet<RunId>>(new Set()),
    waiting: Ref.make<ReadonlySet<RunId>>(new Set()),
    slots: Effect.makeSemaphore(maxActiveRuns),
    maxActiveRuns: Effect.succeed(maxActiveRuns),
    changes: PubSub.sliding<RunId>(1024),
    draining: Deferred.make<void>(),
    drained: Deferred.make<void>(),
    stopped: Deferred.make<void>()
  })

/**
 * What an entity handler reports to the node: a run starts or stops executing here.
 *
 * @since 0.1.0
 * @category constructors
 */
export const onLocal = (local: LocalRuns) => (runId: RunId, executing: boolean) =>
  Ref.update(local.executing, toggle(runId, executing)).pipe(Effect.zipRight(PubSub.publish(local.changes, runId)))

/**
 * What an entity handler reports to the node: a run starts or stops waiting for a slot here.
 *
 * @since 0.1.0
 * @category constructors
 */
export const onWaiting = (local: LocalRuns) => (runId: RunId, waiting: boolean) =>
  Ref.update(local.waiting, toggle(runId, waiting))

const toggle = (runId: RunId, member: boolean) => (set: ReadonlySet<RunId>): ReadonlySet<RunId> => {
  const next = new Set(set)
  if (member) next.add(runId)
  else next.delete(runId)
  return next
}

/** The shards of the default group this runner holds (300 unless `shardsPerGroup` changes). */
const ownedShards = (sharding: Sharding.Sharding["Type"], shardsPerGroup = 300) => {
  let owned = 0
  for (let id = 1; id <= shardsPerGroup; id++) if (sharding.hasShardId(ShardId.make("default", id))) owned++
  return owned
}

/**
 * The primary key of a run's `Execute` at its current status version. The run's creation time keeps a run created
 * again under a deleted run's id apart from it: with the version alone (which starts again at 0) its message was
 * taken for the deleted run's, already answered, and the new run never executed.
 */
const executeKey = (run: Run) => `c${run.createdAt}-v${run.statusVersion}`

const toPayload = (execution: WorkflowManager.ExecutionOptions, run: Run) =>
  new ClusterRun.ExecutePayload({
    retrySkipped: execution.retrySkipped,
    budget: execution.budget,
    key: executeKey(run),
    version: run.statusVersion,
    createdAt: run.createdAt
  })

/** A run's `Execute` at its current status version, as addressed in the message storage. */
const executeAddress = (run: Run) =>
  Effect.gen(function*() {
    const entityId = EntityId.make(run.id)
    const shardId = yield* ClusterRun.QuarryRun.getShardId(entityId)
    const address = EntityAddress.make({ entityType: ClusterRun.QuarryRun.type, entityId, shardId })
    return { address, tag: "Execute", id: executeKey(run) }
  })

/** The options a queued execution was requested with. */
const requestedOf = (entry: QueuedExecution | undefined): WaitingExecution.Requested => ({
  retrySkipped: entry?.retrySkipped,
  budget: entry === undefined ? undefined : Option.getOrUndefined(entry.budget)
})

/**
 * The runs waiting for a runner: those with an execution requested (a submission or a resume) that no runner has
 * claimed yet, whose row the claim deletes. Until then the run's stored status is its last end (a resumed run's
 * `cancelled`), which a client polling for the end would take for this execution's. A row older than the run's last
 * end was left by an execution that ran. And every `interrupted` run: the cluster continues it (a survivor takes
 * over the runs of a drained runner; the scan sends an `Execute` to one left without), so it is no end to wait for,
 * and its event stream goes on to the end of the execution that continues it.
 */
const waitingWith = (entry: QueuedExecution | undefined, run: Run): Option.Option<Waiting> => {
  const requested = entry !== undefined && !Option.exists(run.finishedAt, (at) => entry.queuedAt < at)
  if (!requested && run.status !== "interrupted") return Option.none()
  return Option.some({ position: Option.none(), execution: requested ? requestedOf(entry) : {} })
}

const waitingRuns = (store: RunStore["Type"]) =>
  Effect.map(store.queuedExecutions, (entries) => {
    const byId = new Map(entries.map((entry) => [entry.runId, entry]))
    return (run: Run) => waitingWith(byId.get(run.id), run)
  })

/** `waitingRuns` for one run: its row only. */
const waitingRun = (store: RunStore["Type"]) => (runId: RunId) =>
  Effect.map(
    store.queuedExecution(runId),
    (entry) => (run: Run) => waitingWith(run.id === runId ? Option.getOrUndefined(entry) : undefined, run)
  )

/** Runs in these states for `afterMs` (for `running`: `afterMs` past their lease) may have no message. */
const stuck = (now: number, afterMs: number) => (run: Run) =>
  run.status === "running" ?
    Option.exists(run.lease, (lease) => now - lease.expiresAt >= afterMs) :
    now - run.updatedAt >= afterMs

/**
 * A run nobody will execute gets an `Execute`: stored `pending` but its message never stored (its node died between
 * the two writes); recorded `interrupted` after its message was answered (`@effect/cluster` answers a persisted
 * request interrupted outside an entity's shutdown; the unhealthy-lock-storage interrupt, measured, is not such a
 * case); `running` under a lease expired long ago (its process died outside the cluster, and no message will move
 * it). The message's primary key (the run's status version) says whether it exists; for a `running` run it never
 * matches its first message, so such a run gets a second one, which its owner executes as a resume.
 */
const recoverStuckRuns = (
  sendExecute: (run: Run, execution: WorkflowManager.ExecutionOptions) => Effect.Effect<void>,
  afterMs: number
) =>
  Effect.gen(function*() {
    const store = yield* RunStore
    const storage = yield* MessageStorage.MessageStorage
    const now = yield* Clock.currentTimeMillis
    const runs = yield* Effect.forEach(["pending", "interrupted", "running"] as const, (status) =>
      store.listRuns({ status }))
    const stale = runs.flat().filter(stuck(now, afterMs))
    if (stale.length === 0) {
      return
    }
    const queued = new Map((yield* store.queuedExecutions).map((entry) => [entry.runId, entry]))
    yield* Effect.forEach(stale, (run) =>
      Effect.gen(function*() {
        const existing = yield* storage.requestIdForPrimaryKey(yield* executeAddress(run))
        if (Option.isSome(existing)) {
          return
        }
        yield* Effect.logWarning(`run ${run.id}, ${run.status}, had no Execute message: sent`)
        const entry = queued.get(run.id)
        yield* sendExecute(run, {
          retrySkipped: entry?.retrySkipped,
          budget: entry === undefined ? undefined : Option.getOrUndefined(entry.budget)
        })
      }).pipe(Effect.annotateLogs({ runId: run.id })), { discard: true })
  })

/**
 * Options of cluster admission.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly runnerId: string
  /** The directory the server plans artifacts in (`<artifacts>/<run>.<ext>`); see `relativeOutput`. */
  readonly artifacts: string
  /** Runs stored `pending` in the whole cluster beyond which a submission or resume is refused (`QueueFull`). */
  readonly maxQueuedRuns?: number | undefined
  /** How long a run sits in a state that may lack its message before the scan looks at it (default 10 s). */
  readonly afterMs?: number | undefined
}

/**
 * A submission's output path as the cluster stores it: relative to the artifacts directory (`<run>.<ext>`), so that
 * the runner that finishes the run writes the artifact into its own artifacts directory, whatever directory the node
 * it was submitted to has. A path outside the directory stays absolute, as stored runs' paths do.
 */
const relativeOutput = (artifacts: string, output: Workflow.CreateOptions["output"]) => {
  const relative = path.relative(artifacts, output.path)
  const outside = relative === "" || relative === ".." || relative.startsWith(`..${path.sep}`) ||
    path.isAbsolute(relative)
  return outside ? output : { ...output, path: relative }
}

/**
 * Builds cluster admission.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (local: LocalRuns, options: Options) =>
  Effect.gen(function*() {
    const { afterMs = 10_000, maxQueuedRuns = Infinity, runnerId } = options
    const sharding = yield* Sharding.Sharding
    const store = yield* RunStore
    const context = yield* Effect.context<Workflow.ExecuteRequirements>()
    const client = yield* ClusterRun.QuarryRun.client
    const storage = yield* MessageStorage.MessageStorage
    const scope = yield* Effect.scope
    // The stored `Execute` of the run's current version, if one was sent.
    const pendingExecute = (run: Run) =>
      Effect.flatMap(executeAddress(run), storage.requestIdForPrimaryKey).pipe(
        Effect.provideService(Sharding.Sharding, sharding),
        Effect.mapError((cause) => new PersistenceError({ operation: "pendingExecute", cause }))
      )
    const draining = local.draining
    const refuseWhenDraining = Effect.flatMap(isDraining(local), (d) => d ? Effect.fail(new Draining()) : Effect.void)
    // The cluster's queue is its `pending` runs, wherever they were submitted (two nodes may pass the check at once).
    const refuseWhenFull = Effect.flatMap(
      store.countStatus("pending"),
      (pending) => pending >= maxQueuedRuns ? Effect.fail(new QueueFull({ maxQueuedRuns })) : Effect.void
    )
    // Persisted and not awaited: the message is stored before this returns, the owner answers it when the run ends.
    const sendExecute = (run: Run, execution: WorkflowManager.ExecutionOptions) =>
      client(run.id).Execute(toPayload(execution, run), { discard: true }).pipe(Effect.orDie)

    const submit = Effect.fn("ClusterAdmission.submit")(
      function*(create: Workflow.CreateOptions, execution: WorkflowManager.ExecutionOptions) {
        yield* refuseWhenDraining
        yield* refuseWhenFull
        const queued = { retrySkipped: execution.retrySkipped, budget: execution.budget }
        const output = relativeOutput(options.artifacts, create.output)
        const run = yield* Workflow.create({ ...create, output, queued }).pipe(Effect.provide(context))
        yield* sendExecute(run, execution)
        return run
      }
    )

    yield* recoverStuckRuns(sendExecute, afterMs).pipe(
      Effect.catchAllCause((cause) => Effect.logWarning("the scan of runs without a message failed", cause)),
      Effect.repeat(Schedule.spaced(Duration.millis(afterMs))),
      Effect.forkScoped
    )

    const resume = Effect.fn("ClusterAdmission.resume")(
      function*(runId: RunId, execution: WorkflowManager.ExecutionOptions) {
        yield* refuseWhenDraining
        const run = yield* store.getRun(runId)
        if (run.status === "completed" && execution.retrySkipped !== true) return run
        const now = yield* Clock.currentTimeMillis
        if (CoreRunView.leaseLive(run, now)) {
          return yield* new InvalidRunState({ runId, status: run.status, expected: "not executing (it is running)" })
        }
        // An execution already requested at this version (a resume or the submission, not yet claimed): its message
        // holds its options, which a second message would not replace. The same request again is granted; another
        // one is refused rather than taken and ignored (cancel the run, then resume it with the new options).
        if (Option.isSome(yield* pendingExecute(run))) {
          const waiting = requestedOf(Option.getOrUndefined(yield* store.queuedExecution(runId)))
          if (WaitingExecution.same(waiting, execution)) return run
          return yield* WaitingExecution.conflict(run, waiting, "its runner")
        }
        yield* refuseWhenFull
        // Atomic: of two resumes at two nodes at once, the second finds the first's row (as it would its message).
        const waiting = yield* store.queueExecutionOnce({
          runId,
          retrySkipped: execution.retrySkipped,
          budget: execution.budget
        })
        if (Option.isSome(waiting) && !WaitingExecution.same(requestedOf(waiting.value), execution)) {
          return yield* WaitingExecution.conflict(run, requestedOf(waiting.value), "its runner")
        }
        // The first's message, or the same one again (same version, same options): stored once.
        yield* sendExecute(run, execution)
        return run
      }
    )

    // The flag first (a run not executing anywhere ends `cancelled` from it), then, for a run executing, its owner.
    // Not awaited: an owner that does not answer (paused, cut off) holds the send until its shard moves (19 s
    // measured), and the flag is enough there (the owner's next heartbeat or commit, or the takeover's claim, sees
    // it). A `Cancel` delivered after a resume the client sent next stops nothing: it names the version it cancels.
    const cancel = Effect.fn("ClusterAdmission.cancel")(function*(runId: RunId) {
      const requested = yield* store.requestCancel(runId)
      if (requested.status === "running") {
        const interrupt = client(runId).Cancel({ version: requested.statusVersion }, { discard: true })
        yield* Effect.forkIn(Effect.ignore(interrupt), scope)
      }
      yield* PubSub.publish(local.changes, runId)
      return yield* store.getRun(runId)
    })

    const isLocal = (runId: RunId) => Effect.map(Ref.get(local.executing), (set) => set.has(runId))

    return Admission.of({
      submit,
      resume,
      cancel,
      waitingRuns: waitingRuns(store),
      waitingRun: waitingRun(store),
      isLocal,
      changes: local.changes,
      stats: stats(local, sharding, runnerId),
      stopAdmitting: Effect.asVoid(Deferred.succeed(local.stopped, undefined)),
      draining,
      drained: local.drained,
      drain: drain(local)
    })
  })

/** Whether the node stopped admitting or drains. */
const isDraining = (local: LocalRuns) =>
  Effect.zipWith(Deferred.isDone(local.stopped), Deferred.isDone(local.draining), (a, b) => a || b)

/** What `/healthz` and `/metrics` show of this node. */
const stats = (local: LocalRuns, sharding: Sharding.Sharding["Type"], runnerId: string) =>
  Effect.all({
    active: Effect.map(Ref.get(local.executing), (set) => set.size),
    queued: Effect.map(Ref.get(local.waiting), (set) => set.size),
    draining: isDraining(local),
    started: Effect.succeed(true),
    cluster: Effect.zipWith(Ref.get(local.executing), Ref.get(local.waiting), (set, waiting) => ({
      runnerId,
      ownedShards: ownedShards(sharding),
      executing: [...set].sort(),
      maxActiveRuns: local.maxActiveRuns,
      waiting: [...waiting].sort()
    }))
  })

/**
 * Each run stops after its next commit; then the sharding layer closes and the shards (with the runs' unanswered
 * messages) go to the other runners. The caller bounds the wait (`--drain-timeout`).
 */
const drain = (local: LocalRuns) =>
  Deferred.succeed(local.draining, undefined).pipe(
    Effect.zipRight(
      Effect.repeat(Ref.get(local.executing), {
        until: (set) => set.size === 0,
        schedule: Schedule.spaced(Duration.millis(20))
      })
    ),
    Effect.zipRight(Deferred.succeed(local.drained, undefined)),
    Effect.asVoid
  )

/**
 * Cluster admission as a layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (local: LocalRuns, options: Options): Layer.Layer<
  Admission,
  never,
  Workflow.ExecuteRequirements | Sharding.Sharding | MessageStorage.MessageStorage
> => Layer.scoped(Admission, make(local, options))
