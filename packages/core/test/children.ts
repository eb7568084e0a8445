/**
 * Real child processes for the store's multi-process tests: a second connection holding SQLite's write lock, or a
 * process that opens the database through the BUILT core (`packages/core/dist`, built by `pnpm test` before vitest).
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { pathToFileURL } from "node:url"

const root = path.resolve(import.meta.dirname, "../../..")

/** The file URL of a module of the built core, for a child's `import`. */
export const coreDist = (module: string): string => {
  const file = path.join(root, "packages/core/dist", `${module}.js`)
  if (!fs.existsSync(file)) throw new Error(`${file} does not exist: build first (pnpm build)`)
  return pathToFileURL(file).href
}

/** A running child with its output so far. */
export interface Child {
  readonly process: ChildProcess
  readonly pid: number
  readonly output: () => string
  /** Resolves once the child printed `line` on stdout. */
  readonly waitFor: (line: string, timeoutMs?: number) => Promise<void>
  readonly exited: Promise<number | null>
}

/** Runs ES module `code` in a new `node` process (stdin stays open: a child may wait for "go"). */
export const spawnNode = (code: string): Child => {
  const child = spawn(process.execPath, ["--input-type=module", "-e", code], {
    // Bare imports resolve from here: effect from the core's node_modules, better-sqlite3 from the root's.
    cwd: path.join(root, "packages/core"),
    stdio: ["pipe", "pipe", "pipe"]
  })
  let stdout = ""
  let stderr = ""
  const listeners = new Set<() => void>()
  child.stdout.on("data", (chunk) => {
    stdout += String(chunk)
    for (const listener of listeners) listener()
  })
  child.stderr.on("data", (chunk) => (stderr += String(chunk)))
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
  const waitFor = (line: string, timeoutMs = 20_000) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (stdout.split("\n").includes(line)) {
          listeners.delete(check)
          clearTimeout(timer)
          resolve()
        }
      }
      const timer = setTimeout(() => {
        listeners.delete(check)
        reject(new Error(`child did not print ${line} in ${timeoutMs} ms; stdout: ${stdout}; stderr: ${stderr}`))
      }, timeoutMs)
      listeners.add(check)
      void exited.then(() => {
        check()
        if (listeners.has(check)) reject(new Error(`child exited before printing ${line}; stderr: ${stderr}`))
      })
      check()
    })
  return { process: child, pid: child.pid!, output: () => stdout + stderr, waitFor, exited }
}

/**
 * A second connection (another process) that takes the write lock with `BEGIN IMMEDIATE`, prints "locked", holds
 * it for `holdMs` and commits.
 */
export const holdWriteLock = (filename: string, holdMs: number): Child =>
  spawnNode(`
    import Sqlite from "better-sqlite3"
    const db = new Sqlite(${JSON.stringify(filename)})
    db.exec("BEGIN IMMEDIATE")
    console.log("locked")
    setTimeout(() => { db.exec("COMMIT"); db.close(); console.log("released") }, ${holdMs})
  `)
