/**
 * Benchmarks 9 and 12: the `quarry` command as users run it (the bundle `bin` points at, spawned as a process).
 * 9: start-up of `--version`, `status <id>` and `runs` against `node -e 0`. 12: `status <id>` on a database of
 * gigabytes against one of megabytes.
 *
 * @since 0.1.0
 */
import * as CapitalizedExtractor from "@quarry/core/CapitalizedExtractor"
import { RunId } from "@quarry/core/Run"
import { RunStore } from "@quarry/core/RunStore"
import * as Workflow from "@quarry/core/Workflow"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { spawnSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { cliBin, repoRoot } from "./ExtractorSpeed.js"
import * as Harness from "./Harness.js"
import type * as Report from "./Report.js"
import * as Stats from "./Stats.js"
import * as Synthetic from "./Synthetic.js"

/** The CLI compiled by `tsc -b` but not bundled: what `bin` pointed at before the bundle. */
const unbundledBin = path.join(repoRoot, "packages/cli/dist/bin.js")

/**
 * What one spawned command took: wall clock and CPU time (user + system) of the `node` process, in milliseconds.
 *
 * @since 0.1.0
 * @category models
 */
export interface Sample {
  readonly wall: number
  readonly cpu: number
}

const seconds = (text: string) => {
  const m = /^(\d+)m([\d.]+)s$/.exec(text)
  return m === null ? Number.NaN : (Number(m[1]) * 60 + Number(m[2])) * 1000
}

/**
 * Spawns `node <args>` in `cwd` through bash, whose `times` reports the CPU time of its finished children (Node
 * reports none for a child); fails when the command exits non-zero. The wall time includes bash's own start, the
 * same for every command.
 *
 * @since 0.1.0
 * @category timing
 */
export const spawnTimed = (args: ReadonlyArray<string>, cwd: string): Effect.Effect<Sample> =>
  Effect.sync(() => {
    const script = "\"$0\" \"$@\" > /dev/null; status=$?; times; exit $status"
    const start = performance.now()
    const child = spawnSync("bash", ["-c", script, process.execPath, ...args], { cwd, encoding: "utf8" })
    const wall = performance.now() - start
    if (child.status !== 0) {
      throw new Error(`node ${args.join(" ")} exited ${child.status ?? child.signal}: ${child.stderr.slice(0, 500)}`)
    }
    // `times` prints the shell's user and system time, then its children's.
    const [user = "", system = ""] = (child.stdout.trim().split("\n").at(-1) ?? "").split(" ")
    return { wall, cpu: seconds(user) + seconds(system) }
  })

/** Wall and CPU time of one command over the repeats. */
interface Timing {
  readonly wall: Stats.Summary
  readonly cpu: Stats.Summary
}

/**
 * Times every command `repeats` times after one warm-up each, rotating their order every round; answers with the
 * summaries of a command by name.
 */
const rounds = <K extends string>(
  commands: ReadonlyArray<readonly [K, ReadonlyArray<string>]>,
  repeats: number,
  cwd: string
) =>
  Effect.gen(function*() {
    const samples = new Map<K, Array<Sample>>(commands.map(([name]) => [name, []]))
    for (const [, args] of commands) yield* spawnTimed(args, cwd)
    for (let r = 0; r < repeats; r++) {
      for (let i = 0; i < commands.length; i++) {
        const [name, args] = commands[(i + r) % commands.length]!
        samples.get(name)!.push(yield* spawnTimed(args, cwd))
      }
    }
    return (name: K): Timing => {
      const list = samples.get(name) ?? []
      return { wall: Stats.summarize(list.map((s) => s.wall)), cpu: Stats.summarize(list.map((s) => s.cpu)) }
    }
  })

/**
 * A database holding run `runId` with `batches` committed batches, each storing `blob` (an output written by the raw
 * writer as `commitBatch` writes it), left `interrupted` as after a crash.
 */
const fill = (file: string, runId: RunId, batches: number, encoded: Harness.Encoded) =>
  Effect.gen(function*() {
    yield* Workflow.create({
      runId,
      input: Synthetic.input(batches),
      extractor: "capitalized",
      chunking: Synthetic.chunking,
      output: { path: path.join(path.dirname(file), `${runId}.ttl`), format: "turtle" }
    }).pipe(Effect.provide(Harness.engineLayer(file, [CapitalizedExtractor.make()])))
    yield* Effect.scoped(Effect.gen(function*() {
      const writer = yield* Harness.openRaw(file, { synchronous: "OFF" })
      const run = writer.run(runId)
      const step = 500
      for (let from = 0; from < batches; from += step) {
        writer.commitMany(run, Array.from({ length: Math.min(step, batches - from) }, () => encoded))
        yield* Effect.yieldNow()
      }
    }))
    yield* Effect.gen(function*() {
      const store = yield* RunStore
      const { holder } = yield* store.claim(runId, Workflow.makeOwnerId(), Workflow.defaultLeaseMs)
      yield* Option.match(holder, {
        onNone: () => Effect.void,
        onSome: (holder) => store.finish(runId, holder, { status: "interrupted" })
      })
    }).pipe(Effect.provide(Harness.engineLayer(file, [])))
  })

/** A batch output that stores about `kb` KB: one mention carrying random text, which deflate cannot shrink much. */
const bulkyOutput = (kb: number) =>
  Harness.encode({
    entities: [{
      label: "Ishmael",
      type: "http://schema.org/Person",
      span: { start: 0, end: 7 },
      confidence: 1,
      attributes: { note: randomBytes(Math.round(kb * 1024)).toString("base64") }
    }],
    relations: []
  })

// ---------------------------------------------------------------------------------------------------------------
// 9. CLI start-up

/**
 * Repeats per mode.
 *
 * @since 0.1.0
 * @category models
 */
export interface StartupConfig {
  readonly repeats: number
}

/**
 * Sizes per mode.
 *
 * @since 0.1.0
 * @category configs
 */
export const startupConfigs: Record<"smoke" | "quick" | "full", StartupConfig> = {
  smoke: { repeats: 1 },
  quick: { repeats: 5 },
  full: { repeats: 10 }
}

const startupTargets = { version: 3, status: 5, runs: 5 } as const

/**
 * Wall times in milliseconds.
 *
 * @since 0.1.0
 * @category models
 */
export interface StartupData {
  readonly node: Timing
  readonly version: Timing
  readonly status: Timing
  readonly runs: Timing
  readonly unbundledVersion: Timing
  readonly unbundledStatus: Timing
  readonly bundleBytes: number
  readonly startupBytes: { readonly version: number; readonly command: number }
}

/**
 * What `--version` loads (the entry file and the chunks it imports statically) and what every other command loads
 * (that, plus the program the entry imports, `main`, and its static imports), in bytes.
 */
const startupBytes = (): { readonly version: number; readonly command: number } => {
  const meta: { outputs: Record<string, { bytes: number; imports: Array<{ path: string; kind: string }> }> } = JSON
    .parse(fs.readFileSync(path.join(path.dirname(cliBin), "meta.json"), "utf8"))
  const entry = Object.keys(meta.outputs).find((file) => file.endsWith("/quarry.js"))!
  const closure = (file: string, seen: Set<string>): Set<string> => {
    if (seen.has(file) || meta.outputs[file] === undefined) return seen
    seen.add(file)
    for (const i of meta.outputs[file].imports) if (i.kind === "import-statement") closure(i.path, seen)
    return seen
  }
  const bytes = (files: Set<string>) => [...files].reduce((sum, file) => sum + meta.outputs[file]!.bytes, 0)
  const version = closure(entry, new Set())
  const command = new Set(version)
  for (const i of meta.outputs[entry]!.imports) if (i.kind === "dynamic-import") closure(i.path, command)
  return { version: bytes(version), command: bytes(command) }
}

/**
 * Runs benchmark 9.
 *
 * @since 0.1.0
 * @category benchmarks
 */
export const runStartup = (config: StartupConfig) =>
  Effect.scoped(Effect.gen(function*() {
    const dir = yield* Harness.tempDir()
    const db = path.join(dir, "quarry.db")
    const runId = RunId.make("startup")
    yield* fill(db, runId, 20, Harness.encode(Synthetic.output(0, Synthetic.small)))
    const of = yield* rounds(
      [
        ["node", ["-e", "0"]],
        ["version", [cliBin, "--version"]],
        ["status", [cliBin, "status", runId, "--db", db]],
        ["runs", [cliBin, "runs", "--db", db]],
        ["unbundledVersion", [unbundledBin, "--version"]],
        ["unbundledStatus", [unbundledBin, "status", runId, "--db", db]]
      ],
      config.repeats,
      dir
    )
    const bundleBytes = fs.readdirSync(path.dirname(cliBin)).filter((f) => f.endsWith(".js"))
      .reduce((sum, f) => sum + fs.statSync(path.join(path.dirname(cliBin), f)).size, 0)
    const data: StartupData = {
      node: of("node"),
      version: of("version"),
      status: of("status"),
      runs: of("runs"),
      unbundledVersion: of("unbundledVersion"),
      unbundledStatus: of("unbundledStatus"),
      bundleBytes,
      startupBytes: startupBytes()
    }
    return { section: startupSection(config, data), data } satisfies Report.Result<StartupData>
  }))

const startupSection = (config: StartupConfig, data: StartupData): Report.Section => {
  const ratio = (t: Timing) => t.wall.median / data.node.wall.median
  const cpuRatio = (t: Timing) => t.cpu.median / data.node.cpu.median
  const row = (label: string, t: Timing): ReadonlyArray<string> => [
    label,
    Stats.range(t.wall),
    Stats.ratio(ratio(t)),
    Stats.ms(t.cpu.median),
    Stats.ratio(cpuRatio(t))
  ]
  const target = (name: string, t: Timing, goal: number): Report.Target => {
    const measured = ratio(t)
    return {
      name,
      goal: `<= ${goal}x node -e 0`,
      measured: `${Stats.ratio(measured)} wall (${Stats.ms(t.wall.median)} vs ${
        Stats.ms(data.node.wall.median)
      }, medians of ${config.repeats}); CPU ${Stats.ratio(cpuRatio(t))}`,
      status: measured <= goal ? "met" : "missed",
      comment: measured <= goal ?
        undefined :
        `missed by ${Stats.num((measured / goal - 1) * 100, 0)}% (CPU time ${Stats.ratio(cpuRatio(t))}); see the ` +
        "notes of section 9."
    }
  }
  return {
    id: "9",
    title: "CLI start-up",
    method: `Each command is a fresh \`node\` process spawned by the bench (through bash, whose \`times\` gives the ` +
      `process's CPU time) and timed from spawn to exit, ${config.repeats} times after one warm-up, the order rotating ` +
      `every round. \`quarry\` is the bundle \`bin\` points at (\`packages/cli/dist/bundle/quarry.js\`); *unbundled* ` +
      `is the same program as \`tsc -b\` compiled it (\`packages/cli/dist/bin.js\`). \`status\` and \`runs\` read ` +
      "a database with one interrupted run of 20 batches.",
    tables: [{
      header: ["Command", "Wall time (min / median / max)", "vs node -e 0", "CPU time (median)", "CPU vs node -e 0"],
      rows: [
        row("node -e 0", data.node),
        row("quarry --version", data.version),
        row("quarry status <id>", data.status),
        row("quarry runs", data.runs),
        row("unbundled: quarry --version", data.unbundledVersion),
        row("unbundled: quarry status <id>", data.unbundledStatus)
      ]
    }],
    targets: [
      target("P9 quarry --version", data.version, startupTargets.version),
      target("P9 quarry status <id>", data.status, startupTargets.status),
      target("P9 quarry runs", data.runs, startupTargets.runs)
    ],
    notes: [
      `The bundle is ${Stats.bytes(data.bundleBytes)} of JavaScript. \`quarry --version\` loads ${
        Stats.bytes(data.startupBytes.version)
      } of it: the entry answers it before the program loads. Every other command loads ${
        Stats.bytes(data.startupBytes.command)
      } (the entry, the program it imports and that program's static imports: effect, @effect/cli and the commands; ` +
      "the SQLite driver and the store come with the first command that opens the database). " +
      "The llm extractor's tokenizer and undici are chunks loaded only by a command that runs them; the offline " +
      "extractor (with compromise and chrono-node) stays outside the bundle, imported from `@quarry/offline` by a " +
      "command that runs it, because it reads its gazetteers from files beside its modules (`test/bundle.test.ts` " +
      "checks both on the metafile).",
      "Before this round every invocation loaded the offline extractor (compromise builds its lexicon at import, " +
      "about 600 ms of CPU here) and undici through barrel imports, and Node resolved and read hundreds of files; " +
      "the unbundled rows still benefit from the lazy loading, so the difference to them is the bundle alone.",
      "Why `--version` skips the program: a bundle of only effect, @effect/cli and @effect/platform-node with seven " +
      "empty subcommands answered `--version` in 3.0x `node -e 0` (CPU time, median of 15, measured by hand in an " +
      "earlier round), so no lazier loading of the commands could bring it under 3x."
    ]
  }
}

// ---------------------------------------------------------------------------------------------------------------
// 12. status on a large database

/**
 * Database sizes per mode (bytes, approximate) and repeats.
 *
 * @since 0.1.0
 * @category models
 */
export interface StatusConfig {
  readonly smallBytes: number
  readonly largeBytes: number
  readonly repeats: number
  /** Repeats of `doctor`, which reads the whole file. */
  readonly doctorRepeats: number
}

/**
 * Sizes per mode.
 *
 * @since 0.1.0
 * @category configs
 */
export const statusConfigs: Record<"smoke" | "quick" | "full", StatusConfig> = {
  smoke: { smallBytes: 1 * 2 ** 20, largeBytes: 4 * 2 ** 20, repeats: 1, doctorRepeats: 1 },
  quick: { smallBytes: 10 * 2 ** 20, largeBytes: 200 * 2 ** 20, repeats: 5, doctorRepeats: 2 },
  full: { smallBytes: 10 * 2 ** 20, largeBytes: 2 * 2 ** 30, repeats: 10, doctorRepeats: 3 }
}

/**
 * Wall times in milliseconds and file sizes in bytes.
 *
 * @since 0.1.0
 * @category models
 */
export interface StatusData {
  readonly smallFile: number
  readonly largeFile: number
  readonly statusSmall: Stats.Summary
  readonly statusLarge: Stats.Summary
  readonly statusBigRun: Stats.Summary
  readonly doctorSmall: Stats.Summary
  readonly doctorLarge: Stats.Summary
  readonly fillMs: number
  readonly bigRunBatches: number
}

const batchKb = 48

/**
 * Runs benchmark 12.
 *
 * @since 0.1.0
 * @category benchmarks
 */
export const runStatus = (config: StatusConfig) =>
  Effect.scoped(Effect.gen(function*() {
    const dir = yield* Harness.tempDir()
    const encoded = bulkyOutput(batchKb)
    const smallBatches = Math.max(1, Math.round(config.smallBytes / encoded.blob.length))
    const bigRunBatches = Math.max(1, Math.round((config.largeBytes - config.smallBytes) / encoded.blob.length))
    const small = path.join(dir, "small.db")
    const large = path.join(dir, "large.db")
    const shown = RunId.make("shown")
    const big = RunId.make("big")
    const fillStart = performance.now()
    // Both databases hold the same run; the large one also holds a run that makes up the rest of its size.
    yield* fill(small, shown, smallBatches, encoded)
    yield* fill(large, shown, smallBatches, encoded)
    yield* fill(large, big, bigRunBatches, encoded)
    const fillMs = performance.now() - fillStart
    const statusOf = (db: string, runId: string) => [cliBin, "status", runId, "--db", db]
    const status = yield* rounds(
      [
        ["small", statusOf(small, shown)],
        ["large", statusOf(large, shown)],
        ["bigRun", statusOf(large, big)]
      ],
      config.repeats,
      dir
    )
    const doctor = yield* rounds(
      [
        ["small", [cliBin, "doctor", "--db", small]],
        ["large", [cliBin, "doctor", "--db", large]]
      ],
      config.doctorRepeats,
      dir
    )
    const data: StatusData = {
      statusSmall: status("small").wall,
      statusLarge: status("large").wall,
      statusBigRun: status("bigRun").wall,
      doctorSmall: doctor("small").wall,
      doctorLarge: doctor("large").wall,
      smallFile: fs.statSync(small).size,
      largeFile: fs.statSync(large).size,
      fillMs,
      bigRunBatches
    }
    return { section: statusSection(config, data), data } satisfies Report.Result<StatusData>
  }))

const statusSection = (config: StatusConfig, data: StatusData): Report.Section => {
  const ratio = data.statusLarge.median / data.statusSmall.median
  const goal = 1.5
  const sizes = `${Stats.bytes(data.largeFile)} vs ${Stats.bytes(data.smallFile)}`
  return {
    id: "12",
    title: "status on a large database",
    method:
      `Two databases filled by the raw writer (as \`commitBatch\` writes; ${
        Stats.int(batchKb)
      } KB of random text per batch, which deflate cannot shrink): the small one (${
        Stats.bytes(data.smallFile)
      }) holds run \`shown\`; the large one (${Stats.bytes(data.largeFile)}) holds the same run plus run \`big\` of ${
        Stats.int(data.bigRunBatches)
      } batches (filled in ${Stats.ms(data.fillMs)}). Each command is a spawned \`quarry\` process (the bundle), ` +
      `${config.repeats} times after a warm-up, alternating (\`doctor\` ${config.doctorRepeats} times). The files ` +
      "are in the page cache (just written), the best case for a full read.",
    tables: [{
      header: ["Command", "Small database", "Large database", "Large / small"],
      rows: [
        [
          "quarry status shown",
          Stats.range(data.statusSmall),
          Stats.range(data.statusLarge),
          Stats.ratio(ratio)
        ],
        ["quarry status big (the large run itself)", "—", Stats.range(data.statusBigRun), "—"],
        [
          "quarry doctor (quick_check: what every status paid before)",
          Stats.range(data.doctorSmall),
          Stats.range(data.doctorLarge),
          Stats.ratio(data.doctorLarge.median / data.doctorSmall.median)
        ]
      ]
    }],
    targets: [{
      name: "P12 quarry status, large vs small database",
      goal: `<= ${goal}x (${sizes})`,
      measured: `${Stats.ratio(ratio)} (${Stats.ms(data.statusLarge.median)} vs ${Stats.ms(data.statusSmall.median)})`,
      status: ratio <= goal ? "met" : "missed",
      comment: ratio <= goal ? undefined : `missed by ${Stats.num((ratio / goal - 1) * 100, 0)}%.`
    }],
    notes: [
      "Read-only commands (`status`, `runs`, `export`, `cancel`) no longer run `quick_check`; `doctor` always does, " +
      "and `start`/`resume` do after an unclean shutdown (docs/architecture.md, \"Durability at the entry points\"). " +
      "`doctor` here measures the full read that every `status` used to pay.",
      "`status big` reads the large run's skipped batches (`WHERE run_id = ? AND status = 'skipped'`), which walks " +
      "every batch row of that run: it grows with the run, not with the file."
    ]
  }
}
