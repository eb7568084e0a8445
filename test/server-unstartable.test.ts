/**
 * Runs the server cannot start: stored for an extractor it does not have, or with another configuration of one it
 * has (as after a restart with other settings, or on a runner of an older version). Real server processes of the
 * bundle on a real PostgreSQL. Each such run is recorded `failed` with the reason, where before it stayed `pending`
 * (until the next restart on one node, for good in a cluster); one node tries it again at its next start.
 */
import { assert, describe, it } from "@effect/vitest"
import { usePostgres } from "../packages/core/test/postgres.js"
import * as Nodes from "./clusterNodes.js"
import { allExecutesAnswered, query, runRows, storePending } from "./clusterNodes.js"
import { call, serve, stop, until } from "./serverProcess.js"
import { sha256File } from "./support.js"

const adminUrl = usePostgres()

/** What the API shows of a run (the fields read here). */
interface Shown {
  readonly status: string
  readonly failureReason: string | null
  readonly lastError: string | null
}

describe("quarry serve: a run it cannot start", () => {
  const suite = Nodes.useClusterSuite(adminUrl)

  const ended = (db: string, ids: ReadonlyArray<string>, stderr: () => string) =>
    until(
      async () => (await runRows(db)).filter((r) => ids.includes(r.id)).every((r) => r.status !== "pending"),
      120_000,
      `${ids.join(", ")} to leave pending`
    ).catch(async (error) => {
      throw new Error(`${String(error)}: ${JSON.stringify(await runRows(db))}\n${stderr()}`)
    })

  const errorsOf = (db: string, runId: string) =>
    query<{ reason: string; message: string }>(db, "SELECT reason, message FROM run_errors WHERE run_id = $1", [runId])

  it(
    "one node: recorded failed with the reason, kept queued for the next start, which completes it once the extractor is back",
    async () => {
      const { db, work } = await suite.workspace("single")
      await storePending(db, work, "later")
      await storePending(db, work, "changed", { configHash: "other" })
      // Without QUARRY_TEST_EXTRACTOR_DELAY_MS this server has no `test-slow` extractor.
      const without = await serve(db, [], {}, work)
      try {
        await ended(db, ["later", "changed"], () => without.child.stderr)
        const later = (await call(without, "GET", "/v1/runs/later")).json() as Shown
        assert.deepStrictEqual([later.status, later.failureReason], ["failed", "UnknownExtractor"])
        assert.include(later.lastError, `unknown extractor "test-slow"`)
        assert.match(without.child.stderr, /the run cannot start here, recorded failed: unknown extractor/)
      } finally {
        await stop(without)
      }
      // Their queued executions stay stored: the next start tries them again.
      const queued = await query<{ run_id: string }>(db, "SELECT run_id FROM queued_executions ORDER BY run_id")
      assert.deepStrictEqual(queued.map((q) => q.run_id), ["changed", "later"])

      const server = await serve(db, [], { QUARRY_TEST_EXTRACTOR_DELAY_MS: "0" }, work)
      try {
        await until(
          async () => (await runRows(db)).find((r) => r.id === "later")?.status === "completed",
          120_000,
          "later to complete"
        )
        const completed = (await runRows(db)).find((r) => r.id === "later")!
        assert.strictEqual(completed.digest, suite.reference.digest)
        assert.strictEqual(sha256File(completed.artifact_path!), suite.reference.sha256)
        // The other one's extractor has another configuration here: it fails again, for that reason.
        await until(async () => (await errorsOf(db, "changed")).length === 2, 60_000, "changed to fail again")
        const changed = (await call(server, "GET", "/v1/runs/changed")).json() as Shown
        assert.deepStrictEqual([changed.status, changed.failureReason], ["failed", "PlanMismatch"])
        assert.include(changed.lastError, "was started with extractor test-slow configuration other")
        // A resume tries it again too.
        assert.strictEqual((await call(server, "POST", "/v1/runs/changed/resume")).status, 202)
        await until(async () => (await errorsOf(db, "changed")).length === 3, 60_000, "the resume to fail")
      } finally {
        await stop(server)
      }
    },
    200_000
  )

  it("a cluster: recorded failed with the reason and its runner, and its message answered", async () => {
    const { db, work } = await suite.workspace("cluster")
    // Stored without a message: the scan for pending runs sends it (a run submitted to a node that has the
    // extractor, which the runner of its shard lacks, reaches the handler the same way).
    await storePending(db, work, "gone", { name: "gone" })
    const node = await Nodes.startNode(db, work)
    suite.nodes.push(node)
    await ended(db, ["gone"], () => node.child.stderr)
    const gone = (await call(node, "GET", "/v1/runs/gone")).json() as Shown
    assert.deepStrictEqual([gone.status, gone.failureReason], ["failed", "UnknownExtractor"])
    assert.include(gone.lastError, `(on runner 127.0.0.1:${node.runnerPort})`)
    assert.deepStrictEqual((await errorsOf(db, "gone")).map((e) => e.reason), ["UnknownExtractor"])
    await allExecutesAnswered(db)
  }, 200_000)
})
