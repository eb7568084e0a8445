/**
 * One run's program. `create` plans and stores a run; `execute` is the single code path for start and resume:
 * it reads the stored plan, skips committed batches, extracts the rest with bounded concurrency, commits them in
 * order and merges the artifact.
 *
 * @since 0.1.0
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { randomBytes } from "node:crypto"
import * as os from "node:os"
import * as Chunking from "./Chunking.js"
import * as CrashPoint from "./CrashPoint.js"
import {
  BudgetExceeded,
  DeadlineExceeded,
  type ExtractorError,
  InputMismatch,
  PlanMismatch,
  RunCancelled
} from "./Errors.js"
import * as Extractor from "./Extractor.js"
import * as FairScheduler from "./FairScheduler.js"
import { entityIri, sha256 } from "./internal/entities.js"
import * as Merge from "./Merge.js"
import * as Ontology from "./Ontology.js"
import { type BatchErrorPolicy, ExtractorIdentity, type OutputFormat, type Run, RunId, UsageTotals } from "./Run.js"
import { keepLease, knownEntitiesReader, type LeaseHolder, RunStore } from "./RunStore.js"

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
   * attempt, also attempts lost to earlier crashes. Not part of the plan: resume with a higher budget.
   */
  readonly budget?: {
    readonly maxCostUsd?: number | undefined
    readonly maxTokens?: number | undefined
  } | undefined
  /** Stop the execution (status `failed`, reason `deadline`) when it runs longer than this. */
  readonly deadlineMs?: number | undefined
  /** Re-extract the batches that were skipped under the `skip` policy (reopens a completed run). */
  readonly retrySkipped?: boolean | undefined
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
}

/**
 * The default lease length.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultLeaseMs = 30_000

/**
 * A lease owner id naming this host and process, unique per call.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeOwnerId = (): string => `${os.hostname()}:${process.pid}:${randomBytes(4).toString("hex")}`

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

/**
 * Validates options, plans the batches and stores the run with its input and plan in one transaction.
 * Nothing is written when any option is invalid.
 *
 * @since 0.1.0
 * @category operations
 */
export const create = Effect.fn("Workflow.create")(function*(options: CreateOptions) {
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
    provenance: options.provenance ?? false
  })
})

const emptyOutput: Extractor.BatchOutput = { entities: [], relations: [] }

/** Everything `execute` checks before it writes anything. */
const prepare = Effect.fn("Workflow.prepare")(function*(run: Run) {
  const store = yield* RunStore
  const registry = yield* Extractor.Registry
  const { plan } = run
  const extractor = yield* registry.get(plan.extractor.name)
  const mismatch = (field: string, stored: string, current: string) =>
    new PlanMismatch({ runId: run.id, field, stored, current })
  if (extractor.version !== plan.extractor.version) {
    return yield* mismatch(`extractor ${extractor.name} version`, plan.extractor.version, extractor.version)
  }
  if (extractor.configHash !== plan.extractor.configHash) {
    // The hash decides; a setting that changed names what did.
    const current = extractor.settings ?? {}
    const show = (value: string | number | boolean | undefined) => value === undefined ? "unset" : String(value)
    const changed = [...new Set([...Object.keys(plan.extractor.settings), ...Object.keys(current)])].sort()
      .find((key) => plan.extractor.settings[key] !== current[key])
    if (changed !== undefined) {
      return yield* mismatch(
        `extractor ${extractor.name} setting ${changed}`,
        show(plan.extractor.settings[changed]),
        show(current[changed])
      )
    }
    return yield* mismatch(
      `extractor ${extractor.name} configuration`,
      plan.extractor.configHash,
      extractor.configHash
    )
  }
  if (plan.chunkerVersion !== Chunking.chunkerVersion) {
    return yield* mismatch("chunker version", plan.chunkerVersion, Chunking.chunkerVersion)
  }
  const input = yield* store.readInput(run.id)
  const actual = sha256(input)
  if (actual !== plan.inputSha256) {
    return yield* new InputMismatch({ runId: run.id, expected: plan.inputSha256, actual })
  }
  let ontology = Option.none<Ontology.Ontology>()
  if (Option.isSome(plan.ontologySha256)) {
    const expected = plan.ontologySha256.value
    const source = yield* store.readOntologySource(expected)
    if (Option.isNone(source)) return yield* mismatch("ontology", expected, "none stored")
    const parsed = yield* Ontology.parse(source.value).pipe(
      Effect.mapError((e) => mismatch("ontology", expected, `an unreadable ontology (${e.message})`))
    )
    if (parsed.sha256 !== expected) return yield* mismatch("ontology", expected, parsed.sha256)
    ontology = Option.some(parsed)
  }
  const batches = Chunking.plan(input, plan.chunking)
  if (batches.length !== plan.totalBatches) {
    return yield* mismatch("batch count", String(plan.totalBatches), String(batches.length))
  }
  return { extractor, batches, ontology }
})

/** Records how an execution that held the lease ended; only the lease holder's record counts. */
const recordExit = (runId: RunId, owner: LeaseHolder, exit: Exit.Exit<Run, unknown>) =>
  Effect.gen(function*() {
    if (Exit.isSuccess(exit)) return
    const store = yield* RunStore
    const cause = exit.cause
    const failure = Cause.failureOption(cause)
    if (Option.isSome(failure)) {
      const error = failure.value
      if (error instanceof RunCancelled) return yield* store.finish(runId, owner, { status: "cancelled" })
      if (tagOf(error) === "RunLocked") return // the lease was lost: the new holder owns the record
      return yield* store.finish(runId, owner, {
        status: "failed",
        reason: error instanceof BudgetExceeded ? "budget" : error instanceof DeadlineExceeded ?
          "deadline" :
          tagOf(error) ?? "error",
        error: error instanceof Error ? error.message : String(error)
      })
    }
    if (Cause.isInterruptedOnly(cause)) {
      const run = yield* store.getRun(runId)
      return yield* store.finish(runId, owner, { status: run.cancelRequested ? "cancelled" : "interrupted" })
    }
    yield* store.finish(runId, owner, { status: "failed", reason: "defect", error: Cause.pretty(cause) })
  }).pipe(
    // The cause (with its stack) only at debug level: the command reports the run's error itself.
    Effect.catchAllCause((cause) =>
      Effect.zipRight(
        Effect.logError(`could not record the end of the run: ${Cause.squash(cause)}`),
        Effect.logDebug("could not record the end of the run", cause)
      )
    ),
    Effect.annotateLogs({ runId })
  )

const tagOf = (u: unknown): string | undefined =>
  typeof u === "object" && u !== null && "_tag" in u && typeof u._tag === "string" ? u._tag : undefined

/**
 * Executes a run: the one code path for start and resume. A completed run is returned as it is.
 *
 * @since 0.1.0
 * @category operations
 */
export const execute = Effect.fn("Workflow.execute")(function*(runId: RunId, options: ExecuteOptions = {}) {
  const store = yield* RunStore
  const stored = yield* store.getRun(runId)
  const reopen = options.retrySkipped === true && stored.skippedBatches > 0
  if (stored.status === "completed" && !reopen) return stored
  const { batches, extractor, ontology } = yield* prepare(stored)
  const leaseMs = options.leaseMs ?? defaultLeaseMs
  const claimed = yield* store.claim(runId, options.owner ?? makeOwnerId(), leaseMs, {
    reopen,
    expectedVersion: stored.statusVersion
  })
  const run = claimed.run
  if (Option.isNone(claimed.holder)) return run
  // Every write of this execution presents its claim's token.
  const owner = claimed.holder.value
  const emit = options.onEvent ?? (() => Effect.void)
  const { concurrency, totalBatches } = run.plan

  // The artifact replaces the previous one only while this execution still holds the lease.
  const fencing = { fence: Effect.asVoid(store.heartbeat(runId, owner, leaseMs)), staleAfterMs: leaseMs }

  const body = Effect.gen(function*() {
    yield* emit({ _tag: "RunStarted", runId, totalBatches, committedBatches: run.committedBatches })
    yield* Effect.logInfo(`executing run ${runId}: ${run.committedBatches}/${totalBatches} batches committed`)
    if (totalBatches === 0) {
      const artifact = yield* Merge.writeEmpty({
        path: run.plan.outputPath,
        format: run.plan.outputFormat,
        ontology,
        ...fencing
      })
      return yield* store.complete(runId, owner, artifact)
    }
    const committed = yield* SubscriptionRef.make(run.committedBatches)
    const readKnownEntities = yield* knownEntitiesReader(store, runId)
    // Batch i sees the entities of batches < i - concurrency + 1 only: those are committed before it can start
    // whatever the timing, so its context (and output) never depends on scheduling.
    const knownEntities = (batchIndex: number) => {
      const horizon = batchIndex - concurrency + 1
      if (horizon <= 0) return Effect.succeed([])
      return committed.changes.pipe(
        Stream.filter((n) => n >= horizon),
        Stream.take(1),
        Stream.runDrain,
        Effect.zipRight(readKnownEntities(horizon)),
        Effect.map((rows) => rows.map((e) => ({ label: e.label, type: e.type, iri: entityIri(e.label, e.type) })))
      )
    }
    // Spend so far, from every recorded attempt (including attempts lost to crashes), kept up to date in memory.
    const spent = yield* Ref.make(yield* store.attemptTotals(runId))
    const recordUsage = (batchIndex: number) => (usage: Extractor.Usage) =>
      Effect.zipRight(
        Ref.update(spent, (total) =>
          new UsageTotals({
            requests: total.requests + usage.requests,
            promptTokens: total.promptTokens + usage.promptTokens,
            completionTokens: total.completionTokens + usage.completionTokens,
            costUsd: total.costUsd + (usage.costUsd ?? 0)
          })),
        store.recordAttempt(runId, batchIndex, usage).pipe(
          Effect.catchAll((error) => Effect.logWarning("could not record usage", error))
        )
      )
    const reportStatus = (status: Readonly<Record<string, string>>) =>
      store.setExtractorStatus(runId, status).pipe(
        Effect.catchAll((error) => Effect.logWarning("could not store the extractor status", error))
      )
    const extracted = yield* Ref.make(0)
    const checkBudget = Effect.gen(function*() {
      const budget = options.budget
      if (budget === undefined) return
      const total = yield* Ref.get(spent)
      // Project the next batch's spend from the average so far, so that the budget is never exceeded knowingly.
      const done = Math.max(1, (yield* Ref.get(extracted)) + run.committedBatches)
      const projectedCost = total.costUsd + total.costUsd / done
      const projectedTokens = total.tokens + total.tokens / done
      if (
        budget.maxCostUsd !== undefined && (total.costUsd >= budget.maxCostUsd || projectedCost > budget.maxCostUsd)
      ) {
        return yield* new BudgetExceeded({ runId, limit: "cost", spent: total.costUsd, max: budget.maxCostUsd })
      }
      if (budget.maxTokens !== undefined && (total.tokens >= budget.maxTokens || projectedTokens > budget.maxTokens)) {
        return yield* new BudgetExceeded({ runId, limit: "tokens", spent: total.tokens, max: budget.maxTokens })
      }
    })
    const extractOne = (batch: Chunking.Batch) =>
      Effect.gen(function*() {
        yield* checkBudget
        const started = yield* Clock.currentTimeMillis
        const result = yield* extractor.extract({
          runId,
          batchIndex: batch.index,
          chunks: batch.chunks,
          ontology,
          knownEntities: knownEntities(batch.index),
          recordUsage: recordUsage(batch.index),
          reportStatus
        }).pipe(
          Effect.map((output) => ({ output, skipped: undefined })),
          Effect.catchIf(
            (error: ExtractorError) => run.plan.onBatchError === "skip" && error._tag === "ExtractorError",
            (error) =>
              Effect.as(Effect.logWarning(`skipping batch ${batch.index}: ${error.message}`), {
                // The failed attempts' usage is committed with the skipped batch: it is part of the run's usage,
                // not lost spend.
                output: error.usage === undefined ? emptyOutput : { ...emptyOutput, usage: error.usage },
                skipped: { error: error.message }
              })
          )
        )
        yield* Ref.update(extracted, (n) => n + 1)
        const finished = yield* Clock.currentTimeMillis
        return { batch, ...result, durationMs: finished - started }
      }).pipe(Effect.annotateLogs({ batch: batch.index }))

    if (reopen) {
      for (const { batchIndex } of yield* store.skippedBatches(runId)) {
        const retried = yield* extractOne(batches[batchIndex]!)
        // Also when it failed again: its usage and its latest error are recorded with the batch.
        yield* store.replaceSkipped({
          runId,
          holder: owner,
          batchIndex,
          output: retried.output,
          attempts: Math.max(1, retried.output.usage?.requests ?? 1),
          durationMs: retried.durationMs,
          skipped: retried.skipped
        })
      }
    }

    // A batch keeps its concurrency slot until it is committed (in batch order: it waits for the previous commit),
    // so at most `concurrency` batches are ever extracted but not committed: all that a crash can make us redo.
    // Subscribing to `changes` costs about 1 ms of CPU per batch (pnpm bench, section 1), so only a batch whose turn
    // has not come yet subscribes; `changes` starts with the current value, so no commit is missed in between.
    const awaitTurn = (batchIndex: number) =>
      Effect.flatMap(SubscriptionRef.get(committed), (n) =>
        n >= batchIndex ?
          Effect.void :
          committed.changes.pipe(Stream.filter((n) => n >= batchIndex), Stream.take(1), Stream.runDrain))

    yield* Stream.fromIterable(batches.slice(run.committedBatches)).pipe(
      Stream.mapEffect((batch) =>
        Effect.gen(function*() {
          const { durationMs, output, skipped } = yield* extractOne(batch)
          yield* CrashPoint.hit("extract.beforeCommit", batch.index)
          yield* awaitTurn(batch.index)
          const checkpoint = yield* store.commitBatch({
            runId,
            holder: owner,
            batchIndex: batch.index,
            output,
            // An LLM extractor reports one request per HTTP attempt.
            attempts: Math.max(1, output.usage?.requests ?? 1),
            durationMs,
            skipped
          })
          yield* CrashPoint.hit("commit.beforeEvent", batch.index)
          yield* SubscriptionRef.set(committed, checkpoint.committedBatches)
          yield* emit({
            _tag: "BatchCommitted",
            runId,
            batchIndex: batch.index,
            committedBatches: checkpoint.committedBatches,
            totalBatches,
            entityMentions: checkpoint.entityMentions,
            relations: checkpoint.relations
          })
          if (checkpoint.cancelRequested) return yield* new RunCancelled({ runId })
        }), { concurrency }),
      Stream.runDrain
    )
    yield* emit({ _tag: "MergeStarted", runId })
    const artifact = yield* Merge.merge({
      runId,
      path: run.plan.outputPath,
      format: run.plan.outputFormat,
      ontology,
      provenance: run.plan.provenance ? { extractor: run.plan.extractor } : undefined,
      ...fencing
    })
    yield* Merge.writeSkippedManifest(runId, artifact.path, yield* store.skippedBatches(runId), batches)
    yield* CrashPoint.hit("merge.afterRename")
    return yield* store.complete(runId, owner, artifact)
  })

  // The heartbeat keeps the lease alive (retrying transient failures) and notices cancellation from other processes.
  const heartbeat = keepLease(store, runId, owner, leaseMs)

  const deadline = options.deadlineMs
  const bounded = deadline === undefined ? body : body.pipe(
    Effect.timeoutFail({ duration: deadline, onTimeout: () => new DeadlineExceeded({ runId, deadlineMs: deadline }) })
  )
  return yield* Effect.raceFirst(bounded, heartbeat).pipe(
    Effect.onExit((exit) => recordExit(runId, owner, exit)),
    // Synchronous extractors and SQLite calls would otherwise starve the event loop: the heartbeat's timer would
    // not fire (the lease would expire under a live run) and signals would wait until the run suspends.
    Effect.withScheduler(FairScheduler.make())
  )
}, (effect, runId) => Effect.annotateLogs(effect, { runId }))

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
export type ExecuteRequirements = RunStore | Extractor.Registry | SqlClient.SqlClient

/**
 * The errors `create` can fail with.
 *
 * @since 0.1.0
 * @category models
 */
export type CreateError = Effect.Effect.Error<ReturnType<typeof create>>
