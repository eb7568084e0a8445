/**
 * Helpers for the end-to-end tests of `quarry serve --cluster`: real `quarry serve --cluster` processes of the
 * bundle on one PostgreSQL database, and direct reads of its tables with `pg`. The tests of one `quarry serve` on
 * PostgreSQL use its helpers for runs and tables too.
 */
import { RunnerAddress } from "@effect/cluster"
import * as CapitalizedExtractor from "@quarry/core/CapitalizedExtractor"
import * as DefaultOntology from "@quarry/core/DefaultOntology"
import type * as Extractor from "@quarry/core/Extractor"
import { RunId } from "@quarry/core/Run"
import * as Postgres from "@quarry/testkit/Postgres"
import { Hash, HashRing } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll } from "vitest"
import { createDatabase, dropDatabase, freePort, storeRun } from "../packages/core/test/postgres.js"
import { call, type Server, until } from "./serverProcess.js"
import { makeDir, mobyDick, referenceRun, removeDir, start } from "./support.js"

/** Runs one statement on its own connection and answers its rows. */
export const query = Postgres.query

/** A node: an API server and a runner. */
export interface Node extends Server {
  readonly runnerPort: number
  /** The prefix of the lease owner of the runs it executes (`127.0.0.1:<runner port>/`). */
  readonly owner: string
}

/** Starts one `quarry serve --cluster` in `dir` (its artifacts go there) and waits until it listens. */
export const startNode = async (
  db: string,
  dir: string,
  env: Readonly<Record<string, string>> = {},
  args: ReadonlyArray<string> = [],
  port?: number
): Promise<Node> => {
  const runnerPort = port ?? await freePort()
  const child = start(
    ["serve", "--cluster", "--db", db, "--port", "0", "--runner-port", String(runnerPort), "--json", ...args],
    { cwd: dir, env: { QUARRY_TEST_EXTRACTOR_DELAY_MS: "60", ...env } }
  )
  await child.waitFor((stdout) => stdout.includes("server.listening")).catch((error) => {
    child.child.kill("SIGKILL")
    throw error
  })
  const listening = JSON.parse(child.stdout.split("\n")[0]!) as { port: number }
  return {
    child,
    port: listening.port,
    url: `http://127.0.0.1:${listening.port}`,
    runnerPort,
    owner: `127.0.0.1:${runnerPort}/`
  }
}

/** The shards of the default group (@effect/cluster's default, which the server keeps). */
const shardsPerGroup = 300

/**
 * Run ids that the cluster places `perRunner` on each of `nodes` (`<prefix>0`, `<prefix>1`, ... skipping those that
 * would crowd a runner), by node. A run executes on its shard's runner, and runner ports differ from run to run: 12
 * fixed ids left one of 3 runners without a run for 1.5% of 2,000 random port triples. A test that needs every runner
 * busy picks its ids here. The placement is computed as @effect/cluster computes it (the run id's hash picks the
 * shard, a hash ring of the runners' addresses the shard's runner); this waits until each node owns the shards
 * computed for it, so the two cannot disagree.
 */
export const placeRunIds = async (nodes: ReadonlyArray<Node>, prefix: string, perRunner: number) => {
  const runnerOf = shardRunners(nodes.map((n) => n.runnerPort)).map((port) => nodes.find((n) => n.runnerPort === port)!)
  const owned = (node: Node) =>
    call(node, "GET", "/healthz").then((r) => (r.json() as { cluster?: { ownedShards: number } }).cluster?.ownedShards)
  await until(
    async () =>
      (await Promise.all(nodes.map(owned))).every((n, i) => n === runnerOf.filter((r) => r === nodes[i]).length),
    60_000,
    "each runner to own the shards computed for it"
  )
  const ids = new Map(nodes.map((node) => [node, [] as Array<string>]))
  for (let i = 0; [...ids.values()].some((placed) => placed.length < perRunner); i++) {
    const runId = `${prefix}${i}`
    const placed = ids.get(runnerOf[Math.abs(Hash.string(runId) % shardsPerGroup)]!)!
    if (placed.length < perRunner) placed.push(runId)
  }
  return ids
}

/** The runner port of each shard once runners on `ports` share the shards (@effect/cluster's hash ring). */
const shardRunners = (ports: ReadonlyArray<number>): Array<number> => {
  const ring = HashRing.make<RunnerAddress.RunnerAddress>()
  for (const port of ports) HashRing.add(ring, RunnerAddress.make("127.0.0.1", port), { weight: 1 })
  return HashRing.getShards(ring, shardsPerGroup)!.map((a) => a.port)
}

/** The runner port a run would execute on once runners on `ports` share the shards. */
export const runnerPortOf = (ports: ReadonlyArray<number>) => {
  const runners = shardRunners(ports)
  return (runId: string) => runners[Math.abs(Hash.string(runId) % shardsPerGroup)]!
}

/** The ids of `placeRunIds`, in one list ordered by their number. */
export const spreadRunIds = async (nodes: ReadonlyArray<Node>, prefix: string, perRunner: number) =>
  [...(await placeRunIds(nodes, prefix, perRunner)).values()].flat().sort((a, b) =>
    Number(a.slice(prefix.length)) - Number(b.slice(prefix.length))
  )

/** Stops a node: SIGCONT (in case it was paused), SIGTERM (it drains), SIGKILL if still there after 20 s. */
export const stopNode = async (node: Node) => {
  if (node.child.child.exitCode !== null || node.child.child.signalCode !== null) return
  node.child.child.kill("SIGCONT")
  node.child.child.kill("SIGTERM")
  const timer = setTimeout(() => node.child.child.kill("SIGKILL"), 20_000)
  await node.child.exited
  clearTimeout(timer)
}

/** A run's row as the tests read it. */
export interface RunRow {
  readonly id: string
  readonly status: string
  readonly committed_batches: number
  readonly lease_owner: string | null
  readonly digest: string
  readonly artifact_sha256: string | null
  readonly artifact_path: string | null
  /** The number of stored batch rows. */
  readonly n: string
}

/** Every run's row, with its number of batch rows. */
export const runRows = (db: string) =>
  query<RunRow>(
    db,
    "SELECT id, status, committed_batches, lease_owner, digest, artifact_sha256, artifact_path, " +
      "(SELECT count(*) FROM batches b WHERE b.run_id = r.id) AS n FROM runs r ORDER BY id"
  )

/** Submits Moby-Dick as `runId` (67 batches with the slow test extractor) to a node. */
export const submitMobyDick = async (node: Server, runId: string) => {
  const submitted = await call(node, "POST", "/v1/runs", {
    input: fs.readFileSync(mobyDick.input, "utf8"),
    runId,
    extractor: "test-slow",
    chunking: { windowSize: 2000, batchSize: 10 }
  })
  if (submitted.status !== 202) throw new Error(`submission of ${runId}: ${submitted.status} ${submitted.text}`)
}

/** The warnings and errors a node logged (JSON log lines on stderr). */
export const problems = (node: Node) => node.child.stderr.split("\n").filter((l) => /WARN|ERROR/.test(l)).join("\n")

/**
 * Waits until every stored `Execute` message has its reply: a run that ended answered its message, so no later shard
 * move delivers it again. (Its ids are 64-bit; a reply stored under a rounded id matched no message.) Then no queued
 * execution is left either: a row left behind would be executed again by a single server's boot on this database.
 */
export const allExecutesAnswered = async (db: string) => {
  await executesAnswered(db)
  const queued = await query(db, "SELECT run_id FROM queued_executions")
  if (queued.length > 0) throw new Error(`queued executions left behind: ${JSON.stringify(queued)}`)
}

const executesAnswered = (db: string) =>
  until(
    async () =>
      (await query<{ n: string }>(
        db,
        "SELECT count(*) AS n FROM cluster_messages WHERE tag = 'Execute' AND NOT processed"
      ))[0]!
        .n === "0",
    30_000,
    "every Execute message to be answered"
  ).catch(async (error) => {
    const open = await query(
      db,
      "SELECT entity_id, message_id FROM cluster_messages WHERE tag = 'Execute' AND NOT processed"
    )
    throw new Error(`${String(error)}: ${JSON.stringify(open)}`)
  })

/**
 * What a cluster test file shares, set up before its tests and removed after them: a directory, the reference run
 * (Moby-Dick by `referenceFlags`, straight through on SQLite in one process), and the nodes and databases its tests
 * make (`nodes`, `workspace`).
 */
export const useClusterSuite = (adminUrl: () => string, referenceFlags: ReadonlyArray<string> = mobyDick.flags) => {
  const databases: Array<string> = []
  const suite = {
    dir: "",
    reference: { sha256: "", digest: "" },
    nodes: [] as Array<Node>,
    /** A fresh database and a fresh working directory `name` for one test. */
    workspace: async (name: string) => {
      const db = await createDatabase(adminUrl())
      databases.push(db)
      const work = path.join(suite.dir, name)
      fs.mkdirSync(work)
      return { db, work }
    }
  }
  beforeAll(async () => {
    suite.dir = makeDir()
    suite.reference = await referenceRun(suite.dir, [], referenceFlags)
  }, 120_000)
  afterAll(async () => {
    for (const node of suite.nodes) await stopNode(node)
    for (const url of databases) await dropDatabase(adminUrl(), url)
    removeDir(suite.dir)
  }, 60_000)
  return suite
}

/** The identity of the CLI's `test-slow` extractor (name, version, configuration), to store a run for it. */
const slowExtractor: Extractor.Extractor = {
  ...CapitalizedExtractor.make(),
  name: "test-slow",
  version: "1",
  configHash: "none"
}

/**
 * Stores a run of Moby-Dick for `test-slow` and its queued execution, as a submission, and sends no message.
 * `extractor` changes the identity stored (another name, another configuration) to make a run the server cannot
 * start.
 */
export const storePending = (
  db: string,
  work: string,
  runId: string,
  extractor: Partial<Pick<Extractor.Extractor, "name" | "configHash">> = {}
) =>
  storeRun(db, {
    runId: RunId.make(runId),
    input: fs.readFileSync(mobyDick.input, "utf8"),
    extractor: extractor.name ?? "test-slow",
    chunking: { windowSize: 2000, batchSize: 10 },
    // As the server stores a submission without an ontology.
    ontology: { text: DefaultOntology.turtle, format: "turtle" },
    output: { path: path.join(work, `${runId}.ttl`), format: "turtle" },
    queued: { retrySkipped: false }
  }, [{ ...slowExtractor, ...extractor }])

/** From now on, the statements inserting batch rows number `from` to `to` each end their session. */
export const cutBatchInserts = (db: string, from: number, to: number) =>
  query(
    db,
    `CREATE SEQUENCE batch_inserts;
    CREATE FUNCTION cut_batch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
      IF nextval('batch_inserts') BETWEEN ${from} AND ${to} THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF;
      RETURN NULL;
    END $$;
    CREATE TRIGGER cut_batch BEFORE INSERT ON batches FOR EACH STATEMENT EXECUTE FUNCTION cut_batch();`
  )

/**
 * From now on, the next `count` reads of `table` each end their own session (`pg_terminate_backend`): more than the
 * store's retries of one read (6 attempts) fail that read.
 */
export const cutReads = (db: string, table: string, count: number) =>
  query(
    db,
    `CREATE SEQUENCE cut_reads;
    CREATE FUNCTION cut_read() RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$ BEGIN
      IF nextval('cut_reads') <= ${count} THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF;
      RETURN true;
    END $$;
    ALTER TABLE ${table} RENAME TO ${table}_stored;
    CREATE VIEW ${table} AS SELECT * FROM ${table}_stored WHERE cut_read();`
  )

/** How many reads of the cut table were made. */
export const readsCut = async (db: string) =>
  Number((await query<{ last_value: string }>(db, "SELECT last_value FROM cut_reads"))[0]!.last_value)
