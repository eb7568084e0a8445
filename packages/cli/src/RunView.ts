/**
 * How runs are shown by `status`, `runs` and `cancel`: JSON for scripts, key-value blocks and tables for people.
 *
 * @since 0.1.0
 */
import * as Compensation from "@quarry/core/Compensation"
import type { PersistenceError } from "@quarry/core/Errors"
import { type Run, UsageTotals } from "@quarry/core/Run"
import { type CompensationStep, RunStore, type SkippedBatch } from "@quarry/core/RunStore"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Errors from "./Errors.js"
import * as Events from "./Events.js"
import * as Flags from "./Flags.js"

const iso = (ms: number) => new Date(ms).toISOString()

const leaseLive = (run: Run, now: number) =>
  run.status === "running" && Option.isSome(run.lease) && run.lease.value.expiresAt > now

/**
 * Whether `quarry resume` would continue the run now: not completed, and not executing under a live lease.
 *
 * @since 0.1.0
 * @category models
 */
export const resumable = (run: Run, now: number): boolean => run.status !== "completed" && !leaseLive(run, now)

/**
 * What is shown of a run beyond its row: its attempt ledger and its skipped batches.
 *
 * @since 0.1.0
 * @category models
 */
export interface Ledger {
  /** Usage of every recorded extractor attempt, committed or not: what the run has spent. */
  readonly attempts: UsageTotals
  readonly skipped: ReadonlyArray<SkippedBatch>
  /** The run's compensation steps, in registration order. */
  readonly compensation: ReadonlyArray<CompensationStep>
}

/**
 * Reads a run's ledger.
 *
 * @since 0.1.0
 * @category loading
 */
export const ledger = (run: Run): Effect.Effect<Ledger, PersistenceError, RunStore> =>
  Effect.gen(function*() {
    const store = yield* RunStore
    return {
      attempts: yield* store.attemptTotals(run.id),
      skipped: yield* store.skippedBatches(run.id),
      compensation: yield* store.compensationSteps(run.id)
    }
  })

/**
 * Spend on attempts whose results were not committed (lost to crashes, or spent on batches that failed the run; a
 * skipped batch commits its failed attempts' usage): the attempt ledger minus the usage of committed batches.
 *
 * @since 0.1.0
 * @category models
 */
export const lostUsage = (run: Run, ledger: Ledger): UsageTotals => {
  const minus = (a: number, b: number) => Math.max(0, a - b)
  return new UsageTotals({
    requests: minus(ledger.attempts.requests, run.usage.requests),
    promptTokens: minus(ledger.attempts.promptTokens, run.usage.promptTokens),
    completionTokens: minus(ledger.attempts.completionTokens, run.usage.completionTokens),
    // Sums of floating-point costs: drop the noise below a billionth of a cent.
    costUsd: Math.round(minus(ledger.attempts.costUsd, run.usage.costUsd) * 1e11) / 1e11
  })
}

const percent = (run: Run) =>
  run.plan.totalBatches === 0 ? 100 : Math.floor((run.committedBatches / run.plan.totalBatches) * 100)

/**
 * A run as JSON: status, progress, counters, usage (committed, every attempt, lost), skipped batches, extractor
 * status, timings, plan (with the extractor's settings), artifact, last error, lease, resumability.
 *
 * @since 0.1.0
 * @category encoding
 */
export const toJson = (run: Run, ledger: Ledger, now: number, db: string) => {
  const canResume = resumable(run, now)
  return {
    id: run.id,
    status: run.status,
    resumable: canResume,
    resume: canResume ? Flags.resumeCommand(run.id, db) : null,
    progress: {
      committedBatches: run.committedBatches,
      totalBatches: run.plan.totalBatches,
      percent: percent(run)
    },
    counters: { entityMentions: run.entityMentions, relations: run.relations, skippedBatches: run.skippedBatches },
    usage: Events.usageJson(run.usage),
    attemptUsage: Events.usageJson(ledger.attempts),
    lostUsage: Events.usageJson(lostUsage(run, ledger)),
    skipped: ledger.skipped.map((s) => ({ batchIndex: s.batchIndex, error: s.error })),
    extractorStatus: run.extractorStatus,
    timings: {
      createdAt: iso(run.createdAt),
      updatedAt: iso(run.updatedAt),
      startedAt: Option.getOrNull(Option.map(run.startedAt, iso)),
      finishedAt: Option.getOrNull(Option.map(run.finishedAt, iso)),
      durationMs: Option.getOrNull(
        Option.zipWith(run.startedAt, run.finishedAt, (started, finished) => finished - started)
      )
    },
    plan: {
      extractor: {
        name: run.plan.extractor.name,
        version: run.plan.extractor.version,
        settings: run.plan.extractor.settings
      },
      chunking: {
        strategy: run.plan.chunking.strategy,
        windowSize: run.plan.chunking.windowSize,
        overlap: run.plan.chunking.overlap,
        batchSize: run.plan.chunking.batchSize
      },
      concurrency: run.plan.concurrency,
      onBatchError: run.plan.onBatchError,
      provenance: run.plan.provenance,
      input: { characters: run.plan.inputLength, sha256: run.plan.inputSha256 },
      ontologySha256: Option.getOrNull(run.plan.ontologySha256),
      output: { path: run.plan.outputPath, format: run.plan.outputFormat }
    },
    artifact: Option.getOrNull(Option.map(run.artifact, Events.artifactJson)),
    lastError: Option.getOrNull(run.lastError),
    failureReason: Option.getOrNull(run.failureReason),
    compensation: compensationJson(ledger.compensation),
    lease: Option.getOrNull(Option.map(run.lease, (lease) => ({
      owner: lease.owner,
      expiresAt: iso(lease.expiresAt),
      live: lease.expiresAt > now
    }))),
    cancelRequested: run.cancelRequested
  }
}

/**
 * A run's compensation state and steps (newest last) as JSON.
 *
 * @since 0.1.0
 * @category encoding
 */
export const compensationJson = (steps: ReadonlyArray<CompensationStep>) => ({
  state: Compensation.stateOf(steps),
  steps: steps.map((step) => ({
    seq: step.seq,
    name: step.name,
    handler: step.handler,
    state: step.state,
    lastError: Option.getOrNull(step.lastError)
  }))
})

/**
 * One line per compensation step, as `status` and `cancel --purge` show them.
 *
 * @since 0.1.0
 * @category formatting
 */
export const compensationLines = (steps: ReadonlyArray<CompensationStep>): ReadonlyArray<string> =>
  steps.map((step) =>
    `  ${step.state.padEnd(7)} #${step.seq} ${step.name}${
      Option.match(step.lastError, { onNone: () => "", onSome: (error) => `: ${error}` })
    }`
  )

const when = (ms: Option.Option<number>) => Option.match(ms, { onNone: () => "-", onSome: iso })

/** The rows of `details` that show what the run was planned with (all stored with it). */
const planRows = (run: Run): Array<[string, string]> => {
  const rows: Array<[string, string]> = []
  const settings = Object.entries(run.plan.extractor.settings).map(([key, value]) => `, ${key} ${value}`).join("")
  rows.push(["extractor", `${run.plan.extractor.name} (version ${run.plan.extractor.version})${settings}`])
  const status = Object.entries(run.extractorStatus)
  if (status.length > 0) {
    rows.push([
      "extractor state",
      status.map(([key, value]) => key === "circuit" ? `circuit ${value}` : `${key} ${value}`).join(", ")
    ])
  }
  const c = run.plan.chunking
  rows.push([
    "chunking",
    `${c.strategy}, window ${c.windowSize}, overlap ${c.overlap}, batch size ${c.batchSize}, concurrency ${run.plan.concurrency}`
  ])
  rows.push(["input", `${run.plan.inputLength} characters, sha256 ${run.plan.inputSha256}`])
  rows.push(["ontology", Option.match(run.plan.ontologySha256, { onNone: () => "none", onSome: (s) => `sha256 ${s}` })])
  rows.push([
    "output",
    `${run.plan.outputPath} (${run.plan.outputFormat})${run.plan.provenance ? ", with PROV-O provenance" : ""}`
  ])
  rows.push([
    "on batch error",
    run.plan.onBatchError === "skip" ? "skip (record the error, go on)" : "fail (the run fails, resumable)"
  ])
  return rows
}

/**
 * One run for people: a block of `key  value` lines.
 *
 * @since 0.1.0
 * @category formatting
 */
export const details = (run: Run, ledger: Ledger, now: number, db: string): ReadonlyArray<string> => {
  const rows: Array<[string, string]> = []
  const statusNote = run.status === "completed" ?
    "" :
    leaseLive(run, now) ?
    " (executing)" :
    ` (resumable: ${Flags.resumeCommand(run.id, db)})`
  rows.push(["run", run.id])
  rows.push([
    "status",
    `${run.status}${statusNote}${run.cancelRequested && run.status === "running" ? ", cancel requested" : ""}`
  ])
  rows.push(["progress", `${run.committedBatches}/${run.plan.totalBatches} batches (${percent(run)}%)`])
  rows.push(["found", `${run.entityMentions} entity mentions, ${run.relations} relations`])
  if (run.skippedBatches > 0) {
    rows.push([
      "skipped",
      `${Events.plural(run.skippedBatches, "batch", "batches")} failed and ${
        run.skippedBatches === 1 ? "was" : "were"
      } skipped (retry with: ${Flags.resumeCommand(run.id, db, ["--retry-skipped"])})`
    ])
    for (const s of ledger.skipped) rows.push(["", `batch ${s.batchIndex}: ${s.error}`])
  }
  if (run.usage.requests > 0) rows.push(["usage", Events.usageText(run.usage)])
  const lost = lostUsage(run, ledger)
  if (lost.requests > 0) {
    rows.push(["lost", `${Events.usageText(lost)} on attempts whose results were not committed`])
  }
  rows.push(...planRows(run))
  rows.push(["created", iso(run.createdAt)])
  rows.push(["started", when(run.startedAt)])
  rows.push(["finished", when(run.finishedAt)])
  const duration = Option.zipWith(run.startedAt, run.finishedAt, (s, f) => f - s)
  if (Option.isSome(duration)) rows.push(["duration", Events.formatDuration(duration.value)])
  if (Option.isSome(run.lease)) {
    const lease = run.lease.value
    rows.push([
      "lease",
      `${Errors.describeHolder(lease.owner)} (${lease.owner}), until ${iso(lease.expiresAt)}${
        lease.expiresAt > now ? "" : " (expired)"
      }`
    ])
  }
  if (Option.isSome(run.artifact)) {
    const a = run.artifact.value
    rows.push(["artifact", `${a.path} (${a.format}, ${a.bytes} bytes)`])
    rows.push(["sha256", a.sha256])
  }
  if (Option.isSome(run.lastError)) {
    rows.push(["last error", `${Option.getOrElse(run.failureReason, () => "error")}: ${run.lastError.value}`])
  }
  if (ledger.compensation.length > 0) {
    const done = ledger.compensation.filter((step) => step.state === "done").length
    rows.push([
      "compensation",
      `${Compensation.stateOf(ledger.compensation)} (${done}/${ledger.compensation.length} steps done)`
    ])
  }
  const width = Math.max(...rows.map(([key]) => key.length))
  const lines = rows.map(([key, value]) => `${key.padEnd(width)}  ${value}`)
  return ledger.compensation.length === 0 ? lines : [...lines, ...compensationLines(ledger.compensation)]
}

/**
 * Runs for people: one line each under a header.
 *
 * @since 0.1.0
 * @category formatting
 */
export const table = (runs: ReadonlyArray<Run>, now: number): ReadonlyArray<string> => {
  const header = ["RUN", "STATUS", "BATCHES", "ENTITIES", "RELATIONS", "UPDATED", "ARTIFACT"]
  const rows = runs.map((run) => [
    run.id,
    leaseLive(run, now) ? "running" : run.status === "running" ? "running (orphaned)" : run.status,
    `${run.committedBatches}/${run.plan.totalBatches}`,
    String(run.entityMentions),
    String(run.relations),
    iso(run.updatedAt).replace(/\.\d{3}Z$/, "Z"),
    Option.match(run.artifact, { onNone: () => "-", onSome: (a) => a.path })
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)))
  const line = (cells: ReadonlyArray<string>) =>
    cells.map((cell, i) => i === cells.length - 1 ? cell : cell.padEnd(widths[i]!)).join("  ")
  return [line(header), ...rows.map(line)]
}
