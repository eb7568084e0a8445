/**
 * `pnpm bench [--quick] [--only 1,2,...] [--out FILE]`: runs every benchmark, prints each figure and writes
 * `docs/benchmarks.md` (quick mode writes `bench/results/benchmarks-quick.md` unless `--out` says otherwise, so
 * that it never overwrites the committed full results). `--child NAME REQUEST` is the entry of child measurements.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Heap from "@quarry/cli/Heap"
import * as Cause from "effect/Cause"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as ChunkingSpeed from "./ChunkingSpeed.js"
import * as CliStartup from "./CliStartup.js"
import * as Cluster from "./Cluster.js"
import * as CommitOverhead from "./CommitOverhead.js"
import * as Concurrency from "./Concurrency.js"
import * as EntityGrowth from "./EntityGrowth.js"
import { repoRoot } from "./ExtractorSpeed.js"
import * as ExtractorSpeed from "./ExtractorSpeed.js"
import * as Harness from "./Harness.js"
import * as ManyRuns from "./ManyRuns.js"
import * as MergeScale from "./MergeScale.js"
import * as Report from "./Report.js"
import * as ResumeLatency from "./ResumeLatency.js"
import * as ServiceLoad from "./ServiceLoad.js"
import * as Stats from "./Stats.js"
import * as Storage from "./Storage.js"

type Mode = "quick" | "full"

interface Benchmark {
  readonly id: string
  readonly title: string
  readonly run: (mode: Mode) => Effect.Effect<Report.Result<unknown>, unknown>
}

const benchmarks: ReadonlyArray<Benchmark> = [
  { id: "1", title: "Commit overhead", run: (mode) => CommitOverhead.run(CommitOverhead.configs[mode]) },
  { id: "2", title: "Merge at scale", run: (mode) => MergeScale.run(MergeScale.configs[mode]) },
  { id: "3", title: "Resume latency", run: (mode) => ResumeLatency.run(ResumeLatency.configs[mode]) },
  { id: "4", title: "Concurrency", run: (mode) => Concurrency.run(Concurrency.configs[mode]) },
  { id: "5", title: "Many runs", run: (mode) => ManyRuns.run(ManyRuns.configs[mode]) },
  { id: "6", title: "Storage", run: (mode) => Storage.run(Storage.configs[mode]) },
  { id: "7", title: "Extractor speed", run: (mode) => ExtractorSpeed.run(ExtractorSpeed.configs[mode]) },
  { id: "8", title: "Chunking speed", run: (mode) => ChunkingSpeed.run(ChunkingSpeed.configs[mode]) },
  { id: "9", title: "CLI start-up", run: (mode) => CliStartup.runStartup(CliStartup.startupConfigs[mode]) },
  { id: "11", title: "Per-batch cost as a run grows", run: (mode) => EntityGrowth.run(EntityGrowth.configs[mode]) },
  {
    id: "12",
    title: "status on a large database",
    run: (mode) => CliStartup.runStatus(CliStartup.statusConfigs[mode])
  },
  { id: "13", title: "Service load", run: (mode) => ServiceLoad.run(ServiceLoad.configs[mode]) },
  { id: "14", title: "Cluster", run: (mode) => Cluster.run(Cluster.configs[mode]) }
]

/** A section standing for a benchmark that crashed: the document says so rather than leaving it out. */
const failedSection = (benchmark: Benchmark, cause: Cause.Cause<unknown>): Report.Section => {
  const message = Cause.pretty(cause).split("\n").slice(0, 6).join(" ")
  return {
    id: benchmark.id,
    title: benchmark.title,
    method: "The benchmark failed in this run.",
    tables: [],
    targets: [{ name: benchmark.title, goal: "runs", measured: "failed", status: "missed", comment: message }],
    notes: [message]
  }
}

const git = (...args: ReadonlyArray<string>) => {
  try {
    return execFileSync("git", args, { cwd: repoRoot, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim()
  } catch {
    return ""
  }
}

const packageVersion = (name: string) => {
  try {
    const file = path.join(repoRoot, "bench/node_modules", name, "package.json")
    const json: unknown = JSON.parse(fs.readFileSync(file, "utf8"))
    return typeof json === "object" && json !== null && "version" in json ? String(json.version) : "?"
  } catch {
    return "?"
  }
}

const meta = (mode: Mode, argv: ReadonlyArray<string>, durationMs: number): Report.Meta => {
  const cpus = os.cpus()
  const head = git("rev-parse", "--short", "HEAD")
  const dirty = git("status", "--porcelain").length > 0
  return {
    date: new Date().toISOString(),
    command: mode === "quick" ? "pnpm bench --quick" : "pnpm bench",
    argv: ["node", ...process.execArgv, "bench/dist/main.js", ...argv].join(" "),
    mode,
    machine: `${cpus.length} × ${cpus[0]?.model ?? "unknown CPU"}, ${Stats.num(os.totalmem() / 2 ** 30, 0)} GB RAM, ` +
      `${os.type()} ${os.release()} ${os.arch()}; load average at start ${
        os.loadavg().map((l) => l.toFixed(2)).join(" ")
      }; databases in ${os.tmpdir()}`,
    node: process.version,
    sqlite: `${Harness.sqliteVersion()} (better-sqlite3 ${packageVersion("better-sqlite3")})`,
    libraries: `effect ${packageVersion("effect")}`,
    commit: head === "" ? "unknown" : `${head}${dirty ? " (working tree had uncommitted changes)" : ""}`,
    durationMs
  }
}

const flag = (argv: ReadonlyArray<string>, name: string) => {
  const i = argv.indexOf(name)
  return i >= 0 ? argv[i + 1] : undefined
}

const benchProgram = (argv: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const mode: Mode = argv.includes("--quick") ? "quick" : "full"
    const only = flag(argv, "--only")?.split(",")
    const out = path.resolve(
      repoRoot,
      flag(argv, "--out") ?? (mode === "quick" ? "bench/results/benchmarks-quick.md" : "docs/benchmarks.md")
    )
    const started = performance.now()
    const loadAtStart = os.loadavg()
    yield* Console.log(
      `Quarry benchmarks, ${mode} mode (load average ${loadAtStart.map((l) => l.toFixed(2)).join(" ")})`
    )
    const sections: Array<Report.Section> = []
    for (const benchmark of benchmarks) {
      if (only !== undefined && !only.includes(benchmark.id)) continue
      yield* Console.log(`\n-- ${benchmark.id}. ${benchmark.title} ...`)
      const begin = performance.now()
      const section = yield* benchmark.run(mode).pipe(
        Effect.map((result) => result.section),
        Effect.catchAllCause((cause) => Effect.succeed(failedSection(benchmark, cause)))
      )
      yield* Stats.collectGarbage
      sections.push(section)
      yield* Console.log(Report.text(section))
      yield* Console.log(`   (${((performance.now() - begin) / 1000).toFixed(1)} s)`)
    }
    const info = meta(mode, argv, performance.now() - started)
    fs.mkdirSync(path.dirname(out), { recursive: true })
    fs.writeFileSync(out, Report.markdown(info, sections))
    yield* Console.log(`\nWrote ${path.relative(repoRoot, out)} in ${(info.durationMs / 1000).toFixed(1)} s`)
  })

const childProgram = (name: string, request: string) =>
  Effect.gen(function*() {
    switch (name) {
      case "merge": {
        const decoded = yield* Schema.decodeUnknown(Schema.parseJson(MergeScale.MergeRequest))(request)
        // What the `quarry` executable does first (packages/cli/src/bin.ts), unless the request asks for V8's defaults.
        if (decoded.v8Defaults !== true) Heap.configure()
        const sample = yield* MergeScale.mergeOnce(decoded)
        yield* Console.log(JSON.stringify(sample))
        return
      }
      default:
        return yield* Effect.die(new Error(`unknown child measurement ${name}`))
    }
  })

const argv = process.argv.slice(2)
const program = argv[0] === "--child" ? childProgram(argv[1] ?? "", argv[2] ?? "") : benchProgram(argv)

NodeRuntime.runMain(program.pipe(Effect.provide(Harness.quiet)))
