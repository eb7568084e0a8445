/**
 * `quarry serve --cluster` when things go wrong: real `quarry serve` processes of the bundle on one real PostgreSQL.
 * A runner paused (SIGSTOP) past its lease and its shard locks, then resumed; a runner's database sessions
 * terminated under it (`pg_terminate_backend`); three runners racing to migrate an empty database.
 */
import { assert, describe, it } from "@effect/vitest"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import pg from "pg"
import { usePostgres } from "../packages/core/test/postgres.js"
import {
  allExecutesAnswered,
  cutBatchInserts,
  cutReads,
  type Node,
  problems,
  query,
  readsCut,
  runRows,
  startNode,
  storePending,
  submitMobyDick,
  useClusterSuite
} from "./clusterNodes.js"
import { call, until } from "./serverProcess.js"
import { mobyDick, sha256File, sleep } from "./support.js"

const adminUrl = usePostgres()

type Health = {
  cluster?: {
    runnerId: string
    ownedShards: number
    executing: Array<string>
    maxActiveRuns: number
    waiting: Array<string>
  }
}

/** Waits until one of `nodes` executes a run that has committed at least 3 batches, and answers it. */
const busyRunner = async (db: string, nodes: ReadonlyArray<Node>): Promise<Node> => {
  let busy: Node | undefined
  await until(
    async () => {
      const rows = await runRows(db)
      busy = nodes.find((node) =>
        rows.some((r) => r.status === "running" && r.committed_batches >= 3 && r.lease_owner?.startsWith(node.owner))
      )
      return busy !== undefined
    },
    60_000,
    "a runner to execute a run"
  )
  return busy!
}

/** The node's sessions frozen inside one of Quarry's commit transactions (it wrote a batch's rows, not yet committed). */
const frozenCommits = (db: string, node: Node) =>
  query<{ pid: number }>(
    db,
    "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND state = 'idle in transaction' " +
      "AND query ~ '^INSERT INTO (batches|entities)'",
    [`quarry 127.0.0.1:${node.runnerPort}`]
  )

/** Sends SIGSTOP while the node is inside a commit transaction (tries again after SIGCONT when it just missed one). */
const pauseInsideCommit = async (db: string, node: Node) => {
  for (let attempt = 0; attempt < 20; attempt++) {
    await until(async () => (await frozenCommits(db, node)).length > 0, 30_000, "a commit transaction")
    node.child.child.kill("SIGSTOP")
    if ((await frozenCommits(db, node)).length > 0) return
    node.child.child.kill("SIGCONT")
  }
  throw new Error("the runner was never paused inside a commit transaction")
}

describe("quarry serve --cluster: failures", () => {
  const suite = useClusterSuite(adminUrl)

  const freshCluster = async (
    name: string,
    count: number,
    env: Readonly<Record<string, string>> = {},
    args: ReadonlyArray<string> = []
  ) => {
    const { db, work } = await suite.workspace(name)
    const started = [await startNode(db, work, env, args)]
    started.push(...await Promise.all(Array.from({ length: count - 1 }, () => startNode(db, work, env, args))))
    suite.nodes.push(...started)
    return { db, work, started }
  }

  /** Three runners executing six runs of Moby-Dick (ids `<prefix>0` to `<prefix>5`), and one that executes a run. */
  const busyCluster = async (name: string, prefix: string) => {
    const cluster = await freshCluster(name, 3)
    const ids = Array.from({ length: 6 }, (_, i) => `${prefix}${i}`)
    for (const runId of ids) await submitMobyDick(cluster.started[0]!, runId)
    return { ...cluster, ids, target: await busyRunner(cluster.db, cluster.started) }
  }

  /** Every run ends `completed` with the reference's digest chain (each batch committed once) and bytes. */
  const assertAllLikeReference = async (db: string, work: string, count: number) => {
    const rows = await runRows(db)
    assert.strictEqual(rows.length, count)
    for (const row of rows) {
      assert.strictEqual(row.status, "completed", `${row.id}: ${JSON.stringify(row)}`)
      assert.strictEqual(row.committed_batches, 67, row.id)
      assert.strictEqual(Number(row.n), 67, row.id)
      assert.strictEqual(row.digest, suite.reference.digest, row.id)
      assert.strictEqual(row.artifact_sha256, suite.reference.sha256, row.id)
      assert.strictEqual(
        sha256File(row.artifact_path ?? path.join(work, `${row.id}.ttl`)),
        suite.reference.sha256,
        row.id
      )
    }
    await allExecutesAnswered(db)
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
    "three runners started at once on an empty database: all come up, every table is created once, all exit 0",
    async () => {
      const { db, work } = await suite.workspace("race")
      const racing = await Promise.all([startNode(db, work), startNode(db, work), startNode(db, work)])
      suite.nodes.push(...racing)
      const health = async (node: Node) => ((await call(node, "GET", "/healthz")).json() as Health).cluster
      await until(
        async () => (await Promise.all(racing.map(health))).reduce((n, c) => n + (c?.ownedShards ?? 0), 0) === 300,
        60_000,
        "the shards to be split over the three"
      )
      // Quarry's migrations and the cluster's, each applied once.
      for (const table of ["effect_sql_migrations", "cluster_migrations"]) {
        const applied = await query<{ migration_id: number; n: string }>(
          db,
          `SELECT migration_id, count(*) AS n FROM ${table} GROUP BY migration_id ORDER BY migration_id`
        )
        assert.isAbove(applied.length, 0, table)
        for (const row of applied) assert.strictEqual(Number(row.n), 1, `${table} ${row.migration_id}`)
      }
      const tables = await query<{ tablename: string }>(
        db,
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
      )
      const names = tables.map((t) => t.tablename)
      for (
        const name of ["runs", "batches", "cluster_messages", "cluster_replies", "cluster_runners", "cluster_locks"]
      ) {
        assert.include(names, name)
      }
      assert.strictEqual(
        (await query<{ n: string }>(db, "SELECT count(*) AS n FROM cluster_runners"))[0]!.n,
        "3"
      )
      for (const node of racing) {
        node.child.child.kill("SIGTERM")
        const exit = await node.child.exited
        assert.strictEqual(exit.code, 0, node.child.stderr)
      }
    },
    120_000
  )

  it(
    "a runner paused (SIGSTOP) inside a commit, past its lease: its runs continue elsewhere; resumed, its late commit is refused",
    async () => {
      // Commits hold their transaction open a while, so that the pause can land inside one. Slots for every run on
      // each runner: a moved run measures failover, not a wait for a survivor's slot (see docs/cluster.md).
      const { db, started, work } = await freshCluster("paused", 3, { QUARRY_TEST_COMMIT_DELAY_MS: "150" }, [
        "--max-active-runs",
        "6"
      ])
      const ids = Array.from({ length: 6 }, (_, i) => `p${i}`)
      for (const runId of ids) await submitMobyDick(started[0]!, runId)

      // Pause a runner inside the commit transaction of a run that has committed a few batches: it holds the run's
      // row lock, which only the server's idle-in-transaction timeout releases.
      const paused = await busyRunner(db, started)
      await pauseInsideCommit(db, paused)
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
        const logs = started.map((n) => `--- ${n.owner}${n === paused ? " (paused)" : ""}\n${problems(n)}`)
        throw new Error(`${String(error)}: ${JSON.stringify(await runRows(db))}\n${logs.join("\n")}`)
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

  it(
    "a runner's shard-lock refresh stalled past its deadline: @effect/cluster stops its runs, they continue, every run completes once",
    async () => {
      const { db, ids, started, target, work } = await busyCluster("stalled", "l")
      // The refresh first updates the runner's own row: holding that row makes it time out (2 s), as a slow database
      // would, so the runner calls its lock storage unhealthy and interrupts its runs.
      const unhealthy = () => target.child.stderr.split("Shard lock storage is unhealthy").length - 1
      const before = unhealthy()
      const locker = new pg.Client({ connectionString: db })
      await locker.connect()
      await locker.query("BEGIN")
      await locker.query("SELECT 1 FROM cluster_runners WHERE address = $1 FOR UPDATE", [
        `127.0.0.1:${target.runnerPort}`
      ])
      await until(() => unhealthy() > before, 30_000, "the lock storage to fail")
      await locker.query("COMMIT")
      await locker.end()

      await allEnded(db, started, 240_000)
      await assertAllLikeReference(db, work, ids.length)
      assert.match(target.child.stderr, /Shard lock storage has recovered/)
    },
    400_000
  )

  it(
    "a runner's database sessions terminated (pg_terminate_backend) three times mid-run: it reconnects, every run completes",
    async () => {
      const { db, ids, started, target, work } = await busyCluster("terminated", "q")
      // Each runner names its sessions `quarry <runner host:port>`: all of this one's, its shard lock's included.
      const terminated: Array<number> = []
      for (let i = 0; i < 3; i++) {
        const killed = await query<{ pid: number }>(
          db,
          "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
          [`quarry 127.0.0.1:${target.runnerPort}`]
        )
        assert.isAbove(killed.length, 0)
        terminated.push(killed.length)
        await sleep(2_000)
      }
      console.log(`cluster pg_terminate_backend: ${terminated.join(", ")} sessions terminated`)

      await allEnded(db, started, 240_000)
      await assertAllLikeReference(db, work, ids.length)
      // The runner lived through it, and holds shards again (its lock connection was rebuilt).
      assert.isNull(target.child.child.exitCode)
      await until(
        async () => (((await call(target, "GET", "/healthz")).json() as Health).cluster?.ownedShards ?? 0) > 0,
        30_000,
        "the runner to own shards"
      )
    },
    400_000
  )

  it(
    "--max-active-runs 1: each runner executes one run at a time, the others wait; any node serves any artifact",
    async () => {
      // Each node in its own directory, as on two machines: an artifact is written where its run finished.
      const { db, work } = await suite.workspace("slots-a")
      const dirs = [work, path.join(suite.dir, "slots-b")]
      fs.mkdirSync(dirs[1]!)
      const pair = [await startNode(db, dirs[0]!, {}, ["--max-active-runs", "1"])]
      pair.push(await startNode(db, dirs[1]!, {}, ["--max-active-runs", "1"]))
      suite.nodes.push(...pair)
      const ids = Array.from({ length: 5 }, (_, i) => `m${i}`)
      for (const runId of ids) await submitMobyDick(pair[0]!, runId)

      let mostAtOnce = 0
      let sawWaiting = 0
      await until(
        async () => {
          const rows = await runRows(db)
          for (const node of pair) {
            const here = rows.filter((r) => r.status === "running" && r.lease_owner?.startsWith(node.owner) === true)
            mostAtOnce = Math.max(mostAtOnce, here.length)
            const health = ((await call(node, "GET", "/healthz")).json() as Health).cluster!
            assert.strictEqual(health.maxActiveRuns, 1)
            assert.isAtMost(health.executing.length, 1)
            sawWaiting = Math.max(sawWaiting, health.waiting.length)
          }
          return rows.every((r) => r.status === "completed" || r.status === "failed")
        },
        300_000,
        "every run to end"
      )
      assert.strictEqual(mostAtOnce, 1)
      assert.isAbove(sawWaiting, 0)
      const rows = await runRows(db)
      for (const row of rows) {
        assert.strictEqual(row.status, "completed", row.id)
        assert.strictEqual(row.digest, suite.reference.digest, row.id)
      }

      // The artifact from the node that did not finish the run, which merges it again from the committed rows (the
      // finishing node's file is moved away first, as if that node were another machine).
      for (const row of rows) {
        const finishedOn = dirs.findIndex((d) => row.artifact_path!.startsWith(d))
        assert.notStrictEqual(finishedOn, -1, row.artifact_path!)
        assert.strictEqual(sha256File(row.artifact_path!), suite.reference.sha256, row.id)
        fs.renameSync(row.artifact_path!, `${row.artifact_path}.moved`)
        const other = pair[1 - finishedOn]!
        const response = await fetch(`${other.url}/v1/runs/${row.id}/artifact`)
        assert.strictEqual(response.status, 200, row.id)
        const body = Buffer.from(await response.arrayBuffer())
        const digest = createHash("sha256").update(body).digest("hex")
        assert.strictEqual(digest, suite.reference.sha256, row.id)
        assert.strictEqual(response.headers.get("etag"), `"${suite.reference.sha256}"`)
      }
    },
    400_000
  )

  it(
    "--max-queued-runs 2: with two runs pending in the cluster, a third submission is 429 and stores nothing",
    async () => {
      // One slot and slow batches: the first run executes for a minute, the next ones stay pending.
      const { db, started: [node] } = await freshCluster("queued", 1, { QUARRY_TEST_EXTRACTOR_DELAY_MS: "1000" }, [
        "--max-active-runs",
        "1",
        "--max-queued-runs",
        "2"
      ])
      await submitMobyDick(node, "k0")
      await until(async () => (await runRows(db)).some((r) => r.id === "k0" && r.status === "running"), 60_000, "k0")
      await submitMobyDick(node, "k1")
      await submitMobyDick(node, "k2")
      const refused = await call(node, "POST", "/v1/runs", {
        input: fs.readFileSync(mobyDick.input, "utf8"),
        runId: "k3",
        extractor: "test-slow",
        chunking: { windowSize: 2000, batchSize: 10 }
      })
      assert.strictEqual(refused.status, 429, refused.text)
      assert.strictEqual((refused.json() as { error: { tag: string } }).error.tag, "QueueFull")
      assert.deepStrictEqual((await runRows(db)).map((r) => r.id), ["k0", "k1", "k2"])
      for (const runId of ["k0", "k1", "k2"]) await call(node, "POST", `/v1/runs/${runId}/cancel`)
    },
    120_000
  )

  it(
    "a run stored pending without its Execute message (its node died between the two) is sent by a scan and completes",
    async () => {
      const { db, started, work } = await freshCluster("pending", 2)
      // What a node that died right after storing the submission leaves: the run and its queued execution, no message.
      await storePending(db, work, "orphan")
      assert.strictEqual((await runRows(db))[0]!.status, "pending")
      await allEnded(db, started, 120_000)
      await assertAllLikeReference(db, work, 1)
      assert.isTrue(started.some((node) => /had no Execute message/.test(node.child.stderr)))
    },
    200_000
  )

  it(
    "a 4 s outage of the database (a PostgreSQL restart) under two runners executing runs: every run completes",
    async () => {
      const { db, started, work } = await freshCluster("outage", 2)
      const ids = ["o0", "o1", "o2"]
      for (const id of ids) await submitMobyDick(started[0]!, id)
      await until(
        async () => (await runRows(db)).filter((r) => r.committed_batches >= 3).length >= 2,
        60_000,
        "two runs to commit three batches"
      )
      const name = new URL(db).pathname.slice(1)
      await query(adminUrl(), `ALTER DATABASE "${name}" ALLOW_CONNECTIONS false`)
      await query(adminUrl(), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", [name])
      await sleep(4_000)
      await query(adminUrl(), `ALTER DATABASE "${name}" ALLOW_CONNECTIONS true`)
      await until(
        async () => (await runRows(db)).every((r) => r.status === "completed"),
        180_000,
        "every run to complete"
      ).catch(async (error) => {
        throw new Error(`${String(error)}: ${JSON.stringify(await runRows(db))}\n${started.map(problems).join("\n")}`)
      })
      await assertAllLikeReference(db, work, ids.length)
    },
    300_000
  )

  it(
    "a run whose commit loses its connection beyond the store's retries is resumed by its runner: it completes",
    async () => {
      const { db, started, work } = await freshCluster("commit", 1)
      // The first commit lands; the next 12 each lose their session: more than the store's retries of one commit
      // (6 attempts), so the run fails on its second commit, and its resumed execution commits after a few retries.
      await cutBatchInserts(db, 2, 13)
      await submitMobyDick(started[0]!, "resumed")
      // It is `failed` for a moment before it resumes: wait for its completion.
      await until(async () => (await runRows(db))[0]?.status === "completed", 120_000, "the run to complete")
      await assertAllLikeReference(db, work, 1)
      assert.match(
        started[0]!.child.stderr,
        /the database failed the execution, resuming it: storage failed during commitBatch \(connection\)/
      )
    },
    200_000
  )

  it(
    "an execution whose reads fail on the database before its claim is tried again, not answered: the run completes",
    async () => {
      const { db, started, work } = await freshCluster("unstarted", 1)
      await storePending(db, work, "unstarted")
      // The next 12 reads of the ontology each end their own session: more than the store's retries of one read (6
      // attempts), so the first execution fails before its claim, and so does the second.
      await cutReads(db, "ontologies", 12)
      await allEnded(db, started, 120_000)
      await assertAllLikeReference(db, work, 1)
      assert.isAbove(await readsCut(db), 12, "every cut read was tried")
      assert.match(started[0]!.child.stderr, /failed on the database before its claim: trying again/)
    },
    200_000
  )
})
