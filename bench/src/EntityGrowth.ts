/**
 * Benchmark 11 (P11): the engine's cost per batch late in a long run against early in it, for a run whose batches
 * each bring 50 new entities and whose extractor asks for the known-entity context on every batch (as the offline
 * and LLM extractors do).
 *
 * @since 0.1.0
 */
import type * as Extractor from "@quarry/core/Extractor"
import { RunId } from "@quarry/core/Run"
import { RunStore } from "@quarry/core/RunStore"
import * as Workflow from "@quarry/core/Workflow"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as path from "node:path"
import * as Harness from "./Harness.js"
import type * as Report from "./Report.js"
import * as Stats from "./Stats.js"
import * as Synthetic from "./Synthetic.js"

/**
 * Committed batches before the early and the late window, the window's length, and repeats.
 *
 * @since 0.1.0
 * @category models
 */
export interface Config {
  readonly few: number
  readonly many: number
  readonly window: number
  readonly repeats: number
}

/**
 * Sizes per mode.
 *
 * @since 0.1.0
 * @category configs
 */
export const configs: Record<"smoke" | "quick" | "full", Config> = {
  smoke: { few: 2, many: 20, window: 4, repeats: 1 },
  quick: { few: 10, many: 10_000, window: 40, repeats: 2 },
  full: { few: 10, many: 10_000, window: 100, repeats: 5 }
}

/** 100 mentions per batch, half of them entities first seen in that batch: 50 new entities per batch. */
const shape: Synthetic.Shape = { entities: 100, relations: 12, pool: 2000 }

/**
 * Per-batch costs in microseconds, and the context sizes seen.
 *
 * @since 0.1.0
 * @category models
 */
export interface Data {
  readonly early: { readonly wall: Stats.Summary; readonly cpu: Stats.Summary }
  readonly late: { readonly wall: Stats.Summary; readonly cpu: Stats.Summary }
  /** Late / early per repeat (adjacent in time). */
  readonly pairedRatio: Stats.Summary
  readonly cpuRatio: number
  /** From `RunStarted` to the first `BatchCommitted` of the late run: includes reading its whole context once. */
  readonly lateFirstBatchMs: Stats.Summary
  readonly earlyFirstBatchMs: Stats.Summary
  readonly lateContext: number
}

interface Sample {
  readonly wall: number
  readonly cpu: number
  readonly firstMs: number
  readonly context: number
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
    const file = path.join(dir, "growth.db")
    const total = config.many + config.window * (config.repeats + 1) + 10
    const text = Synthetic.input(total)
    const outputs = new Map<number, Extractor.BatchOutput>()
    const stops = yield* Queue.unbounded<number>()
    let stopAt = 0
    let lastContext = 0
    const extractor: Extractor.Extractor = {
      name: "bench-growth",
      version: "1",
      configHash: "none",
      // Asks for the context, as contextual extractors do, then replays a precomputed output; the batch at `stopAt`
      // signals and waits to be interrupted, so the run stops right after its window.
      extract: (input) =>
        input.batchIndex >= stopAt ?
          Effect.zipRight(Queue.offer(stops, input.batchIndex), Effect.never) :
          Effect.map(Effect.orDie(input.knownEntities), (known) => {
            lastContext = known.length
            return outputs.get(input.batchIndex)!
          })
    }
    const layer = Harness.engineLayer(file, [extractor])
    const outputFor = (i: number) => Synthetic.output(i, shape)
    const create = (name: string) =>
      Workflow.create({
        runId: RunId.make(name),
        input: text,
        extractor: extractor.name,
        chunking: Synthetic.chunking,
        output: { path: path.join(dir, `${name}.nt`), format: "ntriples" }
      }).pipe(Effect.provide(layer))
    const late = (yield* create("late")).id
    yield* Harness.populate(file, late, config.many, outputFor)

    const samples = yield* Effect.gen(function*() {
      const store = yield* RunStore
      const interrupt = (runId: RunId) =>
        Effect.flatMap(store.claim(runId, Workflow.makeOwnerId(), Workflow.defaultLeaseMs), (claimed) =>
          store.finish(runId, Option.getOrThrow(claimed.holder), { status: "interrupted" }))
      yield* interrupt(late)
      // Executes `window` more batches of an interrupted run; the clock runs from its first commit to its last.
      const measure = (runId: RunId) =>
        Effect.gen(function*() {
          const from = (yield* store.getRun(runId)).committedBatches
          outputs.clear()
          for (let i = from; i < from + config.window; i++) {
            outputs.set(i, outputFor(i))
          }
          stopAt = from + config.window
          yield* Stats.collectGarbage
          const commits: Array<{ readonly wall: number; readonly cpu: number }> = []
          let started = 0
          const fiber = yield* Effect.fork(Workflow.execute(runId, {
            onEvent: (event) =>
              Effect.sync(() => {
                if (event._tag === "RunStarted") {
                  started = performance.now()
                }
                if (event._tag !== "BatchCommitted") {
                  return
                }
                const cpu = process.cpuUsage()
                commits.push({ wall: performance.now(), cpu: cpu.user + cpu.system })
              })
          }))
          yield* Queue.take(stops)
          yield* Fiber.interrupt(fiber)
          const first = commits[0]!
          const last = commits[commits.length - 1]!
          const n = commits.length - 1
          return {
            wall: (last.wall - first.wall) * 1000 / n,
            cpu: (last.cpu - first.cpu) / n,
            firstMs: first.wall - started,
            context: lastContext
          }
        })
      const out: { early: Array<Sample>; late: Array<Sample>; lateContext: number } = {
        early: [],
        late: [],
        lateContext: 0
      }
      for (let r = -1; r < config.repeats; r++) {
        // A fresh early run each time (the late one just continues: a few hundred batches more are nothing next
        // to its length).
        const early = (yield* create(`early-${r + 1}`)).id
        yield* Harness.populate(file, early, config.few, outputFor)
        yield* interrupt(early)
        const pair = r % 2 === 0 ?
          { e: yield* measure(early), l: yield* measure(late) } :
          { l: yield* measure(late), e: yield* measure(early) }
        if (r < 0) {
          continue
        }
        out.early.push(pair.e)
        out.late.push(pair.l)
        out.lateContext = pair.l.context
      }
      return out
    }).pipe(Effect.provide(layer))

    const summary = (list: ReadonlyArray<Sample>) => ({
      wall: Stats.summarize(list.map((s) =>
        s.wall
      )),
      cpu: Stats.summarize(list.map((s) => s.cpu))
    })
    const early = summary(samples.early)
    const lateSummary = summary(samples.late)
    const data: Data = {
      early,
      late: lateSummary,
      pairedRatio: Stats.summarize(samples.late.map((l, i) => l.wall / samples.early[i]!.wall)),
      cpuRatio: lateSummary.cpu.median / early.cpu.median,
      lateFirstBatchMs: Stats.summarize(samples.late.map((s) => s.firstMs)),
      earlyFirstBatchMs: Stats.summarize(samples.early.map((s) => s.firstMs)),
      lateContext: samples.lateContext
    }
    return { section: section(config, data), data } satisfies Report.Result<Data>
  }))

const us = (value: number) => `${Stats.num(value)} µs`

const section = (config: Config, data: Data): Report.Section => {
  const measured = data.pairedRatio.median
  const met = measured <= 1.2 && data.cpuRatio <= 1.2
  return {
    id: "11",
    title: "Per-batch cost as a run grows",
    method: `Runs of synthetic batches of ${shape.entities} mentions, ${shape.entities / 2} of them entities first ` +
      `seen in that batch (${shape.entities / 2} new entities per batch), filled by the raw writer to ` +
      `${Stats.int(config.few)} (a fresh run per repeat) and ${Stats.int(config.many)} committed batches (one run), ` +
      "then resumed through `Workflow.execute` (concurrency 1) with an extractor that asks for the known-entity " +
      `context on every batch (as the offline and LLM extractors do) and replays precomputed outputs, for ` +
      `${Stats.int(config.window)} batches; per-batch time runs from the window's first \`BatchCommitted\` event to ` +
      `its last (extract call with its context, output check, commit, event). ${config.repeats} repeats after a ` +
      "warm-up, the order of the two alternating.",
    tables: [{
      header: ["Position", "Wall per batch (min / median / max)", "CPU per batch (median)", "First batch after resume"],
      rows: [
        [
          `batch ${Stats.int(config.few)}`,
          Stats.range(data.early.wall, us),
          us(data.early.cpu.median),
          Stats.range(data.earlyFirstBatchMs, Stats.ms)
        ],
        [
          `batch ${Stats.int(config.many)} (context of ${Stats.int(data.lateContext)} entities)`,
          Stats.range(data.late.wall, us),
          us(data.late.cpu.median),
          Stats.range(data.lateFirstBatchMs, Stats.ms)
        ]
      ]
    }],
    targets: [{
      name: "P11 per-batch cost, late vs early",
      goal: `batch ${Stats.int(config.many)} / batch ${Stats.int(config.few)} <= 1.2x`,
      measured: `${Stats.ratio(measured)} wall (median of per-repeat ratios; range ${
        Stats.range(data.pairedRatio, Stats.ratio)
      }); CPU ${Stats.ratio(data.cpuRatio)}`,
      status: met ? "met" : "missed"
    }],
    notes: [
      "Each execution keeps the run's known entities in memory, read from the store once per committed batch " +
      "(`entities_by_first_batch` index) and turned into context entries once; a batch is handed that array itself " +
      "when it is exactly its context (always at concurrency 1), so a batch costs the same whatever its position. " +
      "Before, every batch mapped and copied every entity known so far.",
      "The first batch after a resume reads the whole context once (the last column): that grows with the run, once " +
      "per execution, not per batch. It decodes every entity row with Schema and computes its IRI; at " +
      `${Stats.int(data.lateContext)} entities it took ${Stats.ms(data.lateFirstBatchMs.median)} here.`,
      "What still grows per batch is not the context (its cost is per new entity): the late run's inserts go into " +
      "an entity table and index of hundreds of thousands of rows instead of about a thousand (an explanation not " +
      "verified by a separate measurement)."
    ]
  }
}
