/**
 * `quarry serve --cluster` when things go wrong: real `quarry serve` processes of the bundle on one real PostgreSQL.
 * A runner paused (SIGSTOP) past its lease and its shard locks, then resumed; a runner's database sessions
 * terminated under it (`pg_terminate_backend`); three runners racing to migrate an empty database.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"
import { createDatabase, dropDatabase, usePostgres } from "../packages/core/test/postgres.js"
import { type Node, problems, runRows, startNode, stopNode, submitMobyDick } from "./clusterNodes.js"
import { until } from "./serverProcess.js"
import { makeDir, referenceRun, removeDir, sha256File, sleep } from "./support.js"

const adminUrl = usePostgres()

describe("quarry serve --cluster: failures", () => {
  let dir = ""
  let reference = { sha256: "", digest: "" }
  const databases: Array<string> = []
  const nodes: Array<Node> = []

  beforeAll(async () => {
    dir = makeDir()
    reference = await referenceRun(dir)
  }, 120_000)
  afterAll(async () => {
    for (const node of nodes) await stopNode(node)
    for (const url of databases) await dropDatabase(adminUrl(), url)
    removeDir(dir)
  }, 60_000)

  const freshCluster = async (name: string, count: number, env: Readonly<Record<string, string>> = {}) => {
    const db = await createDatabase(adminUrl())
    databases.push(db)
    const work = path.join(dir, name)
    fs.mkdirSync(work)
    const started = [await startNode(db, work, env)]
    started.push(...await Promise.all(Array.from({ length: count - 1 }, () => startNode(db, work, env))))
    nodes.push(...started)
    return { db, work, started }
  }

  /** Every run ends `completed` with the reference's digest chain (each batch committed once) and bytes. */
  const assertAllLikeReference = async (db: string, work: string, count: number) => {
    const rows = await runRows(db)
    assert.strictEqual(rows.length, count)
    for (const row of rows) {
      assert.strictEqual(row.status, "completed", `${row.id}: ${JSON.stringify(row)}`)
      assert.strictEqual(row.committed_batches, 67, row.id)
      assert.strictEqual(Number(row.n), 67, row.id)
      assert.strictEqual(row.digest, reference.digest, row.id)
      assert.strictEqual(row.artifact_sha256, reference.sha256, row.id)
      assert.strictEqual(sha256File(path.join(work, `${row.id}.ttl`)), reference.sha256, row.id)
    }
  }

  const allEnded = (db: string, all: ReadonlyArray<Node>, timeoutMs: number) =>
    until(
      async () => (await runRows(db)).every((r) => r.status === "completed" || r.status === "failed"),
      timeoutMs,
      "every run to end"
    ).catch(async (error) => {
      throw new Error(`${String(error)}: ${JSON.stringify(await runRows(db))}\n${all.map(problems).join("\n")}`)
    })

  it(
    "a runner paused (SIGSTOP) past its lease: its runs continue elsewhere; resumed, its late commit is refused",
    async () => {
      const { db, started, work } = await freshCluster("paused", 3)
      const ids = Array.from({ length: 6 }, (_, i) => `p${i}`)
      for (const runId of ids) await submitMobyDick(started[0]!, runId)

      // Pause a runner while it executes a run that has committed a few batches.
      let victim: Node | undefined
      await until(
        async () => {
          const rows = await runRows(db)
          victim = started.find((node) =>
            rows.some((r) =>
              r.status === "running" && r.committed_batches >= 3 && r.lease_owner?.startsWith(node.owner)
            )
          )
          return victim !== undefined
        },
        60_000,
        "a runner to execute a run"
      )
      const paused = victim!
      paused.child.child.kill("SIGSTOP")
      const pausedAt = Date.now()
      const held = (await runRows(db)).filter((r) => r.status === "running" && r.lease_owner?.startsWith(paused.owner))
      const heldIds = held.map((r) => r.id)
      const committedThen = new Map(held.map((r) => [r.id, r.committed_batches]))

      // Its runs move to the other runners and commit there while it is still paused.
      await until(
        async () =>
          (await runRows(db)).filter((r) => heldIds.includes(r.id)).every((r) =>
            r.status === "completed" ||
            (r.lease_owner !== null && !r.lease_owner.startsWith(paused.owner) &&
              r.committed_batches > committedThen.get(r.id)!)
          ),
        60_000,
        "the paused runner's runs to continue elsewhere"
      ).catch(async (error) => {
        paused.child.child.kill("SIGCONT")
        throw new Error(`${String(error)}: ${JSON.stringify(await runRows(db))}`)
      })
      const movedMs = Date.now() - pausedAt
      console.log(`cluster SIGSTOP: ${heldIds.length} runs continued elsewhere ${movedMs} ms after the pause`)
      await sleep(1_000)
      paused.child.child.kill("SIGCONT")

      await allEnded(db, started, 240_000)
      await assertAllLikeReference(db, work, ids.length)
      // The resumed runner found its runs taken over: it said so, and did not exit.
      await until(() => /taken over/.test(paused.child.stderr), 30_000, "the paused runner to notice").catch(() => {
        throw new Error(`no "taken over" in the paused runner's log:\n${paused.child.stderr}`)
      })
      assert.isNull(paused.child.child.exitCode)
    },
    400_000
  )
})
