/**
 * Benchmark 7: speed of the offline extractor on Moby-Dick (KB/s of document), the same through the engine in
 * process, and the end-to-end time of `quarry start` as a child process.
 *
 * @since 0.1.0
 */
import * as Chunking from "@quarry/core/Chunking"
import * as DefaultOntology from "@quarry/core/DefaultOntology"
import { RunId } from "@quarry/core/Run"
import * as Workflow from "@quarry/core/Workflow"
import * as OfflineExtractor from "@quarry/offline/OfflineExtractor"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as Harness from "./Harness.js"
import type * as Report from "./Report.js"
import * as Stats from "./Stats.js"
import { mobyDick } from "./Storage.js"

/**
 * Document prefix, repeats of each measurement, and whether to run the CLI.
 *
 * @since 0.1.0
 * @category models
 */
export interface Config {
  readonly document: string
  readonly documentChars?: number | undefined
  readonly repeats: number
  readonly engineRepeats: number
  readonly cliRepeats: number
}

/**
 * Sizes per mode.
 *
 * @since 0.1.0
 * @category configs
 */
export const configs: Record<"smoke" | "quick" | "full", Config> = {
  smoke: { document: mobyDick, documentChars: 20_000, repeats: 1, engineRepeats: 1, cliRepeats: 0 },
  quick: { document: mobyDick, documentChars: 100_000, repeats: 1, engineRepeats: 1, cliRepeats: 1 },
  full: { document: mobyDick, repeats: 2, engineRepeats: 1, cliRepeats: 1 }
}

/**
 * Where the repository is, from this module (`bench/src` or `bench/dist`).
 *
 * @since 0.1.0
 * @category constants
 */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")

/**
 * The CLI's entry point once it is built.
 *
 * @since 0.1.0
 * @category constants
 */
export const cliBin = path.join(repoRoot, "packages/cli/dist/bundle/quarry.js")

/**
 * Figures of the extractor and of the end-to-end runs.
 *
 * @since 0.1.0
 * @category models
 */
export interface Data {
  readonly extractor: string
  readonly documentBytes: number
  readonly batches: number
  readonly mentions: number
  readonly kbPerSecond: Stats.Summary
  readonly engine: Stats.Summary
  readonly cli:
    | { readonly _tag: "Pending"; readonly reason: string }
    | { readonly _tag: "Failed"; readonly reason: string }
    | {
      readonly _tag: "Measured"
      readonly time: Stats.Summary
      readonly command: string
      /** Set when the CLI does not register the offline extractor yet and ran its default one instead. */
      readonly substitute?: string | undefined
    }
}

const runCli = (args: ReadonlyArray<string>) =>
  Effect.async<{ readonly code: number | null; readonly ms: number; readonly stderr: string }>((resume) => {
    const start = performance.now()
    const child = spawn(process.execPath, [cliBin, ...args], { stdio: ["ignore", "ignore", "pipe"], cwd: repoRoot })
    let stderr = ""
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString("utf8")))
    child.on("error", (error) => resume(Effect.succeed({ code: -1, ms: NaN, stderr: error.message })))
    child.on("close", (code) => resume(Effect.succeed({ code, ms: performance.now() - start, stderr })))
    return Effect.sync(() => child.kill("SIGKILL"))
  })

/**
 * Runs the benchmark.
 *
 * @since 0.1.0
 * @category benchmarks
 */
export const run = (config: Config) =>
  Effect.scoped(Effect.gen(function*() {
    const dir = yield* Harness.tempDir()
    const full = fs.readFileSync(config.document, "utf8")
    const text = config.documentChars === undefined ? full : full.slice(0, config.documentChars)
    const documentBytes = Buffer.byteLength(text, "utf8")
    const extractor = OfflineExtractor.make()
    const ontology = yield* DefaultOntology.load
    const params = Chunking.defaults
    const batches = Chunking.plan(text, params)

    // The extractor alone, batch after batch, with an empty entity context.
    const speeds: Array<number> = []
    let mentions = 0
    for (let r = 0; r < config.repeats; r++) {
      yield* Stats.collectGarbage
      mentions = 0
      const start = performance.now()
      for (const batch of batches) {
        const output = yield* extractor.extract({
          runId: RunId.make("speed"),
          batchIndex: batch.index,
          chunks: batch.chunks,
          ontology: Option.some(ontology),
          knownEntities: Effect.succeed([])
        })
        mentions += output.entities.length
      }
      speeds.push(documentBytes / 1024 / ((performance.now() - start) / 1000))
    }

    // The same through the engine: create, execute (extract, commit, merge), in this process.
    const engine: Array<number> = []
    for (let r = 0; r < config.engineRepeats; r++) {
      const file = path.join(dir, `engine-${r}.db`)
      yield* Stats.collectGarbage
      const [, ms] = yield* Stats.timed(
        Effect.gen(function*() {
          const created = yield* Workflow.create({
            runId: RunId.make(`speed-${r}`),
            input: text,
            extractor: extractor.name,
            ontology: { text: DefaultOntology.turtle, format: "turtle" },
            output: { path: path.join(dir, `engine-${r}.ttl`), format: "turtle" }
          })
          return yield* Workflow.execute(created.id)
        }).pipe(Effect.provide(Harness.engineLayer(file, [extractor])))
      )
      engine.push(ms)
    }

    let cli: Data["cli"]
    if (config.cliRepeats === 0) {
      cli = { _tag: "Pending", reason: "not run in this mode" }
    } else if (!fs.existsSync(cliBin)) {
      cli = { _tag: "Pending", reason: `${path.relative(repoRoot, cliBin)} does not exist yet (the CLI is not built)` }
    } else {
      const input = path.join(dir, "input.txt")
      fs.writeFileSync(input, text)
      const times: Array<number> = []
      let failure: string | undefined
      let command = ""
      let substitute: string | undefined
      for (let r = 0; r < config.cliRepeats && failure === undefined; r++) {
        const args = (withExtractor: boolean) => [
          "start",
          input,
          "--db",
          path.join(dir, withExtractor ? `quarry-${r}.db` : `quarry-${r}-default.db`),
          "--out",
          path.join(dir, `quarry-${r}.ttl`),
          ...(withExtractor ? ["--extractor", extractor.name] : [])
        ]
        let chosen = args(substitute === undefined)
        let result = yield* runCli(chosen)
        const unknown = /unknown extractor "?offline/i.exec(result.stderr)
        if (result.code !== 0 && unknown !== null) {
          // The CLI does not register the offline extractor yet: measure it with its default extractor meanwhile.
          substitute = /available: ([\w, -]+)/.exec(result.stderr)?.[1]?.trim() ?? "its default"
          chosen = args(false)
          result = yield* runCli(chosen)
        }
        command = `node packages/cli/dist/bundle/quarry.js ${
          chosen.map((a) => a.startsWith(dir) ? path.basename(a) : a).join(" ")
        }`
        if (result.code !== 0) {
          failure = `exit code ${result.code}: ${result.stderr.trim().split("\n").slice(-3).join(" ")}`
        } else {
          times.push(result.ms)
        }
      }
      cli = failure !== undefined ?
        { _tag: "Failed", reason: failure } :
        { _tag: "Measured", time: Stats.summarize(times), command, substitute }
    }

    const data: Data = {
      extractor: extractor.name,
      documentBytes,
      batches: batches.length,
      mentions,
      kbPerSecond: Stats.summarize(speeds),
      engine: Stats.summarize(engine),
      cli
    }
    return { section: section(config, data), data } satisfies Report.Result<Data>
  }))

const section = (config: Config, data: Data): Report.Section => {
  const docName = `${path.basename(config.document)}${
    config.documentChars === undefined ? "" : ` (first ${Stats.int(config.documentChars)} characters)`
  }`
  const kbps = (ms: number) => data.documentBytes / 1024 / (ms / 1000)
  const cli = data.cli
  const cliName = cli._tag === "Measured" && cli.substitute !== undefined ?
    `\`quarry start\` end to end (child process, extractor ${cli.substitute})` :
    "`quarry start` end to end (child process)"
  const cliRow = cli._tag === "Measured" ?
    [cliName, Stats.range(cli.time), `${Stats.num(kbps(cli.time.median), 0)} KB/s`] :
    [cliName, cli._tag.toLowerCase(), cli.reason]
  return {
    id: "7",
    title: "Extractor speed",
    method:
      `The \`${data.extractor}\` extractor (OfflineExtractor.make(), default settings, the default ontology) on ` +
      `${docName}, ${Stats.bytes(data.documentBytes)}, default chunking (${data.batches} batches of up to 10 ` +
      "windows of 1,000 characters with 200 of overlap), so about 20% of the text is read twice; KB/s are per KB of " +
      "document. *Extractor alone* calls `extract` batch after batch with an empty entity context; *through the " +
      "engine* is `Workflow.create` + `Workflow.execute` (concurrency 1, known-entity context, commits, merge to " +
      "Turtle) in this process; *quarry start* spawns the built CLI on the same text" +
      (cli._tag === "Measured" ? ` (\`${cli.command}\`).` : "."),
    tables: [{
      header: ["Measure", "Time or speed (min / median / max)", "Median"],
      rows: [
        [
          "Extractor alone",
          Stats.range(data.kbPerSecond, (v) => `${Stats.num(v, 0)} KB/s`),
          `${Stats.int(data.mentions)} mentions`
        ],
        ["Through the engine, in process", Stats.range(data.engine), `${Stats.num(kbps(data.engine.median), 0)} KB/s`],
        cliRow
      ]
    }],
    targets: [
      {
        name: "Offline extractor speed",
        goal: "report KB/s",
        measured: `${Stats.num(data.kbPerSecond.median, 0)} KB/s`,
        status: "info"
      },
      {
        name: "quarry start end to end",
        goal: "report time",
        measured: cli._tag === "Measured" ?
          `${Stats.ms(cli.time.median)} on ${Stats.bytes(data.documentBytes)}` +
          (cli.substitute === undefined ? "" : ` (pending for offline: the CLI runs ${cli.substitute})`) :
          `${cli._tag.toLowerCase()}: ${cli.reason}`,
        status: cli._tag === "Measured" ?
          cli.substitute === undefined ? "info" : "pending" :
          cli._tag === "Failed" ?
          "missed" :
          "pending"
      }
    ],
    notes: [
      `The engine run takes ${
        Stats.ratio(data.engine.median / (data.documentBytes / 1024 / data.kbPerSecond.median * 1000))
      } ` +
      "the time of the extractor alone (planning, known-entity context, commits, merge).",
      ...(cli._tag === "Measured" && cli.substitute !== undefined ?
        [
          `The CLI did not register the \`${data.extractor}\` extractor when this ran (\`--extractor ${data.extractor}\` ` +
          `was refused), so \`quarry start\` was timed with ${cli.substitute}; the benchmark passes ` +
          `\`--extractor ${data.extractor}\` by itself once the CLI knows it.`
        ] :
        [])
    ]
  }
}
