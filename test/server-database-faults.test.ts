/**
 * One `quarry serve` (no cluster) on PostgreSQL when its database fails for longer than the store retries a read
 * (about 1.5 s): real server processes of the bundle, a real PostgreSQL whose sessions end under them. Boot recovery
 * whose reads fail is tried again; an execution that fails before its claim is queued again, and so is a run whose
 * commit lost its connection; a scan that fails during an outage does not stop admission. Each run still completes
 * to the reference's bytes.
 */
import { assert, describe, it } from "@effect/vitest"
import { usePostgres } from "../packages/core/test/postgres.js"
import {
  cutBatchInserts,
  cutReads,
  query,
  readsCut,
  runRows,
  storePending,
  submitMobyDick,
  useClusterSuite
} from "./clusterNodes.js"
import { call, serve, type Server, stop, until } from "./serverProcess.js"
import { sha256File, sleep } from "./support.js"

const adminUrl = usePostgres()

/** What the API shows of a run (the fields read here). */
interface Shown {
  readonly status: string
  readonly queuePosition: number | null
}

/** A short lease, so the server scans for orphans every second. */
const env = { QUARRY_LEASE_MS: "3000", QUARRY_TEST_EXTRACTOR_DELAY_MS: "0" }

describe("quarry serve on PostgreSQL: the database failing beyond the store's retries", () => {
  const suite = useClusterSuite(adminUrl)

  /** Serves `db` from `work` for `test`, and stops the server however the test ends. */
  const serving = async (
    db: string,
    work: string,
    test: (server: Server) => Promise<void>,
    args: ReadonlyArray<string> = [],
    extraEnv: Readonly<Record<string, string>> = {}
  ) => {
    const server = await serve(db, args, { ...env, ...extraEnv }, work)
    try {
      await test(server)
    } finally {
      await stop(server)
    }
  }

  const completedLikeReference = async (db: string, runId: string, server: Server) => {
    await until(
      async () => (await runRows(db)).find((r) => r.id === runId)?.status === "completed",
      120_000,
      `${runId} to complete`
    ).catch(async (error) => {
      throw new Error(`${String(error)}: ${JSON.stringify(await runRows(db))}\n${server.child.stderr}`)
    })
    const row = (await runRows(db)).find((r) => r.id === runId)!
    assert.strictEqual(Number(row.n), 67)
    assert.strictEqual(row.digest, suite.reference.digest)
    assert.strictEqual(sha256File(row.artifact_path!), suite.reference.sha256)
  }

  it("boot recovery whose reads of the queue fail is tried again: the stored run completes", async () => {
    const { db, work } = await suite.workspace("boot")
    await storePending(db, work, "stored")
    // Boot reads the queue once per attempt: the first two attempts fail.
    await cutReads(db, "queued_executions", 12)
    await serving(db, work, async (server) => {
      await completedLikeReference(db, "stored", server)
      assert.isAbove(await readsCut(db), 12, "every cut read was tried")
      assert.match(server.child.stderr, /boot recovery failed on the database: trying again/)
    })
  }, 200_000)

  it("an execution whose reads fail before its claim is queued again: the run completes", async () => {
    const { db, work } = await suite.workspace("claim")
    await storePending(db, work, "unclaimed")
    // The execution reads the ontology before its claim: the first two executions fail there.
    await cutReads(db, "ontologies", 12)
    await serving(db, work, async (server) => {
      await completedLikeReference(db, "unclaimed", server)
      assert.isAbove(await readsCut(db), 12, "every cut read was tried")
      assert.match(server.child.stderr, /the database failed the execution, queued again/)
    })
  }, 200_000)

  it(
    "a run whose commit loses its connection beyond the retries fails, and resumes by itself: it completes",
    async () => {
      const { db, work } = await suite.workspace("commit")
      await serving(db, work, async (server) => {
        // The first commit lands; the next 12 each lose their session: more than the store's retries of one commit
        // (6 attempts), so the run fails on its second commit, and its resumed execution commits after a few retries.
        await cutBatchInserts(db, 2, 13)
        await submitMobyDick(server, "resumed")
        await completedLikeReference(db, "resumed", server)
        assert.match(server.child.stderr, /"run ended".*"status":"failed"/)
        assert.match(
          server.child.stderr,
          /the database failed the execution, queued again in 250ms: storage failed during commitBatch \(connection\)/
        )
      })
    },
    200_000
  )

  it(
    "a run whose commits keep losing their connection waits in the queue, lets a due run pass, is resumed 10 times, " +
      "then left failed",
    async () => {
      const { db, work } = await suite.workspace("flapping")
      await serving(db, work, async (server) => {
        // Every commit of `flapping` after its first loses its session, however often it is tried.
        await query(
          db,
          `CREATE FUNCTION cut_batch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
            PERFORM pg_terminate_backend(pg_backend_pid());
            RETURN NEW;
          END $$;
          CREATE TRIGGER cut_batch BEFORE INSERT ON batches FOR EACH ROW
            WHEN (NEW.run_id = 'flapping' AND NEW.batch_index > 0) EXECUTE FUNCTION cut_batch();`
        )
        await submitMobyDick(server, "flapping")
        await until(() => /queued again/.test(server.child.stderr), 60_000, "flapping to fail once")
        // One slot: the other run starts while `flapping` waits to be tried again.
        await submitMobyDick(server, "other")
        await until(
          async () => {
            const shown = (await call(server, "GET", "/v1/runs/flapping")).json() as Shown
            // Stored `failed`, it waits in the queue to be tried again: the API shows it `pending` with its place.
            return shown.status === "pending" && shown.queuePosition !== null
          },
          60_000,
          "flapping to wait in the queue"
        )
        await completedLikeReference(db, "other", server)
        assert.notMatch(server.child.stderr, /the run stays failed/, "other completed before flapping was given up")
        await until(() => /the run stays failed/.test(server.child.stderr), 150_000, "the server to give up")
        // Nothing executes it any more.
        await sleep(6_000)
        const started = server.child.stderr.split("\n").filter((line) =>
          line.includes("\"run started\"") && line.includes("\"runId\":\"flapping\"")
        )
        assert.strictEqual(started.length, 11)
        const flapping = (await runRows(db)).find((r) => r.id === "flapping")
        assert.deepInclude(flapping, { status: "failed", committed_batches: 1 })
        assert.deepStrictEqual(await query(db, "SELECT run_id FROM queued_executions"), [])
      }, ["--max-active-runs", "1"])
    },
    200_000
  )

  /** No new session may open on `db`, and its open ones end: every statement fails for `ms`. */
  const outage = async (db: string, ms: number) => {
    const name = new URL(db).pathname.slice(1)
    await query(adminUrl(), `ALTER DATABASE "${name}" ALLOW_CONNECTIONS false`)
    await query(adminUrl(), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", [name])
    await sleep(ms)
    await query(adminUrl(), `ALTER DATABASE "${name}" ALLOW_CONNECTIONS true`)
  }

  it("a 4 s outage while a run executes (a PostgreSQL restart): the run completes by itself", async () => {
    const { db, work } = await suite.workspace("restart")
    await serving(
      db,
      work,
      async (server) => {
        await submitMobyDick(server, "restart")
        await until(
          async () => ((await runRows(db))[0]?.committed_batches ?? 0) >= 3,
          60_000,
          "three batches to commit"
        )
        await outage(db, 4_000)
        await completedLikeReference(db, "restart", server)
      },
      [],
      { QUARRY_TEST_EXTRACTOR_DELAY_MS: "60" }
    )
  }, 200_000)

  it("a scan during a 10 s outage fails and admission goes on: a run submitted after it completes", async () => {
    const { db, work } = await suite.workspace("outage")
    await serving(db, work, async (server) => {
      // The server scans every second, and the store gives a read up after 6 attempts and 1.55 s of backoff; on a
      // loaded machine (test files run two at a time) each refused connection attempt takes a while too, so the
      // outage outlasts a scan's retries by a margin (with 4 s, a scan once outlived it and succeeded afterwards).
      await outage(db, 10_000)
      await submitMobyDick(server, "after")
      await completedLikeReference(db, "after", server)
      assert.match(server.child.stderr, /the scan for orphaned runs failed on the database/)
    })
  }, 200_000)
})
