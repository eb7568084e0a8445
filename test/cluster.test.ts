/**
 * `quarry serve --cluster`: three real server processes of the bundle, runners of one cluster on one PostgreSQL.
 * Twelve runs submitted to one node spread over the runners; one runner SIGKILLed mid-way (the `node` process
 * itself): every run completes on the survivors, each artifact byte-identical to the same run on SQLite in one
 * process, each run's digest chain the reference's (no batch committed twice or skipped). The failover time is
 * recorded. A SIGTERM rolling restart of every runner while runs execute: each drained runner stops its runs after
 * their in-flight commits and the survivors continue them, with no batch extracted twice (extractor calls counted).
 * A run whose shard moves to a joining runner in the middle of a long batch stops within its grace and continues there.
 */
import { assert, describe, it } from "@effect/vitest"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { freePort, usePostgres } from "../packages/core/test/postgres.js"
import * as Nodes from "./clusterNodes.js"
import { allExecutesAnswered, type Node, problems, query, runRows, submitMobyDick } from "./clusterNodes.js"
import { call, readEvents, until } from "./serverProcess.js"
import { run, sha256File } from "./support.js"

const adminUrl = usePostgres()

// Slots for every run (12): a moved run must not wait for a survivor's slot (the failover is what is measured).
const startNode = (db: string, dir: string, env: Readonly<Record<string, string>> = {}, runnerPort?: number) =>
  Nodes.startNode(db, dir, { QUARRY_MAX_ACTIVE_RUNS: "12", ...env }, [], runnerPort)

describe("quarry serve --cluster", () => {
  const suite = Nodes.useClusterSuite(adminUrl)

  it(
    "a runner's drain: the event stream of one of its runs, read through another node, goes on to the end of the execution that continues it",
    async () => {
      const { db, work } = await suite.workspace("drained-stream")
      // Slow batches: the run executes for about 20 s, so the drain lands in the middle of it.
      const env = { QUARRY_TEST_EXTRACTOR_DELAY_MS: "300" }
      const nodes = [await startNode(db, work, env), await startNode(db, work, env)]
      suite.nodes.push(...nodes)
      const [reader, drained] = [nodes[0]!, nodes[1]!]
      const runId = (await Nodes.placeRunIds(nodes, "s", 1)).get(drained)![0]!
      await submitMobyDick(reader, runId)
      const row = async () => (await runRows(db)).find((r) => r.id === runId)
      await until(async () => ((await row())?.committed_batches ?? 0) >= 2, 60_000, "the run to commit on its runner")
      const events = readEvents(reader, runId)
      await Nodes.stopNode(drained)
      // Interrupted by the drain, the run is no end to a client: the survivor continues it (it ended the stream with
      // run.interrupted, and a reconnect with that event's id got 204, which stops an EventSource for good).
      const names = (await events).map((e) => e.event)
      assert.deepStrictEqual([names[0], names.at(-1)], ["run.started", "run.completed"], names.join(", "))
      assert.notInclude(names, "run.interrupted")
      assert.strictEqual((await row())!.digest, suite.reference.digest)
    },
    180_000
  )

  it("refuses --cluster with a SQLite database (exit 2, nothing written)", async () => {
    const result = await run(["serve", "--cluster", "--db", path.join(suite.dir, "single.db")])
    assert.strictEqual(result.code, 2, result.stderr)
    assert.include(result.stderr, "--cluster needs a PostgreSQL database")
    assert.isFalse(fs.existsSync(path.join(suite.dir, "single.db")))
  })

  it("refuses an empty --runner-host or QUARRY_RUNNER_HOST (exit 2, nothing written)", async () => {
    const { db, work } = await suite.workspace("blank-host")
    for (const [args, env] of [[["--runner-host", ""], {}], [[], { QUARRY_RUNNER_HOST: " " }]] as const) {
      const result = await run(["serve", "--cluster", "--db", db, "--port", "0", ...args], { env, cwd: work })
      assert.strictEqual(result.code, 2, result.stderr)
      assert.include(result.stderr, "runner-host is empty; pass the address other runners reach this one at")
    }
    assert.deepStrictEqual(await query(db, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"), [])
  })

  it(
    "three runners, 12 runs submitted to one node, one runner SIGKILLed mid-way: every run completes, byte-identical to SQLite",
    async () => {
      const { db, work } = await suite.workspace("cluster")
      // The first node migrates Quarry's and the cluster's tables; the others start on a migrated database.
      const nodes = [await startNode(db, work)]
      nodes.push(...await Promise.all([startNode(db, work), startNode(db, work)]))
      suite.nodes.push(...nodes)
      const [entry, victim] = [nodes[0]!, nodes[1]!]

      // The 300 shards are split over the three runners; each node says which runner it is.
      type Health = { cluster?: { runnerId: string; ownedShards: number; executing: Array<string> } }
      const health = async (node: Node) => ((await call(node, "GET", "/healthz")).json() as Health).cluster
      await until(
        async () => {
          const all = await Promise.all(nodes.map(health))
          return all.every((c) => (c?.ownedShards ?? 0) > 0) && all.reduce((n, c) => n + c!.ownedShards, 0) === 300
        },
        60_000,
        "the shards to be balanced"
      )
      for (const node of nodes) assert.strictEqual((await health(node))?.runnerId, `127.0.0.1:${node.runnerPort}`)
      const metrics = (await call(entry, "GET", "/metrics")).text
      assert.match(metrics, new RegExp(`quarry_cluster_owned_shards\\{runner="127.0.0.1:${entry.runnerPort}"\\} \\d+`))

      // Four runs for each runner (fixed ids would now and then leave one without any).
      const ids = await Nodes.spreadRunIds(nodes, "c", 4)
      for (const runId of ids) await submitMobyDick(entry, runId)

      // Every runner executes some of the runs (the lease owner names the runner).
      const owners = async () => new Set((await runRows(db)).map((r) => r.lease_owner?.split("/")[0]).filter(Boolean))
      await until(async () => (await owners()).size === 3, 60_000, "the runs to spread over the three runners")

      const victimId = `127.0.0.1:${victim.runnerPort}/`
      const victimRuns = async () =>
        (await runRows(db)).filter((r) => r.status === "running" && r.lease_owner?.startsWith(victimId) === true)
      await until(
        async () => (await victimRuns()).some((r) => r.committed_batches >= 5),
        60_000,
        "the victim to commit some batches"
      )
      const taken = (await victimRuns()).map((r) => r.id)
      // The victim's /healthz lists the runs it executes.
      const executing = (await health(victim))?.executing ?? []
      for (const runId of taken) assert.include(executing, runId)
      victim.child.child.kill("SIGKILL")
      const killedAt = Date.now()
      await victim.child.exited

      // Failover: every run the victim held is executing elsewhere (or done).
      await until(
        async () =>
          (await runRows(db)).filter((r) => taken.includes(r.id)).every((r) =>
            r.status !== "running" || r.lease_owner?.startsWith(victimId) === false
          ),
        60_000,
        "the victim's runs to move"
      )
      const failoverMs = Date.now() - killedAt
      console.log(`cluster failover: ${taken.length} runs moved ${failoverMs} ms after the SIGKILL`)

      await until(
        async () => (await runRows(db)).every((r) => r.status === "completed" || r.status === "failed"),
        240_000,
        "every run to end"
      )
      for (const row of await runRows(db)) {
        assert.strictEqual(row.status, "completed", `${row.id}: ${JSON.stringify(row)}`)
        assert.strictEqual(row.committed_batches, 67)
        assert.strictEqual(Number(row.n), 67)
        // The chained digest of the commits: the same as one uninterrupted run's, so no batch came twice.
        assert.strictEqual(row.digest, suite.reference.digest, row.id)
        assert.strictEqual(sha256File(path.join(work, `${row.id}.ttl`)), suite.reference.sha256, row.id)
      }
      await allExecutesAnswered(db)
      // The run JSON on any node says who executed it last (its lease is released at the end).
      const shown = (await call(nodes[2]!, "GET", `/v1/runs/${ids[0]}`)).json() as { status: string }
      assert.strictEqual(shown.status, "completed")

      // A run deleted and submitted again under its id is a new run: it executes (its first Execute was not taken
      // for the deleted run's, answered long ago).
      assert.strictEqual((await call(nodes[2]!, "DELETE", `/v1/runs/${ids[0]}`)).status, 204)
      await submitMobyDick(entry, ids[0]!)
      await until(
        async () => (await runRows(db)).find((r) => r.id === ids[0])?.status === "completed",
        120_000,
        "the run submitted again to complete"
      )
      assert.strictEqual((await runRows(db)).find((r) => r.id === ids[0])!.digest, suite.reference.digest)
      await allExecutesAnswered(db)
    },
    400_000
  )

  it(
    "a node's output is JSON lines only, through a run and a shard handover (pg's queueing notice logged once as a warning)",
    async () => {
      const { db, work } = await suite.workspace("json-lines")
      const first = await startNode(db, work)
      suite.nodes.push(first)
      type Health = { cluster?: { ownedShards: number } }
      const shards = async (node: Node) =>
        ((await call(node, "GET", "/healthz")).json() as Health).cluster?.ownedShards ?? 0
      await until(async () => (await shards(first)) === 300, 60_000, "the first runner to own every shard")
      // The first runner gives up about half of its shards at once: @effect/cluster releases each in a fiber of its
      // own, all over one reserved connection, where pg queues them and says so once (a DeprecationWarning).
      const second = await startNode(db, work)
      suite.nodes.push(second)
      await until(
        async () => (await shards(first)) > 0 && (await shards(second)) > 0,
        60_000,
        "the shards to be split over the two runners"
      )
      await submitMobyDick(first, "lines")
      await until(
        async () => (await runRows(db)).find((r) => r.id === "lines")?.status === "completed",
        120_000,
        "the run to complete"
      )
      for (const node of [first, second]) {
        node.child.child.kill("SIGTERM")
        assert.strictEqual((await node.child.exited).code, 0, node.child.stderr)
      }
      const notices = (node: Node) =>
        node.child.stderr.split("\n").filter((line) => line.includes("client is already executing a query"))
      const json = (line: string) => {
        try {
          JSON.parse(line)
          return true
        } catch {
          return false
        }
      }
      for (const node of [first, second]) {
        for (const text of [node.child.stdout, node.child.stderr]) {
          assert.deepStrictEqual(text.split("\n").filter((line) => line !== "" && !json(line)), [], node.owner)
        }
        assert.isAtMost(notices(node).length, 1, node.child.stderr)
      }
      // The runner that gave its shards up logged pg's notice once, as a warning of its JSON log.
      const [notice] = notices(first)
      assert.isDefined(notice, first.child.stderr)
      const logged = JSON.parse(notice!) as { logLevel: string; annotations: Record<string, unknown> }
      assert.strictEqual(logged.logLevel, "WARN")
      assert.strictEqual(logged.annotations["package"], "pg")
    },
    240_000
  )

  it(
    "a resume is 202 with queuePosition null, which the OpenAPI document explains for a cluster, and the run executes",
    async () => {
      const { db, work } = await suite.workspace("resume")
      const nodes = [await startNode(db, work)]
      nodes.push(await startNode(db, work))
      suite.nodes.push(...nodes)
      const [entry, other] = [nodes[0]!, nodes[1]!]
      await submitMobyDick(entry, "again")
      const row = async () => (await runRows(db)).find((r) => r.id === "again")!
      await until(async () => (await row()).committed_batches >= 1, 60_000, "the run to commit a batch")
      assert.strictEqual((await call(other, "POST", "/v1/runs/again/cancel")).status, 200)
      await until(async () => (await row()).status === "cancelled", 60_000, "the run to be cancelled")

      // Accepted: its Execute message is stored. The body shows it pending until its runner claims it (stored
      // cancelled until then), running once claimed; it has no place in a queue to show.
      const resumed = await call(other, "POST", "/v1/runs/again/resume")
      assert.strictEqual(resumed.status, 202, resumed.text)
      const answer = resumed.json() as { status: string; queuePosition: number | null }
      assert.include(["pending", "running"], answer.status)
      assert.strictEqual(answer.queuePosition, null)
      type Spec = {
        components: { schemas: { Run: { properties: { queuePosition: { description?: string } } } } }
      }
      const spec = (await call(entry, "GET", "/openapi.json")).json() as Spec
      const described = spec.components.schemas.Run.properties.queuePosition.description
      assert.include(described ?? "", "always with quarry serve --cluster")

      await until(async () => (await row()).status === "completed", 120_000, "the resumed run to complete")
      assert.strictEqual((await row()).digest, suite.reference.digest)
      assert.strictEqual(sha256File(path.join(work, "again.ttl")), suite.reference.sha256)
      await allExecutesAnswered(db)
    },
    240_000
  )

  it(
    "nodes in different directories: a run's artifact lands in the directory of the runner that finished it; a run stored with an absolute path is written there",
    async () => {
      const { db, work } = await suite.workspace("directories")
      const dirs = [path.join(work, "a"), path.join(work, "b")]
      for (const dir of dirs) fs.mkdirSync(dir)
      const nodes = [await startNode(db, dirs[0]!)]
      nodes.push(await startNode(db, dirs[1]!))
      suite.nodes.push(...nodes)
      const [entry, other] = [nodes[0]!, nodes[1]!]
      const placed = await Nodes.placeRunIds(nodes, "d", 2)
      const [onEntry, onOther] = [placed.get(entry)!, placed.get(other)!]
      // Both submitted to the first node, whose directory the second node does not use.
      const submitted = [onEntry[0]!, onOther[0]!]
      for (const runId of submitted) await submitMobyDick(entry, runId)
      // A run stored as before: its artifact's absolute path, planned by the first node, executed by the second.
      const stored = onOther[1]!
      await Nodes.storePending(db, dirs[0]!, stored)

      await until(
        async () => (await runRows(db)).every((r) => r.status === "completed" || r.status === "failed"),
        120_000,
        "every run to end"
      )
      const rows = new Map((await runRows(db)).map((row) => [row.id, row]))
      const plans = await Nodes.query<{ id: string; output_path: string }>(db, "SELECT id, output_path FROM runs")
      const outputs = new Map(plans.map((plan) => [plan.id, plan.output_path]))
      for (
        const [runId, dir, elsewhere] of [
          [submitted[1]!, dirs[1]!, dirs[0]!],
          [submitted[0]!, dirs[0]!, dirs[1]!]
        ] as const
      ) {
        const row = rows.get(runId)!
        assert.strictEqual(row.status, "completed", `${runId}: ${JSON.stringify(row)}`)
        assert.strictEqual(row.digest, suite.reference.digest, runId)
        // Written into the finishing runner's directory, the plan naming it relative to the artifacts directory.
        assert.strictEqual(row.artifact_path, path.join(dir, `${runId}.ttl`))
        assert.strictEqual(sha256File(row.artifact_path!), suite.reference.sha256, runId)
        assert.isFalse(fs.existsSync(path.join(elsewhere, `${runId}.ttl`)), runId)
        assert.strictEqual(outputs.get(runId), `${runId}.ttl`)
      }
      const kept = rows.get(stored)!
      assert.strictEqual(kept.status, "completed", JSON.stringify(kept))
      assert.strictEqual(outputs.get(stored), path.join(dirs[0]!, `${stored}.ttl`))
      assert.strictEqual(kept.artifact_path, path.join(dirs[0]!, `${stored}.ttl`))
      assert.strictEqual(sha256File(kept.artifact_path!), suite.reference.sha256)
      // `quarry status` shows the relative plan as stored, with where it is resolved, and the file written; the API
      // shows neither path; an absolute plan gets no note.
      const moved = submitted[1]!
      const shown = await run(["status", moved, "--db", db], { cwd: work })
      assert.strictEqual(shown.code, 0, shown.stderr)
      const value = (key: string) =>
        shown.stdout.split("\n").find((line) => line.startsWith(`${key} `))?.slice(key.length).trimStart()
      assert.strictEqual(
        value("output"),
        `${moved}.ttl (turtle); relative: the cluster runner that finishes the run writes it into its working ` +
          "directory, quarry resume into the current one"
      )
      const written = path.join(dirs[1]!, `${moved}.ttl`)
      assert.strictEqual(value("artifact"), `${written} (turtle, ${fs.statSync(written).size} bytes)`)
      type Shown = { plan: { output: { path: string | null } }; artifact: { path: string | null } }
      const json = JSON.parse((await run(["status", moved, "--db", db, "--json"], { cwd: work })).stdout) as Shown
      assert.strictEqual(json.plan.output.path, `${moved}.ttl`)
      assert.strictEqual(json.artifact.path, written)
      const api = (await call(other, "GET", `/v1/runs/${moved}`)).json() as Shown
      assert.deepStrictEqual([api.plan.output.path, api.artifact.path], [null, null])
      const absolute = await run(["status", stored, "--db", db], { cwd: work })
      assert.notInclude(absolute.stdout, "relative:")
      // Any node serves any artifact: the first merges the second's again (its file is elsewhere, as on another
      // machine, once moved away).
      fs.renameSync(rows.get(submitted[1]!)!.artifact_path!, path.join(work, "moved.ttl"))
      const response = await fetch(`${entry.url}/v1/runs/${submitted[1]}/artifact`)
      assert.strictEqual(response.status, 200)
      const digest = createHash("sha256").update(Buffer.from(await response.arrayBuffer())).digest("hex")
      assert.strictEqual(digest, suite.reference.sha256)
      await allExecutesAnswered(db)
    },
    240_000
  )

  it(
    "a SIGTERM rolling restart of every runner while runs execute: no batch extracted twice, every run completes",
    async () => {
      const { db, work } = await suite.workspace("rolling")
      const callLog = path.join(work, "calls.log")
      const env = { QUARRY_TEST_CALL_LOG: callLog, QUARRY_TEST_EXTRACTOR_DELAY_MS: "100" }
      const live: Array<Node> = [await startNode(db, work, env)]
      live.push(...await Promise.all([startNode(db, work, env), startNode(db, work, env)]))
      suite.nodes.push(...live)

      const ids = await Nodes.spreadRunIds(live, "t", 4)
      for (const runId of ids) await submitMobyDick(live[0]!, runId)

      // Restart each of the three original runners in turn, each while it executes a run that has committed batches.
      const pending = [...live]
      let restarts = 0
      while (pending.length > 0) {
        let target: Node | undefined
        await until(
          async () => {
            const rows = await runRows(db)
            target = pending.find((node) =>
              rows.some((r) =>
                r.status === "running" && r.committed_batches >= 1 &&
                r.lease_owner?.startsWith(`127.0.0.1:${node.runnerPort}/`) === true
              )
            )
            return target !== undefined || rows.every((r) => r.status === "completed")
          },
          120_000,
          "a runner to execute a run"
        )
        if (target === undefined) break
        pending.splice(pending.indexOf(target), 1)
        target.child.child.kill("SIGTERM")
        const exit = await target.child.exited
        assert.strictEqual(exit.code, 0, target.child.stderr)
        restarts++
        suite.nodes.push(await startNode(db, work, env))
      }

      await until(
        async () => (await runRows(db)).every((r) => r.status === "completed" || r.status === "failed"),
        120_000,
        "every run to end"
      ).catch(async (error) => {
        const logs = suite.nodes.map((n) => n.child.stderr.split("\n").filter((l) => /WARN|ERROR/.test(l)).join("\n"))
        throw new Error(`${String(error)}: ${JSON.stringify(await runRows(db))}\n${logs.join("\n")}`)
      })
      for (const row of await runRows(db)) {
        assert.strictEqual(row.status, "completed", `${row.id}: ${JSON.stringify(row)}`)
        assert.strictEqual(row.digest, suite.reference.digest, row.id)
        assert.strictEqual(sha256File(path.join(work, `${row.id}.ttl`)), suite.reference.sha256, row.id)
      }
      await allExecutesAnswered(db)
      // All three original runners were restarted while they executed runs.
      assert.strictEqual(restarts, 3)
      // Each batch index was extracted once per run: 12 runs x 67 batches, no call repeated by a handover.
      const calls = fs.readFileSync(callLog, "utf8").trim().split("\n").map((line) => line.split(" ")[1])
      const perBatch = new Map<string, number>()
      for (const batch of calls) perBatch.set(batch!, (perBatch.get(batch!) ?? 0) + 1)
      assert.strictEqual(perBatch.size, 67)
      for (const [batch, n] of perBatch) assert.strictEqual(n, ids.length, `batch ${batch} extracted ${n} times`)
    },
    600_000
  )

  it(
    "a run whose shard moves to a joining runner is stopped within the grace, not at its next commit, and continues there",
    async () => {
      const { db, work } = await suite.workspace("moving")
      // Batches far longer than the test: the run reaches no commit while its shard moves. A grace of 1 s (30 s by
      // default) is what bounds its stop.
      const env = { QUARRY_TEST_EXTRACTOR_DELAY_MS: "600000", QUARRY_TEST_STOP_GRACE_MS: "1000" }
      const first = await startNode(db, work, env)
      suite.nodes.push(first)
      const joinerPort = await freePort()
      const portOf = Nodes.runnerPortOf([first.runnerPort, joinerPort])
      let n = 0
      while (portOf(`m${n}`) !== joinerPort) n++
      const runId = `m${n}`
      await submitMobyDick(first, runId)
      const row = async () => (await runRows(db)).find((r) => r.id === runId)
      await until(async () => (await row())?.lease_owner?.startsWith(first.owner) === true, 60_000, "the first claim")

      const joiner = await startNode(db, work, env, joinerPort)
      suite.nodes.push(joiner)
      await until(
        async () => (await row())?.lease_owner?.startsWith(joiner.owner) === true,
        90_000,
        "the joining runner to claim the run"
      ).catch(async (error) => {
        throw new Error(`${String(error)}: ${JSON.stringify(await row())}\n${problems(first)}`)
      })
      assert.deepInclude(await row(), { status: "running", committed_batches: 0 })
      // Nothing would end these runs' batches: stopped at once, not drained.
      for (const node of [first, joiner]) node.child.child.kill("SIGKILL")
      await Promise.all([first.child.exited, joiner.child.exited])
    },
    180_000
  )
})
