/**
 * Chunking speed: a 1 MB document must chunk in well under a second with both strategies.
 *
 * @since 0.1.0
 */
import * as Chunking from "@quarry/core/Chunking"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as fs from "node:fs"
import * as path from "node:path"
import type * as Report from "./Report.js"
import * as Stats from "./Stats.js"
import { mobyDick } from "./Storage.js"

/**
 * Document size and repeats.
 *
 * @since 0.1.0
 * @category models
 */
export interface Config {
  readonly document: string
  readonly bytes: number
  readonly repeats: number
}

/**
 * Sizes per mode.
 *
 * @since 0.1.0
 * @category configs
 */
export const configs: Record<"smoke" | "quick" | "full", Config> = {
  smoke: { document: mobyDick, bytes: 50_000, repeats: 1 },
  quick: { document: mobyDick, bytes: 1_048_576, repeats: 3 },
  full: { document: mobyDick, bytes: 1_048_576, repeats: 7 }
}

/**
 * Time per strategy.
 *
 * @since 0.1.0
 * @category models
 */
export interface Data {
  readonly bytes: number
  readonly strategies: ReadonlyArray<{
    readonly strategy: Chunking.Strategy
    readonly time: Stats.Summary
    readonly chunks: number
    readonly batches: number
  }>
}

/** The first `bytes` UTF-8 bytes of the document (cut at a character boundary). */
const prefix = (text: string, bytes: number) => {
  const buffer = Buffer.from(text, "utf8")
  return buffer.subarray(0, Math.min(bytes, buffer.length)).toString("utf8").replace(/\uFFFD$/, "")
}

/**
 * Runs the benchmark.
 *
 * @since 0.1.0
 * @category benchmarks
 */
export const run = (config: Config) =>
  Effect.gen(function*() {
    const text = prefix(fs.readFileSync(config.document, "utf8"), config.bytes)
    const strategies: Array<Data["strategies"][number]> = []
    for (const strategy of Chunking.Strategy.literals) {
      const params = Either.getOrThrow(Chunking.validate({ ...Chunking.defaults, strategy }))
      const times: Array<number> = []
      let chunks = 0
      let batches = 0
      for (let r = 0; r < config.repeats; r++) {
        yield* Stats.collectGarbage
        const start = performance.now()
        const planned = Chunking.plan(text, params)
        times.push(performance.now() - start)
        batches = planned.length
        chunks = planned.reduce((n, b) => n + b.chunks.length, 0)
      }
      strategies.push({ strategy, time: Stats.summarize(times), chunks, batches })
    }
    const data: Data = { bytes: Buffer.byteLength(text, "utf8"), strategies }
    return { section: section(config, data), data } satisfies Report.Result<Data>
  })

const section = (config: Config, data: Data): Report.Section => ({
  id: "8",
  title: "Chunking speed",
  method: `\`Chunking.plan\` (chunk + batch) on the first ${Stats.bytes(data.bytes)} of ` +
    `${path.basename(config.document)} with the default parameters (window ${Chunking.defaults.windowSize}, ` +
    `overlap ${Chunking.defaults.overlap}, batch ${Chunking.defaults.batchSize}), ${config.repeats} repeats.`,
  tables: [{
    header: ["Strategy", "Time (min / median / max)", "MB/s (median)", "Chunks", "Batches"],
    rows: data.strategies.map((s) => [
      s.strategy,
      Stats.range(s.time),
      Stats.num(data.bytes / 1048576 / (s.time.median / 1000), 1),
      Stats.int(s.chunks),
      Stats.int(s.batches)
    ])
  }],
  targets: data.strategies.map((s) => ({
    name: `Chunking 1 MB, ${s.strategy}`,
    goal: "well under 1 s (< 250 ms)",
    measured: Stats.ms(s.time.median),
    status: s.time.median < 250 ? "met" as const : "missed" as const,
    comment: s.time.median < 250 ? undefined : `${Stats.ratio(s.time.median / 250)} the 250 ms budget.`
  })),
  notes: data.bytes < 1_000_000 ?
    [`Smoke size: ${Stats.bytes(data.bytes)}, not 1 MB; the target applies to full and quick runs only.`] :
    []
})
