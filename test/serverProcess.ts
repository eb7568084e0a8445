/**
 * A real `quarry serve` child process for the end-to-end tests of operations (metrics, traces, deployment): started
 * on `--port 0` with `--json`, driven over real HTTP, killed at the end.
 */
import { assert } from "@effect/vitest"
import { type Running, sleep, start } from "./support.js"

/** A running server. */
export interface Server {
  readonly child: Running
  readonly url: string
  readonly port: number
}

/** Starts `quarry serve --db db --port 0 --json ...args` (in `cwd`, if given) and waits until it listens. */
export const serve = async (
  db: string,
  args: ReadonlyArray<string> = [],
  env: Readonly<Record<string, string>> = {},
  cwd?: string
): Promise<Server> => {
  const child = start(["serve", "--db", db, "--port", "0", "--json", ...args], { env, cwd })
  // A server that never says it listens must not outlive the test.
  await child.waitFor((stdout) => stdout.includes("server.listening")).catch((error) => {
    child.child.kill("SIGKILL")
    throw error
  })
  const listening = JSON.parse(child.stdout.split("\n")[0]!) as { port: number; event: string }
  assert.strictEqual(listening.event, "server.listening")
  return { child, port: listening.port, url: `http://127.0.0.1:${listening.port}` }
}

/** Stops a server: SIGTERM (it drains), SIGKILL if it is still there after 20 s. */
export const stop = async (server: Server) => {
  if (server.child.child.exitCode !== null) return
  server.child.child.kill("SIGTERM")
  const timer = setTimeout(() => server.child.child.kill("SIGKILL"), 20_000)
  await server.child.exited
  clearTimeout(timer)
}

/** A response read to its end. */
export interface Answer {
  readonly status: number
  readonly headers: Headers
  readonly text: string
  readonly json: () => unknown
}

/** One JSON request. */
export const call = async (server: Server, method: string, route: string, body?: unknown): Promise<Answer> => {
  const response = await fetch(`${server.url}${route}`, {
    method,
    headers: { "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  const text = await response.text()
  return { status: response.status, headers: response.headers, text, json: () => JSON.parse(text) }
}

/** Polls `check` every 50 ms until it holds. */
export const until = async (check: () => boolean | Promise<boolean>, timeoutMs = 60_000, what = "a condition") => {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
  }
}

/**
 * Waits until a run has ended (completed, failed, cancelled or interrupted) and answers its JSON. A run waiting in
 * the queue has not ended, whatever its last status (a cancelled run whose resume waits for a slot).
 */
export const ended = async (server: Server, runId: string) => {
  let run: { status: string; queuePosition?: number | null } & Record<string, unknown> = { status: "unknown" }
  await until(
    async () => {
      run = (await call(server, "GET", `/v1/runs/${runId}`)).json() as typeof run
      return ["completed", "failed", "cancelled", "interrupted"].includes(run.status) && run.queuePosition == null
    },
    90_000,
    `run ${runId} to end`
  )
  return run
}

/** A Prometheus text exposition as `name{labels}` to value; label order as written by the exporter. */
export const samples = (text: string): ReadonlyMap<string, number> =>
  new Map(
    text.split("\n").filter((line) => line !== "" && !line.startsWith("#")).map((line) => {
      const at = line.lastIndexOf(" ")
      return [line.slice(0, at), Number(line.slice(at + 1))] as const
    })
  )

/** The metric family names of an exposition (from its `# TYPE` lines). */
export const families = (text: string): ReadonlySet<string> =>
  new Set(text.split("\n").filter((line) => line.startsWith("# TYPE ")).map((line) => line.split(" ")[2]!))

/** A JSON log line of the server (stderr). */
export interface LogLine {
  readonly message: unknown
  readonly annotations: Readonly<Record<string, unknown>>
}

/** The server's JSON log lines so far, in order; `message` keeps only those saying it. */
export const logLines = (server: Server, message?: string): Array<LogLine> =>
  server.child.stderr.split("\n").filter((line) => line.startsWith("{")).map((line) => JSON.parse(line) as LogLine)
    .filter((line) => message === undefined || line.message === message)

/**
 * Reads an SSE stream to its end: the events with their ids (`<version>:<n>`, also split) and names.
 */
export const readEvents = async (server: Pick<Server, "url">, runId: string, lastEventId?: string) => {
  const response = await fetch(`${server.url}/v1/runs/${runId}/events`, {
    headers: lastEventId === undefined ? {} : { "last-event-id": lastEventId }
  })
  assert.strictEqual(response.status, 200)
  assert.include(response.headers.get("content-type") ?? "", "text/event-stream")
  const text = await response.text()
  return text.split("\n\n").filter((block) => block.startsWith("id:")).map((block) => {
    const fields = Object.fromEntries(
      block.split("\n").map((line) => [line.slice(0, line.indexOf(":")), line.slice(line.indexOf(":") + 2)])
    )
    const [version, n] = fields.id!.split(":").map(Number)
    return {
      id: fields.id!,
      version: version!,
      n: n!,
      event: fields.event!,
      data: JSON.parse(fields.data!) as Record<string, unknown>
    }
  })
}
