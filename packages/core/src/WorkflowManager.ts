/**
 * Many runs in one process: a scoped service owning a `FiberMap` keyed by run id. Closing its scope interrupts
 * every run, and each is recorded `interrupted` (resumable).
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberMap from "effect/FiberMap"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import {
  InvalidRunState,
  type PersistenceError,
  RunCancelled,
  RunFailed,
  RunInterrupted,
  type RunNotFound
} from "./Errors.js"
import type { Run, RunId } from "./Run.js"
import { RunStore } from "./RunStore.js"
import * as Workflow from "./Workflow.js"

/**
 * A run executing in this manager.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunHandle {
  readonly runId: RunId
  readonly fiber: Fiber.RuntimeFiber<Run, Workflow.ExecuteError>
}

/**
 * Why awaiting a run failed: its execution error, or the recorded end of a run that is not executing here.
 *
 * @since 0.1.0
 * @category models
 */
export type AwaitError =
  | Workflow.ExecuteError
  | RunFailed
  | RunCancelled
  | RunInterrupted
  | InvalidRunState
  | RunNotFound
  | PersistenceError

/**
 * Options of `start` and `resume`: everything of `Workflow.execute` except the lease, which the manager owns.
 *
 * @since 0.1.0
 * @category models
 */
export type ExecutionOptions = Omit<Workflow.ExecuteOptions, "owner" | "leaseMs">

/**
 * The workflow manager.
 *
 * @since 0.1.0
 * @category tags
 */
export class WorkflowManager extends Context.Tag("@quarry/core/WorkflowManager")<WorkflowManager, {
  /** The lease owner id of this manager. */
  readonly owner: string
  /** Creates a run and executes it. While a run with the given id is active here, returns its handle. */
  readonly start: (
    options: Workflow.CreateOptions,
    execution?: ExecutionOptions
  ) => Effect.Effect<RunHandle, Workflow.CreateError>
  /**
   * Executes a stored run from its last checkpoint. While it is active here, returns its handle; a request at
   * another version (`requestedVersion`) waits for that execution's end instead, then executes.
   */
  readonly resume: (runId: RunId, execution?: ExecutionOptions) => Effect.Effect<RunHandle>
  /** Requests cancellation; a run executing here is interrupted and recorded `cancelled`. */
  readonly cancel: (runId: RunId) => Effect.Effect<Run, RunNotFound | InvalidRunState | PersistenceError>
  /** Waits for a run's end: the completed run, or its typed failure. */
  readonly await: (runId: RunId) => Effect.Effect<Run, AwaitError>
  /** Ids of the runs executing here. */
  readonly active: Effect.Effect<ReadonlyArray<RunId>>
  /** Waits until no run executes here. */
  readonly awaitIdle: Effect.Effect<void>
}>() {}

/**
 * Options of the manager.
 *
 * @since 0.1.0
 * @category models
 */
export interface ManagerOptions {
  readonly owner?: string | undefined
  readonly leaseMs?: number | undefined
  /** How many ended runs `await` still reports with their own typed exit (default 1,000; older ones: the store's). */
  readonly recentExits?: number | undefined
}

/**
 * The exits of the runs that ended here most recently, so that `await` after the end still gives a run's typed
 * error (`PlanMismatch`, `RunLocked`, ... are not all in the store, and the store's record is a message, not the
 * error). Bounded: the oldest exit goes first.
 *
 * @since 0.1.0
 * @category models
 */
export interface RecentExits {
  readonly set: (runId: RunId, exit: Exit.Exit<Run, Workflow.ExecuteError>) => void
  readonly get: (runId: RunId) => Option.Option<Exit.Exit<Run, Workflow.ExecuteError>>
}

/**
 * A bounded map of recent exits holding at most `capacity` of them.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeRecentExits = (capacity: number): RecentExits => {
  const exits = new Map<RunId, Exit.Exit<Run, Workflow.ExecuteError>>()
  return {
    set: (runId, exit) => {
      // A Map iterates in insertion order: re-inserting makes this the newest, and the first key is the oldest.
      exits.delete(runId)
      exits.set(runId, exit)
      if (exits.size > capacity) exits.delete(exits.keys().next().value!)
    },
    get: (runId) => Option.fromNullable(exits.get(runId))
  }
}

/** The recorded end of a run that did not end here (or too long ago), as `await` reports it. */
const recorded = (run: Run): Effect.Effect<Run, AwaitError> => {
  switch (run.status) {
    case "completed":
      return Effect.succeed(run)
    case "failed":
      return Effect.fail(
        new RunFailed({
          runId: run.id,
          reason: Option.getOrElse(run.failureReason, () => "error"),
          error: Option.getOrElse(run.lastError, () => "unknown error")
        })
      )
    case "cancelled":
      // A cancel whose undo steps failed reports both, as recorded.
      return Option.contains(run.failureReason, "compensation_failed") ?
        Effect.fail(
          new RunFailed({
            runId: run.id,
            reason: "compensation_failed",
            error: Option.getOrElse(run.lastError, () => "unknown error")
          })
        ) :
        Effect.fail(new RunCancelled({ runId: run.id }))
    case "interrupted":
      return Effect.fail(new RunInterrupted({ runId: run.id }))
    default:
      return Effect.fail(new InvalidRunState({ runId: run.id, status: run.status, expected: "finished" }))
  }
}

/**
 * Builds a manager in the current scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: ManagerOptions = {}) =>
  Effect.gen(function*() {
    const store = yield* RunStore
    const context = yield* Effect.context<Workflow.ExecuteRequirements>()
    const owner = options.owner ?? Workflow.makeOwnerId()
    const runs = yield* FiberMap.make<RunId, Run, Workflow.ExecuteError>()
    const exits = makeRecentExits(options.recentExits ?? 1_000)

    // The version each active execution was requested at (`ExecutionOptions.requestedVersion`).
    const requested = new Map<RunId, number | undefined>()

    // `FiberMap.run` with `onlyIfMissing` hands back an already-interrupted dummy fiber when the key is taken, so the
    // active run's own fiber is looked up before launching, and again after (should another launch have won).
    const launch = (runId: RunId, execution: ExecutionOptions = {}): Effect.Effect<RunHandle> =>
      Effect.gen(function*() {
        const active = FiberMap.unsafeGet(runs, runId)
        if (Option.isSome(active)) {
          const version = execution.requestedVersion
          if (version === undefined || requested.get(runId) === version) return { runId, fiber: active.value }
          // A request at another version (a cluster's `Execute` sent after the run's last end) follows the active
          // execution, which has recorded that end and is winding down: joined, it was answered with that end
          // (`cancelled`), and the run never executed again.
          yield* Fiber.await(active.value)
          return yield* launch(runId, execution)
        }
        requested.set(runId, execution.requestedVersion)
        const fiber = yield* FiberMap.run(
          runs,
          runId,
          Workflow.execute(runId, { ...execution, owner, leaseMs: options.leaseMs }).pipe(
            Effect.provide(context),
            // Kept before the fiber leaves the map, so that no `await` finds neither.
            Effect.onExit((exit) =>
              Effect.sync(() => {
                exits.set(runId, exit)
                requested.delete(runId)
              })
            )
          ),
          { onlyIfMissing: true }
        )
        return { runId, fiber: Option.getOrElse(FiberMap.unsafeGet(runs, runId), () => fiber) }
      })

    const active = Effect.sync(() => Array.from(runs, ([runId]) => runId))

    const start = (createOptions: Workflow.CreateOptions, execution?: ExecutionOptions) =>
      Effect.gen(function*() {
        if (createOptions.runId !== undefined) {
          const existing = yield* FiberMap.get(runs, createOptions.runId).pipe(Effect.option)
          if (Option.isSome(existing)) return { runId: createOptions.runId, fiber: existing.value }
        }
        const run = yield* Workflow.create(createOptions).pipe(Effect.provide(context))
        return yield* launch(run.id, execution)
      })

    const cancel = (runId: RunId) =>
      Effect.gen(function*() {
        yield* store.requestCancel(runId)
        const fiber = yield* FiberMap.get(runs, runId).pipe(Effect.option)
        if (Option.isSome(fiber)) yield* Fiber.interrupt(fiber.value)
        return yield* store.getRun(runId)
      }).pipe(Effect.withSpan("WorkflowManager.cancel", { attributes: { runId } }))

    // Interrupted from outside the run (cancel, shutdown): report what was recorded.
    const ended = (runId: RunId, exit: Exit.Exit<Run, Workflow.ExecuteError>): Effect.Effect<Run, AwaitError> =>
      Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause) ?
        Effect.flatMap(store.getRun(runId), recorded) :
        exit

    const await_ = (runId: RunId) =>
      Option.match(FiberMap.unsafeGet(runs, runId), {
        onSome: (fiber) => Effect.flatMap(Fiber.await(fiber), (exit) => ended(runId, exit)),
        onNone: () =>
          Option.match(exits.get(runId), {
            onSome: (exit) => ended(runId, exit),
            onNone: () => Effect.flatMap(store.getRun(runId), recorded)
          })
      })

    return WorkflowManager.of({
      owner,
      start,
      resume: (runId, execution) => launch(runId, execution),
      cancel,
      await: (runId) => Effect.suspend(() => await_(runId)),
      active,
      awaitIdle: FiberMap.awaitEmpty(runs).pipe(Effect.ignore)
    })
  })

/**
 * The manager as a scoped layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: ManagerOptions = {}
): Layer.Layer<WorkflowManager, never, Workflow.ExecuteRequirements> => Layer.scoped(WorkflowManager, make(options))
