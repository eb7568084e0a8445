import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as ChunkingSpeed from "../src/ChunkingSpeed.js"
import * as CommitOverhead from "../src/CommitOverhead.js"
import * as Concurrency from "../src/Concurrency.js"
import * as EntityGrowth from "../src/EntityGrowth.js"
import * as ExtractorSpeed from "../src/ExtractorSpeed.js"
import * as Harness from "../src/Harness.js"
import * as ManyRuns from "../src/ManyRuns.js"
import * as MergeScale from "../src/MergeScale.js"
import * as Report from "../src/Report.js"
import * as ResumeLatency from "../src/ResumeLatency.js"
import type * as Stats from "../src/Stats.js"
import * as Storage from "../src/Storage.js"

// Smoke versions: tiny sizes, no timing assertions; each benchmark must run and give sane figures.

const positive = (value: number, what: string) =>
  assert.isTrue(Number.isFinite(value) && value > 0, `${what}: ${value}`)

const sane = (summary: Stats.Summary, what: string, n: number) => {
  assert.strictEqual(summary.n, n, `${what}: samples`)
  positive(summary.min, `${what} min`)
  assert.isTrue(summary.min <= summary.median && summary.median <= summary.max, `${what}: min <= median <= max`)
}

/** The section renders, names a target and has no NaN in it. */
const renders = (section: Report.Section) => {
  assert.isAbove(section.targets.length, 0)
  const markdown = Report.markdown(
    {
      date: "2026-01-01T00:00:00.000Z",
      command: "pnpm bench",
      argv: "node bench/dist/main.js",
      mode: "full",
      machine: "test",
      node: process.version,
      sqlite: Harness.sqliteVersion(),
      libraries: "",
      commit: "test",
      durationMs: 1
    },
    [section]
  )
  assert.include(markdown, `## ${section.id}. ${section.title}`)
  assert.notInclude(markdown, "NaN")
  assert.isString(Report.text(section))
}

describe("benchmarks (smoke)", () => {
  it.live("1 commit overhead", () =>
    Effect.gen(function*() {
      const config = CommitOverhead.configs.smoke
      const { data, section } = yield* CommitOverhead.run(config).pipe(Effect.provide(Harness.quiet))
      for (const variant of ["engine", "grouped", "ungrouped", "store", "raw", "rawWrites"] as const) {
        sane(data[variant], variant, config.rounds)
      }
      positive(data.ratio, "ratio")
      positive(data.cpu.engine.median, "engine cpu")
      sane(data.afterFullGc.wall, "engine after a full collection", 2)
      positive(data.afterFullGc.cpu.median, "engine cpu after a full collection")
      assert.isAbove(data.outputBytes, 8_000)
      assert.isBelow(data.storedBytes, data.outputBytes)
      renders(section)
    }))

  it.live("2 merge at scale and the naive fold", () =>
    Effect.gen(function*() {
      const config = MergeScale.configs.smoke
      const { data, section } = yield* MergeScale.run(config).pipe(Effect.provide(Harness.quiet))
      assert.strictEqual(data.sizes.length, config.sizes.length)
      for (const size of data.sizes) {
        sane(size.time, `merge ${size.batches}`, 1)
        positive(size.maxRssMb.median, "peak RSS")
        assert.isAbove(size.artifactBytes, 0)
      }
      // More batches, more artifact.
      assert.isAbove(data.sizes[1]!.artifactBytes, data.sizes[0]!.artifactBytes)
      assert.isTrue(Number.isFinite(data.exponent))
      for (const naive of data.naive) {
        sane(naive.naive, "naive", config.naiveRepeats)
        sane(naive.quarry, "quarry", config.naiveRepeats)
      }
      renders(section)
    }))

  it.live("3 resume latency", () =>
    Effect.gen(function*() {
      const config = ResumeLatency.configs.smoke
      const { data, section } = yield* ResumeLatency.run(config).pipe(Effect.provide(Harness.quiet))
      sane(data.few, "few", config.repeats)
      sane(data.many, "many", config.repeats)
      sane(data.tiny, "tiny", config.repeats)
      assert.strictEqual(data.totalBatches, config.many + 10)
      positive(data.ratio, "ratio")
      renders(section)
    }))

  it.live("4 concurrency", () =>
    Effect.gen(function*() {
      const config = Concurrency.configs.smoke
      const { data, section } = yield* Concurrency.run(config).pipe(Effect.provide(Harness.quiet))
      assert.deepStrictEqual(data.levels.map((l) => l.concurrency), [...config.levels])
      for (const level of data.levels) {
        sane(level.throughput, `concurrency ${level.concurrency}`, config.repeats)
        assert.isTrue(level.inOrder)
      }
      assert.strictEqual(data.levels[0]!.speedup, 1)
      renders(section)
    }))

  it.live("11 per-batch cost as a run grows", () =>
    Effect.gen(function*() {
      const config = EntityGrowth.configs.smoke
      const { data, section } = yield* EntityGrowth.run(config).pipe(Effect.provide(Harness.quiet))
      sane(data.early.wall, "early", config.repeats)
      sane(data.late.wall, "late", config.repeats)
      positive(data.cpuRatio, "cpu ratio")
      // The late run's context holds the entities of its committed batches: 50 new ones per batch at least.
      assert.isAtLeast(data.lateContext, config.many * 50)
      renders(section)
    }))

  it.live("5 many runs", () =>
    Effect.gen(function*() {
      const config = ManyRuns.configs.smoke
      const { data, section } = yield* ManyRuns.run(config).pipe(Effect.provide(Harness.quiet))
      assert.strictEqual(data.completed, config.runs * config.repeats)
      assert.strictEqual(data.failed, 0)
      assert.strictEqual(data.busyOrLocked, 0)
      assert.strictEqual(data.commits, config.runs * config.batchesPerRun * config.repeats)
      assert.isTrue(data.p50 <= data.p95 && data.p95 <= data.p99 && data.p99 <= data.max)
      positive(data.p50, "p50")
      renders(section)
    }))

  it.live("6 storage", () =>
    Effect.gen(function*() {
      const { data, section } = yield* Storage.run(Storage.configs.smoke).pipe(Effect.provide(Harness.quiet))
      assert.strictEqual(data.rows.length, 3)
      for (const row of data.rows) {
        positive(row.batches, "batches")
        positive(row.outputBytes, "output bytes")
        positive(row.blobBytes, "blob bytes")
        assert.isAbove(row.dbBytes, row.blobBytes)
        positive(row.ratio, "ratio")
        assert.isTrue(row.tables.some((t) => t.name === "batches"))
      }
      assert.strictEqual(data.rows[0]!.batches, Storage.configs.smoke.batches)
      renders(section)
    }))

  it.live("7 extractor speed", () =>
    Effect.gen(function*() {
      const { data, section } = yield* ExtractorSpeed.run(ExtractorSpeed.configs.smoke).pipe(
        Effect.provide(Harness.quiet)
      )
      sane(data.kbPerSecond, "KB/s", ExtractorSpeed.configs.smoke.repeats)
      sane(data.engine, "engine", ExtractorSpeed.configs.smoke.engineRepeats)
      assert.isAbove(data.mentions, 0)
      assert.isAbove(data.batches, 0)
      assert.strictEqual(data.cli._tag, "Pending")
      renders(section)
    }))

  it.live("8 chunking speed", () =>
    Effect.gen(function*() {
      const { data, section } = yield* ChunkingSpeed.run(ChunkingSpeed.configs.smoke).pipe(
        Effect.provide(Harness.quiet)
      )
      assert.deepStrictEqual(data.strategies.map((s) => s.strategy), ["chars", "sentences"])
      for (const strategy of data.strategies) {
        sane(strategy.time, strategy.strategy, ChunkingSpeed.configs.smoke.repeats)
        assert.isAbove(strategy.chunks, 10)
      }
      renders(section)
    }))
})
