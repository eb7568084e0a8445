/**
 * Helpers for the end-to-end tests: they spawn the BUILT `quarry`, the bundle users run
 * (`packages/cli/dist/bundle/quarry.js`, built by `pnpm test` through `pnpm build` before vitest runs), as real child
 * processes, with real signals and real files.
 */
import Database from "better-sqlite3"
import { type ChildProcess, spawn } from "node:child_process"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

/** The built executable (the `bin` of `@quarry/cli`). */
export const bin = path.resolve(import.meta.dirname, "../packages/cli/dist/bundle/quarry.js")

/** The test texts, kept in the repository (`test/data/texts`, a copy of the team's shared data set). */
export const texts = path.resolve(import.meta.dirname, "data/texts")

if (!fs.existsSync(bin)) {
  throw new Error(`${bin} does not exist: build first (pnpm build, or pnpm test which builds before running vitest)`)
}

/** A fresh temporary directory; `removeDir` deletes it. */
export const makeDir = (): string => fs.mkdtempSync(path.join(os.tmpdir(), "quarry-e2e-"))

/** Deletes a directory made by `makeDir`. */
export const removeDir = (dir: string) => fs.rmSync(dir, { recursive: true, force: true })

/** The environment of a child: this process's, without any QUARRY_ variable, plus `env`. */
const childEnv = (env: Readonly<Record<string, string>>) => {
  const base: Record<string, string> = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !key.startsWith("QUARRY_")) base[key] = value
  }
  return { ...base, ...env }
}

/** A running `quarry` process with its output so far. */
export interface Running {
  readonly child: ChildProcess
  readonly pid: number
  stdout: string
  stderr: string
  readonly exited: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>
  /** Resolves once `predicate` holds for the stdout seen so far (checked on every chunk). */
  readonly waitFor: (predicate: (stdout: string) => boolean, timeoutMs?: number) => Promise<void>
}

/** Options of a child. */
export interface SpawnOptions {
  readonly env?: Readonly<Record<string, string>>
  readonly cwd?: string | undefined
  /** Run as this user (and its own group), e.g. `unprivileged.uid` so that file permissions apply to it. */
  readonly uid?: number
  /** Written to the child's standard input (a pipe), then closed; without it, standard input is closed. */
  readonly stdin?: string
}

/** Starts `node quarry.js <args>`. */
export const start = (args: ReadonlyArray<string>, options: SpawnOptions = {}): Running => {
  const child = spawn(process.execPath, [bin, ...args], {
    cwd: options.cwd ?? os.tmpdir(),
    env: childEnv(options.env ?? {}),
    ...(options.uid === undefined ? {} : { uid: options.uid, gid: options.uid }),
    stdio: [options.stdin === undefined ? "ignore" : "pipe", "pipe", "pipe"]
  })
  if (options.stdin !== undefined) child.stdin!.end(options.stdin)
  const listeners = new Set<() => void>()
  const running: Running = {
    child,
    pid: child.pid!,
    stdout: "",
    stderr: "",
    exited: new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal }))),
    waitFor: (predicate, timeoutMs = 60_000) =>
      new Promise((resolve, reject) => {
        if (predicate(running.stdout)) return resolve()
        const timer = setTimeout(() => {
          listeners.delete(check)
          reject(new Error(`timed out waiting for output; stdout:\n${running.stdout}\nstderr:\n${running.stderr}`))
        }, timeoutMs)
        const check = () => {
          if (!predicate(running.stdout)) return
          clearTimeout(timer)
          listeners.delete(check)
          resolve()
        }
        listeners.add(check)
        void running.exited.then(() => {
          if (!listeners.has(check)) return
          clearTimeout(timer)
          listeners.delete(check)
          reject(new Error(`exited before the output arrived; stdout:\n${running.stdout}\nstderr:\n${running.stderr}`))
        })
      })
  }
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    running.stdout += chunk
    for (const listener of [...listeners]) listener()
  })
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
    running.stderr += chunk
  })
  return running
}

/** What a finished `quarry` process printed and how it exited. */
export interface Finished {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs `quarry <args>` to its end. */
export const run = async (args: ReadonlyArray<string>, options: SpawnOptions = {}): Promise<Finished> => {
  const running = start(args, options)
  const { code, signal } = await running.exited
  // Let the pipes drain after exit.
  await new Promise((resolve) => setImmediate(resolve))
  return { code, signal, stdout: running.stdout, stderr: running.stderr }
}

/** Every stdout line parsed as JSON. */
export const jsonLines = (stdout: string): Array<Record<string, unknown>> =>
  stdout.split("\n").filter((line) => line.trim() !== "").map((line) => JSON.parse(line) as Record<string, unknown>)

/** Number of `batch.committed` events in a `--json` stdout. */
export const committedEvents = (stdout: string): number => stdout.split("\"event\":\"batch.committed\"").length - 1

/** SHA-256 of a file. */
export const sha256File = (file: string): string => createHash("sha256").update(fs.readFileSync(file)).digest("hex")

/**
 * Runs `f` on the database opened READ-ONLY (better-sqlite3), closing it afterwards. A read-write connection would
 * checkpoint the WAL into the database and delete it on close: after a kill, the restart would then never meet the
 * hot WAL the crash left, which is what a crash test must exercise. A read-only connection never writes the database
 * or its WAL (only the shared-memory index, which the next process to open the file rebuilds from the WAL anyway).
 */
export const withDb = <A>(file: string, f: (db: Database.Database) => A): A => {
  const db = new Database(file, { readonly: true, fileMustExist: true })
  try {
    return f(db)
  } finally {
    db.close()
  }
}

/**
 * Runs `f` on the database opened READ-WRITE: only for tests that tamper with a stored run on purpose (never between
 * a kill and a restart; crash tests use `withDb`).
 */
export const withWritableDb = <A>(file: string, f: (db: Database.Database) => A): A => {
  const db = new Database(file, { fileMustExist: true })
  try {
    return f(db)
  } finally {
    db.close()
  }
}

/** Bytes in the database's WAL file (0 when there is none). */
export const walBytes = (file: string): number => fs.statSync(`${file}-wal`, { throwIfNoEntry: false })?.size ?? 0

/**
 * Runs `f` on a copy of the database's main file alone, without its WAL: what a reader would see had the WAL been
 * lost. The original files are not touched.
 */
export const withMainFileOnly = <A>(file: string, f: (db: Database.Database) => A): A => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "quarry-main-file-"))
  try {
    const copy = path.join(dir, "main.db")
    fs.copyFileSync(file, copy)
    return withDb(copy, f)
  } finally {
    removeDir(dir)
  }
}

/** A run's row as the tests read it. */
export interface RunRow {
  readonly status: string
  readonly committed_batches: number
  readonly total_batches: number
  readonly digest: string
  readonly artifact_path: string | null
  readonly artifact_sha256: string | null
  readonly lease_expires_at: number | null
}

/** A run's row, if the database and the run exist. */
export const readRun = (file: string, runId: string): RunRow | undefined => {
  if (!fs.existsSync(file)) return undefined
  return withDb(file, (db) => {
    const table = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'runs'").get()
    if (table === undefined) return undefined
    return db.prepare(
      "SELECT status, committed_batches, total_batches, digest, artifact_path, artifact_sha256, lease_expires_at " +
        "FROM runs WHERE id = ?"
    ).get(runId) as RunRow | undefined
  })
}

/** A deterministic PRNG (mulberry32) so that a failing fuzz run can be replayed from its printed seed. */
export const prng = (seed: number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Resolves after `ms`. */
export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** The flags of the multi-batch Moby-Dick runs: 67 batches of 10 windows of up to 2,000 characters. */
export const mobyDick = {
  input: path.join(texts, "moby-dick.txt"),
  flags: ["--window", "2000", "--batch-size", "10", "--extractor", "test-slow"] as ReadonlyArray<string>
}

/**
 * Runs Moby-Dick straight through with the test extractor (no delay) and answers with the artifact's SHA-256 and
 * the run's chained digest: what every interrupted and resumed run of the same plan must reproduce.
 */
export const referenceRun = async (
  dir: string,
  extra: ReadonlyArray<string> = [],
  flags: ReadonlyArray<string> = mobyDick.flags
) => {
  const db = path.join(dir, "reference.db")
  const out = path.join(dir, "reference.ttl")
  const result = await run(
    ["start", mobyDick.input, ...flags, ...extra, "--db", db, "--run-id", "reference", "--out", out],
    { env: { QUARRY_TEST_EXTRACTOR_DELAY_MS: "0" } }
  )
  if (result.code !== 0) throw new Error(`reference run failed (${result.code}): ${result.stderr}`)
  return { sha256: sha256File(out), digest: readRun(db, "reference")!.digest }
}

/** Starts `quarry start` on Moby-Dick with `--json` in `dir`, under the run's own database and artifact names. */
export const startMobyDick = (dir: string, runId: string, env: Readonly<Record<string, string>>) => {
  const db = path.join(dir, `${runId}.db`)
  const out = path.join(dir, `${runId}.ttl`)
  const child = start(
    ["start", mobyDick.input, ...mobyDick.flags, "--db", db, "--run-id", runId, "--out", out, "--json"],
    { env }
  )
  return { db, out, child }
}
