/**
 * Executing a run for `start` and `resume`: progress (a live line on a terminal, JSON-lines events with `--json`),
 * and the report of how it ended, with the command that resumes it.
 *
 * @since 0.1.0
 */
import { CompensationFailed } from "@quarry/core/Compensation"
import * as DatabaseUrl from "@quarry/core/DatabaseUrl"
import { BudgetExceeded, DeadlineExceeded, estimateText } from "@quarry/core/Errors"
import * as Extractor from "@quarry/core/Extractor"
import * as Merge from "@quarry/core/Merge"
import type { Run, RunId } from "@quarry/core/Run"
import { RunStore } from "@quarry/core/RunStore"
import * as Workflow from "@quarry/core/Workflow"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
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
  /** Budget (kept with the run when given) and deadline (this execution's only). */
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

const runIdOf = (u: unknown): string | undefined =>
  typeof u === "object" && u !== null && "runId" in u && typeof u.runId === "string" ? u.runId : undefined

const messageOf = (u: unknown): string => u instanceof Error ? u.message : String(u)

/** What the reporting of one execution shares: where it writes, what it knows so far, how to resume. */
interface Reporter {
  readonly runId: RunId
  readonly options: ExecutionOptions
  readonly output: Output["Type"]
  readonly store: RunStore["Type"]
  readonly startedAt: number
  readonly extractorArgs: ReadonlyArray<string>
  readonly limitArgs: ReadonlyArray<string>
  /** The command that resumes the run, with the same limits: a resume without them would run unbounded. */
  readonly hint: string
  /** The command that retries its skipped batches (printed, and written into their manifest). */
  readonly retryHint: string
  readonly state: {
    started: boolean
    total: number
    committed: number
    atStart: number
    entities: number
    lastDraw: number
  }
}

const makeReporter = (runId: RunId, options: ExecutionOptions) =>
  Effect.gen(function*() {
    const extractorArgs = options.extractorArgs ?? []
    const limitArgs = options.limits?.args ?? []
    const reporter: Reporter = {
      runId,
      options,
      output: yield* Output,
      store: yield* RunStore,
      startedAt: yield* Clock.currentTimeMillis,
      extractorArgs,
      limitArgs,
      hint: Flags.resumeCommand(runId, options.db, [...extractorArgs, ...limitArgs]),
      retryHint: Flags.resumeCommand(runId, options.db, [...extractorArgs, ...limitArgs, "--retry-skipped"]),
      state: { started: false, total: 0, committed: 0, atStart: 0, entities: 0, lastDraw: 0 }
    }
    return reporter
  })

/** A JSON-lines event (with `--json` only). */
const emit = (r: Reporter, event: Events.EventName, fields: Readonly<Record<string, unknown>> = {}) =>
  r.options.json ?
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      r.output.out(Events.encode(event, now, { runId: r.runId, ...fields }))) :
    Effect.void

/** The live status line (on a terminal, without `--json`). */
const status = (r: Reporter, line: string) =>
  r.options.json ? Effect.void : Option.match(r.output.status, { onNone: () => Effect.void, onSome: (f) => f(line) })

/** Redraws the progress line, at most every 100 ms unless `force`. */
const draw = (r: Reporter, force: boolean) =>
  Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    if (!force && now - r.state.lastDraw < 100) return
    r.state.lastDraw = now
    yield* status(
      r,
      Events.progressLine({
        committed: r.state.committed,
        total: r.state.total,
        committedAtStart: r.state.atStart,
        elapsedMs: now - r.startedAt,
        entityMentions: r.state.entities
      })
    )
  })

const current = (r: Reporter) => r.store.getRun(r.runId).pipe(Effect.option)

const progressOf = (r: Reporter, run: Option.Option<Run>) =>
  Option.match(run, {
    onNone: () => `${r.state.committed}/${r.state.total}`,
    onSome: (run) => `${run.committedBatches}/${run.plan.totalBatches}`
  })

const progressFields = (run: Option.Option<Run>) =>
  Option.match(run, { onNone: () => ({}), onSome: Events.progressJson })

/** `RunStarted`: the `run.started` event, and on stderr what this execution will do. */
const runStarted = (r: Reporter, event: Extract<Workflow.WorkflowEvent, { _tag: "RunStarted" }>) => {
  r.state.started = true
  r.state.total = event.totalBatches
  r.state.committed = event.committedBatches
  r.state.atStart = event.committedBatches
  return Effect.gen(function*() {
    const run = yield* current(r)
    r.state.entities = Option.match(run, { onNone: () => 0, onSome: (run) => run.entityMentions })
    const retrySkipped = r.options.retrySkipped === true
    const retrying = retrySkipped ? Option.match(run, { onNone: () => 0, onSome: (run) => run.skippedBatches }) : 0
    yield* emit(r, "run.started", {
      db: DatabaseUrl.redact(r.options.db),
      totalBatches: event.totalBatches,
      committedBatches: event.committedBatches,
      ...(retrySkipped ? { retryingSkippedBatches: retrying } : {}),
      ...Option.match(run, {
        onNone: () => ({}),
        onSome: (run) => ({ output: { path: run.plan.outputPath, format: run.plan.outputFormat } })
      })
    })
    if (!r.options.json) {
      yield* r.output.err(
        retrying > 0 ?
          `quarry: run ${r.runId}: retrying ${Events.plural(retrying, "skipped batch", "skipped batches")}` :
          event.committedBatches === 0 ?
          `quarry: run ${r.runId}: ${Events.plural(event.totalBatches, "batch", "batches")}` :
          `quarry: run ${r.runId}: resuming at batch ${event.committedBatches}/${event.totalBatches}`
      )
    }
    yield* draw(r, true)
  })
}

/**
 * The extractor waits (an endpoint's rate limit): a line on stderr, so that a wait does not pass for a hang, and the
 * progress line again below it.
 */
const extractorWaiting = (r: Reporter, event: Extract<Workflow.WorkflowEvent, { _tag: "ExtractorWaiting" }>) => {
  const message = Extractor.waitMessage(event.wait)
  return r.options.json ?
    emit(r, "extractor.waiting", {
      batchIndex: event.batchIndex,
      reason: event.wait.reason,
      endpoint: event.wait.endpoint,
      waitMs: Math.round(event.wait.millis),
      message
    }) :
    Effect.zipRight(r.output.err(`quarry: run ${r.runId}: ${message}`), draw(r, true))
}

/** The workflow's progress events as events and the progress line. */
const onEvent = (r: Reporter) => (event: Workflow.WorkflowEvent): Effect.Effect<void> => {
  switch (event._tag) {
    case "RunStarted":
      return runStarted(r, event)
    case "BatchCommitted":
      r.state.committed = event.committedBatches
      r.state.entities = event.entityMentions
      return Effect.zipRight(
        emit(r, "batch.committed", {
          batchIndex: event.batchIndex,
          committedBatches: event.committedBatches,
          totalBatches: event.totalBatches,
          entityMentions: event.entityMentions,
          relations: event.relations
        }),
        draw(r, event.committedBatches === event.totalBatches)
      )
    case "ExtractorWaiting":
      return extractorWaiting(r, event)
    case "MergeStarted":
      return Effect.zipRight(
        emit(r, "merge.started"),
        status(r, `merging ${Events.plural(r.state.total, "batch", "batches")}...`)
      )
  }
}

/** A signal stopped the run: say where it stopped and how to resume it. */
const interrupted = (r: Reporter) =>
  Effect.gen(function*() {
    if (r.options.shutdownDelayMs !== undefined) yield* Effect.sleep(r.options.shutdownDelayMs)
    yield* status(r, "")
    const run = yield* current(r)
    yield* emit(r, "run.interrupted", { ...progressFields(run), resume: r.hint })
    yield* r.output.err(
      `quarry: run ${r.runId} interrupted after ${progressOf(r, run)} batches; every committed batch is kept. ` +
        `Resume it with: ${r.hint}`
    )
  })

/** The run completed (now, or before this execution): the `run.completed` event or the summary lines. */
const completed = (r: Reporter) => (run: Run) =>
  Effect.gen(function*() {
    yield* status(r, "")
    const now = yield* Clock.currentTimeMillis
    const artifact = Option.getOrUndefined(run.artifact)
    const manifest = artifact !== undefined && run.skippedBatches > 0 ? Merge.manifestPath(artifact.path) : undefined
    yield* emit(r, "run.completed", {
      ...Events.progressJson(run),
      durationMs: now - r.startedAt,
      alreadyCompleted: !r.state.started,
      artifact: artifact === undefined ? null : Events.artifactJson(artifact),
      manifest: manifest ?? null
    })
    if (r.options.json) return run
    const counts = `${run.committedBatches}/${run.plan.totalBatches} batches, ${run.entityMentions} entity mentions, ` +
      `${run.relations} relations`
    yield* r.output.out(
      r.state.started ?
        `run ${r.runId} completed: ${counts} in ${Events.formatDuration(now - r.startedAt)}` :
        `run ${r.runId} was already completed: ${counts}`
    )
    if (artifact !== undefined) {
      yield* r.output.out(
        `artifact ${artifact.path} (${artifact.format}, ${artifact.bytes} bytes, sha256 ${artifact.sha256})`
      )
    }
    if (run.usage.requests > 0) yield* r.output.out(`usage ${Events.usageText(run.usage)}`)
    if (manifest !== undefined) {
      const one = run.skippedBatches === 1
      yield* r.output.out(
        `${Events.plural(run.skippedBatches, "batch was", "batches were")} skipped (--on-batch-error skip), ` +
          `so the artifact is partial; ${one ? "it is" : "they are"} listed in ${manifest}. ` +
          `Retry ${one ? "it" : "them"} with: ${r.retryHint}`
      )
    }
    return run
  })

/** `quarry cancel` stopped the run (exit 5). */
const cancelled = (r: Reporter, run: Option.Option<Run>) =>
  Effect.gen(function*() {
    yield* emit(r, "run.cancelled", { ...progressFields(run), resume: r.hint })
    return yield* new Errors.RunEnded({
      exitCode: ExitCode.cancelled,
      message: `run ${r.runId} was cancelled after ${progressOf(r, run)} batches (quarry cancel); every ` +
        `committed batch is kept. Resume it with: ${r.hint}`
    })
  })

/**
 * The run was cancelled and some of its compensation steps failed (exit 1): a cancel, with the command that runs the
 * failed steps again once their cause is fixed.
 */
const cancelledWithFailedSteps = (r: Reporter, run: Option.Option<Run>, error: CompensationFailed) =>
  Effect.gen(function*() {
    const purge = `quarry cancel ${r.runId} --purge${Errors.dbFlag(r.options.db)}`
    yield* emit(r, "run.cancelled", {
      ...progressFields(run),
      compensation: "compensation_failed",
      failedSteps: error.failures,
      purge,
      resume: r.hint
    })
    const steps = error.failures.map((f) => `${f.step} (${f.error})`).join("; ")
    return yield* new Errors.RunEnded({
      exitCode: ExitCode.runFailed,
      message: `run ${r.runId} was cancelled after ${progressOf(r, run)} batches (quarry cancel), but ` +
        `${error.failures.length} of its compensation steps failed: ${steps}. Fix the cause, then run them again: ` +
        `${purge}. Every committed batch is kept.`
    })
  })

/** How the run stopped against `flag`: before its first, estimated batch, over the budget, or before its next batch. */
const overBudgetReason = (r: Reporter, run: Option.Option<Run>, error: BudgetExceeded, flag: string) => {
  const [spent, max] = error.limit === "cost" ?
    [`$${error.spent.toFixed(4)}`, `$${error.max}`] :
    [`${error.spent} tokens`, `${error.max} tokens`]
  if (error.estimate !== undefined) {
    return `stopped before its first batch, which the extractor estimates at ` +
      `${estimateText(error.limit, error.estimate)}, more than ${flag} ${max}; nothing was spent on it`
  }
  const why = error.spent > error.max ?
    `over its budget: spent ${spent} of ${flag} ${max} (a batch's cost is known once it is answered, so the ` +
    `first one, or one costlier than those before it, can go over)` :
    `before exceeding its budget: spent ${spent} of ${flag} ${max}, and the next batch would go over`
  return `stopped after ${progressOf(r, run)} batches ${why}`
}

/** The run stopped before its next batch would go over `--max-cost` or `--max-tokens` (exit 1). */
const overBudget = (r: Reporter, run: Option.Option<Run>, reason: string, error: BudgetExceeded) =>
  Effect.gen(function*() {
    const flag = error.limit === "cost" ? "--max-cost" : "--max-tokens"
    const resume = Flags.resumeCommand(r.runId, r.options.db, [
      ...r.extractorArgs,
      ...Flags.withoutOption(r.limitArgs, flag),
      flag,
      error.limit === "cost" ? "<USD>" : "<N>"
    ])
    yield* emit(r, "run.failed", {
      ...progressFields(run),
      reason,
      error: messageOf(error),
      budget: {
        limit: error.limit,
        spent: error.spent,
        max: error.max,
        ...(error.estimate === undefined ? {} : { estimate: error.estimate })
      },
      resume
    })
    return yield* new Errors.RunEnded({
      exitCode: ExitCode.runFailed,
      message: `run ${r.runId} ${overBudgetReason(r, run, error, flag)}. ${
        error.estimate === undefined ? "Every committed batch is kept; resume" : "Resume"
      } it with a higher budget: ${resume}`
    })
  })

/** The run reached `--deadline` (exit 1). */
const pastDeadline = (r: Reporter, run: Option.Option<Run>, reason: string, error: DeadlineExceeded) =>
  Effect.gen(function*() {
    const resume = Flags.resumeCommand(r.runId, r.options.db, [
      ...r.extractorArgs,
      ...Flags.withoutOption(r.limitArgs, "--deadline")
    ])
    yield* emit(r, "run.failed", {
      ...progressFields(run),
      reason,
      error: messageOf(error),
      deadlineMs: error.deadlineMs,
      resume
    })
    return yield* new Errors.RunEnded({
      exitCode: ExitCode.runFailed,
      message: `run ${r.runId} stopped at its deadline (${Events.formatDuration(error.deadlineMs)}) after ` +
        `${progressOf(r, run)} batches. Every committed batch is kept; resume it (with a longer --deadline, or ` +
        `none): ${resume}`
    })
  })

/** Any other failure (exit 1). */
const failed = (r: Reporter, run: Option.Option<Run>, reason: string, error: unknown) =>
  Effect.gen(function*() {
    // A full or read-only disk can also refuse the record of the failure: the lease then has to run out.
    const unrecorded = Option.exists(run, (run) => run.status === "running")
    // Its own suggestions (`quarry doctor`, `quarry cancel x --purge`) with this run's --db.
    const message = Errors.describe(error, yield* Clock.currentTimeMillis, r.options.db)
    yield* emit(r, "run.failed", {
      ...progressFields(run),
      reason,
      error: message,
      ...(unrecorded ? { recorded: false } : {}),
      resume: r.hint
    })
    return yield* new Errors.RunEnded({
      exitCode: ExitCode.runFailed,
      // The error's own message may end its sentence (a provider's text often does).
      message:
        `run ${r.runId} failed after ${progressOf(r, run)} batches: ${message.replace(/\.+$/, "")}. Every committed ` +
        `batch is kept; ${
          unrecorded ?
            "the failure could not be recorded, so the run still shows running until its lease expires; " :
            ""
        }fix the cause, then resume it with: ${r.hint}`
    })
  })

/** The run ended without completing: report it with the command that resumes it, as `RunEnded`. */
const ended = (r: Reporter) => (error: unknown): Effect.Effect<never, Errors.RunEnded> =>
  Effect.gen(function*() {
    yield* status(r, "")
    const run = yield* current(r)
    if (tagOf(error) === "RunCancelled") return yield* cancelled(r, run)
    if (error instanceof CompensationFailed) return yield* cancelledWithFailedSteps(r, run, error)
    // The reason the run was recorded with (budget, deadline, the error's tag, defect).
    const reason = Option.getOrElse(Option.flatMap(run, (run) => run.failureReason), () => tagOf(error) ?? "defect")
    if (error instanceof BudgetExceeded) return yield* overBudget(r, run, reason, error)
    if (error instanceof DeadlineExceeded) return yield* pastDeadline(r, run, reason, error)
    return yield* failed(r, run, reason, error)
  })

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
    const r = yield* makeReporter(runId, options)
    return yield* Workflow.execute(runId, {
      leaseMs: options.leaseMs,
      onEvent: onEvent(r),
      budget: options.limits?.budget,
      deadlineMs: options.limits?.deadlineMs,
      retrySkipped: options.retrySkipped,
      retryCommand: r.retryHint
    }).pipe(
      Effect.onInterrupt(() => interrupted(r)),
      Effect.catchAllCause((cause): Effect.Effect<never, Workflow.ExecuteError | Errors.RunEnded> => {
        if (Cause.isInterruptedOnly(cause)) return Effect.interrupt
        const failure = Cause.failureOption(cause)
        if (Option.isSome(failure)) {
          return beforeClaim.has(tagOf(failure.value) ?? "") ? Effect.fail(failure.value) : ended(r)(failure.value)
        }
        // The stack trace only at debug level (--log-level debug): the message below says what happened.
        return Effect.zipRight(Effect.logDebug("the run died", cause), ended(r)(Cause.squash(cause)))
      }),
      Effect.flatMap(completed(r))
    )
  })

/**
 * How far a command got before its run's execution: the run's id once known, and whether the execution began.
 *
 * @since 0.1.0
 * @category models
 */
export interface BeforeExecution {
  runId: string | undefined
  executing: boolean
}

/**
 * Says so when a signal stops the command before its run's execution began (the execution reports its own, as
 * `run.interrupted`): on stderr, and as the `error` event that ends `--json` output. It exited 130 in silence.
 *
 * @since 0.1.0
 * @category reporting
 */
export const reportInterruptBefore =
  (json: boolean, progress: BeforeExecution) => <A, E, R>(self: Effect.Effect<A, E, R>) =>
    Effect.onInterrupt(self, () =>
      progress.executing ? Effect.void : Effect.gen(function*() {
        const output = yield* Output
        const runId = progress.runId
        const invocation = yield* FiberRef.get(Errors.currentInvocation)
        const db = Errors.dbFlag(Option.match(invocation, { onNone: () => "", onSome: (i) => i.db }))
        const message = runId === undefined ?
          "interrupted before the run was created; nothing was stored" :
          `interrupted before run ${runId} started executing; nothing was extracted (if \`quarry runs${db}\` lists ` +
          `it, \`quarry resume ${runId}${db}\` runs it)`
        yield* output.err(`quarry: ${message}`)
        if (json) {
          const now = yield* Clock.currentTimeMillis
          yield* output.out(Events.encode("error", now, {
            ...(runId === undefined ? {} : { runId }),
            exitCode: ExitCode.interrupted,
            error: "Interrupted",
            message
          }))
        }
      }))

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
        const invocation = Option.getOrUndefined(yield* FiberRef.get(Errors.currentInvocation))
        // The run the error is about, else the one the command was given.
        const runId = runIdOf(error) ?? Option.getOrUndefined(invocation?.runId ?? Option.none())
        yield* output.out(Events.encode("error", now, {
          ...(runId === undefined ? {} : { runId }),
          exitCode: ExitCode.fromError(error),
          error: Errors.nameOf(error),
          message: Errors.describe(error, now, invocation?.db)
        }))
      })) :
    self
