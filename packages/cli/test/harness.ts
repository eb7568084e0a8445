/**
 * Runs the real `Cli` program in this process, with its stdout and stderr captured, a `ConfigProvider` standing in
 * for the environment, and the live clock (runs sleep and hold leases for real).
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as Cli from "@quarry/cli/Cli"
import * as Llm from "@quarry/cli/Llm"
import * as Output from "@quarry/cli/Output"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { Console as NodeConsole } from "node:console"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Writable } from "node:stream"

/** What a command printed. */
export interface Capture {
  readonly console: Console.Console
  readonly stdout: () => string
  readonly stderr: () => string
  /** Every stdout line parsed as JSON. */
  readonly json: () => ReadonlyArray<Record<string, unknown>>
}

const sink = (chunks: Array<string>) =>
  new Writable({
    write(chunk, _encoding, callback) {
      chunks.push(String(chunk))
      callback()
    }
  })

/** A `Console` that records what is written to it. */
export const capture = (): Capture => {
  const out: Array<string> = []
  const err: Array<string> = []
  const unsafe = new NodeConsole({ stdout: sink(out), stderr: sink(err) })
  const sync = (f: () => void) => Effect.sync(f)
  const console: Console.Console = {
    [Console.TypeId]: Console.TypeId,
    assert: (condition, ...args) => sync(() => unsafe.assert(condition, ...args)),
    clear: sync(() => unsafe.clear()),
    count: (label) => sync(() => unsafe.count(label)),
    countReset: (label) => sync(() => unsafe.countReset(label)),
    debug: (...args) => sync(() => unsafe.debug(...args)),
    dir: (item, options) => sync(() => unsafe.dir(item, options)),
    dirxml: (...args) => sync(() => unsafe.dirxml(...args)),
    error: (...args) => sync(() => unsafe.error(...args)),
    group: (options) => sync(() => unsafe.group(options?.label)),
    groupEnd: sync(() => unsafe.groupEnd()),
    info: (...args) => sync(() => unsafe.info(...args)),
    log: (...args) => sync(() => unsafe.log(...args)),
    table: (data, properties) => sync(() => unsafe.table(data, properties)),
    time: (label) => sync(() => unsafe.time(label)),
    timeEnd: (label) => sync(() => unsafe.timeEnd(label)),
    timeLog: (label, ...args) => sync(() => unsafe.timeLog(label, ...args)),
    trace: (...args) => sync(() => unsafe.trace(...args)),
    warn: (...args) => sync(() => unsafe.warn(...args)),
    unsafe
  }
  const stdout = () => out.join("")
  return {
    console,
    stdout,
    stderr: () => err.join(""),
    json: () =>
      stdout().split("\n").filter((line) => line.trim() !== "").map((line) =>
        JSON.parse(line) as Record<string, unknown>
      )
  }
}

/** The result of one command. */
export interface Result extends Capture {
  readonly code: number
}

/** Runs `quarry <args>` with the given environment variables; `into` collects the output (default: a new one). */
export const program = (
  args: ReadonlyArray<string>,
  options: { readonly env?: Readonly<Record<string, string>>; readonly into?: Capture } = {}
) => {
  const into = options.into ?? capture()
  return Cli.run(["node", "quarry", ...args]).pipe(
    Effect.provide(Layer.mergeAll(NodeContext.layer, Output.layerPlain, Llm.layerServices)),
    Effect.withConsole(into.console),
    Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(options.env ?? {}))))
  )
}

/** Runs `quarry <args>` to its end. */
export const quarry = (
  args: ReadonlyArray<string>,
  env: Readonly<Record<string, string>> = {}
): Effect.Effect<Result> =>
  Effect.gen(function*() {
    const into = capture()
    const code = yield* program(args, { env, into })
    return { ...into, code }
  })

/** A temporary directory removed when the scope closes. */
export const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "quarry-cli-test-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

/** A file of the test texts (`test/data/texts` at the repository root). */
export const text = (name: string) => path.resolve(import.meta.dirname, "../../../test/data/texts", name)

/** SHA-256 of a file's bytes. */
export const sha256File = (file: string) => createHash("sha256").update(fs.readFileSync(file)).digest("hex")

/** Polls `effect` until `done` holds (live clock), failing after `timeoutMs`. */
export const waitUntil = <A, E, R>(effect: Effect.Effect<A, E, R>, done: (a: A) => boolean, timeoutMs = 20_000) =>
  Effect.gen(function*() {
    const deadline = Date.now() + timeoutMs
    while (true) {
      const a = yield* effect
      if (done(a)) return a
      if (Date.now() > deadline) return yield* Effect.dieMessage("waitUntil: timed out")
      yield* Effect.sleep(25)
    }
  })
