/**
 * Benchmark 5: many runs executing at once in one `WorkflowManager`, with commit latency percentiles and a count of
 * busy/locked errors.
 *
 * @since 0.1.0
 */
import * as Database from "@quarry/core/Database"
import * as Extractor from "@quarry/core/Extractor"
import { RunId } from "@quarry/core/Run"
import { RunStore } from "@quarry/core/RunStore"
import * as SqliteRunStore from "@quarry/core/SqliteRunStore"
import * as WorkflowManager from "@quarry/core/WorkflowManager"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as path from "node:path"
import { monitorEventLoopDelay } from "node:perf_hooks"
import * as Harness from "./Harness.js"
import type * as Report from "./Report.js"
import * as Stats from "./Stats.js"
import * as Synthetic from "./Synthetic.js"

/**
 * Runs, batches per run, repeats.
 *
 * @since 0.1.0
 * @category models
 */
export interface Config {
  readonly runs: number
  readonly batchesPerRun: number
  readonly repeats: number
}

/**
 * Sizes per mode.
 *
 * @since 0.1.0
 * @category configs
 */
export const configs: Record<"smoke" | "quick" | "full", Config> = {
  smoke: { runs: 5, batchesPerRun: 3, repeats: 1 },
  quick: { runs: 100, batchesPerRun: 5, repeats: 1 },
  full: { runs: 100, batchesPerRun: 20, repeats: 3 }
}

/**
 * Figures over all repeats.
 *
 * @since 0.1.0
 * @category models
 */
export interface Data {
  readonly completed: number
  readonly failed: number
  readonly busyOrLocked: number
  /** Batches per second over the wall time of each repeat (start of the first run to the end of the last). */
  readonly throughput: Stats.Summary
  /** Wall time per repeat, ms. */
  readonly wall: Stats.Summary
  readonly commits: number
  readonly p50: number
  readonly p95: number
  readonly p99: number
  readonly max: number
  /** The event loop's delay while the runs ran (ms): how late a heartbeat's timer or a signal gets through. */
  readonly loopDelayP99: number
  readonly loopDelayMax: number
  readonly failures: ReadonlyArray<string>
}

const busyPattern = /SQLITE_BUSY|SQLITE_LOCKED|database is locked|database table is locked/i

/**
 * Runs the benchmark.
 *
 * @since 0.1.0
 * @category benchmarks
 */
export const run = (config: Config) =>
  Effect.scoped(Effect.gen(function*() {
    const dir = yield* Harness.tempDir()
    const latencies: Array<number> = []
    let busyOrLocked = 0
    const failures: Array<string> = []
    // The store with every commit timed (from the call, including the wait for the connection, to the checkpoint).
    const timedStore = Layer.effect(
      RunStore,
      Effect.map(SqliteRunStore.make(), (store) =>
        RunStore.of({
          ...store,
          commitBatch: (commit) =>
            Effect.suspend(() => {
              const start = performance.now()
              return store.commitBatch(commit).pipe(
                Effect.tap(() => Effect.sync(() => latencies.push(performance.now() - start))),
                Effect.tapErrorCause((cause) =>
                  Effect.sync(() => {
                    const text = Cause.pretty(cause)
                    if (text.includes("RunLocked") || busyPattern.test(text)) busyOrLocked++
                  })
                )
              )
            })
        }))
    )
    const output = Synthetic.output(0, Synthetic.small)
    const extractor = Harness.replayExtractor(() => output)
    const text = Synthetic.input(config.batchesPerRun)

    let completed = 0
    let failed = 0
    const throughput: Array<number> = []
    const wall: Array<number> = []
    const loopDelay = monitorEventLoopDelay({ resolution: 10 })
    for (let r = 0; r < config.repeats; r++) {
      const file = path.join(dir, `many-${r}.db`)
      const layer = WorkflowManager.layer().pipe(
        Layer.provideMerge(Layer.mergeAll(timedStore, Extractor.layerRegistry(extractor))),
        Layer.provideMerge(Database.layer(file))
      )
      const elapsed = yield* Effect.scoped(
        Effect.gen(function*() {
          const manager = yield* WorkflowManager.WorkflowManager
          yield* Stats.collectGarbage
          const start = performance.now()
          loopDelay.enable()
          const handles = yield* Effect.forEach(
            Array.from({ length: config.runs }, (_, i) => i),
            (i) =>
              manager.start({
                runId: RunId.make(`many-${r}-${i}`),
                input: text,
                extractor: extractor.name,
                chunking: Synthetic.chunking,
                output: { path: path.join(dir, `many-${r}-${i}.nt`), format: "ntriples" }
              }),
            { concurrency: "unbounded" }
          )
          const results = yield* Effect.forEach(handles, (h) => Effect.either(manager.await(h.runId)), {
            concurrency: "unbounded"
          })
          const elapsed = performance.now() - start
          loopDelay.disable()
          for (const result of results) {
            if (Either.isRight(result) && result.right.status === "completed") {
              completed++
            } else {
              failed++
              const text = Either.isLeft(result) ? `${result.left._tag}: ${result.left.message}` : result.right.status
              if (failures.length < 5) failures.push(text)
            }
          }
          return elapsed
        }).pipe(Effect.provide(layer))
      )
      wall.push(elapsed)
      throughput.push(config.runs * config.batchesPerRun / (elapsed / 1000))
    }
    const sorted = [...latencies].sort((a, b) => a - b)
    const data: Data = {
      completed,
      failed,
      busyOrLocked,
      throughput: Stats.summarize(throughput),
      wall: Stats.summarize(wall),
      commits: sorted.length,
      p50: Stats.percentile(sorted, 50),
      p95: Stats.percentile(sorted, 95),
      p99: Stats.percentile(sorted, 99),
      max: sorted[sorted.length - 1] ?? NaN,
      loopDelayP99: loopDelay.percentile(99) / 1e6,
      loopDelayMax: loopDelay.max / 1e6,
      failures
    }
    return { section: section(config, data), data } satisfies Report.Result<Data>
  }))

const section = (config: Config, data: Data): Report.Section => {
  const clean = data.busyOrLocked === 0 && data.failed === 0
  return {
    id: "5",
    title: "Many runs in one WorkflowManager",
    method: `${config.runs} runs of ${config.batchesPerRun} batches each (no-op extractor, synthetic outputs of ` +
      `${Synthetic.small.entities} entities) started at once in one \`WorkflowManager\` on one database, then ` +
      `awaited; ${config.repeats} repeat(s), each on a fresh database. Wall time runs from the first \`start\` to ` +
      "the last run's end (merges included). Commit latency is timed around `RunStore.commitBatch` (a wrapping " +
      "store), so it includes the wait for the single SQLite connection.",
    tables: [{
      header: ["Figure", "Value"],
      rows: [
        ["Runs completed / failed", `${Stats.int(data.completed)} / ${Stats.int(data.failed)}`],
        ["Total throughput (batches/s, incl. merges)", Stats.range(data.throughput, (v) => Stats.num(v, 0))],
        ["Wall time per repeat", Stats.range(data.wall)],
        ["Commits timed", Stats.int(data.commits)],
        ["Commit latency p50 / p95 / p99 / max", [data.p50, data.p95, data.p99, data.max].map(Stats.ms).join(" / ")],
        ["Busy/locked errors", Stats.int(data.busyOrLocked)],
        ["Event loop delay p99 / max", [data.loopDelayP99, data.loopDelayMax].map(Stats.ms).join(" / ")]
      ]
    }],
    targets: [{
      name: "Many runs",
      goal: `${config.runs} concurrent runs, zero busy/locked errors`,
      measured: `${Stats.int(data.busyOrLocked)} busy/locked, ${Stats.int(data.failed)} failed; p99 commit ` +
        Stats.ms(data.p99),
      status: clean ? "met" : "missed",
      comment: clean ? undefined : `failures: ${data.failures.join("; ")}`
    }],
    notes: [
      "All runs share one connection (the SQLite client serialises transactions in process), so commits queue " +
      "rather than collide: the p99 is mostly waiting for other runs' transactions, and no statement ever meets " +
      "SQLITE_BUSY. Several processes on one file would rely on `busy_timeout` instead.",
      "The event loop's delay (`monitorEventLoopDelay`, 10 ms resolution, over every repeat while its runs ran) is " +
      "how late a lease heartbeat's timer, an HTTP request or a signal is served: the fair scheduler " +
      "(`FairScheduler.shared`, one for the whole process) lets the loop turn every 25 ms of the process's work."
    ]
  }
}
