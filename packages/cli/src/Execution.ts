/**
 * Executing a run for `start` and `resume`: progress (a live line on a terminal, JSON-lines events with `--json`),
 * and the report of how it ended, with the command that resumes it.
 *
 * @since 0.1.0
 */
import * as DatabaseUrl from "@quarry/core/DatabaseUrl"
import { BudgetExceeded, DeadlineExceeded } from "@quarry/core/Errors"
import * as Merge from "@quarry/core/Merge"
import type { Run, RunId } from "@quarry/core/Run"
import { RunStore } from "@quarry/core/RunStore"
import * as Workflow from "@quarry/core/Workflow"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Errors from "./Errors.js"
import * as Events from "./Events.js"
import * as ExitCode from "./ExitCode.js"
import * as Flags from "./Flags.js"
import { Output } from "./Output.js"

/**
 * Options of an execution.
 *
 * @since 0.1.0
 * @category models
 */
export interface ExecutionOptions {
  readonly db: string
  readonly json: boolean
  readonly leaseMs: number
  /** Budget and deadline of this execution (not stored with the run). */
  readonly limits?: Flags.Limits | undefined
  /** Re-extract the batches skipped under the `skip` policy. */
  readonly retrySkipped?: boolean | undefined
  /** Extractor options a resume needs again, for the suggested resume command (`--base-url URL`). */
  readonly extractorArgs?: ReadonlyArray<string> | undefined
  /** TEST-ONLY (`QUARRY_TEST_SHUTDOWN_DELAY_MS`): a pause after an interruption, before it is reported. */
  readonly shutdownDelayMs?: number | undefined
}

/** Errors raised before the run is claimed: nothing was written, they keep their own exit codes. */
const beforeClaim = new Set([
  "RunNotFound",
  "RunLocked",
  "PlanMismatch",
  "InputMismatch",
  "UnknownExtractor",
  "OntologyError",
  "ChunkingError"
])

const tagOf = (u: unknown): string | undefined =>
  typeof u === "object" && u !== null && "_tag" in u && typeof u._tag === "string" ? u._tag : undefined

const messageOf = (u: unknown): string => u instanceof Error ? u.message : String(u)

/**
 * Executes a stored run to its end and reports it. Fails with `CommandFailed` (exit 1 or 5) when the run failed or
 * was cancelled, after printing how to resume it; an interruption (signal) records the run `interrupted`, prints
 * how to resume it and stays an interruption (exit 130).
 *
 * @since 0.1.0
 * @category execution
 */
export const execute = (runId: RunId, options: ExecutionOptions) =>
  Effect.gen(function*() {
    const output = yield* Output
    const store = yield* RunStore
    const extractorArgs = options.extractorArgs ?? []
    const limitArgs = options.limits?.args ?? []
    // The same limits again: a resume without them would run unbounded.
    const hint = Flags.resumeCommand(runId, options.db, [...extractorArgs, ...limitArgs])
    const startedAt = yield* Clock.currentTimeMillis
    const state = { started: false, total: 0, committed: 0, atStart: 0, entities: 0, lastDraw: 0 }

    const emit = (event: Events.EventName, fields: Readonly<Record<string, unknown>> = {}) =>
      options.json ?
        Effect.flatMap(Clock.currentTimeMillis, (now) => output.out(Events.encode(event, now, { runId, ...fields }))) :
        Effect.void

    const status = (line: string) =>
      options.json ? Effect.void : Option.match(output.status, { onNone: () => Effect.void, onSome: (f) => f(line) })

    const draw = (force: boolean) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        if (!force && now - state.lastDraw < 100) return
        state.lastDraw = now
        yield* status(Events.progressLine({
          committed: state.committed,
          total: state.total,
          committedAtStart: state.atStart,
          elapsedMs: now - startedAt,
          entityMentions: state.entities
        }))
      })

    const onEvent = (event: Workflow.WorkflowEvent): Effect.Effect<void> => {
      switch (event._tag) {
        case "RunStarted": {
          state.started = true
          state.total = event.totalBatches
          state.committed = event.committedBatches
          state.atStart = event.committedBatches
          return Effect.gen(function*() {
            const run = yield* store.getRun(runId).pipe(Effect.option)
            state.entities = Option.match(run, { onNone: () => 0, onSome: (r) => r.entityMentions })
            const retrying = options.retrySkipped === true ?
              Option.match(run, { onNone: () => 0, onSome: (r) => r.skippedBatches }) :
              0
            const out = Option.match(run, {
              onNone: () => ({}),
              onSome: (r) => ({ output: { path: r.plan.outputPath, format: r.plan.outputFormat } })
            })
            yield* emit("run.started", {
              db: DatabaseUrl.redact(options.db),
              totalBatches: event.totalBatches,
              committedBatches: event.committedBatches,
              ...(options.retrySkipped === true ? { retryingSkippedBatches: retrying } : {}),
              ...out
            })
            if (!options.json) {
              yield* output.err(
                retrying > 0 ?
                  `quarry: run ${runId}: retrying ${Events.plural(retrying, "skipped batch", "skipped batches")}` :
                  event.committedBatches === 0 ?
                  `quarry: run ${runId}: ${Events.plural(event.totalBatches, "batch", "batches")}` :
                  `quarry: run ${runId}: resuming at batch ${event.committedBatches}/${event.totalBatches}`
              )
            }
            yield* draw(true)
          })
        }
        case "BatchCommitted":
          state.committed = event.committedBatches
          state.entities = event.entityMentions
          return Effect.zipRight(
            emit("batch.committed", {
              batchIndex: event.batchIndex,
              committedBatches: event.committedBatches,
              totalBatches: event.totalBatches,
              entityMentions: event.entityMentions,
              relations: event.relations
            }),
            draw(event.committedBatches === event.totalBatches)
          )
        case "MergeStarted":
          return Effect.zipRight(
            emit("merge.started"),
            status(`merging ${Events.plural(state.total, "batch", "batches")}...`)
          )
      }
    }

    const current = store.getRun(runId).pipe(Effect.option)
    const progressOf = (run: Option.Option<Run>) =>
      Option.match(run, {
        onNone: () => `${state.committed}/${state.total}`,
        onSome: (r) => `${r.committedBatches}/${r.plan.totalBatches}`
      })

    const interrupted = Effect.gen(function*() {
      if (options.shutdownDelayMs !== undefined) yield* Effect.sleep(options.shutdownDelayMs)
      yield* status("")
      const run = yield* current
      yield* emit("run.interrupted", {
        ...Option.match(run, { onNone: () => ({}), onSome: Events.progressJson }),
        resume: hint
      })
      yield* output.err(
        `quarry: run ${runId} interrupted after ${progressOf(run)} batches; every committed batch is kept. ` +
          `Resume it with: ${hint}`
      )
    })

    const completed = (run: Run) =>
      Effect.gen(function*() {
        yield* status("")
        const now = yield* Clock.currentTimeMillis
        const artifact = Option.getOrUndefined(run.artifact)
        const manifest = artifact !== undefined && run.skippedBatches > 0 ?
          Merge.manifestPath(artifact.path) :
          undefined
        yield* emit("run.completed", {
          ...Events.progressJson(run),
          durationMs: now - startedAt,
          alreadyCompleted: !state.started,
          artifact: artifact === undefined ? null : Events.artifactJson(artifact),
          manifest: manifest ?? null
        })
        if (options.json) return run
        yield* output.out(
          state.started ?
            `run ${runId} completed: ${run.committedBatches}/${run.plan.totalBatches} batches, ` +
            `${run.entityMentions} entity mentions, ${run.relations} relations in ${
              Events.formatDuration(now - startedAt)
            }` :
            `run ${runId} was already completed: ${run.committedBatches}/${run.plan.totalBatches} batches, ` +
            `${run.entityMentions} entity mentions, ${run.relations} relations`
        )
        if (artifact !== undefined) {
          yield* output.out(
            `artifact ${artifact.path} (${artifact.format}, ${artifact.bytes} bytes, sha256 ${artifact.sha256})`
          )
        }
        if (run.usage.requests > 0) yield* output.out(`usage ${Events.usageText(run.usage)}`)
        if (manifest !== undefined) {
          yield* output.out(
            `${Events.plural(run.skippedBatches, "batch was", "batches were")} skipped (--on-batch-error skip), ` +
              `so the artifact is partial; they are listed in ${manifest}. Retry them with: ` +
              `${Flags.resumeCommand(runId, options.db, [...extractorArgs, ...limitArgs, "--retry-skipped"])}`
          )
        }
        return run
      })

    const ended = (error: unknown) =>
      Effect.gen(function*() {
        yield* status("")
        const run = yield* current
        if (tagOf(error) === "RunCancelled") {
          yield* emit("run.cancelled", {
            ...Option.match(run, { onNone: () => ({}), onSome: Events.progressJson }),
            resume: hint
          })
          return yield* new Errors.RunEnded({
            exitCode: ExitCode.cancelled,
            message: `run ${runId} was cancelled after ${progressOf(run)} batches (quarry cancel); every ` +
              `committed batch is kept. Resume it with: ${hint}`
          })
        }
        // The reason the run was recorded with (budget, deadline, the error's tag, defect).
        const reason = Option.getOrElse(
          Option.flatMap(run, (r) => r.failureReason),
          () => tagOf(error) ?? "defect"
        )
        const progress = Option.match(run, { onNone: () => ({}), onSome: Events.progressJson })
        if (error instanceof BudgetExceeded) {
          const flag = error.limit === "cost" ? "--max-cost" : "--max-tokens"
          const others = Flags.withoutOption(limitArgs, flag)
          const resume = Flags.resumeCommand(runId, options.db, [
            ...extractorArgs,
            ...others,
            flag,
            error.limit === "cost" ? "<USD>" : "<N>"
          ])
          const [spent, max] = error.limit === "cost" ?
            [`$${error.spent.toFixed(4)}`, `$${error.max}`] :
            [`${error.spent} tokens`, `${error.max} tokens`]
          yield* emit("run.failed", {
            ...progress,
            reason,
            error: messageOf(error),
            budget: { limit: error.limit, spent: error.spent, max: error.max },
            resume
          })
          return yield* new Errors.RunEnded({
            exitCode: ExitCode.runFailed,
            message: `run ${runId} stopped after ${progressOf(run)} batches before exceeding its budget: spent ` +
              `${spent} of ${flag} ${max}, and the next batch would go over. Every committed batch is kept; resume ` +
              `it with a higher budget: ${resume}`
          })
        }
        if (error instanceof DeadlineExceeded) {
          const resume = Flags.resumeCommand(runId, options.db, [
            ...extractorArgs,
            ...Flags.withoutOption(limitArgs, "--deadline")
          ])
          yield* emit("run.failed", {
            ...progress,
            reason,
            error: messageOf(error),
            deadlineMs: error.deadlineMs,
            resume
          })
          return yield* new Errors.RunEnded({
            exitCode: ExitCode.runFailed,
            message: `run ${runId} stopped at its deadline (${Events.formatDuration(error.deadlineMs)}) after ` +
              `${progressOf(run)} batches. Every committed batch is kept; resume it (with a longer --deadline, or ` +
              `none): ${resume}`
          })
        }
        // A full or read-only disk can also refuse the record of the failure: the lease then has to run out.
        const unrecorded = Option.exists(run, (r) => r.status === "running")
        yield* emit("run.failed", {
          ...progress,
          reason,
          error: messageOf(error),
          ...(unrecorded ? { recorded: false } : {}),
          resume: hint
        })
        return yield* new Errors.RunEnded({
          exitCode: ExitCode.runFailed,
          message: `run ${runId} failed after ${progressOf(run)} batches: ${messageOf(error)}. Every committed ` +
            `batch is kept; ${
              unrecorded ?
                "the failure could not be recorded, so the run still shows running until its lease expires; " :
                ""
            }fix the cause, then resume it with: ${hint}`
        })
      })

    return yield* Workflow.execute(runId, {
      leaseMs: options.leaseMs,
      onEvent,
      budget: options.limits?.budget,
      deadlineMs: options.limits?.deadlineMs,
      retrySkipped: options.retrySkipped
    }).pipe(
      Effect.onInterrupt(() => interrupted),
      Effect.catchAllCause((cause): Effect.Effect<never, Workflow.ExecuteError | Errors.RunEnded> => {
        if (Cause.isInterruptedOnly(cause)) return Effect.interrupt
        const failure = Cause.failureOption(cause)
        if (Option.isSome(failure)) {
          return beforeClaim.has(tagOf(failure.value) ?? "") ? Effect.fail(failure.value) : ended(failure.value)
        }
        // The stack trace only at debug level (--log-level debug): the message below says what happened.
        return Effect.zipRight(Effect.logDebug("the run died", cause), ended(Cause.squash(cause)))
      }),
      Effect.flatMap(completed)
    )
  })

/**
 * With `--json`, reports an error that ends a command before (or instead of) a run's own terminal event as an
 * `error` event on stdout, so that every `--json` execution ends with one terminal event.
 *
 * @since 0.1.0
 * @category execution
 */
export const reportErrorsAsJson = (json: boolean) => <A, E, R>(self: Effect.Effect<A, E, R>) =>
  json ?
    Effect.tapError(self, (error) =>
      error instanceof Errors.RunEnded ? Effect.void : Effect.gen(function*() {
        const output = yield* Output
        const now = yield* Clock.currentTimeMillis
        yield* output.out(Events.encode("error", now, {
          exitCode: ExitCode.fromError(error),
          error: Errors.nameOf(error),
          message: Option.getOrElse(Errors.describe(error, now), () => messageOf(error))
        }))
      })) :
    self
