/**
 * `quarry serve` end to end: the built CLI as a child process on `--port 0` with a temporary database, driven over
 * real HTTP. Submissions, polling, Server-Sent Events, artifacts byte-identical to `quarry start`, the error
 * statuses, idempotent resubmission, auth, the OpenAPI document, drain on SIGTERM with boot recovery, and recovery
 * after SIGKILL once the lease expires.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as RunView from "@quarry/core/RunView"
import { freePort } from "@quarry/testkit/Ports"
import Database from "better-sqlite3"
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as http from "node:http"
import * as path from "node:path"
import { onTestFinished } from "vitest"
import { readEvents } from "./serverProcess.js"
import { makeDir, mobyDick, referenceRun, removeDir, run, type Running, sha256File, sleep, start } from "./support.js"

const slow = { QUARRY_TEST_EXTRACTOR_DELAY_MS: "25" }
const mobyText = () => fs.readFileSync(mobyDick.input, "utf8")
/** The body that plans what `mobyDick.flags` plan for `quarry start`. */
const mobyBody = (runId: string) => ({
  input: mobyText(),
  runId,
  extractor: "test-slow",
  chunking: { windowSize: 2000, batchSize: 10 }
})

interface Server {
  readonly child: Running
  readonly url: string
  readonly db: string
}

const serve = async (
  db: string,
  args: ReadonlyArray<string> = [],
  env: Readonly<Record<string, string>> = slow
): Promise<Server> => {
  const child = start(["serve", "--db", db, "--port", "0", "--json", ...args], { env })
  // A server that never says it listens must not outlive the test.
  await child.waitFor((stdout) => stdout.includes("server.listening")).catch((error) => {
    child.child.kill("SIGKILL")
    throw error
  })
  const listening = JSON.parse(child.stdout.split("\n")[0]!) as { port: number; event: string }
  assert.strictEqual(listening.event, "server.listening")
  return { child, db, url: `http://127.0.0.1:${listening.port}` }
}

const stop = async (server: Server) => {
  if (server.child.child.exitCode === null) server.child.child.kill("SIGKILL")
  await server.child.exited
}

const call = async (
  server: Server,
  method: string,
  route: string,
  body?: unknown,
  headers: Record<string, string> = {}
) => {
  const response = await fetch(`${server.url}${route}`, {
    method,
    headers: { "content-type": "application/json", ...headers },
    ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) })
  })
  const text = await response.text()
  return { status: response.status, headers: response.headers, text, json: () => JSON.parse(text) }
}

/** A request with headers fetch would not send as given (`Host`, `Origin`, `Sec-Fetch-Site`), over node:http. */
const raw = async (server: Server, method: string, route: string, headers: Record<string, string>, body?: string) => {
  const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
    const request = http.request(`${server.url}${route}`, { method, headers }, (response) => {
      let text = ""
      response.setEncoding("utf8")
      response.on("data", (chunk: string) => (text += chunk))
      response.on("end", () => resolve({ status: response.statusCode ?? 0, text }))
    })
    request.on("error", reject)
    request.end(body)
  })
  return { status, text, json: () => JSON.parse(text) }
}

/** What the OpenAPI test reads of an operation. */
interface Operation {
  readonly responses: Record<string, { readonly headers?: Record<string, unknown> } | undefined>
}

/** A run's row, read without write access (a crashed server's database is never repaired by the test). */
const row = (db: string, runId: string) => {
  const sqlite = new Database(db, { readonly: true, fileMustExist: true })
  try {
    return sqlite.prepare("SELECT status, committed_batches, artifact_sha256 FROM runs WHERE id = ?").get(runId) as
      | { status: string; committed_batches: number; artifact_sha256: string | null }
      | undefined
  } finally {
    sqlite.close()
  }
}

const until = async (check: () => boolean | Promise<boolean>, timeoutMs = 90_000, what = "a condition") => {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(100)
  }
}

/**
 * The status of the first request the server takes on `port`: tried again every 5 ms from its start while the port
 * refuses connections, so that it arrives the moment the port opens.
 */
const firstResponse = async (server: Running, port: number, route: string): Promise<number | undefined> => {
  while (server.child.exitCode === null) {
    const status = await new Promise<number | "refused">((resolve, reject) => {
      http.get({ host: "127.0.0.1", port, path: route, agent: false }, (response) => {
        response.resume().on("end", () => resolve(response.statusCode ?? 0))
      }).on(
        "error",
        (error: NodeJS.ErrnoException) => error.code === "ECONNREFUSED" ? resolve("refused") : reject(error)
      )
    })
    if (status !== "refused") return status
    await sleep(5)
  }
  return undefined
}

/** Every key path of a JSON value, objects only (arrays are compared by their elements' paths). */
const keyPaths = (value: unknown, prefix = ""): Array<string> =>
  Array.isArray(value) ?
    value.flatMap((item) => keyPaths(item, `${prefix}[]`)) :
    value !== null && typeof value === "object" ?
    Object.entries(value).flatMap(([key, item]) => [`${prefix}.${key}`, ...keyPaths(item, `${prefix}.${key}`)]) :
    []

describe("quarry serve", () => {
  let dir = ""
  let reference = { sha256: "", digest: "" }

  beforeAll(async () => {
    dir = makeDir()
    reference = await referenceRun(dir)
  }, 120_000)
  afterAll(() => removeDir(dir))

  it(
    "submit, poll, SSE to the end; the artifact is byte-identical to quarry start's (SHA-256 ETag), other formats to quarry export's; the run JSON is quarry status --json's; the request id is on the run's logs",
    async () => {
      const server = await serve(path.join(dir, "basic.db"))
      try {
        const submitted = await call(server, "POST", "/v1/runs", mobyBody("moby"), { "x-request-id": "req-moby-1" })
        assert.strictEqual(submitted.status, 202, submitted.text)
        assert.strictEqual(submitted.headers.get("location"), "/v1/runs/moby")
        assert.include(submitted.json(), { id: "moby" })
        assert.isString(submitted.headers.get("x-request-id"))

        const events = await readEvents(server, "moby")
        assert.strictEqual(events[0]!.event, "run.started")
        assert.isAbove(events.filter((e) => e.event === "batch.committed").length, 0)
        const last = events.at(-1)!
        assert.strictEqual(last.event, "run.completed")
        assert.strictEqual(last.data.committedBatches, 67)
        const order = (e: { version: number; n: number }) => e.version * 1e6 + e.n
        assert.deepStrictEqual(events.map(order), [...events.map(order)].sort((a, b) => a - b))

        // Resuming the stream after the last id seen gives only the end (also from an id of before versions).
        const lastBatch = events.filter((e) => e.event === "batch.committed").at(-1)!
        assert.strictEqual(lastBatch.n, 67)
        for (const seen of [lastBatch.id, "67"]) {
          const rest = await readEvents(server, "moby", seen)
          assert.deepStrictEqual(rest.map((e) => e.event), ["run.completed"])
        }
        // After the final event (an EventSource reconnecting once the stream closed): 204, so that it stops.
        for (const seen of [last.id, "68"]) {
          const seenAll = await fetch(`${server.url}/v1/runs/moby/events`, {
            headers: { "last-event-id": seen },
            signal: AbortSignal.timeout(10_000)
          })
          assert.strictEqual(seenAll.status, 204)
        }

        const polled = await call(server, "GET", "/v1/runs/moby")
        assert.strictEqual(polled.status, 200)
        assert.deepInclude(polled.json(), {
          status: "completed",
          progress: { committedBatches: 67, totalBatches: 67, percent: 100 }
        })

        const artifact = await fetch(`${server.url}/v1/runs/moby/artifact`)
        assert.strictEqual(artifact.status, 200)
        const bytes = Buffer.from(await artifact.arrayBuffer())
        const { createHash } = await import("node:crypto")
        assert.strictEqual(createHash("sha256").update(bytes).digest("hex"), reference.sha256)
        assert.strictEqual(artifact.headers.get("etag"), `"${reference.sha256}"`)
        const cached = await fetch(`${server.url}/v1/runs/moby/artifact`, {
          headers: { "if-none-match": `"${reference.sha256}"` }
        })
        assert.strictEqual(cached.status, 304)
        for (const tag of [`W/"${reference.sha256}"`, "*", `"other", "${reference.sha256}"`]) {
          const weak = await fetch(`${server.url}/v1/runs/moby/artifact`, { headers: { "if-none-match": tag } })
          assert.strictEqual(weak.status, 304, tag)
        }
        assert.strictEqual(artifact.headers.get("accept-ranges"), "bytes")

        // A broken download goes on where it stopped: two ranges give the same bytes.
        const ranged = async (range: string, extra: Record<string, string> = {}, query = "") => {
          const response = await fetch(`${server.url}/v1/runs/moby/artifact${query}`, {
            headers: { range, ...extra }
          })
          return { response, bytes: Buffer.from(await response.arrayBuffer()) }
        }
        const half = Math.floor(bytes.length / 2)
        const head = await ranged(`bytes=0-${half - 1}`)
        const tail = await ranged(`bytes=${half}-`, { "if-range": `"${reference.sha256}"` })
        assert.deepStrictEqual([head.response.status, tail.response.status], [206, 206])
        assert.strictEqual(head.response.headers.get("content-range"), `bytes 0-${half - 1}/${bytes.length}`)
        assert.strictEqual(
          tail.response.headers.get("content-range"),
          `bytes ${half}-${bytes.length - 1}/${bytes.length}`
        )
        assert.strictEqual(head.response.headers.get("content-length"), String(half))
        assert.isTrue(Buffer.concat([head.bytes, tail.bytes]).equals(bytes))
        assert.isTrue((await ranged("bytes=-10")).bytes.equals(bytes.subarray(-10)))
        // A range of another version of the file (If-Range), or of several parts, gets the whole file.
        for (const [range, extra] of [["bytes=0-9", { "if-range": "\"stale\"" }], ["bytes=0-9,20-29", {}]] as const) {
          const full = await ranged(range, extra)
          assert.strictEqual(full.response.status, 200, range)
          assert.isTrue(full.bytes.equals(bytes))
        }
        const past = await ranged(`bytes=${bytes.length}-`)
        assert.strictEqual(past.response.status, 416)
        assert.strictEqual(past.response.headers.get("content-range"), `bytes */${bytes.length}`)
        assert.strictEqual(JSON.parse(past.bytes.toString()).error.tag, "RangeNotSatisfiable")

        // Another format: the bytes of `quarry export --format ntriples`, with their own ETag.
        const exported = path.join(dir, "moby-export.nt")
        const exportRun = await run(["export", "moby", "--db", server.db, "--format", "ntriples", "--out", exported])
        assert.strictEqual(exportRun.code, 0, exportRun.stderr)
        const ntSha = sha256File(exported)
        for (let i = 0; i < 2; i++) {
          // The second request is served from the export cache.
          const nt = await fetch(`${server.url}/v1/runs/moby/artifact?format=ntriples`)
          assert.strictEqual(nt.status, 200)
          assert.include(nt.headers.get("content-type") ?? "", "application/n-triples")
          assert.strictEqual(nt.headers.get("etag"), `"${ntSha}"`)
          assert.isTrue(Buffer.from(await nt.arrayBuffer()).equals(fs.readFileSync(exported)))
        }
        const ntPart = await ranged("bytes=10-19", {}, "?format=ntriples")
        assert.strictEqual(ntPart.response.status, 206)
        assert.isTrue(ntPart.bytes.equals(fs.readFileSync(exported).subarray(10, 20)))
        const ntCached = await fetch(`${server.url}/v1/runs/moby/artifact?format=ntriples`, {
          headers: { "if-none-match": `"${ntSha}"` }
        })
        assert.strictEqual(ntCached.status, 304)
        const sameFormat = await fetch(`${server.url}/v1/runs/moby/artifact?format=turtle`)
        assert.strictEqual(sameFormat.headers.get("etag"), `"${reference.sha256}"`)
        await sameFormat.arrayBuffer()
        const badFormat = await call(server, "GET", "/v1/runs/moby/artifact?format=rdfxml")
        assert.strictEqual(badFormat.status, 400)
        assert.strictEqual(badFormat.json().error.tag, "InvalidRequest")

        // The request id that submitted the run is on the run's own log lines.
        const runLogs = server.child.stderr.split("\n").filter((line) => line.includes("\"run started\""))
          .map((line) => JSON.parse(line) as { annotations: Record<string, unknown> })
        assert.deepInclude(runLogs.map((l) => l.annotations), { runId: "moby", requestId: "req-moby-1" })

        const health = (await call(server, "GET", "/healthz")).json()
        assert.strictEqual(health.database.quickCheck, "skipped")
        assert.isTrue(health.database.durable)

        // The same body again is the same run; a different body under the same id is a conflict.
        const again = await call(server, "POST", "/v1/runs", mobyBody("moby"))
        assert.strictEqual(again.status, 200, again.text)
        assert.strictEqual(again.json().id, "moby")
        const different = await call(server, "POST", "/v1/runs", { ...mobyBody("moby"), concurrency: 2 })
        assert.strictEqual(different.status, 409)
        assert.strictEqual(different.json().error.tag, "RunAlreadyExists")

        // Prometheus metrics, checked by promtool (Debian's prometheus; .ci/run installs it).
        const metrics = await call(server, "GET", "/metrics")
        assert.strictEqual(metrics.status, 200)
        assert.include(metrics.headers.get("content-type") ?? "", "text/plain")
        assert.include(metrics.text, "quarry_runs{status=\"completed\"} 1")
        assert.include(metrics.text, "quarry_runs_ended_total{status=\"completed\"} 1")
        assert.match(metrics.text, /quarry_http_requests_total\{method="POST",route="\/v1\/runs",status="202"\} 1/)
        const promtool = spawnSync("promtool", ["check", "metrics"], { input: metrics.text, encoding: "utf8" })
        assert.isUndefined(promtool.error, "promtool is missing: apt-get install prometheus")
        assert.strictEqual(promtool.status, 0, `${promtool.stdout}${promtool.stderr}`)

        // One view: the API's run JSON is `quarry status --json`'s, keys and values, but for server paths and how
        // to resume (a command there, a request here).
        const shown = await run(["status", "moby", "--db", server.db, "--json"])
        assert.strictEqual(shown.code, 0, shown.stderr)
        const cli = JSON.parse(shown.stdout) as Record<string, unknown>
        const api = polled.json() as Record<string, unknown>
        assert.deepStrictEqual(keyPaths(api), keyPaths(cli))
        assert.isTrue(RunView.isRunView(cli))
        assert.isTrue(RunView.isRunView(api))
        const artifactPath = path.join(dir, "moby.ttl")
        assert.deepStrictEqual(api, {
          ...cli,
          plan: { ...(cli.plan as object), output: { path: null, format: "turtle" } },
          artifact: { ...(cli.artifact as object), path: null }
        })
        assert.strictEqual((cli.artifact as { path: string }).path, artifactPath)
        assert.deepStrictEqual([cli.queuePosition, cli.resume, api.resume], [null, null, null])

        const listed = await call(server, "GET", "/v1/runs?status=completed&limit=10")
        assert.deepStrictEqual(listed.json().runs.map((r: { id: string }) => r.id), ["moby"])

        // Deleting a finished run removes its rows and its artifact.
        assert.strictEqual((await call(server, "DELETE", "/v1/runs/moby")).status, 204)
        assert.strictEqual((await call(server, "GET", "/v1/runs/moby")).status, 404)
        assert.isFalse(fs.existsSync(path.join(dir, "moby.ttl")))
        assert.deepStrictEqual(fs.readdirSync(path.join(dir, ".quarry-exports")), [])
        assert.strictEqual((await call(server, "DELETE", "/v1/runs/moby")).status, 404)
      } finally {
        await stop(server)
      }
    },
    180_000
  )

  it("bad requests: 400, 404, 409, 413, 422, 429 with typed errors, and nothing stored", async () => {
    const db = path.join(dir, "errors.db")
    const server = await serve(db, ["--max-body", "64KB", "--max-active-runs", "1", "--max-queued-runs", "1"], {
      QUARRY_TEST_EXTRACTOR_DELAY_MS: "200"
    })
    try {
      const notJson = await call(server, "POST", "/v1/runs", "not json")
      assert.strictEqual(notJson.status, 400)
      assert.strictEqual(notJson.json().error.tag, "InvalidJson")
      const binary = await fetch(`${server.url}/v1/runs`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: Buffer.from([0x7b, 0xff, 0xfe, 0x7d])
      })
      assert.strictEqual(binary.status, 400)
      for (
        const [body, tag] of [
          [{ input: "" }, "EmptyInput"],
          [{ input: "a\u0000b" }, "BinaryInput"],
          [{ input: "a\ud800b" }, "MalformedText"],
          [{ input: "text", ontology: "" }, "OntologyError"],
          [{ input: "text", ontology: "@prefix ex: <http://e/> . ex:a ex:b ex:c ." }, "OntologyError"],
          [{ input: "text", chunking: { windowSize: 0 } }, "ChunkingError"],
          [{ input: "text", ontology: "@prefix broken" }, "OntologyError"],
          [{ input: "text", extractor: "nope" }, "UnknownExtractor"],
          [{ input: "text", runId: "../etc" }, "InvalidRequest"],
          [{ input: "text", runId: "-x" }, "InvalidRequest"],
          [{ input: 42 }, "InvalidRequest"],
          [{ input: "text", budget: { maxCostUsd: 0 } }, "InvalidRequest"],
          [{ input: "text", budget: { maxTokens: -3 } }, "InvalidRequest"]
        ] as const
      ) {
        const response = await call(server, "POST", "/v1/runs", body)
        assert.strictEqual(response.status, 422, `${JSON.stringify(body)}: ${response.text}`)
        assert.strictEqual(response.json().error.tag, tag)
      }
      // llm is there only when the server was started with a model: the refusal says how to get it.
      const llm = await call(server, "POST", "/v1/runs", { input: "text", extractor: "llm" })
      assert.strictEqual(llm.status, 422)
      assert.strictEqual(llm.json().error.tag, "UnknownExtractor")
      assert.match(
        llm.json().error.message,
        /^unknown extractor "llm"; available: [^;]+; the llm extractor runs on a server started with QUARRY_LLM_MODEL set/
      )
      // A budget is checked as --max-cost and --max-tokens are, one line per field (not a 500 from the store).
      const budgets = await call(
        server,
        "POST",
        "/v1/runs",
        "{\"input\":\"text\",\"budget\":{\"maxCostUsd\":1e400,\"maxTokens\":1.5}}"
      )
      assert.strictEqual(budgets.status, 422)
      assert.deepStrictEqual(budgets.json().error, {
        tag: "InvalidRequest",
        message: "budget.maxCostUsd: Expected a finite number, actual Infinity; " +
          "budget.maxTokens: Expected an integer, actual 1.5"
      })
      const large = await call(server, "POST", "/v1/runs", { input: "x".repeat(70_000) })
      assert.strictEqual(large.status, 413)
      assert.strictEqual(large.json().error.tag, "PayloadTooLarge")
      assert.isString(large.headers.get("x-request-id"))
      // Chunked, the body's size shows only while it is read: still a 413.
      const chunked = await fetch(`${server.url}/v1/runs`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: new Blob([JSON.stringify({ input: "x".repeat(70_000) })]).stream(),
        duplex: "half"
      } as RequestInit)
      assert.strictEqual(chunked.status, 413)
      assert.deepStrictEqual(await chunked.json(), large.json())
      assert.isString(chunked.headers.get("x-request-id"))
      assert.deepStrictEqual((await call(server, "GET", "/v1/runs")).json().runs, [])

      for (const route of ["/v1/runs/missing", "/v1/runs/missing/events", "/v1/runs/missing/artifact"]) {
        const missing = await call(server, "GET", route)
        assert.strictEqual(missing.status, 404, route)
        assert.deepStrictEqual(missing.json().error, {
          tag: "RunNotFound",
          message: "run \"missing\" does not exist; GET /v1/runs lists the runs"
        })
      }
      // A route under another method is a 405 with the methods it takes; a path that is no route, a 404 that says so.
      for (
        const [method, route, allow] of [
          ["PUT", "/v1/runs", "GET, HEAD, POST"],
          ["PATCH", "/v1/runs/missing", "GET, HEAD, DELETE"],
          ["GET", "/v1/runs/missing/cancel", "POST"],
          ["POST", "/readyz", "GET, HEAD"]
        ] as const
      ) {
        const wrong = await call(server, method, route)
        assert.strictEqual(wrong.status, 405, `${method} ${route}`)
        assert.strictEqual(wrong.headers.get("allow"), allow)
        assert.deepStrictEqual(wrong.json().error, {
          tag: "MethodNotAllowed",
          message: `${route} does not take ${method}; it takes ${allow}`
        })
      }
      const nowhere = await call(server, "GET", "/v1/run")
      assert.strictEqual(nowhere.status, 404)
      assert.deepStrictEqual(nowhere.json().error, {
        tag: "RouteNotFound",
        message: "no route GET /v1/run; GET /openapi.json describes the API, and /docs shows it"
      })
      // Path and query errors have the API's error shape too (not the platform's own body).
      const badId = await call(server, "GET", "/v1/runs/a%20b")
      assert.strictEqual(badId.status, 400)
      assert.strictEqual(badId.json().error.tag, "InvalidRequest")
      assert.include(badId.json().error.message, "id: a run id is 1 to 128 characters")
      // The longest run id reaches its routes (the router's own limit was 100 characters), a longer one is refused.
      const longest = await call(server, "GET", `/v1/runs/${"x".repeat(128)}/events`)
      assert.strictEqual(longest.status, 404)
      assert.strictEqual(longest.json().error.tag, "RunNotFound")
      const tooLong = await call(server, "GET", `/v1/runs/${"x".repeat(129)}`)
      assert.strictEqual(tooLong.status, 400)
      assert.include(tooLong.json().error.message, "id: a run id is 1 to 128 characters")
      const badStatus = await call(server, "GET", "/v1/runs?status=bogus")
      assert.strictEqual(badStatus.status, 400)
      assert.deepStrictEqual(badStatus.json(), {
        error: {
          tag: "InvalidRequest",
          message: "status: expected one of \"pending\", \"running\", \"completed\", \"failed\", \"cancelled\", " +
            "\"interrupted\", got \"bogus\""
        }
      })

      const badResume = await call(server, "POST", "/v1/runs/missing/resume?maxCostUsd=0")
      assert.strictEqual(badResume.status, 400)
      assert.strictEqual(badResume.json().error.message, "maxCostUsd: Expected a positive number, actual 0")

      // One executing, one waiting, the next refused with Retry-After.
      const text = fs.readFileSync(mobyDick.input, "utf8").slice(0, 60_000)
      const body = (runId: string) => ({
        input: text,
        runId,
        extractor: "test-slow",
        chunking: { windowSize: 2000, batchSize: 2 }
      })
      assert.strictEqual((await call(server, "POST", "/v1/runs", body("first"))).status, 202)
      await until(async () => (await call(server, "GET", "/v1/runs/first")).json().status === "running")
      const executing = await call(server, "POST", "/v1/runs/first/resume")
      assert.strictEqual(executing.status, 409, executing.text)
      assert.strictEqual(executing.json().error.tag, "InvalidRunState")
      const second = await call(server, "POST", "/v1/runs", body("second"))
      assert.strictEqual(second.status, 202)
      assert.strictEqual(second.json().queuePosition, 1)
      const third = await call(server, "POST", "/v1/runs", body("third"))
      assert.strictEqual(third.status, 429)
      assert.strictEqual(third.headers.get("retry-after"), "5")
      assert.strictEqual((await call(server, "GET", "/v1/runs/third")).status, 404)

      const early = await call(server, "GET", "/v1/runs/first/artifact")
      assert.strictEqual(early.status, 409)
      assert.strictEqual((await call(server, "DELETE", "/v1/runs/first")).status, 409)
      const cancelled = await call(server, "POST", "/v1/runs/second/cancel")
      assert.strictEqual(cancelled.status, 200)
      assert.strictEqual(cancelled.json().status, "cancelled")
      assert.strictEqual(cancelled.json().queuePosition, null)
      // A resume into a full queue is told when to come back, as a submission is.
      assert.strictEqual((await call(server, "POST", "/v1/runs", body("fourth"))).status, 202)
      const refusedResume = await call(server, "POST", "/v1/runs/second/resume")
      assert.strictEqual(refusedResume.status, 429, refusedResume.text)
      assert.strictEqual(refusedResume.headers.get("retry-after"), "5")
      assert.strictEqual(refusedResume.json().error.tag, "QueueFull")
      assert.strictEqual((await call(server, "POST", "/v1/runs/fourth/cancel")).status, 200)
      const resumed = await call(server, "POST", "/v1/runs/second/resume?retrySkipped=true")
      assert.strictEqual(resumed.status, 202, resumed.text)
      assert.strictEqual(resumed.json().queuePosition, 1)
      assert.strictEqual((await call(server, "POST", "/v1/runs/missing/resume")).status, 404)
      assert.strictEqual((await call(server, "POST", "/v1/runs/missing/cancel")).status, 404)
    } finally {
      await stop(server)
    }
  }, 120_000)

  it("a JSON body nested deeper than 64 levels is 400 JsonTooDeep (it was a 500), and nothing is stored", async () => {
    const server = await serve(path.join(dir, "deep.db"))
    try {
      const nested = (open: string, close: string, levels: number) =>
        `{"input":"x","extractor":${open.repeat(levels)}1${close.repeat(levels)}}`
      for (const body of [nested("[", "]", 3000), nested("{\"a\":", "}", 20_000), nested("[", "]", 64)]) {
        const deep = await call(server, "POST", "/v1/runs", body)
        assert.strictEqual(deep.status, 400, deep.text)
        assert.deepStrictEqual(deep.json().error, {
          tag: "JsonTooDeep",
          message: "the request body nests arrays and objects deeper than 64 levels; a submission needs 2 (the body, " +
            "then chunking or budget)"
        })
      }
      // 64 levels, the body's own included, still reach the schema, which names the field.
      const deepest = await call(server, "POST", "/v1/runs", nested("[", "]", 63))
      assert.strictEqual(deepest.status, 422, deepest.text)
      assert.match(deepest.json().error.message, /^extractor: Expected string, actual \[\[/)
      assert.deepStrictEqual((await call(server, "GET", "/v1/runs")).json().runs, [])
      assert.notInclude(server.child.stderr, "request failed")
    } finally {
      await stop(server)
    }
  }, 60_000)

  it(
    "a method the API does not handle (PROPFIND, MKCOL, LOCK, SEARCH, PURGE) is a JSON 405 with Allow, or a JSON 404 off the API",
    async () => {
      const server = await serve(path.join(dir, "methods.db"))
      try {
        for (const method of ["PROPFIND", "MKCOL", "LOCK", "SEARCH", "PURGE"]) {
          const wrong = await call(server, method, "/v1/runs")
          assert.strictEqual(wrong.status, 405, `${method}: ${wrong.text}`)
          assert.strictEqual(wrong.headers.get("allow"), "GET, HEAD, POST")
          assert.deepStrictEqual(wrong.json().error, {
            tag: "MethodNotAllowed",
            message: `/v1/runs does not take ${method}; it takes GET, HEAD, POST`
          })
          const nowhere = await call(server, method, "/nowhere")
          assert.strictEqual(nowhere.status, 404, `${method}: ${nowhere.text}`)
          assert.strictEqual(nowhere.json().error.tag, "RouteNotFound")
        }
        // HEAD still answers as GET does.
        assert.strictEqual((await fetch(`${server.url}/v1/runs`, { method: "HEAD" })).status, 200)
        assert.notInclude(server.child.stderr, "request failed")
      } finally {
        await stop(server)
      }
    },
    60_000
  )

  it(
    "another site's page cannot write: a foreign Origin or Sec-Fetch-Site is 403 on every route that changes runs, a body not sent as application/json is 415, and nothing changes",
    async () => {
      const server = await serve(path.join(dir, "cross-site.db"), [], { QUARRY_TEST_EXTRACTOR_DELAY_MS: "0" })
      try {
        const port = new URL(server.url).port
        const json = { "content-type": "application/json" }
        assert.strictEqual(
          (await call(server, "POST", "/v1/runs", { runId: "kept", input: "Call me Ishmael." })).status,
          202
        )
        await until(async () => (await call(server, "GET", "/v1/runs/kept")).json().status === "completed")
        const planted = JSON.stringify({ runId: "planted", input: "Captain Ahab commanded the Pequod." })
        for (
          const sender of [
            { origin: "http://evil.example" },
            { origin: "null" },
            { origin: `http://localhost:${port}` },
            { "sec-fetch-site": "cross-site", origin: "http://evil.example" },
            { "sec-fetch-site": "same-site" }
          ]
        ) {
          for (
            const [method, route, body] of [
              ["POST", "/v1/runs", planted],
              ["POST", "/v1/runs/kept/cancel", undefined],
              ["POST", "/v1/runs/kept/resume?retrySkipped=true", undefined],
              ["DELETE", "/v1/runs/kept", undefined]
            ] as const
          ) {
            for (const type of ["text/plain", "application/x-www-form-urlencoded", "application/json"]) {
              const refused = await raw(server, method, route, { ...sender, "content-type": type }, body)
              assert.strictEqual(refused.status, 403, `${method} ${route} ${JSON.stringify(sender)}: ${refused.text}`)
              assert.strictEqual(refused.json().error.tag, "CrossOriginRequest")
            }
          }
          // Reading is not refused: CORS keeps the answer from the page.
          assert.strictEqual((await raw(server, "GET", "/v1/runs/kept", sender)).status, 200)
        }
        const runs = (await call(server, "GET", "/v1/runs")).json().runs as Array<{ id: string; status: string }>
        assert.deepStrictEqual(runs.map((run) => [run.id, run.status]), [["kept", "completed"]])
        assert.deepStrictEqual(
          (await raw(server, "POST", "/v1/runs", { "content-type": "text/plain" }, planted)).json().error,
          {
            tag: "UnsupportedMediaType",
            message: "the request body must be JSON sent with Content-Type: application/json (got text/plain); " +
              "nothing was stored"
          }
        )
        for (const type of [{ "content-type": "application/x-www-form-urlencoded" }, {}]) {
          const unsupported = await raw(server, "POST", "/v1/runs", type, planted)
          assert.strictEqual(unsupported.status, 415, unsupported.text)
        }
        assert.strictEqual((await call(server, "GET", "/v1/runs/planted")).status, 404)
        // The server's own pages (and clients that are not browsers) go on: same Origin, or same-origin.
        const own = await raw(server, "POST", "/v1/runs", { ...json, origin: server.url }, planted)
        assert.strictEqual(own.status, 202, own.text)
        const charset = await raw(
          server,
          "POST",
          "/v1/runs",
          { "content-type": "application/json; charset=utf-8" },
          planted
        )
        assert.strictEqual(charset.status, 200, charset.text)
        await until(async () => (await call(server, "GET", "/v1/runs/planted")).json().status === "completed")
        assert.strictEqual(
          (await raw(server, "DELETE", "/v1/runs/planted", { "sec-fetch-site": "same-origin" })).status,
          204
        )
      } finally {
        await stop(server)
      }
    },
    60_000
  )

  it(
    "a Host that is not the server's (DNS rebinding) is 403 without tokens on every route, addresses, localhost and --allowed-hosts pass; with tokens Host is not checked",
    async () => {
      const server = await serve(path.join(dir, "hosts.db"), ["--allowed-hosts", "quarry.internal, Other.Example"])
      const withTokens = await serve(path.join(dir, "hosts-tokens.db"), [], { QUARRY_API_TOKENS: "s3cret" })
      try {
        const port = new URL(server.url).port
        for (const route of ["/v1/runs", "/", "/healthz", "/openapi.json", "/docs"]) {
          for (const host of ["attacker.example", `attacker.example:${port}`, `localhost.attacker.example:${port}`]) {
            const refused = await raw(server, "GET", route, { host })
            assert.strictEqual(refused.status, 403, `${route} ${host}: ${refused.text}`)
            assert.strictEqual(refused.json().error.tag, "HostNotAllowed")
          }
          for (
            const host of [
              `127.0.0.1:${port}`,
              `localhost:${port}`,
              `[::1]:${port}`,
              "app.localhost",
              "10.0.0.7",
              `quarry.internal:${port}`,
              "OTHER.example."
            ]
          ) {
            assert.strictEqual((await raw(server, "GET", route, { host })).status, 200, `${route} ${host}`)
          }
        }
        const bearer = { authorization: "Bearer s3cret" }
        assert.strictEqual((await raw(withTokens, "GET", "/v1/runs", { ...bearer, host: "quarry.svc" })).status, 200)
        const crossSite = await raw(
          withTokens,
          "POST",
          "/v1/runs",
          { ...bearer, host: "quarry.svc", origin: "http://evil.example", "content-type": "text/plain" },
          JSON.stringify({ input: "planted" })
        )
        assert.strictEqual(crossSite.status, 403, crossSite.text)
      } finally {
        await stop(server)
        await stop(withTokens)
      }
    },
    60_000
  )

  it(
    "DELETE runs the run's compensation steps first; a failing step keeps the run (409), a retry deletes it",
    async () => {
      const uploads = path.join(dir, "comp-uploads")
      fs.mkdirSync(uploads)
      const server = await serve(path.join(dir, "comp.db"), [], {
        QUARRY_TEST_EXTRACTOR_DELAY_MS: "0",
        QUARRY_TEST_COMPENSATION_DIR: uploads
      })
      try {
        const body = {
          input: mobyText().slice(0, 5_000),
          runId: "comp",
          extractor: "test-slow",
          chunking: { windowSize: 1000, batchSize: 1 }
        }
        assert.strictEqual((await call(server, "POST", "/v1/runs", body)).status, 202)
        await until(async () => (await call(server, "GET", "/v1/runs/comp")).json().status === "completed")
        const files = fs.readdirSync(uploads).filter((f) => f.endsWith(".upload")).sort()
        assert.isAbove(files.length, 2)
        const pending = (await call(server, "GET", "/v1/runs/comp")).json().compensation
        assert.strictEqual(pending.state, "pending")
        assert.strictEqual(pending.steps.length, files.length)

        fs.writeFileSync(path.join(uploads, "batch-1.upload.locked"), "")
        const refused = await call(server, "DELETE", "/v1/runs/comp")
        assert.strictEqual(refused.status, 409, refused.text)
        assert.strictEqual(refused.json().error.tag, "CompensationFailed")
        assert.include(refused.json().error.message, "batch-1.upload is locked")
        // The way on is named for both front ends (the message is also the run's stored last error).
        assert.include(
          refused.json().error.message,
          "run them again: quarry cancel comp --purge, or DELETE /v1/runs/comp"
        )
        const kept = await call(server, "GET", "/v1/runs/comp")
        assert.strictEqual(kept.status, 200)
        assert.strictEqual(kept.json().compensation.state, "compensation_failed")
        assert.deepStrictEqual(fs.readdirSync(uploads).filter((f) => f.endsWith(".upload")), ["batch-1.upload"])

        fs.rmSync(path.join(uploads, "batch-1.upload.locked"))
        assert.strictEqual((await call(server, "DELETE", "/v1/runs/comp")).status, 204)
        assert.strictEqual((await call(server, "GET", "/v1/runs/comp")).status, 404)
        assert.deepStrictEqual(fs.readdirSync(uploads).filter((f) => f.endsWith(".upload")), [])
        // Newest first, each step once (batch 1's failed attempt left no line).
        const undone = fs.readFileSync(path.join(uploads, "undo.log"), "utf8").trim().split("\n").map((l) =>
          Number(l.split(" ")[1])
        )
        assert.deepStrictEqual([...undone].sort((a, b) => a - b), files.map((_, i) => i))
      } finally {
        await stop(server)
      }
    },
    60_000
  )

  it(
    "with tokens: 401 on /v1 without or with a wrong token, probes open; a public host without tokens is refused",
    async () => {
      const server = await serve(path.join(dir, "auth.db"), [], { QUARRY_API_TOKENS: "s3cret-one, s3cret-two" })
      try {
        assert.strictEqual((await call(server, "GET", "/v1/runs")).status, 401)
        const wrong = await call(server, "GET", "/v1/runs", undefined, { authorization: "Bearer s3cret-three" })
        assert.strictEqual(wrong.status, 401)
        assert.notInclude(wrong.text, "s3cret")
        const right = await call(server, "GET", "/v1/runs", undefined, { authorization: "Bearer s3cret-two" })
        assert.strictEqual(right.status, 200)
        for (const probe of ["/livez", "/readyz", "/startupz", "/healthz", "/openapi.json", "/docs"]) {
          assert.strictEqual((await call(server, "GET", probe)).status, 200, probe)
        }
        assert.notInclude(server.child.stderr, "s3cret")
      } finally {
        await stop(server)
      }
      const refused = start(["serve", "--db", path.join(dir, "public.db"), "--host", "0.0.0.0", "--port", "0"])
      assert.strictEqual((await refused.exited).code, 2)
      assert.include(refused.stderr, "without API tokens")
      assert.isFalse(fs.existsSync(path.join(dir, "public.db")))
    },
    60_000
  )

  it("limits that would refuse every run exit 2 at start, also from the environment; the smallest limit takes one", async () => {
    const refusals: ReadonlyArray<readonly [ReadonlyArray<string>, Record<string, string>, string]> = [
      [["--max-queued-runs", "0"], {}, "max-queued-runs (0) must be 1 or more"],
      [[], { QUARRY_MAX_QUEUED_RUNS: "0" }, "max-queued-runs (0) must be 1 or more"],
      [["--max-body", "0"], {}, "max-body (\"0\") must be a size greater than 0"],
      [[], { QUARRY_MAX_BODY: "12B" }, "less than the smallest submission ({\"input\":\"x\"}, 13 bytes)"],
      // Past what the server can decode, a limit takes bodies it then cannot read.
      [["--max-body", "1GB"], {}, "more than the largest body the server can decode (536870888 bytes"],
      [[], { QUARRY_MAX_BODY: "99999999999999999999" }, "is too large"]
    ]
    const db = path.join(dir, "limits.db")
    for (const [args, env, message] of refusals) {
      const child = start(["serve", "--db", db, "--port", "0", "--json", ...args], { env })
      // One that serves instead is stopped at once: it failed the test.
      const served = await child.waitFor((stdout) => stdout.includes("server.listening")).then(() => true, () => false)
      if (served) child.child.kill("SIGKILL")
      const exit = await child.exited
      assert.isFalse(served, `${args.join(" ")} ${JSON.stringify(env)} was served`)
      assert.strictEqual(exit.code, 2, child.stderr)
      assert.include(child.stderr, message)
      assert.isFalse(fs.existsSync(db))
    }
    const server = await serve(db, ["--max-body", "13B", "--max-queued-runs", "1"], {})
    try {
      assert.strictEqual((await call(server, "POST", "/v1/runs", { input: "x" })).status, 202)
    } finally {
      await stop(server)
    }
  })

  it("a submission whose artifact would be the database's own file is 422, and the database stays", async () => {
    const db = path.join(dir, "runs.jsonl")
    const server = await serve(db)
    try {
      const refused = await call(server, "POST", "/v1/runs", { runId: "runs", format: "jsonl", input: "Ahab sailed." })
      assert.strictEqual(refused.status, 422, refused.text)
      assert.deepStrictEqual(refused.json().error, {
        tag: "ArtifactOverDatabase",
        message: `run runs's artifact ${db} would be the database's own file (${db}) and replace it; ` +
          "choose another runId or format"
      })
      assert.deepStrictEqual((await call(server, "GET", "/v1/runs")).json().runs, [])
    } finally {
      await stop(server)
    }
    assert.isUndefined(row(db, "runs"))
  }, 60_000)

  it("an artifact that reaches the database or its write-ahead log through a symbolic link is 422", async () => {
    const linked = path.join(dir, "linked")
    fs.mkdirSync(linked)
    // --db names a link to runs.jsonl: the artifact of run `runs` in jsonl would be renamed over the database itself.
    const real = path.join(linked, "runs.jsonl")
    fs.writeFileSync(real, "")
    const db = path.join(linked, "quarry.db")
    fs.symlinkSync("runs.jsonl", db)
    const server = await serve(db)
    try {
      const refused = await call(server, "POST", "/v1/runs", { runId: "runs", format: "jsonl", input: "Ahab sailed." })
      assert.strictEqual(refused.status, 422, refused.text)
      assert.strictEqual(refused.json().error.tag, "ArtifactOverDatabase")
      // SQLite names the log after the resolved path, runs.jsonl-wal: a link to it is the log as well.
      fs.symlinkSync("runs.jsonl-wal", path.join(linked, "log.jsonl"))
      const log = await call(server, "POST", "/v1/runs", { runId: "log", format: "jsonl", input: "Ahab sailed." })
      assert.strictEqual(log.status, 422, log.text)
      assert.deepStrictEqual(log.json().error, {
        tag: "ArtifactOverDatabase",
        message: `run log's artifact ${path.join(linked, "log.jsonl")} would be the database's write-ahead log ` +
          `(${fs.realpathSync(real)}-wal) and corrupt it; choose another runId or format`
      })
      assert.deepStrictEqual((await call(server, "GET", "/v1/runs")).json().runs, [])
    } finally {
      await stop(server)
    }
    assert.isTrue(fs.lstatSync(db).isSymbolicLink())
    assert.isUndefined(row(db, "runs"))
    assert.isUndefined(row(db, "log"))
  }, 60_000)

  it("the OpenAPI document is OpenAPI 3 and lists every route", async () => {
    const server = await serve(path.join(dir, "openapi.db"))
    try {
      const spec = (await call(server, "GET", "/openapi.json")).json()
      assert.match(spec.openapi, /^3\.\d+\.\d+$/)
      assert.isString(spec.info.title)
      const routes = Object.entries(spec.paths as Record<string, Record<string, unknown>>).flatMap(([p, methods]) =>
        Object.keys(methods).map((m) => `${m.toUpperCase()} ${p}`)
      ).sort()
      assert.deepStrictEqual(routes, [
        "DELETE /v1/runs/{id}",
        "GET /healthz",
        "GET /livez",
        "GET /metrics",
        "GET /readyz",
        "GET /startupz",
        "GET /v1/runs",
        "GET /v1/runs/{id}",
        "GET /v1/runs/{id}/artifact",
        "GET /v1/runs/{id}/events",
        "POST /v1/runs",
        "POST /v1/runs/{id}/cancel",
        "POST /v1/runs/{id}/resume"
      ])
      assert.property(spec.components.securitySchemes, "bearer")
      const docs = await call(server, "GET", "/docs")
      assert.include(docs.text, "<html")
      // The UI's script is inline, served by the server itself (no CDN).
      assert.notMatch(docs.text, /<script[^>]+src=/)
    } finally {
      await stop(server)
    }
  }, 60_000)

  it("the first request on the port, sent as it opens, is answered once the server can (never left hanging)", async () => {
    const port = await freePort()
    const server = start(["serve", "--db", path.join(dir, "first.db"), "--port", String(port), "--json"])
    // Also when the request is never answered and the test times out.
    onTestFinished(async () => {
      server.child.kill("SIGKILL")
      await server.exited
    })
    // The port opens before the server's handler is attached (the other layers are built in between): a request
    // that lands there waits for it.
    const first = await firstResponse(server, port, "/livez")
    assert.strictEqual(first, 200, server.stderr)
  })

  it("probes are answered while the offline extractor works through a batch of 400,000 characters", async () => {
    const server = await serve(path.join(dir, "big-batches.db"))
    try {
      const chunking = { windowSize: 20_000, overlap: 0, batchSize: 20 }
      const submitted = await call(server, "POST", "/v1/runs", { input: mobyText(), runId: "big", chunking })
      assert.strictEqual(submitted.status, 202, submitted.text)
      // Between the first batch's commit and the second's: only the second batch's extraction runs then (the first
      // one's time also holds the loading of the extractor's modules, which lets the event loop turn anyway).
      let answered = 0
      while (answered < 5) {
        const probe = await call(server, "GET", "/livez")
        const run = (await call(server, "GET", "/v1/runs/big")).json() as { progress: { committedBatches: number } }
        assert.isBelow(run.progress.committedBatches, 2, `only ${answered} probes answered during the second batch`)
        if (run.progress.committedBatches === 1 && probe.status === 200) answered++
      }
    } finally {
      await stop(server)
    }
  }, 180_000)

  it(
    "the OpenAPI document declares what the server answers: each format's media type, the events' 204, the server's version, a 401's WWW-Authenticate, 404 RouteNotFound and 405 MethodNotAllowed",
    async () => {
      const token = { authorization: "Bearer s3cret" }
      const server = await serve(path.join(dir, "document.db"), [], { QUARRY_API_TOKENS: "s3cret" })
      try {
        const spec = (await call(server, "GET", "/openapi.json")).json()
        assert.strictEqual(spec.info.version, (await call(server, "GET", "/healthz")).json().version)
        const body = { runId: "doc", input: "Captain Ahab commanded the Pequod." }
        assert.strictEqual((await call(server, "POST", "/v1/runs", body, token)).status, 202)
        await until(async () =>
          (await call(server, "GET", "/v1/runs/doc", undefined, token)).json().status === "completed"
        )
        const artifact = spec.paths["/v1/runs/{id}/artifact"].get.responses
        for (const format of ["turtle", "ntriples", "jsonl"]) {
          const route = `/v1/runs/doc/artifact?format=${format}`
          const whole = await call(server, "GET", route, undefined, token)
          assert.strictEqual(whole.status, 200, whole.text)
          assert.include(Object.keys(artifact["200"].content), whole.headers.get("content-type"), format)
          const part = await call(server, "GET", route, undefined, { ...token, range: "bytes=0-9" })
          assert.strictEqual(part.status, 206, part.text)
          assert.include(Object.keys(artifact["206"].content), part.headers.get("content-type"), format)
        }
        const finished = await call(server, "GET", "/v1/runs/doc/events", undefined, {
          ...token,
          "last-event-id": "99"
        })
        assert.strictEqual(finished.status, 204)
        assert.property(spec.paths["/v1/runs/{id}/events"].get.responses, "204")
        const refused = await call(server, "GET", "/v1/runs")
        assert.strictEqual(refused.status, 401)
        assert.strictEqual(refused.headers.get("www-authenticate"), "Bearer")
        for (const [route, operations] of Object.entries(spec.paths as Record<string, Record<string, Operation>>)) {
          for (const [method, operation] of Object.entries(operations)) {
            const unauthorized = operation.responses["401"]
            if (route.startsWith("/v1/")) {
              assert.property(unauthorized?.headers ?? {}, "WWW-Authenticate", method + route)
            }
          }
        }
        const wrong = await call(server, "PUT", "/v1/runs", undefined, token)
        assert.strictEqual(wrong.status, 405)
        assert.strictEqual(wrong.json().error.tag, "MethodNotAllowed")
        assert.property(spec.components.responses.MethodNotAllowed.headers, "Allow")
        const nowhere = await call(server, "GET", "/v1/run", undefined, token)
        assert.strictEqual(nowhere.status, 404)
        assert.strictEqual(nowhere.json().error.tag, "RouteNotFound")
        assert.property(spec.components.responses, "RouteNotFound")
        assert.include(spec.info.description, "#/components/responses/RouteNotFound")
      } finally {
        await stop(server)
      }
    },
    60_000
  )

  it(
    "SIGTERM with three active runs: readyz and submissions 503, exit 0, runs interrupted; a restart completes them unasked",
    async () => {
      const db = path.join(dir, "drain.db")
      // The test-only shutdown delay keeps the drained server answering long enough to probe it.
      const env = { QUARRY_TEST_EXTRACTOR_DELAY_MS: "150", QUARRY_TEST_SHUTDOWN_DELAY_MS: "3000" }
      const server = await serve(db, ["--max-active-runs", "3", "--drain-timeout", "20s"], env)
      const ids = ["d1", "d2", "d3"]
      for (const id of ids) assert.strictEqual((await call(server, "POST", "/v1/runs", mobyBody(id))).status, 202)
      await until(() => ids.every((id) => (row(db, id)?.committed_batches ?? 0) >= 2), 60_000, "three runs committing")
      const sent = Date.now()
      assert.strictEqual((await call(server, "GET", "/readyz")).status, 200)
      const events = (await fetch(`${server.url}/v1/runs/d1/events`)).body!.getReader()
      // The stream opens with a comment, then the run's events.
      let first = ""
      while (!first.includes("\n\nid:")) first += new TextDecoder().decode((await events.read()).value)
      assert.include(first, "event: run.started")
      const stream = (async () => {
        while (!(await events.read()).done) continue
      })()
      server.child.child.kill("SIGTERM")
      await until(async () => (await call(server, "GET", "/readyz")).status === 503, 5_000, "readyz 503")
      const refused = await call(server, "POST", "/v1/runs", { input: "late" })
      assert.strictEqual(refused.status, 503)
      assert.strictEqual(refused.json().error.tag, "Draining")
      // Readiness and admission stop first; the drain then interrupts the runs, each recorded before the exit.
      await until(() => ids.every((id) => row(db, id)?.status === "interrupted"), 10_000, "the runs interrupted")
      // Open event streams end with the drain, before the process exits.
      await stream
      assert.isNull(server.child.child.exitCode)
      const exit = await server.child.exited
      assert.isBelow(Date.now() - sent, 20_000)
      assert.strictEqual(exit.code, 0, server.child.stderr)
      for (const id of ids) {
        const stored = row(db, id)!
        assert.strictEqual(stored.status, "interrupted", id)
        assert.isBelow(stored.committed_batches, 67)
      }
      const restarted = await serve(db, ["--max-active-runs", "3"], { QUARRY_TEST_EXTRACTOR_DELAY_MS: "0" })
      try {
        await until(() => ids.every((id) => row(db, id)?.status === "completed"), 90_000, "recovered runs")
        for (const id of ids) assert.strictEqual(row(db, id)!.artifact_sha256, reference.sha256, id)
        assert.notInclude(restarted.child.stderr, "\"method\":\"POST\"")
      } finally {
        await stop(restarted)
      }
    },
    180_000
  )

  it("QUARRY_NO_RECOVER=TRUE (any case): a restart leaves the killed server's run as it was", async () => {
    const db = path.join(dir, "no-recover.db")
    const env = { QUARRY_TEST_EXTRACTOR_DELAY_MS: "100", QUARRY_LEASE_MS: "1000" }
    const server = await serve(db, [], env)
    assert.strictEqual((await call(server, "POST", "/v1/runs", mobyBody("left"))).status, 202)
    await until(() => (row(db, "left")?.committed_batches ?? 0) >= 2, 60_000, "commits")
    server.child.child.kill("SIGKILL")
    await server.child.exited
    const left = row(db, "left")!
    const restarted = await serve(db, [], { ...env, QUARRY_TEST_EXTRACTOR_DELAY_MS: "0", QUARRY_NO_RECOVER: "TRUE" })
    try {
      // Long past the lease, when recovery would have taken the run and committed more batches.
      await sleep(4_000)
      const view = (await call(restarted, "GET", "/v1/runs/left")).json() as {
        progress: { committedBatches: number }
      }
      assert.strictEqual(view.progress.committedBatches, left.committed_batches)
      assert.strictEqual(row(db, "left")!.committed_batches, left.committed_batches)
    } finally {
      await stop(restarted)
    }
  }, 120_000)

  it(
    "SIGKILL: a restart leaves the dead server's live lease alone, then recovers the run once it expires",
    async () => {
      const db = path.join(dir, "kill.db")
      const env = { QUARRY_TEST_EXTRACTOR_DELAY_MS: "100", QUARRY_LEASE_MS: "3000" }
      const server = await serve(db, [], env)
      assert.strictEqual((await call(server, "POST", "/v1/runs", mobyBody("killed"))).status, 202)
      await until(() => (row(db, "killed")?.committed_batches ?? 0) >= 3, 60_000, "commits")
      server.child.child.kill("SIGKILL")
      await server.child.exited
      const killedAt = Date.now()
      const restarted = await serve(db, [], { ...env, QUARRY_TEST_EXTRACTOR_DELAY_MS: "0" })
      try {
        await until(() => row(db, "killed")?.status === "completed", 90_000, "the recovered run")
        assert.isAtLeast(Date.now() - killedAt, 2_500)
        assert.strictEqual(row(db, "killed")!.artifact_sha256, reference.sha256)
      } finally {
        await stop(restarted)
      }
    },
    180_000
  )
})
