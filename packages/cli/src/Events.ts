/**
 * What `start` and `resume` report while a run executes: JSON-lines events on stdout (`--json`) and the live
 * progress line on a terminal.
 *
 * @since 0.1.0
 */
import type { Artifact, Run, UsageTotals } from "@quarry/core/Run"

/**
 * The names of the JSON events, in the order a run can produce them. Every `--json` execution ends with exactly
 * one of `run.completed`, `run.failed`, `run.interrupted`, `run.cancelled` or `error` (`resume --out` adds
 * `artifact.written` after `run.completed`).
 *
 * @since 0.1.0
 * @category models
 */
export type EventName =
  | "run.started"
  | "batch.committed"
  | "extractor.waiting"
  | "merge.started"
  | "run.completed"
  | "run.failed"
  | "run.interrupted"
  | "run.cancelled"
  | "artifact.written"
  | "error"

/**
 * One JSON line: the event name, the time, then its fields.
 *
 * @since 0.1.0
 * @category encoding
 */
export const encode = (event: EventName, now: number, fields: Readonly<Record<string, unknown>>): string =>
  JSON.stringify({ event, time: new Date(now).toISOString(), ...fields })

/**
 * The artifact as reported in events and `status --json`.
 *
 * @since 0.1.0
 * @category encoding
 */
export const artifactJson = (artifact: Artifact) => ({
  path: artifact.path,
  format: artifact.format,
  bytes: artifact.bytes,
  sha256: artifact.sha256
})

/**
 * Progress counters of a run, as reported in the terminal events.
 *
 * @since 0.1.0
 * @category encoding
 */
export const progressJson = (run: Run) => ({
  committedBatches: run.committedBatches,
  totalBatches: run.plan.totalBatches,
  skippedBatches: run.skippedBatches,
  entityMentions: run.entityMentions,
  relations: run.relations,
  usage: usageJson(run.usage)
})

/**
 * Usage totals (requests, tokens, cost) as reported in events and `status --json`.
 *
 * @since 0.1.0
 * @category encoding
 */
export const usageJson = (usage: UsageTotals) => ({
  requests: usage.requests,
  promptTokens: usage.promptTokens,
  completionTokens: usage.completionTokens,
  costUsd: usage.costUsd
})

/**
 * Usage totals for people: `12 requests, 9800 prompt + 1200 completion tokens, $0.0123`.
 *
 * @since 0.1.0
 * @category formatting
 */
export const usageText = (usage: UsageTotals): string =>
  `${plural(usage.requests, "request", "requests")}, ${usage.promptTokens} prompt + ${usage.completionTokens} ` +
  `completion tokens, $${usage.costUsd.toFixed(4)}`

/**
 * `1 batch`, `2 batches`.
 *
 * @since 0.1.0
 * @category formatting
 */
export const plural = (n: number, one: string, many: string): string => `${n} ${n === 1 ? one : many}`

/**
 * A duration for people: `850ms`, `12.3s`, `4m05s`, `2h03m`.
 *
 * @since 0.1.0
 * @category formatting
 */
export const formatDuration = (ms: number): string => {
  if (!Number.isFinite(ms) || ms < 0) return "?"
  if (ms < 1000) return `${Math.round(ms)}ms`
  const s = ms / 1000
  if (s < 60) return `${s.toFixed(1)}s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m}m${String(Math.floor(s % 60)).padStart(2, "0")}s`
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`
}

/**
 * The live progress line: bar, batches done/total, rate, ETA and entities so far. The rate counts only batches
 * committed by this process (a resumed run does not look faster than it is).
 *
 * @since 0.1.0
 * @category formatting
 */
export const progressLine = (options: {
  readonly committed: number
  readonly total: number
  readonly committedAtStart: number
  readonly elapsedMs: number
  readonly entityMentions: number
}): string => {
  const { committed, total } = options
  const width = 20
  const ratio = total === 0 ? 1 : committed / total
  const filled = Math.round(ratio * width)
  const bar = "#".repeat(filled) + "-".repeat(width - filled)
  const done = committed - options.committedAtStart
  const rate = options.elapsedMs > 0 ? done / (options.elapsedMs / 1000) : 0
  const eta = rate > 0 ? formatDuration(((total - committed) / rate) * 1000) : "?"
  return `[${bar}] ${committed}/${total} batches (${(ratio * 100).toFixed(0)}%)  ${options.entityMentions} entities  ` +
    `${rate.toFixed(1)} batches/s  ETA ${eta}`
}
