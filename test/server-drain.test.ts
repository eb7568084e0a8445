/**
 * `quarry serve`'s drain ends within `--drain-timeout` whatever its clients do, over raw TCP sockets to the real
 * process: a connection that never sends a request and one halfway through its headers are closed (exit 0); open
 * event streams end, each after its run's `run.interrupted` (exit 0); a request on a quiet connection during the
 * drain is answered 503 `Draining` with `Connection: close`; a request whose body is still arriving at the deadline
 * is cut (exit 1).
 *
 * With `--drain-delay`, the server stays up after SIGTERM, not ready but serving new connections, until the delay ends
 * (or a second signal ends it), and only then drains and closes its port; a signal after that exits at once (130).
 * The order of events is asserted, never a duration: a request in flight keeps the process up after its port closed,
 * so that "no longer accepting, still running" can be observed.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as net from "node:net"
import * as path from "node:path"
import { call, ended, logLines, serve, type Server, until } from "./serverProcess.js"
import { makeDir, removeDir, run, type Running } from "./support.js"

const drainTimeoutMs = 3_000
/** Beyond the drain timeout, for the process to exit: generous, since it only tells a hang from an exit. */
const marginMs = 5_000

/** A raw TCP connection: what it received, and when the server closed it. */
interface Raw {
  readonly socket: net.Socket
  readonly received: () => string
  readonly closed: Promise<void>
}

const connect = (server: Server) =>
  new Promise<Raw>((resolve, reject) => {
    const socket = net.connect(server.port, "127.0.0.1")
    let received = ""
    socket.setEncoding("utf8").on("data", (chunk: string) => {
      received += chunk
    })
    // A reset is a close too: what matters is that the server let go of the connection.
    socket.on("error", () => {})
    const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()))
    socket.once("connect", () => resolve({ socket, received: () => received, closed }))
    socket.once("error", reject)
  })

/** The exit of a server signalled at `sentAt`, failing (and killing it) if it outlives its drain timeout and margin. */
const exitOf = async (child: Running, sentAt: number, timeoutMs = drainTimeoutMs) => {
  let timer: NodeJS.Timeout | undefined
  const hung = new Promise<"hung">((resolve) => {
    timer = setTimeout(() => resolve("hung"), sentAt + timeoutMs + marginMs - Date.now())
  })
  const exit = await Promise.race([child.exited, hung])
  clearTimeout(timer)
  if (exit === "hung") {
    child.child.kill("SIGKILL")
    await child.exited
    assert.fail(`still running ${timeoutMs + marginMs} ms after SIGTERM; stderr:\n${child.stderr}`)
  }
  return exit
}

/** SIGTERM, then the exit. */
const terminate = (server: Server) => {
  const sentAt = Date.now()
  server.child.child.kill("SIGTERM")
  return exitOf(server.child, sentAt)
}

let dir = ""
const servers: Array<Server> = []
beforeAll(() => {
  dir = makeDir()
})
// A test that failed before its server exited must not leave it behind.
afterAll(() => {
  for (const server of servers) if (server.child.child.exitCode === null) server.child.child.kill("SIGKILL")
  removeDir(dir)
})

/** A server on a database of its own in the test folder (`name`), killed at the end if a test left it running. */
const launch = async (name: string, args: ReadonlyArray<string>, env: Readonly<Record<string, string>> = {}) => {
  const server = await serve(path.join(dir, `${name}.db`), args, env)
  servers.push(server)
  return server
}

describe("quarry serve drains within --drain-timeout", () => {
  const start = (name: string, env: Readonly<Record<string, string>> = {}, timeoutMs = drainTimeoutMs) =>
    launch(name, ["--drain-timeout", `${timeoutMs}ms`], env)

  it("a connection that never sends a request is closed: exit 0", async () => {
    const server = await start("quiet")
    const quiet = await connect(server)
    const exit = await terminate(server)
    assert.strictEqual(exit.code, 0, server.child.stderr)
    await quiet.closed
    assert.strictEqual(quiet.received(), "")
  })

  it("a connection halfway through its request's headers is closed: exit 0", async () => {
    const server = await start("half")
    const half = await connect(server)
    half.socket.write("GET /v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    const exit = await terminate(server)
    assert.strictEqual(exit.code, 0, server.child.stderr)
    await half.closed
  })

  it("open event streams end with the drain, each after its run's run.interrupted: exit 0", async () => {
    const server = await start("events", { QUARRY_TEST_EXTRACTOR_DELAY_MS: "200" })
    const input = "Ishmael met Queequeg in New Bedford. ".repeat(200)
    const body = { input, runId: "watched", extractor: "test-slow", chunking: { windowSize: 200, batchSize: 1 } }
    assert.strictEqual((await call(server, "POST", "/v1/runs", body)).status, 202)
    const streams = await Promise.all(Array.from({ length: 10 }, () => connect(server)))
    for (const events of streams) events.socket.write("GET /v1/runs/watched/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    for (const events of streams) {
      await until(() => events.received().includes("event: run.started"), 30_000, "the stream's first event")
    }
    const exit = await terminate(server)
    assert.strictEqual(exit.code, 0, server.child.stderr)
    for (const events of streams) {
      await events.closed
      // The drain recorded the run interrupted, and the stream said so before it ended.
      assert.include(events.received(), "event: run.interrupted")
      // The chunked body's last chunk: the stream was ended, not cut.
      assert.isTrue(events.received().endsWith("\r\n0\r\n\r\n"), events.received().slice(-200))
    }
  })

  it("a request on a quiet connection during the drain is answered 503 Draining, Connection: close", async () => {
    // The test-only shutdown delay keeps the drained server answering for a while before its connections close.
    const timeoutMs = 10_000
    const server = await start("late", { QUARRY_TEST_SHUTDOWN_DELAY_MS: "6000" }, timeoutMs)
    const quiet = await connect(server)
    const sentAt = Date.now()
    server.child.child.kill("SIGTERM")
    await until(async () => (await call(server, "GET", "/readyz")).status === 503, timeoutMs, "readyz 503")
    const payload = JSON.stringify({ input: "late" })
    quiet.socket.write(
      `POST /v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(payload)}\r\n\r\n${payload}`
    )
    await quiet.closed
    const [head, answer] = quiet.received().split("\r\n\r\n")
    assert.match(head!, /^HTTP\/1\.1 503 /)
    assert.match(head!, /^connection: close$/im)
    assert.include(answer, "\"tag\":\"Draining\"")
    const exit = await exitOf(server.child, sentAt, timeoutMs)
    assert.strictEqual(exit.code, 0, server.child.stderr)
  })

  it("a request whose body is still arriving at the deadline is cut: exit 1", async () => {
    const server = await start("slow-body")
    const slow = await connect(server)
    slow.socket.write(
      "POST /v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n" +
        "Expect: 100-continue\r\n\r\n"
    )
    // Node answers `100 Continue` once the request is read, and so in flight.
    await until(() => slow.received().includes("100 Continue"), 10_000, "100 Continue")
    slow.socket.write("{\"input\":")
    const exit = await terminate(server)
    assert.strictEqual(exit.code, 1, server.child.stderr)
    assert.include(server.child.stderr, "drain did not finish")
    await slow.closed
  })
})

/** Whether a new connection to the server's port is refused (it no longer listens). */
const refused = (server: Server) =>
  new Promise<boolean>((resolve) => {
    const socket = net.connect(server.port, "127.0.0.1")
    socket.once("connect", () => {
      socket.destroy()
      resolve(false)
    })
    socket.once("error", (error: NodeJS.ErrnoException) => resolve(error.code === "ECONNREFUSED"))
  })

/** A GET on a connection of its own, read until the server closes it; its status line, head and body. */
const getAlone = async (server: Server, route: string) => {
  const raw = await connect(server)
  let closed = false
  void raw.closed.then(() => closed = true)
  raw.socket.write(`GET ${route} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`)
  await until(() => closed, 30_000, `the connection of GET ${route} to close`)
  const [head = "", body = ""] = raw.received().split("\r\n\r\n")
  return { head, body }
}

/** A submission whose body is still arriving: in flight, it keeps the process up once the port is closed. */
const slowSubmission = async (server: Server) => {
  const payload = JSON.stringify({ input: "late" })
  const raw = await connect(server)
  raw.socket.write(
    "POST /v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
      `Content-Length: ${Buffer.byteLength(payload)}\r\nExpect: 100-continue\r\n\r\n`
  )
  await until(() => raw.received().includes("100 Continue"), 10_000, "100 Continue")
  raw.socket.write(payload.slice(0, 5))
  return { raw, finish: () => raw.socket.write(payload.slice(5)) }
}

/** The drain's log lines, in order: the delay's two, then the drain's own. */
const drainPhases = (server: Server) =>
  logLines(server).filter((line) =>
    ["drain delay: not ready, still serving", "drain delay over", "draining", "closing connections"].includes(
      String(line.message)
    )
  ).map((line) =>
    line.annotations.endedBy === undefined ? line.message : `${line.message} (${line.annotations.endedBy})`
  )

describe("quarry serve --drain-delay: not ready but still serving, then the drain", () => {
  it(
    "during the delay /readyz is 503, a new connection is served and a submission is 503; a second signal ends " +
      "the delay, the port closes while a request is in flight, and a third signal exits at once (130)",
    async () => {
      // A delay no test outlasts: only the second signal can end it.
      const server = await launch("window", ["--drain-delay", "300", "--drain-timeout", "600s"])
      const body = { input: "Ishmael met Queequeg in New Bedford.", runId: "before", extractor: "capitalized" }
      assert.strictEqual((await call(server, "POST", "/v1/runs", body)).status, 202)
      assert.strictEqual((await ended(server, "before")).status, "completed")
      const slow = await slowSubmission(server)

      server.child.child.kill("SIGTERM")
      await until(async () => (await call(server, "GET", "/readyz")).status === 503, 30_000, "readyz 503")
      const health = await getAlone(server, "/healthz")
      assert.match(health.head, /^HTTP\/1\.1 200 /)
      // The client's next request comes on a new connection, which a load balancer sends elsewhere.
      assert.match(health.head, /^connection: close$/im)
      assert.include(health.body, "\"draining\":true")
      const before = await getAlone(server, "/v1/runs/before")
      assert.match(before.head, /^HTTP\/1\.1 200 /)
      assert.include(before.body, "\"status\":\"completed\"")
      const late = await call(server, "POST", "/v1/runs", { input: "late" })
      assert.strictEqual(late.status, 503)
      assert.include(late.text, "\"tag\":\"Draining\"")
      assert.isFalse(await refused(server))
      assert.deepStrictEqual(drainPhases(server), ["drain delay: not ready, still serving"])

      server.child.child.kill("SIGTERM")
      await until(() => refused(server), 30_000, "the port to refuse connections")
      assert.isNull(server.child.child.exitCode, "the request in flight keeps the process up")
      assert.deepStrictEqual(drainPhases(server), [
        "drain delay: not ready, still serving",
        "drain delay over (SIGTERM)",
        "draining",
        "closing connections"
      ])

      const sentAt = Date.now()
      server.child.child.kill("SIGTERM")
      const exit = await exitOf(server.child, sentAt)
      assert.strictEqual(exit.code, 130, server.child.stderr)
      await slow.raw.closed
    }
  )

  it("the delay ends by itself (QUARRY_DRAIN_DELAY), then the port closes and the drain exits 0", async () => {
    const server = await launch("elapsed", ["--drain-timeout", "60s"], { QUARRY_DRAIN_DELAY: "1" })
    const slow = await slowSubmission(server)
    server.child.child.kill("SIGTERM")
    await until(() => refused(server), 30_000, "the port to refuse connections")
    assert.isNull(server.child.child.exitCode, "the request in flight keeps the process up")
    assert.deepStrictEqual(drainPhases(server), [
      "drain delay: not ready, still serving",
      "drain delay over (timer)",
      "draining",
      "closing connections"
    ])
    slow.finish()
    await slow.raw.closed
    assert.match(slow.raw.received(), /HTTP\/1\.1 503 [^]*"tag":"Draining"/)
    const exit = await exitOf(server.child, Date.now())
    assert.strictEqual(exit.code, 0, server.child.stderr)
  })

  it("without it (default 0) the drain starts at once: no delay, the port closes, exit 0", async () => {
    const server = await launch("default", ["--drain-timeout", "60s"])
    const slow = await slowSubmission(server)
    server.child.child.kill("SIGTERM")
    await until(() => refused(server), 30_000, "the port to refuse connections")
    assert.isNull(server.child.child.exitCode, "the request in flight keeps the process up")
    // As before the delay existed: the drain is the first thing logged.
    assert.strictEqual(drainPhases(server)[0], "draining")
    assert.notInclude(server.child.stderr, "drain delay")
    slow.finish()
    await slow.raw.closed
    const exit = await exitOf(server.child, Date.now())
    assert.strictEqual(exit.code, 0, server.child.stderr)
  })

  it("a delay not shorter than --drain-timeout, which bounds the whole shutdown, is refused: exit 2", async () => {
    const args = ["serve", "--db", path.join(dir, "refused.db"), "--port", "0", "--drain-delay", "25"]
    const result = await run([...args, "--drain-timeout", "25s"])
    assert.strictEqual(result.code, 2, result.stderr)
    assert.include(result.stderr, "--drain-delay (25 s) must be shorter than --drain-timeout (25 s)")
    const bad = await run(["serve", "--db", path.join(dir, "refused.db"), "--port", "0", "--drain-delay", "5s"])
    assert.strictEqual(bad.code, 2, bad.stderr)
    assert.include(bad.stderr, "a whole number of seconds")
  })
})
