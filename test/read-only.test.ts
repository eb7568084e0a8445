/**
 * Storage that stops accepting writes, with real permissions: the CLI runs as an unprivileged user (nobody when the
 * tests run as root, since root ignores permission bits). The failure names the cause and what to do, exit 1, no
 * stack trace; committed batches are kept, and once the permissions are back `resume` completes to the same bytes.
 *
 * A chmod cannot take write access from a database SQLite already has open (nor can a `remount,ro`, which the kernel
 * refuses while files are open for writing), so the database case makes it read-only between two executions; the
 * artifact's directory is made read-only in the middle of a run.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"
import { assertUnprivilegedCanRun, giveToUnprivileged, unprivileged } from "./readOnlyDirectory.js"
import { committedEvents, makeDir, readRun, removeDir, run, sha256File, start, texts } from "./support.js"

const input = path.join(texts, "long-multi-chapter.txt")
const flags = ["--window", "300", "--batch-size", "2", "--extractor", "test-slow", "--format", "ntriples"]
const env = { QUARRY_TEST_EXTRACTOR_DELAY_MS: "0" }

const assertNoStackTrace = (stderr: string) => assert.notMatch(stderr, /^\s+at /m, stderr)

describe("read-only storage", () => {
  let dir = ""
  let reference = ""

  beforeAll(async () => {
    assertUnprivilegedCanRun()
    dir = makeDir()
    const out = path.join(dir, "reference.nt")
    const clean = await run(["start", input, ...flags, "--db", path.join(dir, "reference.db"), "--out", out], { env })
    assert.strictEqual(clean.code, 0, clean.stderr)
    reference = sha256File(out)
    giveToUnprivileged(dir)
  }, 60_000)
  afterAll(() => removeDir(dir))

  it(
    "a database made read-only: exit 1, read-only named, nothing written; resumable once it and its -wal/-shm are writable",
    async () => {
      const db = path.join(dir, "ro.db")
      const out = path.join(dir, "ro.nt")
      const failed = await run(["start", input, ...flags, "--db", db, "--run-id", "ro", "--out", out], {
        env: { ...env, QUARRY_TEST_FAIL_BATCH: "1" },
        ...unprivileged
      })
      assert.strictEqual(failed.code, 1, failed.stderr)
      fs.chmodSync(db, 0o444)
      const before = sha256File(db)

      const refused = await run(["resume", "ro", "--db", db], { env, ...unprivileged })
      assert.strictEqual(refused.code, 1, refused.stderr)
      assert.include(refused.stderr, "(read-only): Failed to execute statement: attempt to write a readonly database")
      assert.include(refused.stderr, "[SQLITE_READONLY]; the database, its -wal/-shm files or its directory is not")
      assert.include(refused.stderr, `resume it with: quarry resume ro --db ${db}`)
      assertNoStackTrace(refused.stderr)
      assert.strictEqual(sha256File(db), before)
      assert.strictEqual(readRun(db, "ro")!.committed_batches, 1)

      // SQLite created the -wal and -shm files of the refused resume with the file's read-only mode: making only the
      // file writable is refused with what else to do, before anything is written.
      fs.chmodSync(db, 0o644)
      const companions = await run(["resume", "ro", "--db", db], { env, ...unprivileged })
      assert.strictEqual(companions.code, 3, companions.stderr)
      assert.include(companions.stderr, `${db}-wal and ${db}-shm are not (left by a process that opened it read-only)`)
      assert.strictEqual(sha256File(db), before)

      for (const file of [`${db}-wal`, `${db}-shm`]) fs.chmodSync(file, 0o644)
      const resumed = await run(["resume", "ro", "--db", db], { env, ...unprivileged })
      assert.strictEqual(resumed.code, 0, resumed.stderr)
      assert.strictEqual(sha256File(out), reference)
    },
    60_000
  )

  it("the artifact's directory made read-only mid-run: the merge fails clearly; resumable once writable", async () => {
    const db = path.join(dir, "out.db")
    const outDir = path.join(dir, "artifacts")
    fs.mkdirSync(outDir)
    giveToUnprivileged(outDir)
    const out = path.join(outDir, "out.nt")
    const running = start(["start", input, ...flags, "--db", db, "--run-id", "out", "--out", out, "--json"], {
      env: { QUARRY_TEST_EXTRACTOR_DELAY_MS: "100" },
      ...unprivileged
    })
    await running.waitFor((stdout) => committedEvents(stdout) >= 1)
    fs.chmodSync(outDir, 0o555)
    const exit = await running.exited
    assert.strictEqual(exit.code, 1, running.stderr)
    const last = JSON.parse(running.stdout.trim().split("\n").at(-1)!)
    assert.strictEqual(last.event, "run.failed")
    assert.strictEqual(last.reason, "MergeError")
    assert.include(last.error, `could not write the artifact ${out}: EACCES: permission denied`)
    assert.include(last.error, "make its directory writable by this user, then try again")
    assertNoStackTrace(running.stderr)
    const stored = readRun(db, "out")!
    assert.strictEqual(stored.status, "failed")
    assert.strictEqual(stored.committed_batches, stored.total_batches)
    assert.deepStrictEqual(fs.readdirSync(outDir), [])

    fs.chmodSync(outDir, 0o755)
    const resumed = await run(["resume", "out", "--db", db, "--json"], { env, ...unprivileged })
    assert.strictEqual(resumed.code, 0, resumed.stderr)
    assert.strictEqual(committedEvents(resumed.stdout), 0)
    assert.strictEqual(sha256File(out), reference)
  }, 60_000)
})
