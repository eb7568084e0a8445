/**
 * Compensation across processes: steps recorded by a run survive a SIGKILL and `quarry cancel --purge` in a new
 * process runs them newest first; a failing step is reported with the cancel (exit 1), and running the steps again
 * after its cause is removed succeeds. The steps are the test extractors' (`QUARRY_TEST_COMPENSATION_DIR`): each
 * batch records "remove batch-<i>.upload" and then writes that file; a `.locked` file beside it makes removal fail.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"
import { committedEvents, jsonLines, makeDir, removeDir, run, startMobyDick } from "./support.js"

interface StepJson {
  readonly seq: number
  readonly name: string
  readonly state: string
  readonly lastError: string | null
}

interface StatusJson {
  readonly status: string
  readonly failureReason: string | null
  readonly lastError: string | null
  readonly compensation: { readonly state: string; readonly steps: ReadonlyArray<StepJson> }
}

const status = async (runId: string, db: string): Promise<StatusJson> => {
  const shown = await run(["status", runId, "--db", db, "--json"])
  assert.strictEqual(shown.code, 0, shown.stderr)
  return JSON.parse(shown.stdout) as StatusJson
}

const uploads = (dir: string) =>
  fs.readdirSync(dir).filter((f) => f.endsWith(".upload")).map((f) => Number(f.split(/[-.]/)[1])).sort((a, b) => a - b)

/** The `undo.log` lines as [batch index, pid]. */
const undone = (dir: string) =>
  fs.existsSync(path.join(dir, "undo.log")) ?
    fs.readFileSync(path.join(dir, "undo.log"), "utf8").trim().split("\n").map((line) => {
      const [, batch, pid] = line.split(" ")
      return [Number(batch), Number(pid)] as const
    }) :
    []

describe("compensation", () => {
  let dir = ""
  beforeAll(() => {
    dir = makeDir()
  })
  afterAll(() => removeDir(dir))

  const setup = (runId: string) => {
    const uploadDir = path.join(dir, `${runId}-uploads`)
    fs.mkdirSync(uploadDir)
    const env = { QUARRY_TEST_EXTRACTOR_DELAY_MS: "100", QUARRY_TEST_COMPENSATION_DIR: uploadDir }
    return { uploadDir, env, ...startMobyDick(dir, runId, env) }
  }

  it(
    "steps survive a SIGKILL: cancel --purge in a new process runs them newest first; a missing handler fails",
    async () => {
      const runId = "killed"
      const { child, db, env, uploadDir } = setup(runId)
      await child.waitFor((stdout) => committedEvents(stdout) >= 3)
      child.child.kill("SIGKILL")
      await child.exited
      const files = uploads(uploadDir)
      assert.isAtLeast(files.length, 3)

      const before = await status(runId, db)
      assert.strictEqual(before.status, "running")
      assert.strictEqual(before.compensation.state, "pending")
      // A step is recorded before its file is written: every file has its step.
      const recorded = before.compensation.steps.map((s) => Number(s.name.split(" ").at(-1)))
      for (const batch of files) assert.include(recorded, batch)

      // Without the test extractors' handler in the process, the steps fail: never skipped.
      const missing = await run(["cancel", runId, "--purge", "--db", db])
      assert.strictEqual(missing.code, 1, missing.stderr)
      assert.include(missing.stderr, `no compensation handler "test-remove-file" is registered in this process`)
      assert.deepStrictEqual(uploads(uploadDir), files)
      assert.strictEqual((await status(runId, db)).compensation.state, "compensation_failed")

      const purged = await run(["cancel", runId, "--purge", "--db", db], { env })
      assert.strictEqual(purged.code, 0, purged.stderr)
      assert.include(purged.stdout, `run ${runId} is cancelled`)
      assert.include(purged.stdout, `compensation done (${recorded.length} steps)`)
      assert.deepStrictEqual(uploads(uploadDir), [])
      const log = undone(uploadDir)
      assert.deepStrictEqual(log.map(([batch]) => batch), [...recorded].sort((a, b) => b - a))
      assert.isTrue(log.every(([, pid]) => pid !== child.pid))
      const after = await status(runId, db)
      assert.strictEqual(after.status, "cancelled")
      assert.strictEqual(after.compensation.state, "done")
      assert.isTrue(after.compensation.steps.every((s) => s.state === "done" && s.lastError === null))
    },
    120_000
  )

  it("a failing step is reported with the cancel; a retry after the cause is removed succeeds", async () => {
    const runId = "locked"
    const { child, db, env, uploadDir } = setup(runId)
    await child.waitFor((stdout) => committedEvents(stdout) >= 2)
    const lock = path.join(uploadDir, "batch-1.upload.locked")
    fs.writeFileSync(lock, "")
    // Another process asks; the executing one stops at a batch boundary and compensates.
    const cancel = await run(["cancel", runId, "--db", db], { env })
    assert.strictEqual(cancel.code, 0, cancel.stderr)
    const exit = await child.exited
    assert.strictEqual(exit.code, 1, child.stderr)
    // Reported as the cancel it is, with the command that runs the failed step again.
    assert.match(child.stderr, /run locked was cancelled after \d+\/67 batches \(quarry cancel\), but 1 of its /)
    assert.include(child.stderr, "compensation steps failed: remove upload of batch 1 (")
    assert.include(child.stderr, "is locked")
    assert.include(
      child.stderr,
      `. Fix the cause, then run them again: quarry cancel locked --purge --db ${db}. Every committed batch is kept.`
    )
    const ended = jsonLines(child.stdout).at(-1)!
    assert.strictEqual(ended.event, "run.cancelled")
    assert.strictEqual(ended.compensation, "compensation_failed")
    assert.strictEqual(ended.purge, `quarry cancel locked --purge --db ${db}`)
    assert.deepStrictEqual(
      (ended.failedSteps as ReadonlyArray<{ step: string }>).map((f) => f.step),
      ["remove upload of batch 1"]
    )

    const failed = await status(runId, db)
    assert.strictEqual(failed.status, "cancelled")
    assert.strictEqual(failed.failureReason, "compensation_failed")
    assert.include(failed.lastError, "run \"locked\" stopped (cancelled), and 1 of its compensation steps failed")
    assert.include(failed.lastError, "remove upload of batch 1")
    assert.strictEqual(failed.compensation.state, "compensation_failed")
    const states = failed.compensation.steps.map((s) => [s.name, s.state])
    assert.deepInclude(states, ["remove upload of batch 1", "failed"])
    assert.isTrue(failed.compensation.steps.every((s) => s.state === (s.name.endsWith(" 1") ? "failed" : "done")))
    assert.deepStrictEqual(uploads(uploadDir), [1])
    const text = await run(["status", runId, "--db", db])
    assert.include(text.stdout, "compensation_failed")
    assert.include(text.stdout, "failed  #2 remove upload of batch 1")

    // Still locked: the retry fails again, with the cause.
    const again = await run(["cancel", runId, "--purge", "--db", db], { env })
    assert.strictEqual(again.code, 1)
    assert.include(again.stderr, "batch-1.upload is locked")

    fs.rmSync(lock)
    const retried = await run(["cancel", runId, "--purge", "--db", db], { env })
    assert.strictEqual(retried.code, 0, retried.stderr)
    assert.deepStrictEqual(uploads(uploadDir), [])
    assert.deepStrictEqual(undone(uploadDir).at(-1)?.[0], 1)
    const after = await status(runId, db)
    assert.strictEqual(after.compensation.state, "done")
    // The run's own record of why it stopped is kept.
    assert.strictEqual(after.failureReason, "compensation_failed")
  }, 120_000)
})
