/**
 * How runs are shown by `status`, `runs` and `cancel`: JSON for scripts, key-value blocks and tables for people.
 *
 * @since 0.1.0
 */
import * as Compensation from "@quarry/core/Compensation"
import type { Run } from "@quarry/core/Run"
import type { CompensationStep } from "@quarry/core/RunStore"
import * as CoreRunView from "@quarry/core/RunView"
import * as Option from "effect/Option"
import * as path from "node:path"
import * as Errors from "./Errors.js"
import * as Events from "./Events.js"
import * as Flags from "./Flags.js"

const iso = (ms: number) => new Date(ms).toISOString()

const { leaseLive, lostUsage, percent } = CoreRunView

/**
 * Whether `quarry resume` would continue the run now: not completed, and not executing under a live lease.
 *
 * @since 0.1.0
 * @category models
 */
export const resumable = CoreRunView.resumable

/**
 * What is shown of a run beyond its row (see `@quarry/core/RunView`).
 *
 * @since 0.1.0
 * @category models
 */
export type Ledger = CoreRunView.Ledger

/**
 * Reads a run's ledger.
 *
 * @since 0.1.0
 * @category loading
 */
export const ledger = CoreRunView.ledger

/**
 * Reads the ledgers of a list of runs, one query per kind of detail for the whole list.
 *
 * @since 0.1.0
 * @category loading
 */
export const ledgers = CoreRunView.ledgers

/**
 * A run as JSON: the shared view of `@quarry/core/RunView` (the HTTP API shows the same shape), with this
 * database's paths and its `quarry resume` command.
 *
 * @since 0.1.0
 * @category encoding
 */
export const toJson = (run: Run, ledger: Ledger, now: number, db: string): CoreRunView.RunView =>
  CoreRunView.make(run, ledger, {
    now,
    queuePosition: Option.none(),
    paths: true,
    resume: (r) => resumeCommandOf(r, db)
  })

/** `quarry resume`, with a higher budget to give when the run's budget stopped it. */
const resumeCommandOf = (run: Run, db: string): string =>
  Flags.resumeCommand(
    run.id,
    db,
    CoreRunView.limitsToRaise(run).flatMap((limit) =>
      limit === "maxCostUsd" ? ["--max-cost", "<USD>"] : ["--max-tokens", "<N>"]
    )
  )

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

/**
 * A relative planned output (a run submitted to `quarry serve --cluster`) is resolved by whoever finishes the run:
 * say where that puts it, since the bare name names no file (`artifact` shows the path written, once completed).
 */
const relativeNote = (outputPath: string) =>
  path.isAbsolute(outputPath) ?
    "" :
    "; relative: the cluster runner that finishes the run writes it into its working directory, " +
    "quarry resume into the current one"

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
    `${run.plan.outputPath} (${run.plan.outputFormat})${run.plan.provenance ? ", with PROV-O provenance" : ""}${
      relativeNote(run.plan.outputPath)
    }`
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
    ` (resumable: ${resumeCommandOf(run, db)})`
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
  for (const budget of Option.toArray(run.budget)) {
    const limits = [
      ...(budget.maxCostUsd === undefined ? [] : [`--max-cost $${budget.maxCostUsd}`]),
      ...(budget.maxTokens === undefined ? [] : [`--max-tokens ${budget.maxTokens}`])
    ]
    rows.push(["budget", `${limits.join(", ")} (kept by a resume that gives none; --no-budget lifts it)`])
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
