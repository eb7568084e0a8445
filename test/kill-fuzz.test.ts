/**
 * kill -9 fuzz: real runs are SIGKILLed at every named crash point of the engine (`CrashPoint`, triggered through
 * `QUARRY_TEST_CRASH_AT`) and at random moments, and resumed until they complete. Between a kill and the restart
 * nothing opens the database read-write (`withDb` is read-only), so every restart meets the hot WAL the kill left.
 *
 * Each scenario runs an extractor that reads `knownEntities` (the offline extractor, and `test-contextual`) at
 * concurrency 1 or 4, and must end byte-identical to a clean run of the same plan. The numbers are written as JSON to
 * QUARRY_FUZZ_SUMMARY (default: `quarry-kill-fuzz-summary.json` in the temp directory) for docs/reliability.md.
 * The seed is printed; replay with QUARRY_FUZZ_SEED=<seed>.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as CrashPoint from "@quarry/core/CrashPoint"
import type Database from "better-sqlite3"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import {
  committedEvents,
  jsonLines,
  makeDir,
  mobyDick,
  prng,
  removeDir,
  run,
  sha256File,
  sleep,
  start,
  walBytes,
  withDb,
  withMainFileOnly
} from "./support.js"

const points = CrashPoint.points
type Point = CrashPoint.Point

interface Scenario {
  readonly name: string
  readonly extractor: "offline" | "test-contextual"
  readonly concurrency: number
  /** Characters of Moby-Dick to extract from. */
  readonly chars: number
  readonly flags: ReadonlyArray<string>
  /** The crash points to kill at, once each (`replaceSkipped.transaction` needs `skipBatch`). */
  readonly points: ReadonlyArray<Point>
  /** Kills at random moments, besides those at crash points. */
  readonly randomKills: number
  /** Fail (and skip) this batch until `resume --retry-skipped` extracts it again: reaches `replaceSkipped`. */
  readonly skipBatch?: number
}

const scenarios: ReadonlyArray<Scenario> = [
  {
    name: "test-contextual-c4",
    extractor: "test-contextual",
    concurrency: 4,
    chars: 150_000,
    flags: ["--window", "2000", "--batch-size", "2"],
    points: ["createRun.transaction", "commitBatch.transaction", "merge.beforeRename", "replaceSkipped.transaction"],
    randomKills: 1,
    skipBatch: 5
  },
  {
    name: "test-contextual-c1",
    extractor: "test-contextual",
    concurrency: 1,
    chars: 60_000,
    flags: ["--window", "2000", "--batch-size", "1"],
    points: ["extract.beforeCommit", "commit.beforeEvent", "merge.afterRename"],
    randomKills: 1
  },
  {
    name: "offline-c1",
    extractor: "offline",
    concurrency: 1,
    chars: 30_000,
    flags: ["--window", "1000", "--batch-size", "1"],
    points: ["commitBatch.transaction", "commit.beforeEvent", "merge.afterRename"],
    randomKills: 1
  },
  {
    name: "offline-c4",
    extractor: "offline",
    concurrency: 4,
    chars: 30_000,
    flags: ["--window", "1000", "--batch-size", "1"],
    points: ["createRun.transaction", "extract.beforeCommit", "merge.beforeRename"],
    randomKills: 1
  }
]

/** Environment of every process of a scenario: the test extractors, slow enough for random kills to land. */
const baseEnv = {
  QUARRY_TEST_EXTRACTOR_DELAY_MS: "20",
  QUARRY_TEST_COMMIT_DELAY_MS: "5",
  QUARRY_LEASE_MS: "1000"
}

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex")

/** What the database holds for the run, read without writing anything. */
interface Stored {
  readonly status: string | undefined
  readonly committed: number
  readonly total: number
  readonly digest: string
  /** Output SHA-256 of each committed batch whose status is `ok`. */
  readonly outputs: ReadonlyMap<number, string>
  readonly skipped: ReadonlyArray<number>
}

const noRun: Stored = { status: undefined, committed: 0, total: 0, digest: "", outputs: new Map(), skipped: [] }

const readStored = (sqlite: Database.Database, runId: string): Stored => {
  if (sqlite.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs'").get() === undefined) {
    return noRun
  }
  const row = sqlite.prepare("SELECT status, committed_batches, total_batches, digest FROM runs WHERE id = ?").get(
    runId
  ) as { status: string; committed_batches: number; total_batches: number; digest: string } | undefined
  if (row === undefined) return noRun
  const batches = sqlite.prepare(
    "SELECT batch_index, status, output_sha256 FROM batches WHERE run_id = ? ORDER BY batch_index"
  ).all(runId) as Array<{ batch_index: number; status: string; output_sha256: string }>
  return {
    status: row.status,
    committed: row.committed_batches,
    total: row.total_batches,
    digest: row.digest,
    outputs: new Map(batches.filter((b) => b.status === "ok").map((b) => [b.batch_index, b.output_sha256])),
    skipped: batches.filter((b) => b.status === "skipped").map((b) => b.batch_index)
  }
}

/**
 * Integrity of the database after a kill: SQLite's `integrity_check`, and the checkpoint chain recomputed from the
 * stored batch outputs (every batch 0..committed-1 present once, each checkpoint's digest chained from the outputs,
 * the run's digest the last one).
 */
const checkIntegrity = (sqlite: Database.Database, runId: string, stored: Stored, where: string) => {
  assert.deepStrictEqual(sqlite.pragma("integrity_check"), [{ integrity_check: "ok" }], where)
  if (stored.status === undefined) return
  const rows = sqlite.prepare(
    `SELECT b.batch_index AS batch_index, b.output_sha256 AS output_sha256, c.digest AS digest
     FROM batches b LEFT JOIN checkpoints c ON c.run_id = b.run_id AND c.batch_index = b.batch_index
     WHERE b.run_id = ? ORDER BY b.batch_index`
  ).all(runId) as Array<{ batch_index: number; output_sha256: string; digest: string | null }>
  assert.deepStrictEqual(
    rows.map((r) => r.batch_index),
    Array.from({ length: stored.committed }, (_, i) => i),
    `${where}: stored batches`
  )
  const checkpoints = sqlite.prepare("SELECT COUNT(*) AS n FROM checkpoints WHERE run_id = ?").get(runId) as {
    n: number
  }
  assert.strictEqual(checkpoints.n, stored.committed, `${where}: checkpoints`)
  let digest = sha256("quarry")
  for (const row of rows) {
    digest = sha256(digest + row.output_sha256)
    assert.strictEqual(row.digest, digest, `${where}: checkpoint ${row.batch_index} breaks the chain`)
  }
  assert.strictEqual(stored.digest, digest, `${where}: the run's digest`)
}

/** One line of the call log: an extraction started, a crash point reached, or the crash itself. */
interface LogLine {
  readonly event: "extract" | "hit" | "crash"
  readonly point: string | undefined
  readonly batch: number | undefined
}

const parseLog = (text: string): Array<LogLine> =>
  text.split("\n").filter((line) => line !== "").map((line) => {
    const parts = line.split(" ")
    if (parts[0] === "extract") return { event: "extract", point: undefined, batch: Number(parts[1]) }
    return {
      event: parts[0] === "crash" ? "crash" : "hit",
      point: parts[1],
      batch: parts[2] === "-" ? undefined : Number(parts[2])
    }
  })

/** The batches a process extracted (its extractor started, or finished, the batch). */
const extractedBatches = (lines: ReadonlyArray<LogLine>) =>
  new Set(
    lines.filter((l) => l.event === "extract" || (l.event === "hit" && l.point === "extract.beforeCommit"))
      .map((l) => l.batch!)
  )

/** The numbers of one scenario, published in docs/reliability.md. */
interface Summary {
  scenario: string
  extractor: string
  concurrency: number
  batches: number
  processes: number
  resumes: number
  killsAtPoint: Record<string, number>
  randomKills: number
  hotWalRestarts: number
  walAheadOfMainFile: number
  integrityChecks: number
  lostBatches: number
  duplicatedBatches: number
  reExtractedAfterKill: number
  artifactIdentical: boolean
  digestIdentical: boolean
  seconds: number
}

type Kill = { readonly point: Point; readonly occurrence: number } | "random"

const batchPoints: ReadonlyArray<Point> = ["extract.beforeCommit", "commitBatch.transaction", "commit.beforeEvent"]

/**
 * The kills of a scenario, in the order a run can meet them: run creation first, then the batch points (at one of
 * their first three occurrences) shuffled with the random kills, then the merge points; `replaceSkipped` in the
 * `--retry-skipped` phase.
 */
const schedule = (scenario: Scenario, random: () => number): { first: Array<Kill>; retry: Array<Kill> } => {
  const chosen = (wanted: ReadonlyArray<Point>) => wanted.filter((point) => scenario.points.includes(point))
  const once = (wanted: ReadonlyArray<Point>): Array<Kill> => chosen(wanted).map((point) => ({ point, occurrence: 1 }))
  const middle: Array<Kill> = [
    ...chosen(batchPoints).map((point) => ({ point, occurrence: 1 + Math.floor(random() * 3) })),
    ...Array.from({ length: scenario.randomKills }, () => "random" as const)
  ]
  for (let i = middle.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    ;[middle[i], middle[j]] = [middle[j]!, middle[i]!]
  }
  return {
    first: [...once(["createRun.transaction"]), ...middle, ...once(["merge.beforeRename", "merge.afterRename"])],
    retry: once(["replaceSkipped.transaction"])
  }
}

/** Waits for a random moment of the run: during start-up, a few commits in, or during the merge. */
const randomMoment = async (child: ReturnType<typeof start>, random: () => number): Promise<string> => {
  const roll = random()
  if (roll < 0.25) {
    const ms = 100 + Math.floor(random() * 1500)
    await sleep(ms)
    return `start-up +${ms}ms`
  }
  const afterCommits = 1 + Math.floor(random() * 3)
  const extraMs = Math.floor(random() * 40)
  await child.waitFor((stdout) => committedEvents(stdout) >= afterCommits)
  await sleep(extraMs)
  return `${committedEvents(child.stdout)} commits +${extraMs}ms`
}

/**
 * Whether the WAL holds commits that the database's main file does not (read from a copy of the main file alone):
 * then the restart must recover them from the WAL. Unknown (false) when the main file alone cannot be read.
 */
const walAhead = (db: string, runId: string, stored: Stored): boolean => {
  try {
    const mainOnly = withMainFileOnly(db, (sqlite) => readStored(sqlite, runId))
    return mainOnly.status === undefined || mainOnly.committed < stored.committed
  } catch {
    return false
  }
}

const summaries: Array<Summary> = []
const hitPoints = new Set<string>()

describe("kill -9 at every crash point and at random moments", () => {
  const dir = makeDir()
  const seed = Number(process.env.QUARRY_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31))
  const references = new Map<string, { first: string; final: string; digest: string }>()

  const inputOf = (scenario: Scenario) => {
    const file = path.join(dir, `${scenario.name}.txt`)
    if (!fs.existsSync(file)) fs.writeFileSync(file, fs.readFileSync(mobyDick.input, "utf8").slice(0, scenario.chars))
    return file
  }
  const startArgs = (scenario: Scenario, runId: string, db: string, out: string) => [
    "start",
    inputOf(scenario),
    ...scenario.flags,
    "--extractor",
    scenario.extractor,
    "--concurrency",
    String(scenario.concurrency),
    ...(scenario.skipBatch === undefined ? [] : ["--on-batch-error", "skip"]),
    "--db",
    db,
    "--run-id",
    runId,
    "--out",
    out,
    "--json"
  ]
  const failEnv = (scenario: Scenario) =>
    scenario.skipBatch === undefined ? {} : { QUARRY_TEST_FAIL_BATCH: String(scenario.skipBatch) }

  // Clean runs of every plan, concurrently: the bytes every killed and resumed run must reproduce.
  beforeAll(async () => {
    console.log(`kill -9 fuzz seed: ${seed} (replay with QUARRY_FUZZ_SEED=${seed})`)
    await Promise.all(scenarios.map(async (scenario) => {
      const db = path.join(dir, `${scenario.name}-reference.db`)
      const out = path.join(dir, `${scenario.name}-reference.ttl`)
      const first = await run(startArgs(scenario, "reference", db, out), {
        env: { ...baseEnv, ...failEnv(scenario), QUARRY_TEST_EXTRACTOR_DELAY_MS: "0", QUARRY_TEST_COMMIT_DELAY_MS: "0" }
      })
      assert.strictEqual(first.code, 0, `reference ${scenario.name}: ${first.stderr}`)
      const firstSha = sha256File(out)
      if (scenario.skipBatch !== undefined) {
        const retried = await run(["resume", "reference", "--db", db, "--retry-skipped"], {
          env: { QUARRY_TEST_EXTRACTOR_DELAY_MS: "0" }
        })
        assert.strictEqual(retried.code, 0, `reference ${scenario.name} --retry-skipped: ${retried.stderr}`)
      }
      const digest = withDb(db, (sqlite) => readStored(sqlite, "reference").digest)
      references.set(scenario.name, { first: firstSha, final: sha256File(out), digest })
    }))
  }, 600_000)

  afterAll(() => {
    const file = process.env.QUARRY_FUZZ_SUMMARY ?? path.join(os.tmpdir(), "quarry-kill-fuzz-summary.json")
    fs.writeFileSync(file, JSON.stringify({ seed, scenarios: summaries }, null, 2) + "\n")
    console.log(`kill -9 fuzz summary: ${file}`)
    removeDir(dir)
  })

  // Concurrently: each scenario's processes run one after another, so two scenarios keep both cores busy.
  for (const [index, scenario] of scenarios.entries()) {
    it.concurrent(
      `${scenario.name}: every kill leaves all or none of each batch; resumes end byte-identical to a clean run`,
      async () => {
        const started = Date.now()
        const random = prng(seed + index)
        const runId = "fuzz"
        const db = path.join(dir, `${scenario.name}.db`)
        const out = path.join(dir, `${scenario.name}.ttl`)
        const log = path.join(dir, `${scenario.name}.log`)
        fs.writeFileSync(log, "")
        const reference = references.get(scenario.name)!
        const summary: Summary = {
          scenario: scenario.name,
          extractor: scenario.extractor,
          concurrency: scenario.concurrency,
          batches: 0,
          processes: 0,
          resumes: 0,
          killsAtPoint: {},
          randomKills: 0,
          hotWalRestarts: 0,
          walAheadOfMainFile: 0,
          integrityChecks: 0,
          lostBatches: 0,
          duplicatedBatches: 0,
          reExtractedAfterKill: 0,
          artifactIdentical: false,
          digestIdentical: false,
          seconds: 0
        }
        // Every batch output ever seen committed: none may vanish or change (skipped batches may be replaced).
        const seenOutputs = new Map<number, string>()
        const committedEventsSeen = new Set<number>()
        const kills: Array<string> = []
        const { first, retry } = schedule(scenario, random)

        const read = () => fs.existsSync(db) ? withDb(db, (sqlite) => readStored(sqlite, runId)) : noRun

        /** Runs processes (killing them as `plan` says) until one exits 0. */
        const runPhase = async (plan: Array<Kill>, retrySkipped: boolean, env: Record<string, string>) => {
          for (let attempt = 0; attempt < 40; attempt++) {
            const before = read()
            const kill = plan[0]
            const restart = fs.existsSync(db)
            if (restart && walBytes(db) > 0) {
              summary.hotWalRestarts += 1
              if (before.status !== undefined && walAhead(db, runId, before)) summary.walAheadOfMainFile += 1
            }
            const args = before.status === undefined ?
              startArgs(scenario, runId, db, out) :
              ["resume", runId, "--db", db, "--json", ...(retrySkipped ? ["--retry-skipped"] : [])]
            const logOffset = fs.statSync(log).size
            const crashAt = kill !== undefined && kill !== "random" ? `${kill.point}:${kill.occurrence}` : undefined
            const child = start(args, {
              env: {
                ...baseEnv,
                ...env,
                // One file for both, in order: extractions started and crash points reached.
                QUARRY_TEST_CALL_LOG: log,
                QUARRY_TEST_CRASH_LOG: log,
                ...(crashAt === undefined ? {} : { QUARRY_TEST_CRASH_AT: crashAt })
              }
            })
            summary.processes += 1
            if (before.status !== undefined) summary.resumes += 1
            let killedAt: string | undefined
            if (kill === "random") {
              const moment = await Promise.race([
                randomMoment(child, random),
                child.exited.then(() => undefined)
              ]).catch(() => undefined)
              if (moment !== undefined && child.child.exitCode === null) {
                child.child.kill("SIGKILL")
                killedAt = `random, ${moment}`
              }
            }
            const exit = await child.exited
            await new Promise((resolve) => setImmediate(resolve))
            const lines = parseLog(fs.readFileSync(log, "utf8").slice(logOffset))
            for (const line of lines) if (line.event === "hit") hitPoints.add(line.point!)
            const where = `${scenario.name} attempt ${attempt} (${args[0]}, ${crashAt ?? killedAt ?? "no kill"})`

            // Events: a batch committed twice would be a duplicated batch.
            const printed = new Set(
              jsonLines(child.stdout).filter((e) => e.event === "batch.committed").map((e) => e.batchIndex as number)
            )
            for (const batch of printed) {
              if (committedEventsSeen.has(batch)) summary.duplicatedBatches += 1
              committedEventsSeen.add(batch)
            }
            // Extractions: none of a batch that was committed (and not skipped) when this process started.
            for (const batch of extractedBatches(lines)) {
              if (batch < before.committed && !before.skipped.includes(batch)) summary.duplicatedBatches += 1
            }

            const after = read()
            if (fs.existsSync(db)) {
              withDb(db, (sqlite) => checkIntegrity(sqlite, runId, after, where))
              summary.integrityChecks += 1
            }
            for (const [batch, sha] of seenOutputs) {
              if (after.outputs.get(batch) !== sha) summary.lostBatches += 1
            }
            for (const [batch, sha] of after.outputs) seenOutputs.set(batch, sha)
            for (const batch of committedEventsSeen) {
              if (batch >= after.committed) summary.lostBatches += 1
            }
            assert.strictEqual(summary.lostBatches, 0, `${where}: lost batches`)
            assert.strictEqual(summary.duplicatedBatches, 0, `${where}: duplicated batches`)

            if (kill === undefined || (kill === "random" && killedAt === undefined)) {
              assert.strictEqual(exit.code, 0, `${where} exited ${exit.code}: ${child.stderr}`)
              if (kill === "random") plan.shift()
              if (plan.length > 0) assert.fail(`${where}: completed before its kills ${JSON.stringify(plan)}`)
              return after
            }
            assert.strictEqual(exit.signal, "SIGKILL", `${where}: ${child.stderr}`)
            plan.shift()
            if (kill === "random") {
              summary.randomKills += 1
            } else {
              const crash = lines.find((l) => l.event === "crash")
              assert.strictEqual(crash?.point, kill.point, `${where}: the process did not crash at its point`)
              summary.killsAtPoint[kill.point] = (summary.killsAtPoint[kill.point] ?? 0) + 1
              checkPoint(kill.point, crash!.batch, { before, after, printed }, where)
            }
            // What the kill lost: batches extracted by this process and not committed, at most `concurrency`.
            const lostWork = [...extractedBatches(lines)].filter((b) => b >= after.committed)
            assert.isAtMost(lostWork.length, scenario.concurrency, `${where}: in flight ${lostWork.join(", ")}`)
            summary.reExtractedAfterKill += lostWork.length
            kills.push(where)
          }
          assert.fail(`${scenario.name}: no process completed the run`)
        }

        /** What each crash point must leave in the database. */
        const checkPoint = (
          point: Point,
          batch: number | undefined,
          { after, before, printed }: { before: Stored; after: Stored; printed: ReadonlySet<number> },
          where: string
        ) => {
          switch (point) {
            case "createRun.transaction":
              // The run, its input and plan were rolled back together.
              return assert.strictEqual(after.status, undefined, where)
            case "extract.beforeCommit":
              return assert.isAtMost(after.committed, batch!, where)
            case "commitBatch.transaction":
              // The batch's rows, checkpoint and counters were rolled back together.
              return assert.strictEqual(after.committed, batch!, where)
            case "commit.beforeEvent":
              // Committed, though the process never said so.
              assert.strictEqual(after.committed, batch! + 1, where)
              return assert.isFalse(printed.has(batch!), where)
            case "merge.beforeRename":
              // Every batch committed; the artifact not yet in place.
              assert.strictEqual(after.committed, after.total, where)
              assert.strictEqual(after.status, "running", where)
              return assert.isFalse(fs.existsSync(out), where)
            case "merge.afterRename":
              // The artifact is in place and complete, the run not yet marked completed.
              assert.strictEqual(after.status, "running", where)
              return assert.strictEqual(sha256File(out), reference.first, where)
            case "replaceSkipped.transaction":
              // The replacement was rolled back: the batch is still skipped.
              return assert.deepStrictEqual(after.skipped, before.skipped, where)
          }
        }

        const afterFirst = await runPhase(first, false, failEnv(scenario))
        assert.strictEqual(afterFirst.status, "completed")
        assert.strictEqual(sha256File(out), reference.first, `${scenario.name}: artifact after the first phase`)
        if (scenario.skipBatch !== undefined) {
          assert.deepStrictEqual(afterFirst.skipped, [scenario.skipBatch])
          const afterRetry = await runPhase(retry, true, {})
          assert.deepStrictEqual(afterRetry.skipped, [])
        }

        const final = read()
        summary.batches = final.total
        assert.strictEqual(final.status, "completed")
        assert.strictEqual(final.committed, final.total)
        summary.artifactIdentical = sha256File(out) === reference.final
        summary.digestIdentical = final.digest === reference.digest
        summary.seconds = Math.round((Date.now() - started) / 100) / 10
        summaries.push(summary)
        // The kills go into the failure messages (with the seed), not into a passing run's output.
        const history = `seed ${seed}, ${kills.length} kills:\n  ${kills.join("\n  ")}`
        assert.isTrue(summary.artifactIdentical, `${scenario.name}: artifact differs from the clean run's (${history})`)
        assert.isTrue(summary.digestIdentical, `${scenario.name}: digest differs from the clean run's (${history})`)
        // Restarts met a hot WAL: the crash left committed transactions that only the WAL held.
        assert.isAtLeast(summary.walAheadOfMainFile, 1, `${scenario.name}: no restart met a hot WAL`)
      },
      // Generous: on a shared 2-core machine under load, each `quarry` process can take 10-20 s to start.
      600_000
    )
  }

  it("hit every crash point at least once", () => {
    const killed = new Set(summaries.flatMap((s) => Object.keys(s.killsAtPoint)))
    assert.deepStrictEqual(points.filter((p) => !killed.has(p)), [], "crash points never killed at")
    assert.deepStrictEqual(points.filter((p) => !hitPoints.has(p)), [], "crash points never reached")
  })
})
