/**
 * Benchmark 4: throughput with an extractor that sleeps 50 ms per batch, at several concurrency levels, checking
 * that commits stay in batch order.
 *
 * @since 0.1.0
 */
import type * as Extractor from "@quarry/core/Extractor"
import { RunId } from "@quarry/core/Run"
import * as Workflow from "@quarry/core/Workflow"
import * as Effect from "effect/Effect"
import * as path from "node:path"
import * as Harness from "./Harness.js"
import type * as Report from "./Report.js"
import * as Stats from "./Stats.js"
import * as Synthetic from "./Synthetic.js"

/**
 * Levels, batches per run, repeats, and the extractor's sleep.
 *
 * @since 0.1.0
 * @category models
 */
export interface Config {
  readonly levels: ReadonlyArray<number>
  readonly batches: number
  readonly repeats: number
  readonly sleepMs: number
}

/**
 * Sizes per mode.
 *
 * @since 0.1.0
 * @category configs
 */
export const configs: Record<"smoke" | "quick" | "full", Config> = {
  smoke: { levels: [1, 4], batches: 8, repeats: 1, sleepMs: 5 },
  quick: { levels: [1, 4, 8, 16], batches: 32, repeats: 2, sleepMs: 50 },
  full: { levels: [1, 4, 8, 16], batches: 128, repeats: 3, sleepMs: 50 }
}

/**
 * Throughput (batches per second) per level.
 *
 * @since 0.1.0
 * @category models
 */
export interface Data {
  readonly levels: ReadonlyArray<{
    readonly concurrency: number
    readonly throughput: Stats.Summary
    readonly speedup: number
    readonly inOrder: boolean
  }>
}

/**
 * Runs the benchmark.
 *
 * @since 0.1.0
 * @category benchmarks
 */
export const run = (config: Config) =>
  Effect.scoped(Effect.gen(function*() {
    const dir = yield* Harness.tempDir()
    const file = path.join(dir, "concurrency.db")
    const output = Synthetic.output(0, Synthetic.small)
    const sleeper: Extractor.Extractor = {
      name: "bench-sleep",
      version: "1",
      configHash: "none",
      extract: () => Effect.sleep(config.sleepMs).pipe(Effect.as(output))
    }
    const text = Synthetic.input(config.batches)
    let runNumber = 0
    const samples = yield* Effect.gen(function*() {
      const out = new Map<number, { times: Array<number>; inOrder: boolean }>()
      for (const level of config.levels) out.set(level, { times: [], inOrder: true })
      for (let r = 0; r < config.repeats; r++) {
        // Alternate ascending and descending order of levels so that drift does not favour one end.
        const levels = r % 2 === 0 ? config.levels : [...config.levels].reverse()
        for (const concurrency of levels) {
          const created = yield* Workflow.create({
            runId: RunId.make(`concurrency-${concurrency}-${runNumber++}`),
            input: text,
            extractor: sleeper.name,
            chunking: Synthetic.chunking,
            concurrency,
            output: { path: path.join(dir, `out-${runNumber}.nt`), format: "ntriples" }
          })
          const committed: Array<number> = []
          let started = NaN
          let merging = NaN
          yield* Workflow.execute(created.id, {
            onEvent: (event) =>
              Effect.sync(() => {
                if (event._tag === "RunStarted") started = performance.now()
                if (event._tag === "BatchCommitted") committed.push(event.batchIndex)
                if (event._tag === "MergeStarted") merging = performance.now()
              })
          })
          const entry = out.get(concurrency)!
          entry.times.push(created.plan.totalBatches / ((merging - started) / 1000))
          if (committed.length !== created.plan.totalBatches || committed.some((b, i) => b !== i)) {
            entry.inOrder = false
          }
        }
      }
      return out
    }).pipe(Effect.provide(Harness.engineLayer(file, [sleeper])))

    const base = Stats.summarize(samples.get(config.levels[0]!)!.times).median
    const data: Data = {
      levels: config.levels.map((concurrency) => {
        const entry = samples.get(concurrency)!
        const throughput = Stats.summarize(entry.times)
        return { concurrency, throughput, speedup: throughput.median / base, inOrder: entry.inOrder }
      })
    }
    return { section: section(config, data), data } satisfies Report.Result<Data>
  }))

const section = (config: Config, data: Data): Report.Section => {
  const eight = data.levels.find((l) => l.concurrency === 8)
  const allInOrder = data.levels.every((l) => l.inOrder)
  const ideal = 1000 / config.sleepMs
  return {
    id: "4",
    title: "Concurrency",
    method: `Runs of ${Stats.int(config.batches)} batches with an extractor that sleeps ${config.sleepMs} ms per ` +
      "batch and returns a small output; throughput is batches per second from `RunStarted` to `MergeStarted`. " +
      `${config.repeats} repeats per level, levels alternately ascending and descending. Commit order is checked ` +
      "from the `BatchCommitted` events (and the store refuses out-of-order commits).",
    tables: [{
      header: ["Concurrency", "Batches/s", "Speedup (median)", "Of ideal", "Commits in order"],
      rows: data.levels.map((l) => [
        String(l.concurrency),
        Stats.range(l.throughput, (v) => Stats.num(v, 1)),
        Stats.ratio(l.speedup),
        `${Stats.num(l.throughput.median / (ideal * l.concurrency) * 100, 0)}%`,
        l.inOrder ? "yes" : "**no**"
      ])
    }],
    targets: [
      ...(eight === undefined ? [] : [{
        name: "Concurrency 8 speedup",
        goal: ">= 7.5x concurrency 1",
        measured: Stats.ratio(eight.speedup),
        status: eight.speedup >= 7.5 ? "met" as const : "missed" as const,
        comment: eight.speedup >= 7.5 ? undefined : `missed by ${Stats.num((1 - eight.speedup / 7.5) * 100, 0)}%.`
      }]),
      {
        name: "Commits in order",
        goal: "always",
        measured: allInOrder ? "in order at every level" : "out of order",
        status: allInOrder ? "met" : "missed"
      }
    ],
    notes: [
      `Ideal throughput is ${
        Stats.num(ideal, 0)
      } batches/s per unit of concurrency; the shortfall is the serial part ` +
      "(commits on the single connection, the ordered stream) plus the ramp-up and drain of the pipeline."
    ]
  }
}
