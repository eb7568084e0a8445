/**
 * kill -9 fuzz: a real multi-batch run is SIGKILLed at random moments (during start-up and run creation, inside
 * extraction, inside commits, during the merge) and resumed until it completes. The seed is printed; replay a run
 * with QUARRY_FUZZ_SEED=<seed>.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"
import {
  committedEvents,
  makeDir,
  mobyDick,
  prng,
  readRun,
  referenceRun,
  removeDir,
  sha256File,
  sleep,
  start,
  withDb
} from "./support.js"

const minKills = 10
const concurrency = 2

describe("kill -9 at random moments", () => {
  let dir = ""
  let reference = { sha256: "", digest: "" }

  beforeAll(async () => {
    dir = makeDir()
    reference = await referenceRun(dir, ["--concurrency", String(concurrency)])
  }, 120_000)
  afterAll(() => removeDir(dir))

  it("resumes to the bytes of an uninterrupted run, storing every batch once and extracting none twice", async () => {
    const seed = Number(process.env.QUARRY_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31))
    console.log(`kill -9 fuzz seed: ${seed} (replay with QUARRY_FUZZ_SEED=${seed})`)
    const random = prng(seed)
    const db = path.join(dir, "fuzz.db")
    const out = path.join(dir, "fuzz.ttl")
    const log = path.join(dir, "calls.log")
    fs.writeFileSync(log, "")
    const env = {
      QUARRY_TEST_EXTRACTOR_DELAY_MS: "25",
      QUARRY_TEST_COMMIT_DELAY_MS: "15",
      QUARRY_TEST_CALL_LOG: log,
      QUARRY_LEASE_MS: "1000"
    }
    const startArgs = [
      "start",
      mobyDick.input,
      ...mobyDick.flags,
      "--concurrency",
      String(concurrency),
      "--db",
      db,
      "--run-id",
      "fuzz",
      "--out",
      out,
      "--json"
    ]
    const kills: Array<string> = []
    let reExtracted = 0
    const extractedBy = new Map<number, number>()

    for (let attempt = 0; attempt < 40; attempt++) {
      const before = readRun(db, "fuzz")
      const committedAtStart = before?.committed_batches ?? 0
      const logOffset = fs.statSync(log).size
      const child = start(before === undefined ? startArgs : ["resume", "fuzz", "--db", db, "--json"], { env })
      let killed = false
      if (kills.length < minKills) {
        // A kill during start-up (and run creation) or after a few more commits plus a little: inside an
        // extraction, inside a commit transaction, or between them.
        const early = random() < 0.2
        const afterCommits = 1 + Math.floor(random() * 5)
        const extraMs = Math.floor(random() * 45)
        const startupMs = 50 + Math.floor(random() * 1500)
        const target = early ?
          sleep(startupMs).then(() => `start-up +${startupMs}ms`) :
          child.waitFor((stdout) => committedEvents(stdout) >= afterCommits || stdout.includes("merge.started"))
            .then(() => sleep(extraMs))
            .then(() => `${committedEvents(child.stdout)} commits +${extraMs}ms`)
        const outcome = await Promise.race([
          target.then((where) => ({ where })),
          child.exited.then(() => ({ where: undefined }))
        ]).catch(() => ({ where: undefined }))
        if (outcome.where !== undefined && child.child.exitCode === null) {
          child.child.kill("SIGKILL")
          killed = true
          kills.push(`attempt ${attempt}: ${outcome.where} (from ${committedAtStart} committed)`)
        }
      }
      const exit = await child.exited
      // Every extraction this process started must be of a batch that was not committed when it started.
      const calls = fs.readFileSync(log, "utf8").slice(logOffset).split("\n").filter((line) => line !== "")
      for (const line of calls) {
        const batch = Number(line.split(" ")[1])
        assert.isAtLeast(batch, committedAtStart, `attempt ${attempt} re-extracted committed batch ${batch}`)
        const seen = extractedBy.get(batch) ?? 0
        if (seen > 0) reExtracted += 1
        extractedBy.set(batch, seen + 1)
      }
      if (killed) {
        assert.strictEqual(exit.signal, "SIGKILL")
        // What the kill lost: batches this process extracted that are not committed. At most `concurrency`.
        const committedAtKill = readRun(db, "fuzz")?.committed_batches ?? 0
        const lost = new Set(calls.map((line) => Number(line.split(" ")[1])).filter((i) => i >= committedAtKill))
        assert.isAtMost(lost.size, concurrency, `attempt ${attempt} lost ${[...lost].join(", ")}`)
        continue
      }
      assert.strictEqual(exit.code, 0, `attempt ${attempt} exited ${exit.code}: ${child.stderr}`)
      break
    }

    console.log(`kills (${kills.length}):\n  ${kills.join("\n  ")}`)
    assert.isAtLeast(kills.length, minKills)
    const run = readRun(db, "fuzz")!
    assert.strictEqual(run.status, "completed")
    assert.strictEqual(run.artifact_sha256, reference.sha256)
    assert.strictEqual(sha256File(out), reference.sha256)
    assert.strictEqual(run.digest, reference.digest)
    withDb(db, (sqlite) => {
      assert.deepStrictEqual(sqlite.pragma("integrity_check"), [{ integrity_check: "ok" }])
      const indices = (table: string) =>
        sqlite.prepare(`SELECT batch_index FROM ${table} WHERE run_id = ? ORDER BY batch_index`).all("fuzz").map((
          row
        ) => (row as { batch_index: number }).batch_index)
      const all = Array.from({ length: run.total_batches }, (_, i) => i)
      assert.deepStrictEqual(indices("batches"), all)
      assert.deepStrictEqual(indices("checkpoints"), all)
    })
    // Every batch was extracted; only batches in flight at a kill were extracted again, at most `concurrency` each.
    assert.strictEqual(extractedBy.size, run.total_batches)
    assert.isAtMost(reExtracted, kills.length * concurrency)
  }, 240_000)
})
