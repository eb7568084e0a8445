/**
 * The CLI on PostgreSQL, as real processes of the bundle: `start` -> `status` -> `export` give the same bytes as the
 * same run on SQLite; a run SIGKILLed mid-way resumes to the same bytes with no batch committed twice; a run whose
 * connections the server terminates completes to the same bytes; `runs`,
 * `cancel` and `doctor` follow `QUARRY_DATABASE_URL`; `serve` answers its probes without showing the password.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { query } from "@quarry/testkit/Postgres"
import * as fs from "node:fs"
import * as path from "node:path"
import { createDatabase, dropDatabase, usePostgres } from "../packages/core/test/postgres.js"
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
  start
} from "./support.js"

const adminUrl = usePostgres()

describe("the CLI on PostgreSQL", () => {
  let dir = ""
  let reference = { sha256: "", digest: "" }
  const databases: Array<string> = []

  beforeAll(async () => {
    dir = makeDir()
    fs.writeFileSync(path.join(dir, "tiny.txt"), "Ishmael met Queequeg in New Bedford.\n")
    reference = await referenceRun(dir)
  }, 120_000)
  afterAll(async () => {
    for (const url of databases) await dropDatabase(adminUrl(), url)
    removeDir(dir)
  })

  const database = async () => {
    const url = await createDatabase(adminUrl())
    databases.push(url)
    return url
  }

  const startMobyDick = (db: string, runId: string, env: Readonly<Record<string, string>>) => {
    const out = path.join(dir, `${runId}.ttl`)
    const child = start(
      ["start", mobyDick.input, ...mobyDick.flags, "--db", db, "--run-id", runId, "--out", out, "--json"],
      { env }
    )
    return { out, child }
  }

  it("start, status and export on PostgreSQL give the bytes of the same run on SQLite", async () => {
    const db = await database()
    const { child, out } = startMobyDick(db, "straight", { QUARRY_TEST_EXTRACTOR_DELAY_MS: "0" })
    const exit = await child.exited
    assert.strictEqual(exit.code, 0, child.stderr)
    assert.strictEqual(sha256File(out), reference.sha256)

    const status = await run(["status", "straight", "--db", db, "--json"])
    assert.strictEqual(status.code, 0, status.stderr)
    const shown = JSON.parse(status.stdout) as { status: string; progress: { committedBatches: number } }
    assert.strictEqual(shown.status, "completed")
    assert.strictEqual(shown.progress.committedBatches, 67)
    const [row] = await query<{ digest: string }>(db, "SELECT digest FROM runs WHERE id = 'straight'")
    assert.strictEqual(row?.digest, reference.digest)

    // Export merges again from the stored outputs: N-Triples from PostgreSQL equal N-Triples from SQLite.
    const fromPg = path.join(dir, "straight.nt")
    const fromSqlite = path.join(dir, "reference.nt")
    const exported = await run(["export", "straight", "--db", db, "--format", "ntriples", "--out", fromPg])
    assert.strictEqual(exported.code, 0, exported.stderr)
    const sqlite = path.join(dir, "reference.db")
    const again = await run(["export", "reference", "--db", sqlite, "--format", "ntriples", "--out", fromSqlite])
    assert.strictEqual(again.code, 0, again.stderr)
    assert.strictEqual(sha256File(fromPg), sha256File(fromSqlite))
    // The merge workspace's tables are gone after each merge.
    const left = await query(db, "SELECT suffix FROM merge_workspaces")
    assert.deepStrictEqual(left, [])
  }, 180_000)

  it("a run SIGKILLed mid-way resumes on PostgreSQL to the same bytes, each batch committed once", async () => {
    const db = await database()
    const env = { QUARRY_TEST_EXTRACTOR_DELAY_MS: "40" }
    const { child, out } = startMobyDick(db, "killed", env)
    await child.waitFor((stdout) => committedEvents(stdout) >= 5)
    // The real node process of the bundle, not a wrapper.
    child.child.kill("SIGKILL")
    assert.strictEqual((await child.exited).signal, "SIGKILL")
    const [held] = await query<{ status: string; committed_batches: number }>(
      db,
      "SELECT status, committed_batches FROM runs WHERE id = 'killed'"
    )
    assert.strictEqual(held?.status, "running")
    assert.isAtLeast(held!.committed_batches, 5)

    const resumed = await run(["resume", "killed", "--db", db, "--json"], {
      env: { QUARRY_TEST_EXTRACTOR_DELAY_MS: "0" }
    })
    assert.strictEqual(resumed.code, 0, resumed.stderr)
    // Only the batches after the kill were committed by the resume.
    assert.strictEqual(committedEvents(resumed.stdout), 67 - held!.committed_batches)
    assert.strictEqual(sha256File(out), reference.sha256)
    const [row] = await query<{ digest: string; n: string }>(
      db,
      "SELECT digest, (SELECT count(*) FROM batches WHERE run_id = 'killed') AS n FROM runs WHERE id = 'killed'"
    )
    assert.strictEqual(row?.digest, reference.digest)
    assert.strictEqual(Number(row?.n), 67)
  }, 180_000)

  it(
    "connections terminated by the server mid-run (pg_terminate_backend) are replaced: the run completes, same bytes",
    async () => {
      const db = await database()
      const name = new URL(db).pathname.slice(1)
      const { child, out } = startMobyDick(db, "terminated", { QUARRY_TEST_EXTRACTOR_DELAY_MS: "120" })
      await child.waitFor((stdout) => committedEvents(stdout) >= 3)
      let terminated = 0
      for (let i = 0; i < 3; i++) {
        const rows = await query<{ ok: boolean }>(
          adminUrl(),
          "SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE datname = $1 AND application_name = 'quarry'",
          [name]
        )
        terminated += rows.filter((r) => r.ok).length
        await child.waitFor((stdout) => committedEvents(stdout) >= 6 + i * 3)
      }
      const exit = await child.exited
      assert.strictEqual(exit.code, 0, child.stderr)
      assert.isAtLeast(terminated, 3)
      assert.strictEqual(sha256File(out), reference.sha256)
      const [row] = await query<{ n: string; digest: string }>(
        db,
        "SELECT digest, (SELECT count(*) FROM batches WHERE run_id = 'terminated') AS n FROM runs WHERE id = 'terminated'"
      )
      assert.strictEqual(Number(row?.n), 67)
      assert.strictEqual(row?.digest, reference.digest)
    },
    180_000
  )

  it(
    "runs, cancel and doctor follow QUARRY_DATABASE_URL; serve answers its probes and hides the password",
    async () => {
      const db = await database()
      const env = { QUARRY_DATABASE_URL: db, QUARRY_TEST_EXTRACTOR_DELAY_MS: "40" }
      const child = start(
        ["start", mobyDick.input, ...mobyDick.flags, "--run-id", "stop", "--out", path.join(dir, "stop.ttl"), "--json"],
        { env }
      )
      await child.waitFor((stdout) => committedEvents(stdout) >= 2)
      const cancel = await run(["cancel", "stop"], { env })
      assert.strictEqual(cancel.code, 0, cancel.stderr)
      assert.strictEqual((await child.exited).code, 5, child.stderr)
      const runs = await run(["runs", "--status", "cancelled", "--json"], { env })
      assert.strictEqual(runs.code, 0, runs.stderr)
      assert.deepStrictEqual((JSON.parse(runs.stdout) as Array<{ id: string }>).map((r) => r.id), ["stop"])
      // No SQLite file was created on the side.
      assert.isUndefined(readRun(path.join(dir, "quarry.db"), "stop"))

      const doctor = await run(["doctor", "--json"], { env })
      assert.strictEqual(doctor.code, 0, doctor.stderr)
      const report = JSON.parse(doctor.stdout) as Record<string, unknown>
      assert.deepInclude(report, { durable: true, schemaVersion: report.supportedSchemaVersion })
      assert.isAbove(report.supportedSchemaVersion as number, 0)
      assert.deepInclude(report.postgres as object, { fsync: "on", synchronousCommit: "on", fullPageWrites: "on" })
      assert.notInclude(doctor.stdout, ":quarry@")
      assert.deepStrictEqual(report.runs, { cancelled: 1 })

      const tiny = await run([
        "start",
        path.join(dir, "tiny.txt"),
        "--run-id",
        "tiny",
        "--out",
        path.join(dir, "t.ttl")
      ], {
        env
      })
      assert.strictEqual(tiny.code, 0, tiny.stderr)

      const served = path.join(dir, "served")
      fs.mkdirSync(served)
      const server = start(["serve", "--port", "0", "--json"], { env, cwd: served })
      try {
        await server.waitFor((stdout) => stdout.includes("server.listening"))
        const listening = jsonLines(server.stdout)[0] as { port: number }
        const ready = await fetch(`http://127.0.0.1:${listening.port}/readyz`)
        assert.strictEqual(ready.status, 200)
        const health = await (await fetch(`http://127.0.0.1:${listening.port}/healthz`)).json() as {
          database: { path: string; durable: boolean }
        }
        assert.isTrue(health.database.durable)
        assert.notInclude(health.database.path, ":quarry@")
        assert.notInclude(server.stdout, ":quarry@")
        // GET /v1/runs pages by keyset in SQL: two runs, one per page.
        const first = await (await fetch(`http://127.0.0.1:${listening.port}/v1/runs?limit=1`)).json() as {
          runs: Array<{ id: string }>
          nextCursor: string | null
        }
        assert.deepStrictEqual(first.runs.map((r) => r.id), ["stop"])
        assert.isString(first.nextCursor)
        const second = await (await fetch(
          `http://127.0.0.1:${listening.port}/v1/runs?limit=1&cursor=${first.nextCursor}`
        )).json() as { runs: Array<{ id: string }>; nextCursor: string | null }
        assert.deepStrictEqual(second.runs.map((r) => r.id), ["tiny"])
        assert.isNull(second.nextCursor)
        // Newest first, as the dashboard lists them; a cursor continues only the order it was handed out in.
        const newest = await (await fetch(`http://127.0.0.1:${listening.port}/v1/runs?limit=1&order=newest`))
          .json() as {
            runs: Array<{ id: string }>
            nextCursor: string
          }
        assert.deepStrictEqual(newest.runs.map((r) => r.id), ["tiny"])
        const older = await (await fetch(
          `http://127.0.0.1:${listening.port}/v1/runs?limit=1&order=newest&cursor=${newest.nextCursor}`
        )).json() as { runs: Array<{ id: string }>; nextCursor: string | null }
        assert.deepStrictEqual([older.runs.map((r) => r.id), older.nextCursor], [["stop"], null])
        const mixed = await fetch(`http://127.0.0.1:${listening.port}/v1/runs?limit=1&cursor=${newest.nextCursor}`)
        assert.strictEqual(mixed.status, 400)
        assert.include(await mixed.text(), "cursor continues a list in order=newest")
        // A run submitted over HTTP completes, its artifact in the server's working directory (a URL has no folder).
        const submitted = await fetch(`http://127.0.0.1:${listening.port}/v1/runs`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ input: fs.readFileSync(path.join(dir, "tiny.txt"), "utf8"), runId: "posted" })
        })
        assert.strictEqual(submitted.status, 202, await submitted.clone().text())
        let status = ""
        for (let i = 0; i < 300 && status !== "completed" && status !== "failed"; i++) {
          await new Promise((resolve) => setTimeout(resolve, 100))
          status = ((await (await fetch(`http://127.0.0.1:${listening.port}/v1/runs/posted`)).json()) as {
            status: string
          }).status
        }
        assert.strictEqual(status, "completed")
        const artifact = await fetch(`http://127.0.0.1:${listening.port}/v1/runs/posted/artifact`)
        assert.strictEqual(artifact.status, 200)
        assert.strictEqual(await artifact.text(), fs.readFileSync(path.join(dir, "t.ttl"), "utf8"))
        // Outside a cluster the plan keeps the artifact's absolute path (a cluster stores it relative to the artifacts
        // directory, for the runner that finishes the run to resolve against its own).
        const [stored] = await query<{ output_path: string; artifact_path: string }>(
          db,
          "SELECT output_path, artifact_path FROM runs WHERE id = 'posted'"
        )
        const expected = path.join(fs.realpathSync(served), "posted.ttl")
        assert.deepStrictEqual(stored, { output_path: expected, artifact_path: expected })
        assert.isTrue(fs.existsSync(expected))
      } finally {
        server.child.kill("SIGTERM")
        await server.exited
      }
    },
    180_000
  )

  it(
    "doctor and start on a database holding another application's table refuse it (exit 3), writing nothing",
    async () => {
      const db = await database()
      await query(db, "CREATE TABLE runs (id TEXT PRIMARY KEY, note TEXT)")
      const out = path.join(dir, "theirs.ttl")
      for (const args of [["doctor"], ["start", path.join(dir, "tiny.txt"), "--out", out]]) {
        const result = await run([...args, "--db", db])
        assert.strictEqual(result.code, 3, result.stderr)
        assert.include(
          result.stderr,
          "migration failed: Migration \"1_create_runs\" failed (relation \"runs\" already exists)"
        )
        assert.notInclude(result.stderr, "internal error")
      }
      assert.isFalse(fs.existsSync(out))
      const tables = await query(db, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
      assert.deepStrictEqual(tables.map((t) => t.tablename), ["runs"])
    },
    120_000
  )
})
