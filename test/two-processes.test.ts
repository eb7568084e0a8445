/**
 * Two processes and one run: a second `resume` of a live run exits 4 naming the holder; after the holder is
 * SIGKILLed, `status` and `runs` call the run orphaned and resume takes it over at once (the holder provably died on
 * this host), without waiting for its lease. `cancel` from another process stops a run at its
 * next batch boundary (exit 5), and the run stays resumable.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as os from "node:os"
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
  start,
  startMobyDick
} from "./support.js"

// Long enough that the taking-over process starts (about a second) while the dead holder's lease is still live.
const leaseMs = 5000
const env = { QUARRY_TEST_EXTRACTOR_DELAY_MS: "40", QUARRY_LEASE_MS: String(leaseMs) }

describe("two processes", () => {
  let dir = ""
  let reference = { sha256: "", digest: "" }

  beforeAll(async () => {
    dir = makeDir()
    reference = await referenceRun(dir)
  }, 120_000)
  afterAll(() => removeDir(dir))

  const startRun = (runId: string) => startMobyDick(dir, runId, env)

  it(
    "resume of a live run exits 4 with the holder; after a SIGKILL resume takes over at once, before the lease expires",
    async () => {
      // A lease far longer than the whole takeover: waiting for it would show.
      const { child, db, out } = startMobyDick(dir, "held", { ...env, QUARRY_LEASE_MS: "60000" })
      await child.waitFor((stdout) => committedEvents(stdout) >= 2)
      const second = await run(["resume", "held", "--db", db, "--json"], { env })
      assert.strictEqual(second.code, 4, second.stderr)
      assert.include(second.stderr, `run held is being executed by process ${child.pid} on host ${os.hostname()}`)
      assert.include(second.stderr, "quarry cancel held")
      assert.deepInclude(jsonLines(second.stdout)[0], { event: "error", exitCode: 4, error: "RunLocked" })
      const live = JSON.parse((await run(["status", "held", "--db", db, "--json"], { env })).stdout)
      assert.deepInclude(live, { resumable: false, resume: null })
      assert.isTrue(live.lease.live)

      child.child.kill("SIGKILL")
      await child.exited
      const stored = readRun(db, "held")!
      assert.strictEqual(stored.status, "running")
      assert.isNotNull(stored.lease_expires_at)
      // Status and the list say what resume does: the dead holder's lease holds nothing, before it expires.
      const orphaned = JSON.parse((await run(["status", "held", "--db", db, "--json"], { env })).stdout)
      assert.deepInclude(orphaned, { status: "running", resumable: true })
      assert.isFalse(orphaned.lease.live)
      assert.include((await run(["runs", "--db", db], { env })).stdout, "running (orphaned)")

      const takeover = await run(["resume", "held", "--db", db], { env })
      assert.strictEqual(takeover.code, 0, takeover.stderr)
      assert.include(takeover.stderr, `resuming at batch ${stored.committed_batches}/67`)
      // It completed while the dead holder's lease was still valid: it did not wait for it.
      assert.isBelow(Date.now(), stored.lease_expires_at!)
      assert.strictEqual(sha256File(out), reference.sha256)
      assert.strictEqual(readRun(db, "held")!.digest, reference.digest)
    },
    120_000
  )

  it(
    "the holder renews its lease while a synchronous extractor keeps the CPU busy: no takeover of a live run",
    async () => {
      const db = path.join(dir, "busy.db")
      const shortLease = { QUARRY_LEASE_MS: "1500" }
      const child = start(["start", mobyDick.input, "--db", db, "--run-id", "busy", "--json"], { env: shortLease })
      await child.waitFor((stdout) => committedEvents(stdout) >= 1)
      // Three lease lengths later, the run is still held: the heartbeat got through the offline extractor's work.
      const until = Date.now() + 4_500
      while (Date.now() < until) {
        const second = await run(["resume", "busy", "--db", db], { env: shortLease })
        assert.strictEqual(second.code, 4, second.stderr)
      }
      child.child.kill("SIGINT")
      assert.strictEqual((await child.exited).code, 130)
    },
    120_000
  )

  it("cancel from another process stops the run at its next batch boundary: exit 5, cancelled, resumable", async () => {
    const { child, db, out } = startRun("stop")
    await child.waitFor((stdout) => committedEvents(stdout) >= 3)
    const cancel = await run(["cancel", "stop", "--db", db])
    assert.strictEqual(cancel.code, 0, cancel.stderr)
    assert.include(cancel.stdout, `cancellation of run stop requested; process ${child.pid} on host`)
    const exit = await child.exited
    assert.strictEqual(exit.code, 5, child.stderr)
    const last = jsonLines(child.stdout).at(-1)!
    assert.deepInclude(last, { event: "run.cancelled", resume: `quarry resume stop --db ${db}` })
    assert.include(child.stderr, "was cancelled after")
    const stored = readRun(db, "stop")!
    assert.strictEqual(stored.status, "cancelled")
    assert.strictEqual(stored.committed_batches, last.committedBatches)
    assert.isBelow(stored.committed_batches, stored.total_batches)
    const resumed = await run(["resume", "stop", "--db", db], { env })
    assert.strictEqual(resumed.code, 0, resumed.stderr)
    assert.strictEqual(sha256File(out), reference.sha256)
  }, 120_000)
})
