/**
 * `quarry serve`'s drain ends within `--drain-timeout` whatever its clients do, over raw TCP sockets to the real
 * process: a connection that never sends a request and one halfway through its headers are closed (exit 0); an open
 * event stream ends (exit 0); a request on a quiet connection during the drain is answered 503 `Draining` with
 * `Connection: close`; a request whose body is still arriving at the deadline is cut (exit 1).
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as net from "node:net"
import * as path from "node:path"
import { call, serve, type Server, until } from "./serverProcess.js"
import { makeDir, removeDir, type Running } from "./support.js"

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

describe("quarry serve drains within --drain-timeout", () => {
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

  const start = async (name: string, env: Readonly<Record<string, string>> = {}, timeoutMs = drainTimeoutMs) => {
    const server = await serve(path.join(dir, `${name}.db`), ["--drain-timeout", `${timeoutMs}ms`], env)
    servers.push(server)
    return server
  }

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

  it("an open event stream ends with the drain: exit 0", async () => {
    const server = await start("events", { QUARRY_TEST_EXTRACTOR_DELAY_MS: "200" })
    const input = "Ishmael met Queequeg in New Bedford. ".repeat(200)
    const body = { input, runId: "watched", extractor: "test-slow", chunking: { windowSize: 200, batchSize: 1 } }
    assert.strictEqual((await call(server, "POST", "/v1/runs", body)).status, 202)
    const events = await connect(server)
    events.socket.write("GET /v1/runs/watched/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    await until(() => events.received().includes("event: run.started"), 30_000, "the stream's first event")
    const exit = await terminate(server)
    assert.strictEqual(exit.code, 0, server.child.stderr)
    await events.closed
    // The chunked body's last chunk: the stream was ended, not cut.
    assert.isTrue(events.received().endsWith("\r\n0\r\n\r\n"), events.received().slice(-200))
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
