/**
 * A full disk, for real: a size-limited tmpfs mounted by the test. The run fails with a message that names the cause
 * and what to do (no stack trace), exit 1, the run recorded `failed`; nothing committed is lost, the database passes
 * `integrity_check`, and once space is freed `resume` completes to the same bytes as a run that never failed.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import Database from "better-sqlite3"
import * as fs from "node:fs"
import * as path from "node:path"
import {
  committedEvents,
  makeDir,
  mobyDick,
  readRun,
  referenceRun,
  removeDir,
  run,
  sha256File,
  type SpawnOptions
} from "./support.js"
import * as Tmpfs from "./tmpfs.js"

const options: SpawnOptions = { env: { QUARRY_TEST_EXTRACTOR_DELAY_MS: "0" } }
// N-Triples: its last write is the last page of entities (Turtle ends with a write of its own), so a write cut
// short at the very end would be the artifact's last bytes missing, not followed by an error.
const format = ["--format", "ntriples"]

/** `integrity_check` on a copy of the database and its WAL: the database itself is never opened read-write here. */
const integrity = (db: string, scratch: string): unknown => {
  const copy = path.join(scratch, `${path.basename(db)}.copy`)
  fs.copyFileSync(db, copy)
  if (fs.existsSync(`${db}-wal`)) fs.copyFileSync(`${db}-wal`, `${copy}-wal`)
  const sqlite = new Database(copy)
  try {
    return sqlite.pragma("integrity_check")
  } finally {
    sqlite.close()
  }
}

/** No line of a stack trace (`    at f (file:...)`). */
const assertNoStackTrace = (stderr: string) => assert.notMatch(stderr, /^\s+at /m, stderr)

describe.skipIf(Tmpfs.unavailable !== undefined)("disk full", () => {
  let dir = ""
  let reference = { sha256: "", digest: "", bytes: 0 }
  const mounts: Array<Tmpfs.Tmpfs> = []

  beforeAll(async () => {
    dir = makeDir()
    const ran = await referenceRun(dir, format)
    reference = { ...ran, bytes: fs.statSync(path.join(dir, "reference.ttl")).size }
  }, 120_000)
  afterAll(() => {
    for (const mounted of mounts) mounted.unmount()
    removeDir(dir)
  })

  const mount = (name: string, size: string) => {
    const mounted = Tmpfs.mount(dir, name, size)
    mounts.push(mounted)
    return mounted
  }

  it("the database's file system fills up: exit 1, disk-full named, run failed, resume completes", async () => {
    const small = mount("db-full", "2m")
    const db = path.join(small.dir, "q.db")
    const out = path.join(small.dir, "full.nt")
    const args = ["start", mobyDick.input, ...mobyDick.flags, "--db", db, "--run-id", "full", "--out", out, ...format]
    const failed = await run([...args, "--json"], options)
    assert.strictEqual(failed.code, 1, failed.stderr)
    const committed = committedEvents(failed.stdout)
    assert.isAbove(committed, 0)
    assert.isBelow(committed, 67)
    const event = JSON.parse(failed.stdout.trim().split("\n").at(-1)!)
    assert.strictEqual(event.event, "run.failed")
    assert.strictEqual(event.reason, "PersistenceError")
    assert.include(event.error, "storage failed during commitBatch (disk-full)")
    assert.include(event.error, "database or disk is full [SQLITE_FULL]")
    assert.include(event.error, "the file system of the database is full; free space there, then try again")
    assert.notProperty(event, "recorded")
    assertNoStackTrace(failed.stderr)

    // Every committed batch is there, the run is failed and resumable, the file is sound.
    const stored = readRun(db, "full")!
    assert.strictEqual(stored.status, "failed")
    assert.strictEqual(stored.committed_batches, committed)
    assert.strictEqual(stored.lease_expires_at, null)
    assert.deepStrictEqual(integrity(db, dir), [{ integrity_check: "ok" }])

    small.resize("64m")
    const resumed = await run(["resume", "full", "--db", db, "--json"], options)
    assert.strictEqual(resumed.code, 0, resumed.stderr)
    assert.strictEqual(committedEvents(resumed.stdout), 67 - committed, "no committed batch is extracted again")
    assert.strictEqual(sha256File(out), reference.sha256)
    assert.strictEqual(readRun(db, "full")!.digest, reference.digest)
  }, 120_000)

  it(
    "the artifact's file system fills up during the merge: exit 1, the cut-short write is not taken for the artifact",
    async () => {
      // One page short of the artifact: the last write is cut short (a short write, not an error), the next fails.
      const small = mount("out-full", String(Math.floor(reference.bytes / 4096) * 4096))
      const db = path.join(dir, "merge.db")
      const out = path.join(small.dir, "merge.nt")
      const args = [
        "start",
        mobyDick.input,
        ...mobyDick.flags,
        "--db",
        db,
        "--run-id",
        "merge",
        "--out",
        out,
        ...format
      ]
      const failed = await run(args, options)
      assert.strictEqual(failed.code, 1, failed.stderr)
      assert.include(failed.stderr, `run merge failed after 67/67 batches: could not write the artifact ${out}: ENOSPC`)
      assert.include(failed.stderr, "free space on its file system, then try again")
      assert.include(failed.stderr, `resume it with: quarry resume merge --db ${db}`)
      assertNoStackTrace(failed.stderr)
      assert.deepStrictEqual(fs.readdirSync(small.dir), [], "neither an artifact nor a temp file is left")
      const stored = readRun(db, "merge")!
      assert.strictEqual(stored.status, "failed")
      assert.strictEqual(stored.committed_batches, 67)
      assert.isNull(stored.artifact_sha256)

      small.resize("16m")
      const resumed = await run(["resume", "merge", "--db", db, "--json"], options)
      assert.strictEqual(resumed.code, 0, resumed.stderr)
      assert.strictEqual(committedEvents(resumed.stdout), 0)
      assert.strictEqual(sha256File(out), reference.sha256)
      assert.strictEqual(fs.statSync(out).size, reference.bytes)
    },
    120_000
  )
})
