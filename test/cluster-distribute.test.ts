/**
 * `quarry serve --cluster --distribute`: three real server processes of the bundle on one PostgreSQL. One run's
 * batch extractions spread over the runners (extractor calls counted per process with `QUARRY_TEST_CALL_LOG`), its
 * commits stay in order on its owner, and its artifact and digest chain are those of the same run on SQLite in one
 * process. The extractor is `test-contextual`, whose output depends on the entities the run already knows, so a
 * batch extracted elsewhere with another context would change the bytes. A runner SIGKILLed while it extracts
 * batches for another runner's run: the run still completes with the same bytes, each batch committed once.
 */
import { assert, describe, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"
import { usePostgres } from "../packages/core/test/postgres.js"
import * as Nodes from "./clusterNodes.js"
import { type Node, runRows } from "./clusterNodes.js"
import { call, until } from "./serverProcess.js"
import { mobyDick, run, sha256File } from "./support.js"

const adminUrl = usePostgres()

/** The plan of every run here: Moby-Dick in 67 batches, six in flight, output depending on the known entities. */
const plan = { extractor: "test-contextual", windowSize: 2000, batchSize: 10, concurrency: 6 }

const startNode = (db: string, dir: string, env: Readonly<Record<string, string>>) =>
  Nodes.startNode(db, dir, env, ["--distribute"])

const runRow = async (db: string, runId: string) => (await runRows(db)).find((row) => row.id === runId)

/** `extract <batch> <pid>` lines of the call log: calls per batch index and per process. */
const readCalls = (file: string) => {
  const lines = fs.readFileSync(file, "utf8").trim().split("\n").map((line) => line.split(" "))
  const perBatch = new Map<string, number>()
  const perPid = new Map<string, number>()
  for (const [, batch, pid] of lines) {
    perBatch.set(batch!, (perBatch.get(batch!) ?? 0) + 1)
    perPid.set(pid!, (perPid.get(pid!) ?? 0) + 1)
  }
  return { perBatch, perPid, lines }
}

describe("quarry serve --cluster --distribute", () => {
  const suite = Nodes.useClusterSuite(adminUrl, [
    "--window",
    String(plan.windowSize),
    "--batch-size",
    String(plan.batchSize),
    "--concurrency",
    String(plan.concurrency),
    "--extractor",
    plan.extractor
  ])

  /** Three distributing runners on a fresh database, in a fresh directory with its call log. */
  const cluster = async (name: string) => {
    const { db, work } = await suite.workspace(name)
    const callLog = path.join(work, "calls.log")
    const env = { QUARRY_TEST_EXTRACTOR_DELAY_MS: "150", QUARRY_TEST_CALL_LOG: callLog }
    const started = [await startNode(db, work, env)]
    started.push(...await Promise.all([startNode(db, work, env), startNode(db, work, env)]))
    suite.nodes.push(...started)
    // Submitted once the 300 shards are balanced: a shard moving to a joining runner hands its run over after the
    // next commit, and the batches then in flight are extracted again by the next owner (see docs/cluster.md).
    type Health = { cluster?: { ownedShards: number } }
    const owned = async (node: Node) =>
      ((await call(node, "GET", "/healthz")).json() as Health).cluster?.ownedShards ?? 0
    await until(
      async () => {
        const all = await Promise.all(started.map(owned))
        return all.every((n) => n > 0) && all.reduce((a, b) => a + b, 0) === 300
      },
      60_000,
      "the shards to be balanced"
    )
    return { db, work, callLog, nodes: started }
  }

  const submit = async (node: Node, runId: string) => {
    const submitted = await call(node, "POST", "/v1/runs", {
      input: fs.readFileSync(mobyDick.input, "utf8"),
      runId,
      extractor: plan.extractor,
      chunking: { windowSize: plan.windowSize, batchSize: plan.batchSize },
      concurrency: plan.concurrency
    })
    assert.strictEqual(submitted.status, 202, submitted.text)
  }

  const completed = async (db: string, runId: string, work: string) => {
    await until(
      async () => ["completed", "failed", "cancelled"].includes((await runRow(db, runId))?.status ?? ""),
      240_000,
      `run ${runId} to end`
    )
    const row = (await runRow(db, runId))!
    assert.strictEqual(row.status, "completed", JSON.stringify(row))
    assert.strictEqual(row.committed_batches, 67)
    assert.strictEqual(Number(row.n), 67)
    // The chained digest of the commits: one uninterrupted run's, so every batch came once, in order.
    assert.strictEqual(row.digest, suite.reference.digest)
    assert.strictEqual(sha256File(path.join(work, `${runId}.ttl`)), suite.reference.sha256)
  }

  it("refuses --distribute without --cluster (exit 2, nothing written)", async () => {
    const result = await run(["serve", "--distribute", "--db", path.join(suite.dir, "single.db")])
    assert.strictEqual(result.code, 2, result.stderr)
    assert.include(result.stderr, "--distribute spreads a run's batches over the runners of a cluster")
    assert.isFalse(fs.existsSync(path.join(suite.dir, "single.db")))
  })

  it(
    "one run's batches are extracted on all three runners, each once, and the artifact is byte-identical to SQLite",
    async () => {
      const { callLog, db, nodes: three, work } = await cluster("spread")
      await submit(three[0]!, "d1")
      await completed(db, "d1", work)
      const { perBatch, perPid } = readCalls(callLog)
      // Every batch extracted exactly once, by whichever runner owns its key.
      assert.strictEqual(perBatch.size, 67)
      const refusals = three.flatMap((node) =>
        node.child.stderr.split("\n").filter((l) => l.includes("was not extracted remotely"))
      )
      for (const [batch, n] of perBatch) {
        assert.strictEqual(n, 1, `batch ${batch} extracted ${n} times; ${refusals.slice(0, 3).join(" ")}`)
      }
      const pids = new Set(three.map((node) => String(node.child.pid)))
      for (const pid of perPid.keys()) assert.isTrue(pids.has(pid), `calls from unknown process ${pid}`)
      assert.strictEqual(perPid.size, 3, `calls per runner: ${JSON.stringify([...perPid])}`)
      console.log(`distribute: calls per runner ${JSON.stringify([...perPid.values()])}`)
      // Each runner counts the extractions it served; the owner fell back to none.
      let served = 0
      for (const node of three) {
        const metrics = (await call(node, "GET", "/metrics")).text
        served += Number(/^quarry_distributed_extractions_served_total (\d+)/m.exec(metrics)?.[1] ?? 0)
        assert.notMatch(metrics, /^quarry_distributed_extractions_fallback_total [1-9]/m)
      }
      assert.strictEqual(served, 67)
    },
    400_000
  )

  it(
    "a runner SIGKILLed while it extracts batches of another runner's run: the run completes, byte-identical",
    async () => {
      const { callLog, db, nodes: three, work } = await cluster("kill")
      await submit(three[0]!, "d2")
      // The victim is a runner that does not own the run but has extracted some of its batches.
      let victim: Node | undefined
      await until(
        async () => {
          const row = await runRow(db, "d2")
          if (row === undefined || row.committed_batches < 10 || row.lease_owner === null) return false
          const owner = row.lease_owner.split("/")[0]
          const calls = fs.existsSync(callLog) ? readCalls(callLog).perPid : new Map<string, number>()
          victim = three.find((node) =>
            `127.0.0.1:${node.runnerPort}` !== owner && (calls.get(String(node.child.pid)) ?? 0) > 0
          )
          return victim !== undefined
        },
        120_000,
        "a runner other than the owner to extract some batches"
      )
      const before = (await runRow(db, "d2"))!.committed_batches
      victim!.child.child.kill("SIGKILL")
      await victim!.child.exited
      const killedAt = Date.now()
      assert.isBelow(before, 67, "the run ended before the kill")
      await completed(db, "d2", work)
      const refused = three.flatMap((node) =>
        node.child.stderr.split("\n").filter((l) => l.includes("was not extracted remotely"))
      )
      console.log(
        `distribute: run completed ${Date.now() - killedAt} ms after the SIGKILL (at ${before}/67 batches); ` +
          `${refused.length} batches extracted by the owner itself: ${refused.slice(0, 3).join(" ")}`
      )
      // Batches extracted after the kill came from the survivors only.
      const { lines, perBatch } = readCalls(callLog)
      assert.strictEqual(perBatch.size, 67)
      const victimPid = String(victim!.child.pid)
      const survivors = lines.filter(([, , pid]) => pid !== victimPid)
      assert.isAbove(survivors.length, 0)
    },
    400_000
  )
})
