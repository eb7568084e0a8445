/**
 * SIGINT and SIGTERM in the middle of a run: exit 130, the run is recorded `interrupted` with the command that
 * resumes it, and resuming completes to the same bytes as an uninterrupted run.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as net from "node:net"
import * as path from "node:path"
import {
  committedEvents,
  jsonLines,
  makeDir,
  mobyDick,
  readRun,
  referenceRun,
  removeDir,
  run,
  sha256File,
  sleep,
  start,
  startMobyDick,
  withDb
} from "./support.js"

const env = { QUARRY_TEST_EXTRACTOR_DELAY_MS: "25" }

describe("signals", () => {
  let dir = ""
  let reference = { sha256: "", digest: "" }

  beforeAll(async () => {
    dir = makeDir()
    reference = await referenceRun(dir)
  }, 120_000)
  afterAll(() => removeDir(dir))

  const startRun = (runId: string) => startMobyDick(dir, runId, env)

  const resumeToEnd = async (runId: string, db: string, out: string) => {
    const resumed = await run(["resume", runId, "--db", db], { env })
    assert.strictEqual(resumed.code, 0, resumed.stderr)
    assert.strictEqual(sha256File(out), reference.sha256)
    assert.strictEqual(readRun(db, runId)!.digest, reference.digest)
  }

  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    it(`${signal}: exit 130, run interrupted with its resume command, resume completes to the same bytes`, async () => {
      const runId = signal.toLowerCase()
      const { child, db, out } = startRun(runId)
      await child.waitFor((stdout) => committedEvents(stdout) >= 3)
      child.child.kill(signal)
      const exit = await child.exited
      await sleep(10)
      assert.strictEqual(exit.code, 130, child.stderr)
      const events = jsonLines(child.stdout)
      const last = events.at(-1)!
      assert.strictEqual(last.event, "run.interrupted")
      assert.strictEqual(last.resume, `quarry resume ${runId} --db ${db}`)
      assert.include(child.stderr, `interrupted after ${last.committedBatches}/67 batches`)
      assert.include(child.stderr, `Resume it with: quarry resume ${runId} --db ${db}`)
      const stored = readRun(db, runId)!
      assert.strictEqual(stored.status, "interrupted")
      assert.strictEqual(stored.committed_batches, last.committedBatches)
      assert.isBelow(stored.committed_batches, stored.total_batches)
      const status = await run(["status", runId, "--db", db, "--json"])
      assert.deepInclude(JSON.parse(status.stdout), { status: "interrupted", resumable: true })
      await resumeToEnd(runId, db, out)
    }, 120_000)
  }

  it(
    "SIGINT is honoured promptly while a synchronous extractor (the default offline one) keeps the CPU busy",
    async () => {
      const db = path.join(dir, "offline.db")
      const child = start(["start", mobyDick.input, "--db", db, "--run-id", "offline", "--json"])
      await child.waitFor((stdout) => committedEvents(stdout) >= 2)
      const sent = Date.now()
      child.child.kill("SIGINT")
      const exit = await child.exited
      // Without a scheduler that lets the event loop turn, the signal waited for the merge (10+ s).
      assert.isBelow(Date.now() - sent, 5_000)
      assert.strictEqual(exit.code, 130, child.stderr)
      const stored = readRun(db, "offline")!
      assert.strictEqual(stored.status, "interrupted")
      assert.isBelow(stored.committed_batches, stored.total_batches)
    },
    120_000
  )

  it(
    "SIGINT while its database does not answer yet, before any run exists: exit 130, on stderr and in --json",
    async () => {
      // A database server that accepts the connection and never answers: the command waits, before any run exists.
      const silent = net.createServer(() => {})
      // Its first connection says the command is waiting on the database. A fixed sleep (1.5 s) could end before
      // that: on a loaded machine (test files run two at a time) the command connected after 3.3 s.
      const connected = new Promise<void>((resolve) => silent.once("connection", () => resolve()))
      await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve))
      const db = `postgres://quarry@127.0.0.1:${(silent.address() as net.AddressInfo).port}/quarry`
      try {
        const child = start(["start", mobyDick.input, "--db", db, "--run-id", "early", "--json"], { env })
        await connected
        const sent = Date.now()
        child.child.kill("SIGINT")
        const exit = await child.exited
        // Closing the pool waits at most 1 s for the connection still opening; it once waited for its 5 s timeout.
        assert.isBelow(Date.now() - sent, 3_500)
        assert.strictEqual(exit.code, 130, child.stderr)
        const message = `interrupted before run early started executing; nothing was extracted (if \`quarry runs ` +
          `--db ${db}\` lists it, \`quarry resume early --db ${db}\` runs it)`
        assert.include(child.stderr, `quarry: ${message}`)
        const events = jsonLines(child.stdout)
        assert.strictEqual(events.length, 1, child.stdout)
        assert.deepInclude(events[0], { event: "error", runId: "early", exitCode: 130, error: "Interrupted", message })
      } finally {
        silent.close()
      }
    },
    60_000
  )

  it("a second SIGINT exits at once, leaving a consistent database that resumes to the same bytes", async () => {
    const db = path.join(dir, "twice.db")
    const out = path.join(dir, "twice.ttl")
    // The test-only shutdown delay makes the first interruption take 20 s: only the second signal can end it sooner.
    const child = start(
      ["start", mobyDick.input, ...mobyDick.flags, "--db", db, "--run-id", "twice", "--out", out, "--json"],
      { env: { ...env, QUARRY_TEST_SHUTDOWN_DELAY_MS: "20000" } }
    )
    await child.waitFor((stdout) => committedEvents(stdout) >= 3)
    child.child.kill("SIGINT")
    await sleep(500)
    const sent = Date.now()
    child.child.kill("SIGINT")
    const exit = await child.exited
    assert.isBelow(Date.now() - sent, 5_000)
    assert.strictEqual(exit.code, 130, child.stderr)
    assert.include(child.stderr, "quarry: interrupted again, exiting now; the database stays consistent")
    assert.notInclude(child.stdout, "run.interrupted")
    withDb(db, (sqlite) => assert.deepStrictEqual(sqlite.pragma("integrity_check"), [{ integrity_check: "ok" }]))
    assert.strictEqual(readRun(db, "twice")!.status, "interrupted")
    await resumeToEnd("twice", db, out)
  }, 120_000)
})
