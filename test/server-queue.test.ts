/**
 * The durable admission queue of `quarry serve`, end to end: real server processes on one SQLite file, stopped with
 * SIGTERM or SIGKILL and started again. A submission waiting behind `--max-active-runs 1` keeps its budget across
 * the restart (the budget bites: an `llm` run against the project's fake Chat Completions server stops at it; a
 * resume without a budget keeps it, one with a higher budget replaces it, `noBudget=true` lifts it), a resume
 * waiting for a slot is still done after a kill, and a submission waiting during the drain delay does not take the
 * slot that frees then: it stays queued for the next server.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import Database from "better-sqlite3"
import * as fs from "node:fs"
import * as path from "node:path"
import * as FakeLlm from "../packages/cli/test/FakeLlm.js"
import { call, ended, logLines, readEvents, serve, stop, until } from "./serverProcess.js"
import { makeDir, mobyDick, removeDir, run } from "./support.js"

/** A long run of the slow test extractor: it holds the only slot until the server stops. */
const blocker = (runId: string) => ({
  runId,
  input: fs.readFileSync(mobyDick.input, "utf8"),
  extractor: "test-slow",
  chunking: { windowSize: 2000, batchSize: 10 }
})

/** A run's stored status, read without write access. */
const storedStatus = (db: string, runId: string) => {
  const sqlite = new Database(db, { readonly: true, fileMustExist: true })
  try {
    return (sqlite.prepare("SELECT status FROM runs WHERE id = ?").get(runId) as { status: string }).status
  } finally {
    sqlite.close()
  }
}

/** The queued executions as stored, read without write access. */
const queuedRows = (db: string) => {
  const sqlite = new Database(db, { readonly: true, fileMustExist: true })
  try {
    return sqlite.prepare("SELECT run_id, retry_skipped, budget FROM queued_executions ORDER BY seq").all() as Array<
      { run_id: string; retry_skipped: number; budget: string | null }
    >
  } finally {
    sqlite.close()
  }
}

interface Shown {
  readonly status: string
  readonly queuePosition: number | null
  readonly failureReason: string | null
  readonly lastError: string | null
  readonly resume: string | null
  readonly progress: { readonly committedBatches: number; readonly totalBatches: number }
  readonly usage: { readonly requests: number; readonly costUsd: number }
  readonly budget: { readonly maxCostUsd: number | null; readonly maxTokens: number | null } | null
}

describe("quarry serve: the durable admission queue", () => {
  let dir = ""
  beforeAll(() => {
    dir = makeDir()
  })
  afterAll(() => removeDir(dir))

  it("a resume sent while a cancelled run's execution here is still ending is queued, not dropped: the run completes", async () => {
    const db = path.join(dir, "ending.db")
    // Each execution stays here 3 s after its end is stored: the moment the resume below lands in.
    const server = await serve(db, [], { QUARRY_TEST_EXTRACTOR_DELAY_MS: "50", QUARRY_TEST_SETTLE_DELAY_MS: "3000" })
    try {
      assert.strictEqual((await call(server, "POST", "/v1/runs", blocker("ending"))).status, 202)
      await until(async () => ((await call(server, "GET", "/v1/runs/ending")).json() as Shown).status === "running")
      assert.strictEqual((await call(server, "POST", "/v1/runs/ending/cancel")).status, 200)
      await until(() => storedStatus(db, "ending") === "cancelled", 60_000, "the cancel to be stored")
      const resumed = await call(server, "POST", "/v1/runs/ending/resume")
      assert.strictEqual(resumed.status, 202, resumed.text)
      assert.strictEqual((await ended(server, "ending")).status, "completed")
    } finally {
      await stop(server)
    }
  })

  it("a submission waiting behind --max-active-runs 1 keeps its budget across SIGTERM and a restart", async () => {
    const fake = await FakeLlm.start()
    const db = path.join(dir, "budget.db")
    const env = {
      QUARRY_TEST_EXTRACTOR_DELAY_MS: "200",
      QUARRY_LLM_MODEL: "test-model",
      QUARRY_LLM_BASE_URL: fake.baseUrl,
      QUARRY_LLM_API_KEY: "sk-test",
      // USD per million tokens: record b costs 0.012 + 0.00012 b, so $0.04 buys three records (as in llm.test.ts).
      QUARRY_LLM_PRICE_PROMPT: "10",
      QUARRY_LLM_PRICE_COMPLETION: "20"
    }
    const first = await serve(db, ["--max-active-runs", "1"], env)
    try {
      assert.strictEqual((await call(first, "POST", "/v1/runs", blocker("holds-slot"))).status, 202)
      await until(async () => ((await call(first, "GET", "/v1/runs/holds-slot")).json() as Shown).status === "running")
      const submitted = await call(first, "POST", "/v1/runs", {
        runId: "budgeted",
        input: FakeLlm.document(8),
        extractor: "llm",
        chunking: { strategy: "sentences", windowSize: 300, overlap: 0, batchSize: 1 },
        budget: { maxCostUsd: 0.04 }
      })
      assert.strictEqual(submitted.status, 202, submitted.text)
      assert.strictEqual((submitted.json() as Shown).queuePosition, 1)
      assert.deepStrictEqual((submitted.json() as Shown).budget, { maxCostUsd: 0.04, maxTokens: null })
      assert.deepStrictEqual(queuedRows(db).map((r) => [r.run_id, r.budget]), [
        ["holds-slot", null],
        ["budgeted", "{\"maxCostUsd\":0.04}"]
      ])
      // Idempotent on runId, budget included: the same body is the run, another budget (or none) a conflict.
      const body = {
        runId: "budgeted",
        input: FakeLlm.document(8),
        extractor: "llm",
        chunking: { strategy: "sentences", windowSize: 300, overlap: 0, batchSize: 1 }
      }
      assert.strictEqual((await call(first, "POST", "/v1/runs", { ...body, budget: { maxCostUsd: 0.04 } })).status, 200)
      for (const budget of [{ maxCostUsd: 0.05 }, { maxCostUsd: 0.04, maxTokens: 5 }, undefined]) {
        const other = await call(first, "POST", "/v1/runs", { ...body, ...(budget === undefined ? {} : { budget }) })
        assert.strictEqual(other.status, 409, `${JSON.stringify(budget)}: ${other.text}`)
        assert.include(other.text, "already exists with a different input, parameters or budget")
      }
    } finally {
      await stop(first)
    }
    assert.strictEqual(first.child.child.exitCode, 0, first.child.stderr)
    assert.strictEqual(fake.log.length, 0, "the waiting run never started")
    // The drained run (interrupted) and the waiting one are both still queued, with their options.
    assert.deepStrictEqual(queuedRows(db).map((r) => r.run_id), ["holds-slot", "budgeted"])

    const second = await serve(db, ["--max-active-runs", "1"], { ...env, QUARRY_TEST_EXTRACTOR_DELAY_MS: "0" })
    try {
      const budgeted = await ended(second, "budgeted") as unknown as Shown
      assert.strictEqual(budgeted.status, "failed")
      assert.strictEqual(budgeted.failureReason, "budget")
      assert.strictEqual(budgeted.progress.committedBatches, 3)
      assert.strictEqual(fake.log.length, 3, "no request is sent past the stored budget")
      assert.isAtMost(budgeted.usage.costUsd, 0.04)
      // The stored error says what happened, not a CLI command: the view's `resume` is the API's way on, with the
      // higher budget it needs.
      assert.strictEqual(budgeted.resume, "POST /v1/runs/budgeted/resume?maxCostUsd=<USD>")
      assert.strictEqual(
        budgeted.lastError,
        "run \"budgeted\" stopped before exceeding its budget: spent $0.0364 of its max cost of $0.04, and the next " +
          "batch would go over; committed batches are kept, and a resume with a higher budget continues it"
      )
      assert.strictEqual((await ended(second, "holds-slot")).status, "completed")
      // Both executions ended for good: nothing is left to requeue.
      await until(() => queuedRows(db).length === 0, 10_000, "the queue to empty")
      // A resume without a budget (the dashboard's Resume button) keeps the run's: it stops again, no request sent.
      assert.strictEqual((await call(second, "POST", "/v1/runs/budgeted/resume")).status, 202)
      await until(() => queuedRows(db).length === 0, 30_000, "the resume without a budget to end")
      const kept = (await call(second, "GET", "/v1/runs/budgeted")).json() as Shown
      assert.deepStrictEqual([kept.status, kept.failureReason], ["failed", "budget"])
      assert.deepStrictEqual(kept.budget, { maxCostUsd: 0.04, maxTokens: null })
      assert.strictEqual(fake.log.length, 3, "no request is sent past the budget the run keeps")
      // A resume with a higher budget (stored with its queued execution) replaces it: one more record fits $0.05.
      const get = async () => (await call(second, "GET", "/v1/runs/budgeted")).json() as Shown
      const higher = await call(second, "POST", "/v1/runs/budgeted/resume?maxCostUsd=0.05")
      assert.strictEqual(higher.status, 202, higher.text)
      await until(() => queuedRows(db).length === 0, 30_000, "the resume with a higher budget to end")
      assert.deepStrictEqual([(await get()).failureReason, (await get()).progress.committedBatches], ["budget", 4])
      assert.deepStrictEqual((await get()).budget, { maxCostUsd: 0.05, maxTokens: null })
      assert.strictEqual(fake.log.length, 4)
      // noBudget=true lifts it (not together with a new limit: 400, nothing queued) and the run completes.
      const both = await call(second, "POST", "/v1/runs/budgeted/resume?noBudget=true&maxCostUsd=1")
      assert.strictEqual(both.status, 400, both.text)
      assert.include(
        (both.json() as { error: { message: string } }).error.message,
        "noBudget=true cannot go with maxCostUsd or maxTokens"
      )
      assert.strictEqual(queuedRows(db).length, 0)
      const resumed = await call(second, "POST", "/v1/runs/budgeted/resume?noBudget=true")
      assert.strictEqual(resumed.status, 202, resumed.text)
      await until(async () => (await get()).status === "completed", 60_000, "the resumed run")
      assert.strictEqual((await get()).progress.committedBatches, 8)
      assert.strictEqual((await get()).budget, null)
      assert.strictEqual(fake.log.length, 8)
    } finally {
      await stop(second)
      await fake.close()
    }
  }, 180_000)

  it(
    "a resume waiting for a slot keeps its options (the same again is 202, others 409) and survives SIGKILL: the next server runs it to completion",
    async () => {
      const db = path.join(dir, "resume.db")
      const env = { QUARRY_TEST_EXTRACTOR_DELAY_MS: "200", QUARRY_LEASE_MS: "3000" }
      let cancelledEnd: Awaited<ReturnType<typeof readEvents>>[number] | undefined
      const first = await serve(db, ["--max-active-runs", "1"], env)
      try {
        assert.strictEqual((await call(first, "POST", "/v1/runs", blocker("busy"))).status, 202)
        const waiting = {
          runId: "again",
          input: "Captain Ahab commanded the Pequod. Ishmael sailed from Nantucket with Queequeg.",
          extractor: "test-slow"
        }
        assert.strictEqual((await call(first, "POST", "/v1/runs", waiting)).status, 202)
        const cancelled = await call(first, "POST", "/v1/runs/again/cancel")
        assert.strictEqual((cancelled.json() as Shown).status, "cancelled")
        // A client that followed it saw its end; once it is resumed, reconnecting with that id is not the end.
        cancelledEnd = (await readEvents(first, "again")).at(-1)
        assert.strictEqual(cancelledEnd?.event, "run.cancelled")
        assert.deepStrictEqual(queuedRows(db).map((r) => r.run_id), ["busy"])
        const refused = await call(first, "POST", "/v1/runs/again/resume?maxCostUsd=-1")
        assert.strictEqual(refused.status, 400, refused.text)
        assert.deepStrictEqual(queuedRows(db).map((r) => r.run_id), ["busy"])
        const resumed = await call(first, "POST", "/v1/runs/again/resume?retrySkipped=true")
        assert.strictEqual(resumed.status, 202, resumed.text)
        assert.strictEqual((resumed.json() as Shown).queuePosition, 1)
        // Waiting to execute again, it is pending (its stored status is still its last end), in every view.
        assert.strictEqual((resumed.json() as Shown).status, "pending")
        assert.strictEqual(((await call(first, "GET", "/v1/runs/again")).json() as Shown).status, "pending")
        const listed = (await call(first, "GET", "/v1/runs")).json() as { runs: ReadonlyArray<Shown & { id: string }> }
        assert.strictEqual(listed.runs.find((r) => r.id === "again")?.status, "pending")
        assert.deepStrictEqual(queuedRows(db).map((r) => [r.run_id, r.retry_skipped]), [["busy", 0], ["again", 1]])
        // The waiting execution runs with its own options: the same request again is granted, another one refused.
        const same = await call(first, "POST", "/v1/runs/again/resume?retrySkipped=true")
        assert.strictEqual(same.status, 202, same.text)
        const other = await call(first, "POST", "/v1/runs/again/resume?maxTokens=1000")
        assert.strictEqual(other.status, 409, other.text)
        assert.include(other.text, "with an execution waiting for a slot (the run's budget, retrySkipped)")
        assert.include(other.text, "cancel it, then resume it with the new options")
        assert.deepStrictEqual(queuedRows(db).map((r) => [r.run_id, r.retry_skipped]), [["busy", 0], ["again", 1]])
        // Cancelled and resumed with a budget, it shows the budget it waits with (the run's own is replaced at start).
        assert.strictEqual((await call(first, "POST", "/v1/runs/again/cancel")).status, 200)
        const budgeted = await call(first, "POST", "/v1/runs/again/resume?maxTokens=1000&retrySkipped=true")
        assert.strictEqual(budgeted.status, 202, budgeted.text)
        assert.deepStrictEqual((budgeted.json() as Shown).budget, { maxCostUsd: null, maxTokens: 1000 })
        assert.strictEqual((budgeted.json() as Shown).status, "pending")
        const following = await fetch(`${first.url}/v1/runs/again/events`, {
          headers: { "last-event-id": cancelledEnd!.id },
          signal: AbortSignal.timeout(10_000)
        })
        assert.strictEqual(following.status, 200, "a waiting run's stream stays open")
        await following.body?.cancel()
      } finally {
        first.child.child.kill("SIGKILL")
        await first.child.exited
      }
      const second = await serve(db, ["--max-active-runs", "1"], { ...env, QUARRY_TEST_EXTRACTOR_DELAY_MS: "0" })
      try {
        const again = await ended(second, "again") as unknown as Shown
        assert.strictEqual(again.status, "completed")
        // Reconnecting with the id of the cancelled end gives this execution's events, to its end.
        const after = await readEvents(second, "again", cancelledEnd!.id)
        assert.deepStrictEqual([after[0]?.event, after.at(-1)?.event], ["run.started", "run.completed"])
        assert.strictEqual((await ended(second, "busy")).status, "completed")
        await until(() => queuedRows(db).length === 0, 10_000, "the queue to empty")
      } finally {
        await stop(second)
      }
    },
    180_000
  )

  it(
    "a queued run completed meanwhile by `quarry resume` leaves the queue at the next start without executing",
    async () => {
      const db = path.join(dir, "elsewhere.db")
      const env = { QUARRY_TEST_EXTRACTOR_DELAY_MS: "200" }
      const first = await serve(db, ["--max-active-runs", "1"], env)
      try {
        assert.strictEqual((await call(first, "POST", "/v1/runs", blocker("slot"))).status, 202)
        const body = { runId: "elsewhere", input: "Captain Ahab commanded the Pequod.", extractor: "test-slow" }
        assert.strictEqual((await call(first, "POST", "/v1/runs", body)).status, 202)
      } finally {
        await stop(first)
      }
      const resumed = await run(["resume", "elsewhere", "--db", db, "--json"], { env })
      assert.strictEqual(resumed.code, 0, resumed.stderr)
      assert.deepStrictEqual(queuedRows(db).map((r) => r.run_id), ["slot", "elsewhere"])
      const second = await serve(db, ["--max-active-runs", "1"], { QUARRY_TEST_EXTRACTOR_DELAY_MS: "0" })
      try {
        assert.strictEqual((await ended(second, "slot")).status, "completed")
        await until(() => queuedRows(db).length === 0, 10_000, "the queue to empty")
        const started = second.child.stderr.split("\n").filter((line) => line.includes("\"run started\""))
        assert.lengthOf(started, 1, started.join("\n"))
        assert.include(started[0], "\"runId\":\"slot\"")
      } finally {
        await stop(second)
      }
    },
    180_000
  )

  it(
    "a submission waiting during the drain delay does not start when the slot frees: it stays pending and queued, " +
      "and the next server runs it",
    async () => {
      const db = path.join(dir, "delay.db")
      const env = { QUARRY_TEST_EXTRACTOR_DELAY_MS: "200" }
      // The delay ends by itself: no second signal, which would also end it.
      const args = ["--max-active-runs", "1", "--drain-delay", "5", "--drain-timeout", "60s"]
      const first = await serve(db, args, env)
      const status = async (runId: string) => ((await call(first, "GET", `/v1/runs/${runId}`)).json() as Shown).status
      try {
        assert.strictEqual((await call(first, "POST", "/v1/runs", blocker("busy"))).status, 202)
        await until(async () => (await status("busy")) === "running", 30_000, "busy to run")
        const waiting = { runId: "waiting", input: "Captain Ahab commanded the Pequod.", extractor: "test-slow" }
        const submitted = await call(first, "POST", "/v1/runs", waiting)
        assert.strictEqual((submitted.json() as Shown).queuePosition, 1, submitted.text)
        first.child.child.kill("SIGTERM")
        await until(async () => (await call(first, "GET", "/readyz")).status === 503, 30_000, "readyz 503")
        // The only slot frees during the delay.
        assert.strictEqual((await call(first, "POST", "/v1/runs/busy/cancel")).status, 200)
        await until(async () => (await status("busy")) === "cancelled", 30_000, "busy to end cancelled")
        assert.lengthOf(logLines(first, "draining"), 0, "the slot freed during the delay")
        assert.strictEqual(((await call(first, "GET", "/v1/runs/waiting")).json() as Shown).queuePosition, 1)
        const exit = await first.child.exited
        assert.strictEqual(exit.code, 0, first.child.stderr)
      } finally {
        await stop(first)
      }
      const started = logLines(first, "run started").filter((line) => line.annotations.runId === "waiting")
      assert.lengthOf(started, 0, first.child.stderr)
      assert.strictEqual(storedStatus(db, "waiting"), "pending")
      assert.deepStrictEqual(queuedRows(db).map((r) => r.run_id), ["waiting"])

      const second = await serve(db, ["--max-active-runs", "1"], { QUARRY_TEST_EXTRACTOR_DELAY_MS: "0" })
      try {
        assert.strictEqual((await ended(second, "waiting")).status, "completed")
        assert.strictEqual(storedStatus(db, "busy"), "cancelled")
        await until(() => queuedRows(db).length === 0, 10_000, "the queue to empty")
      } finally {
        await stop(second)
      }
    },
    180_000
  )
})
