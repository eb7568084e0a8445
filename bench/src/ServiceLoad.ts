/**
 * Benchmark 13, service load: a real `quarry serve` child process (the bundle, `--port 0`, a fresh database) and a
 * small client on loopback that submits small runs while pollers read `GET /v1/runs/{id}` until every run ended.
 * autocannon replays fixed requests; this workflow needs each poll to name a run submitted a moment before, so the
 * client is a few lines of `node:http` with keep-alive connections.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import { spawn } from "node:child_process"
import * as http from "node:http"
import * as path from "node:path"
import { cliBin, repoRoot } from "./ExtractorSpeed.js"
import * as Harness from "./Harness.js"
import type * as Report from "./Report.js"
import * as Stats from "./Stats.js"

/**
 * Sizes of the benchmark.
 *
 * @since 0.1.0
 * @category models
 */
export interface Config {
  readonly runs: number
  /** Submissions in flight at once. */
  readonly submitters: number
  /** Status pollers, each with one request in flight. */
  readonly pollers: number
  readonly maxActiveRuns: number
}

/**
 * @since 0.1.0
 * @category configs
 */
export const configs: Record<"smoke" | "quick" | "full", Config> = {
  smoke: { runs: 10, submitters: 2, pollers: 2, maxActiveRuns: 2 },
  quick: { runs: 50, submitters: 4, pollers: 8, maxActiveRuns: 4 },
  full: { runs: 200, submitters: 8, pollers: 16, maxActiveRuns: 4 }
}

/**
 * What the client saw: latencies in milliseconds, counts.
 *
 * @since 0.1.0
 * @category models
 */
export interface Data {
  readonly submitted: number
  readonly submitSeconds: number
  readonly submitLatency: ReadonlyArray<number>
  readonly statusLatency: ReadonlyArray<number>
  /** From the first submission until every run was seen ended. */
  readonly allEndedSeconds: number
  readonly errors: number
  readonly errorSamples: ReadonlyArray<string>
  /** Submitted runs the server's list does not have at the end. */
  readonly lost: number
  readonly completed: number
  readonly failed: number
}

interface Answer {
  readonly status: number
  readonly body: string
  readonly ms: number
}

const agent = () => new http.Agent({ keepAlive: true, maxSockets: 64 })

const request = (agent: http.Agent, port: number, method: string, route: string, body?: string) =>
  Effect.async<Answer, Error>((resume) => {
    const started = performance.now()
    const req = http.request({
      agent,
      host: "127.0.0.1",
      port,
      method,
      path: route,
      headers: body === undefined
        ? {}
        : { "content-type": "application/json", "content-length": Buffer.byteLength(body) }
    }, (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (chunk: Buffer) => chunks.push(chunk))
      res.on("end", () =>
        resume(Effect.succeed({
          status: res.statusCode ?? 0,
          body: Buffer.concat(chunks).toString("utf8"),
          ms: performance.now() - started
        })))
      res.on("error", (error) => resume(Effect.fail(error)))
    })
    req.on("error", (error) => resume(Effect.fail(error)))
    req.end(body)
  })

/** `quarry serve` on a free port with a fresh database; killed when the scope closes. */
const server = (db: string, config: Config) =>
  Effect.acquireRelease(
    Effect.async<{ readonly port: number; readonly stop: () => void }, Error>((resume) => {
      const env: Record<string, string> = {}
      for (const [key, value] of Object.entries(process.env)) {
        if (value !== undefined && !key.startsWith("QUARRY_") && !key.startsWith("OTEL_")) env[key] = value
      }
      const child = spawn(process.execPath, [
        cliBin,
        "serve",
        "--db",
        db,
        "--port",
        "0",
        "--json",
        "--max-active-runs",
        String(config.maxActiveRuns)
      ], { cwd: repoRoot, env, stdio: ["ignore", "pipe", "ignore"] })
      let stdout = ""
      child.stdout.on("data", (chunk: Buffer) => {
        stdout += chunk.toString("utf8")
        const line = stdout.split("\n").find((l) => l.includes("server.listening"))
        if (line !== undefined) {
          const port = (JSON.parse(line) as { port: number }).port
          resume(Effect.succeed({ port, stop: () => child.kill("SIGTERM") }))
        }
      })
      child.on("exit", (code) => resume(Effect.fail(new Error(`quarry serve exited (${code}) before listening`))))
    }),
    (s) => Effect.sync(s.stop)
  )

/** A small document per run: different text, so that every run is its own. */
const document = (i: number) =>
  `Report ${i}. Captain Ahab commanded the Pequod out of Nantucket in December. Ishmael signed on with ` +
  `Queequeg, and Starbuck of Nantucket was the first mate. They met the Rachel off Japan in run ${i}.`

const ended = (status: string) => ["completed", "failed", "cancelled", "interrupted"].includes(status)

/**
 * Runs benchmark 13.
 *
 * @since 0.1.0
 * @category benchmarks
 */
export const run = (config: Config) =>
  Effect.scoped(Effect.gen(function*() {
    const dir = yield* Harness.tempDir()
    const { port } = yield* server(path.join(dir, "load.db"), config)
    const client = agent()
    yield* Effect.addFinalizer(() => Effect.sync(() => client.destroy()))
    const ids = Array.from({ length: config.runs }, (_, i) => `load-${String(i).padStart(4, "0")}`)
    const submitted: Array<string> = []
    const done = new Map<string, string>()
    const submitLatency: Array<number> = []
    const statusLatency: Array<number> = []
    const errorSamples: Array<string> = []
    let errors = 0
    const error = (what: string) => {
      errors++
      if (errorSamples.length < 5) errorSamples.push(what)
    }

    const start = performance.now()
    let submitEnd = start
    const submit = Effect.forEach(ids, (id, i) =>
      request(client, port, "POST", "/v1/runs", JSON.stringify({ runId: id, input: document(i) })).pipe(
        Effect.tap((answer) => {
          submitLatency.push(answer.ms)
          if (answer.status === 202) {
            submitted.push(id)
          } else error(`POST ${id}: ${answer.status} ${answer.body.slice(0, 200)}`)
        }),
        Effect.catchAll((e) =>
          Effect.sync(() => error(`POST ${id}: ${e.message}`))
        )
      ), { concurrency: config.submitters, discard: true }).pipe(
        Effect.ensuring(Effect.sync(() => (submitEnd = performance.now())))
      )

    // Each poller takes the next run not seen ended yet, round robin, until all are.
    let cursor = 0
    const next = () => {
      const open = submitted.filter((id) =>
        !done.has(id)
      )
      if (open.length === 0) return undefined
      return open[cursor++ % open.length]
    }
    let submitting = true
    const poller = Effect.gen(function*() {
      // A run that never ends must not hang the benchmark: after 10 minutes it is counted as not completed.
      while ((submitting || done.size < submitted.length) && performance.now() - start < 600_000) {
        const id = next()
        if (id === undefined) {
          yield* Effect.sleep(1)
          continue
        }
        const answer = yield* Effect.either(request(client, port, "GET", `/v1/runs/${id}`))
        if (answer._tag === "Left") {
          error(`GET ${id}: ${answer.left.message}`)
          continue
        }
        statusLatency.push(answer.right.ms)
        if (answer.right.status !== 200) {
          error(`GET ${id}: ${answer.right.status} ${answer.right.body.slice(0, 200)}`)
          continue
        }
        const status = (JSON.parse(answer.right.body) as { status: string }).status
        if (ended(status)) done.set(id, status)
      }
    })
    yield* Effect.all([
      Effect.ensuring(submit, Effect.sync(() => (submitting = false))),
      Effect.all(Array.from({ length: config.pollers }, () => poller), { concurrency: "unbounded" })
    ], { concurrency: "unbounded", discard: true })
    const allEnded = performance.now()

    // Lost runs: submitted (202) but not in the server's list.
    const listed = yield* request(client, port, "GET", `/v1/runs?limit=1000`)
    const stored = new Set((JSON.parse(listed.body) as { runs: Array<{ id: string }> }).runs.map((r) => r.id))
    const statuses = [...done.values()]
    const data: Data = {
      submitted: submitted.length,
      submitSeconds: (submitEnd - start) / 1000,
      submitLatency,
      statusLatency,
      allEndedSeconds: (allEnded - start) / 1000,
      errors,
      errorSamples,
      lost: submitted.filter((id) => !stored.has(id)).length,
      completed: statuses.filter((s) => s === "completed").length,
      failed: statuses.filter((s) => s !== "completed").length
    }
    return { section: section(config, data), data } satisfies Report.Result<Data>
  }))

const quantiles = (values: ReadonlyArray<number>) => {
  const sorted = [...values].sort((a, b) => a - b)
  return [50, 95, 99, 100].map((p) => Stats.ms(Stats.percentile(sorted, p)))
}

const section = (config: Config, data: Data): Report.Section => ({
  id: "13",
  title: "Service load",
  method: `A real \`quarry serve\` (the bundle, \`--max-active-runs ${config.maxActiveRuns}\`, a fresh database, the ` +
    `default offline extractor) as a child process, and a client in the benchmark process on loopback ` +
    `(\`node:http\`, keep-alive): ${config.submitters} submitters send ${config.runs} small runs (\`POST /v1/runs\`, ` +
    `about 200 characters each) while ${config.pollers} pollers read \`GET /v1/runs/{id}\` of the runs not ended ` +
    `yet, round robin, until every run has ended. Latencies are client-side, request to full response. Then the ` +
    `run list is read once to count lost runs.`,
  tables: [{
    header: ["Request", "Requests", "Rate", "p50", "p95", "p99", "max"],
    rows: [
      [
        "POST /v1/runs",
        Stats.int(data.submitLatency.length),
        `${Stats.num(data.submitted / data.submitSeconds)} submissions/s`,
        ...quantiles(data.submitLatency)
      ],
      [
        "GET /v1/runs/{id}",
        Stats.int(data.statusLatency.length),
        `${Stats.num(data.statusLatency.length / data.allEndedSeconds)} requests/s`,
        ...quantiles(data.statusLatency)
      ]
    ]
  }, {
    header: ["Runs submitted", "Completed", "Failed or other", "Lost", "Errors", "All ended after"],
    rows: [[
      Stats.int(data.submitted),
      Stats.int(data.completed),
      Stats.int(data.failed),
      Stats.int(data.lost),
      Stats.int(data.errors),
      `${Stats.num(data.allEndedSeconds)} s`
    ]]
  }],
  targets: [
    {
      name: "P13 errors under load",
      goal: "0",
      measured: Stats.int(data.errors),
      status: data.errors === 0 ? "met" : "missed",
      comment: data.errorSamples.join("; ") || undefined
    },
    {
      name: "P13 lost runs",
      goal: "0",
      measured: Stats.int(data.lost),
      status: data.lost === 0 ? "met" : "missed"
    },
    {
      name: `P13 runs completed`,
      goal: `${config.runs} of ${config.runs}`,
      measured: `${data.completed} of ${config.runs}`,
      status: data.completed === config.runs ? "met" : "missed"
    },
    {
      name: "P13 submissions per second",
      goal: "measured",
      measured: Stats.num(data.submitted / data.submitSeconds),
      status: "info"
    },
    {
      name: "P13 GET /v1/runs/{id} p99",
      goal: "measured",
      measured: quantiles(data.statusLatency)[2]!,
      status: "info"
    }
  ],
  notes: [
    "The client and the server share the machine's cores (the server is one Node process: HTTP, admission, " +
    "extraction and SQLite commits on one event loop), so status latency includes waiting behind extraction work; " +
    "the machine is shared with other work, so treat the figures as an order of magnitude.",
    "Submissions are durable before the answer: each `POST` stores the run `pending` (input, plan) in a SQLite " +
    "transaction with `synchronous=FULL` before it answers 202."
  ]
})
