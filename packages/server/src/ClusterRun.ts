/**
 * A run as an `@effect/cluster` entity keyed by its id. `Execute` is persisted (`SqlMessageStorage`): while the run
 * has not ended, the message stays unprocessed, so when its runner dies the shard's next owner receives it again and
 * continues from the last committed batch. `Cancel` is volatile: the cancel flag is already in Quarry's store, the
 * message only interrupts the execution on its owner at once. Quarry's tables stay the source of truth.
 *
 * @since 0.1.0
 */
import * as ClusterSchema from "@effect/cluster/ClusterSchema"
import * as Entity from "@effect/cluster/Entity"
import * as Rpc from "@effect/rpc/Rpc"
import type { PersistenceError } from "@quarry/core/Errors"
import { RunId } from "@quarry/core/Run"
import { RunStore } from "@quarry/core/RunStore"
import type * as Workflow from "@quarry/core/Workflow"
import * as WorkflowManager from "@quarry/core/WorkflowManager"
import * as Cause from "effect/Cause"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as PrimaryKey from "effect/PrimaryKey"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as DatabaseRetry from "./DatabaseRetry.js"
import * as Unstartable from "./Unstartable.js"

const Budget = Schema.Struct({
  maxCostUsd: Schema.optional(Schema.Number),
  maxTokens: Schema.optional(Schema.Number)
})

/**
 * The payload of `Execute`. Its primary key is `key`, the run's creation time and status version when the message
 * was sent, so that sending the same execution twice (the scan of pending runs, two nodes at once) stores one
 * message; a resume after the run ended has another version, and a run created again under a deleted run's id
 * another creation time, hence a new message.
 *
 * @since 0.1.0
 * @category models
 */
export class ExecutePayload extends Schema.Class<ExecutePayload>("@quarry/server/ClusterRun/ExecutePayload")({
  retrySkipped: Schema.optional(Schema.Boolean),
  budget: Schema.optional(Budget),
  key: Schema.String,
  /**
   * The run's status version when the message was sent: a cancel since then wins, and the run is not executed.
   * Optional, so that messages stored by an earlier version still decode.
   */
  version: Schema.optional(Schema.Number),
  /**
   * The run's creation time: a message of a run deleted since, whose id a new run took, is not the new run's request
   * (its budget and options are the deleted run's). Optional, as `version`.
   */
  createdAt: Schema.optional(Schema.Number)
}) {
  /** The message's primary key within its entity (the run). */
  [PrimaryKey.symbol]() {
    return this.key
  }
}

/**
 * Executes the run to its end (completed, failed, cancelled). Persisted, so it survives its runner.
 *
 * @since 0.1.0
 * @category rpcs
 */
export const Execute = Rpc.make("Execute", {
  payload: ExecutePayload,
  success: Schema.Struct({ status: Schema.String })
}).annotate(ClusterSchema.Persisted, true)

/**
 * Interrupts the run's execution on its owner. The cancel flag is set in the store before this is sent, and
 * `version` is the run's status version then: the owner interrupts only an execution still at that version, so a
 * `Cancel` delivered late (after the run ended cancelled and a resume started it again) stops nothing.
 *
 * @since 0.1.0
 * @category rpcs
 */
export const Cancel = Rpc.make("Cancel", {
  payload: { version: Schema.Int },
  success: Schema.Boolean
})

/**
 * The entity.
 *
 * @since 0.1.0
 * @category entities
 */
export const QuarryRun = Entity.make("QuarryRun", [Execute, Cancel])

/** The run stopped, recorded `interrupted`: interrupted, or failed with `RunInterrupted` (a stop from inside it). */
const stopped = (cause: Cause.Cause<unknown>) =>
  Cause.isInterruptedOnly(cause) ||
  Option.exists(Cause.failureOption(cause), (error) => Predicate.isTagged(error, "RunInterrupted"))

/** The run was cancelled: while it executed, or before its claim, after the message was sent (`requestedVersion`). */
const cancelled = (cause: Cause.Cause<unknown>) =>
  Option.exists(Cause.failureOption(cause), (error) => Predicate.isTagged(error, "RunCancelled"))

/** The run's lease was taken over by another runner (this one was paused or cut off past its lease). */
const lost = (cause: Cause.Cause<unknown>) =>
  Option.exists(Cause.failureOption(cause), (error) => Predicate.isTagged(error, "RunLocked"))

/**
 * An execution that failed on the database before its claim: nothing was recorded, so the run is still `pending` (or
 * as it was), and answering the message would leave it so, with its message spent (the scan of runs without a message
 * passes it by). The handler tries it again instead.
 */
class NotStarted extends Data.TaggedError("NotStarted")<{ readonly cause: unknown }> {}

/**
 * An execution whose connection to the database was lost after its claim, beyond the store's retries: the run was
 * recorded `failed` (or stays `running` until its lease expires), every committed batch kept. The handler resumes it
 * (see `DatabaseRetry`) instead of answering.
 */
class ConnectionLost extends Data.TaggedError("ConnectionLost")<{
  readonly cause: PersistenceError
  /** Executions in a row that lost their connection without committing a batch. */
  readonly failuresInARow: number
}> {}

/**
 * Said when a run executing here is refused a write (its commit, its heartbeat) because another runner claimed it:
 * nothing was written; the handler keeps trying to claim it, which succeeds only if the new holder dies too.
 */
const logTakenOver = Effect.logWarning(
  "run taken over by another runner (this one was paused or cut off past " +
    "its lease): its late write was refused, nothing written here"
)

/**
 * What the handler needs to know of the node.
 *
 * @since 0.1.0
 * @category models
 */
export interface HandlerOptions {
  /** This runner (`host:port`), named in what it records. */
  readonly runnerId: string
  /** This runner's artifacts directory: a run's relative output path (`<run>.<ext>`) is written there. */
  readonly artifacts: string
  /** Called when an execution starts and ends here (for `/healthz`, events). */
  readonly onLocal: (runId: RunId, executing: boolean) => Effect.Effect<void>
  /** Called when a run starts and stops waiting for a slot here. */
  readonly onWaiting: (runId: RunId, waiting: boolean) => Effect.Effect<void>
  /**
   * The runner's slots (`--max-active-runs`): an execution takes one for as long as it runs. Waiting in the handler
   * is safe: the `Execute` message is stored, and stays unanswered until the run ends.
   */
  readonly slots: Effect.Semaphore
  /**
   * Completes when the node drains: each run stops right after its next commit (so no extracted batch is lost),
   * records `interrupted`, and its message waits, unanswered, for the shard's next owner.
   */
  readonly draining: Deferred.Deferred<void>
  /**
   * Completes when admission stops before the drain (`--drain-delay`): from then on a message starts no execution
   * here (one that waited for a slot, which a run ending frees) and waits, unanswered, for the shard's next owner.
   */
  readonly stopped: Deferred.Deferred<void>
  /** How long a moving run may take to reach its next commit before it is interrupted at once (default 30 s). */
  readonly stopGraceMs?: number | undefined
  /** How long a claim refused by a live lease (a dead runner's, not yet expired) is retried (default 2 minutes). */
  readonly lockedRetryMs?: number | undefined
}

/**
 * The execution of one run's `Execute` messages on this runner, with the state an entity keeps between them.
 */
const executor = (options: HandlerOptions, runId: RunId) =>
  Effect.gen(function*() {
    const manager = yield* WorkflowManager.WorkflowManager
    const store = yield* RunStore
    // Set when this entity is told to stop (its shard moves): the run stops after its next commit.
    const stopping = yield* Ref.make(false)
    // Set once this runner's claim succeeded: a `RunLocked` after it means another runner took the run over.
    const claimed = yield* Ref.make(false)
    // Executions in a row that lost their connection after their claim, without a batch committed.
    const failuresInARow = yield* Ref.make(0)
    // The execution running here, for `Cancel`.
    const execution = yield* Ref.make(Option.none<Fiber.RuntimeFiber<unknown, unknown>>())
    const stopAfterCommit = (event: Workflow.WorkflowEvent) =>
      event._tag === "RunStarted" ?
        Ref.set(claimed, true) :
        event._tag === "BatchCommitted" ?
        Effect.zipRight(
          Ref.set(failuresInARow, 0),
          Effect.flatMap(
            Effect.zipWith(Deferred.isDone(options.draining), Ref.get(stopping), (a, b) => a || b),
            (stop) => stop ? Effect.interrupt : Effect.void
          )
        ) :
        Effect.void
    // A database failure before the claim, or a lost connection after it, is the handler's to try again.
    const retryable = (error: PersistenceError) =>
      Effect.flatMap(Ref.get(claimed), (ours): Effect.Effect<never, NotStarted | ConnectionLost | PersistenceError> => {
        if (!ours) return Effect.fail(new NotStarted({ cause: error }))
        if (error.reason !== "connection") return Effect.fail(error)
        return Effect.flatMap(
          Ref.updateAndGet(failuresInARow, (n) => n + 1),
          (n) => Effect.fail(new ConnectionLost({ cause: error, failuresInARow: n }))
        )
      })
    const reportTakenOver = (exit: Exit.Exit<unknown, unknown>) =>
      Effect.flatMap(
        Ref.get(claimed),
        (ours) => ours && Exit.isFailure(exit) && lost(exit.cause) ? logTakenOver : Effect.void
      )
    // The creation time of the run stored under this id now, none once it was deleted.
    const createdAtNow = store.getRun(runId).pipe(
      Effect.map((run): number | undefined => run.createdAt),
      Effect.catchTag("RunNotFound", () => Effect.succeed(undefined))
    )
    // A run taken over from a dead runner may still be under its lease: the caller retries `RunLocked`. It also
    // retries `NotStarted` and `ConnectionLost` (see `retryable`).
    const execute = ({ budget, createdAt, retrySkipped, version }: ExecutePayload) =>
      Effect.gen(function*() {
        // A message delivered (or given a slot) while this node drains, or stops admitting before it, waits,
        // unanswered, for the shard's next owner.
        if ((yield* Deferred.isDone(options.draining)) || (yield* Deferred.isDone(options.stopped))) {
          return yield* Effect.never
        }
        if (createdAt !== undefined && (yield* createdAtNow) !== createdAt) {
          yield* Effect.logInfo("the run of this message was deleted since (its id may name a new run): not executed")
          return { status: "deleted" }
        }
        yield* Ref.set(claimed, false)
        const handle = yield* manager.resume(runId, {
          budget,
          retrySkipped,
          requestedVersion: version,
          // The message is the request; a queued row left behind would be executed by a single server's boot.
          dequeue: true,
          onEvent: stopAfterCommit,
          artifactsDir: options.artifacts
        })
        yield* Ref.set(execution, Option.some(handle.fiber))
        yield* options.onLocal(runId, true)
        const exit = yield* Fiber.await(handle.fiber).pipe(
          // The entity is interrupted when its shard moves (SIGTERM, a runner joining): the run stops after its
          // in-flight commit (at most `stopGraceMs` later, else at once), recorded `interrupted`, and the unanswered
          // message goes to the shard's next owner, which continues without extracting a batch again. The wait is
          // interruptible inside this (uninterruptible) handler so that the grace's timeout can end it; without, the
          // timeout waited for the run's next commit however long its batch took.
          Effect.onInterrupt(() =>
            Ref.set(stopping, true).pipe(
              Effect.zipRight(
                Fiber.await(handle.fiber).pipe(Effect.interruptible, Effect.timeout(options.stopGraceMs ?? 30_000))
              ),
              // Its shard moved because this runner was paused: its late commit may be what stopped it.
              Effect.tap(reportTakenOver),
              Effect.catchAll(() => Fiber.interrupt(handle.fiber))
            )
          ),
          Effect.ensuring(Effect.zipRight(Ref.set(execution, Option.none()), options.onLocal(runId, false)))
        )
        // Cancelled while it executed, or before its claim (after the message was sent: it waited for a slot or its
        // shard), when nothing was executed.
        if (Exit.isFailure(exit) && cancelled(exit.cause)) {
          if (!(yield* Ref.get(claimed))) {
            yield* Effect.logInfo("the run was cancelled before this runner claimed it: not executed here")
          }
          return { status: "cancelled" }
        }
        if (Exit.isFailure(exit) && !stopped(exit.cause)) {
          yield* reportTakenOver(exit)
          // Answered once recorded: the run is no longer `pending`, and a resume sends another message.
          const unstartable = Unstartable.errorOf(exit.cause)
          if (unstartable !== undefined) {
            // Its message is answered: the request ends here, row and all.
            yield* Unstartable.record(runId, unstartable, { where: `runner ${options.runnerId}`, dequeue: true })
            return { status: "failed" }
          }
          return yield* Effect.failCause(exit.cause)
        }
        // As recorded (the manager's `await` turns `interrupted` into a failure).
        const run = yield* store.getRun(runId)
        // Stopped by the drain: no reply (an interrupt is only ignored while the entity shuts down, so wait for it),
        // and the message stays for the shard's next owner.
        const ours = (yield* Deferred.isDone(options.draining)) || (yield* Ref.get(stopping))
        if (run.status === "interrupted" && ours) return yield* Effect.never
        return { status: run.status }
      }).pipe(
        Effect.catchTag("PersistenceError", retryable)
      )
    // The fiber before the run: while the run is still `running` at `version`, the execution read is the one
    // that claimed it then (one started since would follow an end, which moves the version on).
    const cancel = (version: number) =>
      Effect.gen(function*() {
        const fiber = yield* Ref.get(execution)
        const run = yield* store.getRun(runId)
        if (Option.isNone(fiber) || run.status !== "running" || run.statusVersion !== version) return false
        yield* Fiber.interrupt(fiber.value)
        return true
      }).pipe(Effect.catchAll(() => Effect.succeed(false)))
    return { execute, cancel }
  })

/**
 * The handlers, executing through the node's `WorkflowManager` (its owner id is the runner's, so the run's lease
 * says which runner executes it).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: HandlerOptions) =>
  QuarryRun.toLayer(
    Effect.gen(function*() {
      const address = yield* Entity.CurrentAddress
      const runId = RunId.make(address.entityId)
      const { cancel, execute } = yield* executor(options, runId)
      const withSlot = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
        Effect.zipRight(
          options.onWaiting(runId, true),
          options.slots.withPermits(1)(Effect.zipRight(options.onWaiting(runId, false), effect))
        ).pipe(Effect.ensuring(options.onWaiting(runId, false)))
      return {
        Execute: (envelope) =>
          withSlot(execute(envelope.payload)).pipe(
            Effect.retry({
              while: (error) => error._tag === "RunLocked",
              schedule: Schedule.spaced(Duration.millis(250)).pipe(
                Schedule.upTo(Duration.millis(options.lockedRetryMs ?? 120_000))
              )
            }),
            // The database failed under the execution before its claim (beyond the store's own retries): again,
            // 250 ms apart and doubling up to 5 s, for as long as it fails. Not bounded: an answer would leave the
            // run `pending` with its message spent, which no scan sends again.
            Effect.tapErrorTag(
              "NotStarted",
              (error) =>
                Effect.logWarning("the execution failed on the database before its claim: trying again", error.cause)
            ),
            Effect.retry({ while: (error) => error._tag === "NotStarted", schedule: DatabaseRetry.schedule }),
            // The connection was lost after the claim: the run resumes from its last checkpoint, within the limit.
            Effect.tapErrorTag("ConnectionLost", (error) =>
              error.failuresInARow > DatabaseRetry.maxFailuresWithoutProgress ?
                Effect.logError(DatabaseRetry.gaveUp) :
                Effect.logWarning(`the database failed the execution, resuming it: ${error.cause.message}`)),
            Effect.retry({
              while: (error) =>
                error._tag === "ConnectionLost" && error.failuresInARow <= DatabaseRetry.maxFailuresWithoutProgress,
              schedule: DatabaseRetry.schedule
            }),
            // The reply is the run's end as recorded; a failure to execute is recorded on the run, not here.
            Effect.catchAll((error) => Effect.as(Effect.logWarning("execution failed", error), { status: "failed" })),
            Effect.annotateLogs({ runId })
          ),
        Cancel: (envelope) =>
          cancel(envelope.payload.version)
      }
    }),
    // Cancel must reach the entity while Execute runs.
    { concurrency: "unbounded" }
  )
