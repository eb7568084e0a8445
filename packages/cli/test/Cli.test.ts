import { assert, describe, it } from "@effect/vitest"
import * as ExitCode from "@quarry/cli/ExitCode"
import * as RunView from "@quarry/cli/RunView"
import * as Settings from "@quarry/cli/Settings"
import * as Store from "@quarry/cli/Store"
import * as Ontology from "@quarry/core/Ontology"
import { RunId } from "@quarry/core/Run"
import { RunStore } from "@quarry/core/RunStore"
import * as Workflow from "@quarry/core/Workflow"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as fs from "node:fs"
import * as path from "node:path"
import { capture, program, quarry, sha256File, tempDir, text, waitUntil } from "./harness.js"

// These tests run the real program with real SQLite files, real leases and real sleeps: the live clock.

const small = text("long-multi-chapter.txt")
const smallFlags = ["--window", "300", "--batch-size", "2"]

/** The test-only slow extractor, `delayMs` per batch. */
const slow = (delayMs: number, extra: Record<string, string> = {}) => ({
  QUARRY_TEST_EXTRACTOR_DELAY_MS: String(delayMs),
  ...extra
})

type RunJson = ReturnType<typeof RunView.toJson>

interface Term {
  readonly value: string
}

const statusJson = (db: string, runId: string) =>
  Effect.map(quarry(["status", runId, "--db", db, "--json"]), (r): RunJson => JSON.parse(r.stdout()))

describe("quarry start", () => {
  it.scopedLive("completes a run and writes the artifact next to the database, named after the run", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const db = path.join(dir, "q.db")
      const result = yield* quarry(["start", small, "--db", db, "--run-id", "first", ...smallFlags])
      assert.strictEqual(result.code, 0, result.stderr())
      const artifact = path.join(dir, "first.ttl")
      assert.isTrue(fs.existsSync(artifact))
      const lines = result.stdout().trim().split("\n")
      assert.match(lines[0]!, /^run first completed: 11\/11 batches, \d+ entity mentions, \d+ relations in /)
      assert.strictEqual(
        lines[1],
        `artifact ${artifact} (turtle, ${fs.statSync(artifact).size} bytes, sha256 ${sha256File(artifact)})`
      )
      assert.include(result.stderr(), "quarry: run first: 11 batches")
    }))

  it.scopedLive("--json prints run.started, batch.committed per batch in order, merge.started, run.completed", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const db = path.join(dir, "q.db")
      const result = yield* quarry(["start", small, "--db", db, "--run-id", "j", "--json", ...smallFlags])
      assert.strictEqual(result.code, 0, result.stderr())
      const events = result.json()
      assert.deepStrictEqual(events.map((e) => e.event), [
        "run.started",
        ...Array.from({ length: 11 }, () => "batch.committed"),
        "merge.started",
        "run.completed"
      ])
      for (const event of events) {
        assert.strictEqual(event.runId, "j")
        assert.isFalse(Number.isNaN(Date.parse(String(event.time))))
      }
      assert.deepInclude(events[0], { totalBatches: 11, committedBatches: 0, db })
      const batches = events.filter((e) => e.event === "batch.committed")
      assert.deepStrictEqual(batches.map((e) => e.batchIndex), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
      assert.deepStrictEqual(batches.map((e) => e.committedBatches), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
      const done = events.at(-1)!
      const artifact = path.join(dir, "j.ttl")
      assert.deepStrictEqual(done.artifact, {
        path: artifact,
        format: "turtle",
        bytes: fs.statSync(artifact).size,
        sha256: sha256File(artifact)
      })
      assert.strictEqual(done.entityMentions, batches.at(-1)!.entityMentions)
      assert.isFalse(done.alreadyCompleted)
      // Logs and messages never reach stdout: every stdout line was JSON.
      assert.strictEqual(result.stdout().trim().split("\n").length, events.length)
    }))

  it.scopedLive("takes the format from the --out extension", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const out = path.join(dir, "graph.nt")
      const result = yield* quarry(["start", small, "--db", path.join(dir, "q.db"), "--out", out, ...smallFlags])
      assert.strictEqual(result.code, 0, result.stderr())
      const lines = fs.readFileSync(out, "utf8").trim().split("\n")
      assert.isTrue(lines.length > 10)
      for (const line of lines) assert.match(line, /^<[^>]+> <[^>]+> .+ \.$/)
    }))

  it.scopedLive("uses QUARRY_DB without --db", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const db = path.join(dir, "env.db")
      const env = { QUARRY_DB: db }
      const result = yield* quarry(["start", small, "--run-id", "e", ...smallFlags], env)
      assert.strictEqual(result.code, 0, result.stderr())
      assert.isTrue(fs.existsSync(db))
      assert.isTrue(fs.existsSync(path.join(dir, "e.ttl")))
      const status = yield* quarry(["status", "e", "--json"], env)
      assert.strictEqual(status.json()[0]!.status, "completed")
    }))

  it.scopedLive("refuses bad input with exit 2 and a specific message, before creating the database", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const db = path.join(dir, "never.db")
      const cases: ReadonlyArray<readonly [ReadonlyArray<string>, string]> = [
        [["start", path.join(dir, "missing.txt")], "does not exist"],
        [["start", dir], "is a directory"],
        [["start", small, "--window", "0"], "window (0) must be a whole number greater than 0"],
        [["start", small, "--window", "200", "--overlap", "300"], "overlap (300) must be smaller than window (200)"],
        [["start", small, "--batch-size", "0"], "batch-size (0) must be a whole number greater than 0"],
        [["start", small, "--concurrency", "0"], "concurrency (0) must be a whole number greater than 0"],
        [["start", small, "--run-id", "a/b"], "run id \"a/b\" is not valid"],
        [["start", small, "--format", "xml"], "format \"xml\" is unknown"],
        [["start", small, "--extractor", "nope"], "unknown extractor \"nope\""],
        [["start", small, "--chunking", "words"], "chunking strategy \"words\" is unknown"]
      ]
      for (const [args, message] of cases) {
        const result = yield* quarry([...args, "--db", db])
        assert.strictEqual(result.code, 2, `${args.join(" ")}: ${result.stderr()}`)
        assert.include(result.stderr(), message)
        assert.strictEqual(result.stdout(), "")
      }
      assert.isFalse(fs.existsSync(db))
    }))

  it.scopedLive("--json reports an error before the run as an error event", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const result = yield* quarry(["start", small, "--db", path.join(dir, "q.db"), "--window", "0", "--json"])
      assert.strictEqual(result.code, 2)
      assert.deepInclude(result.json()[0], {
        event: "error",
        exitCode: 2,
        error: "ChunkingError",
        message: "window (0) must be a whole number greater than 0"
      })
    }))

  it.scopedLive("--json reports a value refused while parsing the command line as an error event too", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      for (
        const [args, message] of [
          [["--window", "lots"], "window (\"lots\") must be a whole number greater than 0"],
          [["--format", "xml"], "format \"xml\" is unknown; use turtle, ntriples or jsonl"],
          [["--chunking", "words"], "chunking strategy \"words\" is unknown; use \"chars\" or \"sentences\""],
          [["--temperature", "3"], "temperature (\"3\") must be a number from 0 to 2"],
          [["--max-output-tokens", "0"], "max-output-tokens (\"0\") must be a whole number of tokens greater than 0"],
          [["--model", " "], "model must not be empty"],
          [["--windo", "3"], "unknown argument \"--windo\"; see `quarry start --help`"]
        ] as const
      ) {
        const result = yield* quarry(["start", small, "--db", path.join(dir, "q.db"), ...args, "--json"])
        assert.strictEqual(result.code, 2)
        assert.deepInclude(result.json()[0], { event: "error", exitCode: 2, error: "UsageError", message })
        assert.isFalse(fs.existsSync(path.join(dir, "q.db")))
      }
    }))

  it.scopedLive("an in-memory database fails the durability check with exit 3", () =>
    Effect.gen(function*() {
      const result = yield* quarry(["start", small, "--db", ":memory:"])
      assert.strictEqual(result.code, 3)
      assert.include(result.stderr(), "in-memory database")
    }))

  it.scopedLive("unknown commands and missing arguments are usage errors", () =>
    Effect.gen(function*() {
      assert.strictEqual((yield* quarry(["frobnicate"])).code, 2)
      assert.strictEqual((yield* quarry(["start"])).code, 2)
      assert.strictEqual((yield* quarry(["resume"])).code, 2)
      const help = yield* quarry(["--help"])
      assert.strictEqual(help.code, 0)
      assert.include(help.stdout(), "resume")
    }))
})

describe("quarry resume", () => {
  it.scopedLive("a completed run is a no-op success that reports its artifact", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const db = path.join(dir, "q.db")
      assert.strictEqual((yield* quarry(["start", small, "--db", db, "--run-id", "r", ...smallFlags])).code, 0)
      const again = yield* quarry(["resume", "r", "--db", db])
      assert.strictEqual(again.code, 0, again.stderr())
      assert.include(again.stdout(), "run r was already completed: 11/11 batches")
      assert.include(again.stdout(), `artifact ${path.join(dir, "r.ttl")}`)
      const json = yield* quarry(["resume", "r", "--db", db, "--json"])
      const events = json.json()
      assert.deepStrictEqual(events.map((e) => e.event), ["run.completed"])
      assert.isTrue(events[0]!.alreadyCompleted)
    }))

  /** Run `r` completed in a fresh directory: its database, its artifact and the artifact's SHA-256. */
  const completedRun = Effect.gen(function*() {
    const dir = yield* tempDir
    const db = path.join(dir, "q.db")
    const artifact = path.join(dir, "r.ttl")
    assert.strictEqual((yield* quarry(["start", small, "--db", db, "--run-id", "r", ...smallFlags])).code, 0)
    return { db, artifact, written: sha256File(artifact) }
  })

  it.scopedLive("a completed run whose artifact was removed gets it written again, the same bytes, and says so", () =>
    Effect.gen(function*() {
      const { artifact, db, written } = yield* completedRun
      fs.rmSync(artifact)
      const again = yield* quarry(["resume", "r", "--db", db])
      assert.strictEqual(again.code, 0, again.stderr())
      assert.include(again.stderr(), `run r's artifact ${artifact} was missing; written again from the stored batches`)
      assert.include(again.stdout(), `artifact ${artifact} (turtle,`)
      assert.strictEqual(sha256File(artifact), written)
    }))

  it.scopedLive("a completed run whose artifact changed is refused (exit 2), the file kept, with the export to run", () =>
    Effect.gen(function*() {
      const { artifact, db, written } = yield* completedRun
      fs.appendFileSync(artifact, "# my note\n")
      const edited = sha256File(artifact)
      const again = yield* quarry(["resume", "r", "--db", db])
      assert.strictEqual(again.code, ExitCode.usage, again.stderr())
      assert.strictEqual(again.stdout(), "")
      const fix = ["export", "r", "--out", artifact, "--db", db]
      assert.include(again.stderr(), `run r is completed, but its artifact ${artifact} is not the file it wrote`)
      assert.include(again.stderr(), `write the artifact again with \`quarry ${fix.join(" ")}\``)
      assert.strictEqual(sha256File(artifact), edited)
      // The command it names restores the run's bytes, and resume reports them again.
      assert.strictEqual((yield* quarry(fix)).code, 0)
      assert.strictEqual(sha256File(artifact), written)
      assert.strictEqual((yield* quarry(["resume", "r", "--db", db])).code, 0)
    }))

  it.scopedLive("a failed run exits 1, says how to resume, and resumes to the bytes of an uninterrupted run", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const reference = yield* quarry(
        [
          "start",
          small,
          "--db",
          path.join(dir, "ref.db"),
          "--run-id",
          "ref",
          "--extractor",
          "test-slow",
          ...smallFlags
        ],
        slow(0)
      )
      assert.strictEqual(reference.code, 0, reference.stderr())
      const db = path.join(dir, "q.db")
      const failed = yield* quarry(
        ["start", small, "--db", db, "--run-id", "f", "--extractor", "test-slow", "--json", ...smallFlags],
        slow(0, { QUARRY_TEST_FAIL_BATCH: "4" })
      )
      assert.strictEqual(failed.code, 1)
      const last = failed.json().at(-1)!
      assert.deepInclude(last, {
        event: "run.failed",
        reason: "ExtractorError",
        committedBatches: 4,
        resume: `quarry resume f --db ${db}`
      })
      assert.include(failed.stderr(), `Resume it with: quarry resume f --db ${db}`.replace("Resume it", "resume it"))
      const status = yield* statusJson(db, "f")
      assert.strictEqual(status.status, "failed")
      assert.isTrue(status.resumable)
      assert.include(status.lastError, "QUARRY_TEST_FAIL_BATCH")
      const resumed = yield* quarry(["resume", "f", "--db", db], slow(0))
      assert.strictEqual(resumed.code, 0, resumed.stderr())
      assert.include(resumed.stderr(), "resuming at batch 4/11")
      assert.strictEqual(sha256File(path.join(dir, "f.ttl")), sha256File(path.join(dir, "ref.ttl")))
    }))

  it.scopedLive("a run held by a live lease exits 4 with the holder's details", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const db = path.join(dir, "q.db")
      const settings = yield* Settings.config
      yield* Effect.gen(function*() {
        const run = yield* Workflow.create({
          runId: RunId.make("held"),
          input: fs.readFileSync(small, "utf8"),
          extractor: "capitalized",
          output: { path: path.join(dir, "held.ttl"), format: "turtle" }
        })
        const store = yield* RunStore
        yield* store.claim(run.id, "elsewhere:4242:abcd", 60_000)
      }).pipe(Effect.provide(Store.layer(db, settings)))
      const result = yield* quarry(["resume", "held", "--db", db])
      assert.strictEqual(result.code, 4)
      assert.include(result.stderr(), "run held is being executed by process 4242 on host elsewhere")
      assert.include(result.stderr(), "elsewhere:4242:abcd")
      assert.include(result.stderr(), "quarry cancel held")
      const json = yield* quarry(["resume", "held", "--db", db, "--json"])
      assert.strictEqual(json.code, 4)
      assert.deepInclude(json.json()[0], { event: "error", exitCode: 4, error: "RunLocked" })
      const status = yield* statusJson(db, "held")
      assert.strictEqual(status.status, "running")
      assert.isFalse(status.resumable)
      assert.deepInclude(status.lease, { owner: "elsewhere:4242:abcd", live: true })
    }).pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map()))))

  it.scopedLive("an orphaned run (its lease expired) is taken over, and --out writes a copy of the artifact", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const db = path.join(dir, "q.db")
      const settings = yield* Settings.config
      yield* Effect.gen(function*() {
        const run = yield* Workflow.create({
          runId: RunId.make("orphan"),
          input: fs.readFileSync(small, "utf8"),
          extractor: "capitalized",
          chunking: { windowSize: 300, batchSize: 2 },
          output: { path: path.join(dir, "orphan.ttl"), format: "turtle" }
        })
        const store = yield* RunStore
        yield* store.claim(run.id, "elsewhere:4242:abcd", 1)
      }).pipe(Effect.provide(Store.layer(db, settings)))
      yield* Effect.sleep(20)
      const copy = path.join(dir, "copy.ttl")
      const result = yield* quarry(["resume", "orphan", "--db", db, "--out", copy])
      assert.strictEqual(result.code, 0, result.stderr())
      assert.strictEqual(sha256File(copy), sha256File(path.join(dir, "orphan.ttl")))
      assert.include(result.stdout(), `artifact ${copy}`)
      // The copy's format is its extension's, as `export --out` takes it.
      const nt = path.join(dir, "copy.nt")
      const again = yield* quarry(["resume", "orphan", "--db", db, "--out", nt])
      assert.strictEqual(again.code, 0, again.stderr())
      assert.include(again.stdout(), `artifact ${nt} (ntriples,`)
      assert.match(fs.readFileSync(nt, "utf8"), /^<https:\/\/w3id\.org\/quarry\/entity\//u)
    }).pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map()))))

  it.scopedLive("an unknown run exits 2 and creates no database", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const db = path.join(dir, "none.db")
      const result = yield* quarry(["resume", "ghost", "--db", db])
      assert.strictEqual(result.code, 2)
      assert.include(result.stderr(), "run \"ghost\" does not exist")
      assert.isFalse(fs.existsSync(db))
    }))
})

describe("quarry status and runs", () => {
  it.scopedLive("show tables for people and JSON for scripts", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const db = path.join(dir, "q.db")
      assert.strictEqual((yield* quarry(["start", small, "--db", db, "--run-id", "a", ...smallFlags])).code, 0)
      const failed = yield* quarry(
        ["start", small, "--db", db, "--run-id", "b", "--extractor", "test-slow", ...smallFlags],
        slow(0, { QUARRY_TEST_FAIL_BATCH: "1" })
      )
      assert.strictEqual(failed.code, 1)

      const latest = yield* quarry(["status", "--db", db])
      assert.strictEqual(latest.code, 0)
      assert.match(latest.stdout(), /^run +b$/m)
      assert.match(latest.stdout(), /^status +failed \(resumable: quarry resume b --db /m)
      assert.match(latest.stdout(), /^progress +1\/11 batches \(9%\)$/m)
      assert.match(latest.stdout(), /^last error +ExtractorError: /m)

      const a = yield* statusJson(db, "a")
      assert.strictEqual(a.status, "completed")
      assert.isFalse(a.resumable)
      assert.deepStrictEqual(a.progress, { committedBatches: 11, totalBatches: 11, percent: 100 })
      assert.strictEqual(a.artifact?.sha256, sha256File(path.join(dir, "a.ttl")))
      assert.isNumber(a.timings.durationMs)
      assert.deepStrictEqual(a.plan.chunking, { strategy: "chars", windowSize: 300, overlap: 60, batchSize: 2 })

      const table = yield* quarry(["runs", "--db", db])
      const rows = table.stdout().trim().split("\n")
      assert.match(rows[0]!, /^RUN +STATUS +BATCHES +ENTITIES +RELATIONS +UPDATED +ARTIFACT$/)
      assert.match(rows[1]!, /^a +completed +11\/11 /)
      assert.match(rows[2]!, /^b +failed +1\/11 /)

      const onlyFailed = yield* quarry(["runs", "--db", db, "--status", "failed", "--json"])
      const failedRuns: ReadonlyArray<RunJson> = JSON.parse(onlyFailed.stdout())
      assert.deepStrictEqual(failedRuns.map((r) => r.id), ["b"])
      const bad = yield* quarry(["runs", "--db", db, "--status", "done"])
      assert.strictEqual(bad.code, 2)
      assert.include(bad.stderr(), "status \"done\" is unknown")
      const unknown = yield* quarry(["status", "zzz", "--db", db])
      assert.strictEqual(unknown.code, 2)
    }))

  it.scopedLive("a missing database has no runs and is not created", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const db = path.join(dir, "none.db")
      const runs = yield* quarry(["runs", "--db", db])
      assert.strictEqual(runs.code, 0)
      assert.strictEqual(runs.stdout().trim(), `no runs in ${db}`)
      assert.strictEqual((yield* quarry(["runs", "--db", db, "--json"])).stdout(), "[]\n")
      assert.isFalse(fs.existsSync(db))
    }))
})

describe("quarry cancel", () => {
  it.scopedLive("a run executing elsewhere stops at its next batch boundary: exit 5, cancelled, resumable", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const db = path.join(dir, "q.db")
      const env = slow(40, { QUARRY_LEASE_MS: "600" })
      const into = capture()
      const running = yield* Effect.fork(program(
        ["start", small, "--db", db, "--run-id", "c", "--extractor", "test-slow", "--json", ...smallFlags],
        { env, into }
      ))
      yield* waitUntil(
        Effect.sync(() => into.json().filter((e) => e.event === "batch.committed").length),
        (n) => n >= 2
      )
      const cancel = yield* quarry(["cancel", "c", "--db", db], env)
      assert.strictEqual(cancel.code, 0, cancel.stderr())
      assert.include(cancel.stdout(), "cancellation of run c requested")
      const code = yield* Fiber.join(running)
      assert.strictEqual(code, ExitCode.cancelled)
      const last = into.json().at(-1)!
      assert.strictEqual(last.event, "run.cancelled")
      assert.isBelow(Number(last.committedBatches), 11)
      const status = yield* statusJson(db, "c")
      assert.strictEqual(status.status, "cancelled")
      assert.isTrue(status.resumable)
      const resumed = yield* quarry(["resume", "c", "--db", db], env)
      assert.strictEqual(resumed.code, 0, resumed.stderr())
    }))

  it.scopedLive("a run that is not executing is cancelled at once; a completed run cannot be cancelled", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const db = path.join(dir, "q.db")
      const failed = yield* quarry(
        ["start", small, "--db", db, "--run-id", "x", "--extractor", "test-slow", ...smallFlags],
        slow(0, { QUARRY_TEST_FAIL_BATCH: "1" })
      )
      assert.strictEqual(failed.code, 1)
      const cancel = yield* quarry(["cancel", "x", "--db", db])
      assert.strictEqual(cancel.code, 0)
      assert.include(cancel.stdout(), "run x is cancelled (1/11 batches committed)")
      assert.strictEqual((yield* statusJson(db, "x")).status, "cancelled")
      assert.strictEqual((yield* quarry(["start", small, "--db", db, "--run-id", "y", ...smallFlags])).code, 0)
      const refused = yield* quarry(["cancel", "y", "--db", db])
      assert.strictEqual(refused.code, 2)
      assert.include(refused.stderr(), "run \"y\" is completed")
    }))
})

describe("quarry export", () => {
  it.scopedLive("re-merges a completed run into any format without extracting", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const db = path.join(dir, "q.db")
      const log = path.join(dir, "calls.log")
      const env = slow(0, { QUARRY_TEST_CALL_LOG: log })
      const start = yield* quarry([
        "start",
        small,
        "--db",
        db,
        "--run-id",
        "x",
        "--extractor",
        "test-slow",
        ...smallFlags
      ], env)
      assert.strictEqual(start.code, 0)
      const calls = fs.readFileSync(log, "utf8")
      const nt = yield* quarry(["export", "x", "--db", db, "--format", "ntriples"], env)
      assert.strictEqual(nt.code, 0, nt.stderr())
      const ntFile = path.join(dir, "x.nt")
      assert.include(nt.stdout(), `exported run x: ${ntFile} (ntriples`)
      const jsonl = path.join(dir, "out.jsonl")
      const j = yield* quarry(["export", "x", "--db", db, "--out", jsonl, "--json"], env)
      assert.strictEqual(j.code, 0, j.stderr())
      assert.deepInclude(j.json()[0]!.artifact as object, { path: jsonl, format: "jsonl", sha256: sha256File(jsonl) })
      for (const line of fs.readFileSync(jsonl, "utf8").trim().split("\n")) JSON.parse(line)
      const again = path.join(dir, "again.ttl")
      assert.strictEqual((yield* quarry(["export", "x", "--db", db, "--out", again], env)).code, 0)
      assert.strictEqual(sha256File(again), sha256File(path.join(dir, "x.ttl")))
      assert.strictEqual(fs.readFileSync(log, "utf8"), calls, "export must not call the extractor")

      assert.strictEqual((yield* quarry(["export", "nope", "--db", db])).code, 2)
      const badFormat = yield* quarry(["export", "x", "--db", db, "--format", "rdfxml"])
      assert.strictEqual(badFormat.code, 2)
      assert.include(badFormat.stderr(), "format \"rdfxml\" is unknown")
      const failed = yield* quarry(
        ["start", small, "--db", db, "--run-id", "f", "--extractor", "test-slow", ...smallFlags],
        slow(0, { QUARRY_TEST_FAIL_BATCH: "0" })
      )
      assert.strictEqual(failed.code, 1)
      const notDone = yield* quarry(["export", "f", "--db", db])
      assert.strictEqual(notDone.code, 2)
      assert.include(notDone.stderr(), "run \"f\" is failed, but this needs a run that is completed")
    }))
})

describe("quarry start --deadline", () => {
  it.scopedLive("stops the execution at its deadline (exit 1, reason deadline); resume completes it", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const db = path.join(dir, "q.db")
      const args = ["--db", db, "--extractor", "test-slow", ...smallFlags]
      const stopped = yield* quarry(
        ["start", small, ...args, "--run-id", "d", "--deadline", "350ms", "--json"],
        slow(100)
      )
      assert.strictEqual(stopped.code, ExitCode.runFailed, stopped.stderr())
      const failed = stopped.json().at(-1)!
      assert.strictEqual(failed.event, "run.failed")
      assert.strictEqual(failed.reason, "deadline")
      assert.strictEqual(failed.deadlineMs, 350)
      assert.isAbove(Number(failed.committedBatches), 0)
      assert.isBelow(Number(failed.committedBatches), 11)
      assert.strictEqual(failed.resume, `quarry resume d --db ${db}`)
      assert.include(
        stopped.stderr(),
        `stopped at its deadline (350ms) after ${failed.committedBatches}/11 batches. Every committed batch is kept; ` +
          `resume it (with a longer --deadline, or none): quarry resume d --db ${db}`
      )
      const shown = yield* statusJson(db, "d")
      assert.strictEqual(shown.failureReason, "deadline")
      const resumed = yield* quarry(["resume", "d", "--db", db, "--deadline", "1h"], slow(0))
      assert.strictEqual(resumed.code, 0, resumed.stderr())
      assert.strictEqual((yield* statusJson(db, "d")).status, "completed")
    }))
})

describe("quarry start --provenance", () => {
  it.scopedLive("writes PROV-O triples that parse with n3: the run, the extractor, each mention's offsets", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const db = path.join(dir, "q.db")
      const started = yield* quarry(["start", small, "--db", db, "--run-id", "prov", "--provenance", ...smallFlags])
      assert.strictEqual(started.code, 0, started.stderr())
      const PROV = "http://www.w3.org/ns/prov#"
      const RDF_TYPE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
      const LABEL = "http://www.w3.org/2000/01/rdf-schema#label"
      const runIri = "https://w3id.org/quarry/run/prov"
      const input = fs.readFileSync(small, "utf8")
      const check = (quads: ReadonlyArray<{ subject: Term; predicate: Term; object: Term }>) => {
        const has = (s: string, p: string, o: string) =>
          quads.some((q) => q.subject.value === s && q.predicate.value === p && q.object.value === o)
        const objects = (s: string, p: string) =>
          quads.filter((q) => q.subject.value === s && q.predicate.value === p).map((q) => q.object.value)
        assert.isTrue(has(runIri, RDF_TYPE, `${PROV}Activity`))
        const [agent] = objects(runIri, `${PROV}wasAssociatedWith`)
        assert.match(agent!, /^https:\/\/w3id\.org\/quarry\/extractor\/offline\//)
        assert.isTrue(has(agent!, RDF_TYPE, `${PROV}SoftwareAgent`))
        const entities = [...new Set(quads.filter((q) => q.predicate.value === LABEL).map((q) => q.subject.value))]
          .filter((e) => e !== agent)
        assert.isAbove(entities.length, 10)
        let mentions = 0
        for (const entity of entities) {
          assert.isTrue(has(entity, `${PROV}wasGeneratedBy`, runIri), entity)
          const label = objects(entity, LABEL)[0]!
          const derived = objects(entity, `${PROV}wasDerivedFrom`)
          assert.isAbove(derived.length, 0, entity)
          for (const mention of derived) {
            const start = Number(objects(mention, "https://w3id.org/quarry/ns#start")[0])
            const end = Number(objects(mention, "https://w3id.org/quarry/ns#end")[0])
            assert.isTrue(Number.isSafeInteger(start) && start < end && end <= input.length, mention)
            // The mention's text is the label, or the label's longer or shorter form ("Dr. Sarah Chen", "Chen").
            const said = input.slice(start, end).replace(/\s+/g, " ")
            assert.isTrue(said.includes(label) || label.includes(said), `${mention}: "${said}" vs "${label}"`)
            mentions++
          }
        }
        return mentions
      }
      const { quads: turtle } = yield* Ontology.parseQuads(fs.readFileSync(path.join(dir, "prov.ttl"), "utf8"), {
        format: "turtle"
      })
      const mentions = check(turtle)
      const shown = yield* statusJson(db, "prov")
      assert.isTrue(shown.plan.provenance)

      // A re-merge keeps the run's choice.
      const exported = yield* quarry(["export", "prov", "--db", db, "--format", "ntriples"])
      assert.strictEqual(exported.code, 0, exported.stderr())
      const { quads: ntriples } = yield* Ontology.parseQuads(fs.readFileSync(path.join(dir, "prov.nt"), "utf8"), {
        format: "ntriples"
      })
      assert.strictEqual(check(ntriples), mentions)
      assert.strictEqual(ntriples.length, turtle.length)

      const plain = yield* quarry(["start", small, "--db", db, "--run-id", "plain", ...smallFlags])
      assert.strictEqual(plain.code, 0, plain.stderr())
      assert.notInclude(fs.readFileSync(path.join(dir, "plain.ttl"), "utf8"), "wasDerivedFrom")
      assert.isFalse((yield* statusJson(db, "plain")).plan.provenance)
    }))
})

describe("quarry start: language tags", () => {
  it.scopedLive("labels carry the language of their text (fr, en) in Turtle and N-Triples; a short text none", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const db = path.join(dir, "q.db")
      const LABEL = "http://www.w3.org/2000/01/rdf-schema#label"
      const files = {
        fr: "Marie Curie est née à Varsovie en 1867. Elle a travaillé à Paris avec son mari, Pierre Curie, et elle a " +
          "reçu le prix Nobel de physique en 1903, puis le prix Nobel de chimie en 1911.",
        en: "Marie Curie was born in Warsaw in 1867. She worked in Paris with her husband, Pierre Curie, and she " +
          "received the Nobel Prize in Physics in 1903, then the Nobel Prize in Chemistry in 1911.",
        short: "Marie Curie worked in Paris."
      }
      const labels = (file: string, format: "turtle" | "ntriples") =>
        Effect.map(
          Ontology.parseQuads(fs.readFileSync(path.join(dir, file), "utf8"), { format }),
          ({ quads }) =>
            new Map(
              quads.filter((q) => q.predicate.value === LABEL).map((q) => {
                const o: { readonly value: string; readonly language?: string } = q.object
                return [o.value, o.language ?? ""] as const
              })
            )
        )
      for (const [name, content] of Object.entries(files)) {
        fs.writeFileSync(path.join(dir, `${name}.txt`), content)
        const started = yield* quarry(["start", path.join(dir, `${name}.txt`), "--db", db, "--run-id", name])
        assert.strictEqual(started.code, 0, started.stderr())
        const exported = yield* quarry(["export", name, "--db", db, "--format", "ntriples"])
        assert.strictEqual(exported.code, 0, exported.stderr())
        const expected = name === "short" ? "" : name
        for (const [file, format] of [[`${name}.ttl`, "turtle"], [`${name}.nt`, "ntriples"]] as const) {
          const found = yield* labels(file, format)
          for (const label of ["Marie Curie", "Paris"]) {
            assert.strictEqual(found.get(label), expected, `${label} in ${file}`)
          }
        }
      }
    }))
})

describe("quarry doctor", () => {
  it.scopedLive("reports on the database and exits 3 when it cannot be trusted", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const db = path.join(dir, "q.db")
      const fresh = yield* quarry(["doctor", "--db", db])
      assert.strictEqual(fresh.code, 0)
      assert.match(fresh.stdout(), /^exists +no: `quarry start` creates it/m)
      assert.isFalse(fs.existsSync(db))
      assert.strictEqual((yield* quarry(["start", small, "--db", db, ...smallFlags])).code, 0)
      const ok = yield* quarry(["doctor", "--db", db, "--json"])
      assert.strictEqual(ok.code, 0)
      assert.deepInclude(ok.json()[0], {
        durable: true,
        journalMode: "wal",
        synchronous: "FULL",
        foreignKeys: true,
        quickCheck: "ok",
        runs: { completed: 1 }
      })
      const memory = yield* quarry(["doctor", "--db", ":memory:"])
      assert.strictEqual(memory.code, 3)
      assert.match(memory.stdout(), /^durable +no$/m)
      const junk = path.join(dir, "junk.db")
      fs.writeFileSync(junk, "this is not a database at all, not even close")
      const notSqlite = yield* quarry(["doctor", "--db", junk])
      assert.strictEqual(notSqlite.code, 3)
      assert.include(notSqlite.stdout(), "is not a SQLite database")
    }))
})

describe("signals", () => {
  it.scopedLive("interrupting the program records the run interrupted, says how to resume, and exits 130", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const db = path.join(dir, "q.db")
      const env = slow(30)
      const into = capture()
      const running = yield* Effect.fork(program(
        ["start", small, "--db", db, "--run-id", "i", "--extractor", "test-slow", "--json", ...smallFlags],
        { env, into }
      ))
      yield* waitUntil(
        Effect.sync(() => into.json().filter((e) => e.event === "batch.committed").length),
        (n) => n >= 2
      )
      const exit = yield* Fiber.interrupt(running)
      assert.strictEqual(ExitCode.fromExit(exit), ExitCode.interrupted)
      const last = into.json().at(-1)!
      assert.deepInclude(last, { event: "run.interrupted", resume: `quarry resume i --db ${db}` })
      assert.include(into.stderr(), `Resume it with: quarry resume i --db ${db}`)
      const status = yield* statusJson(db, "i")
      assert.strictEqual(status.status, "interrupted")
      assert.strictEqual(status.progress.committedBatches, last.committedBatches)
      const resumed = yield* quarry(["resume", "i", "--db", db], env)
      assert.strictEqual(resumed.code, 0, resumed.stderr())
    }))
})

describe("exit codes", () => {
  it("map errors to the documented codes", () => {
    const cases: ReadonlyArray<readonly [string, number]> = [
      ["UsageError", 2],
      ["ChunkingError", 2],
      ["RunNotFound", 2],
      ["RunAlreadyExists", 2],
      ["UnknownExtractor", 2],
      ["InvalidRunState", 2],
      ["DurabilityError", 3],
      ["RunLocked", 4],
      ["RunCancelled", 5],
      ["RunInterrupted", 130],
      ["ExtractorError", 1],
      ["PersistenceError", 1]
    ]
    for (const [tag, code] of cases) assert.strictEqual(ExitCode.fromError({ _tag: tag }), code, tag)
  })

  it.effect("read the lease length from QUARRY_LEASE_MS", () =>
    Effect.gen(function*() {
      const settings = yield* Settings.config.pipe(
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["QUARRY_LEASE_MS", "1500"]])))
      )
      assert.strictEqual(settings.leaseMs, 1500)
      const bad = yield* quarry(["runs"], { QUARRY_LEASE_MS: "0" })
      assert.strictEqual(bad.code, 2)
      assert.include(
        bad.stderr(),
        "quarry: bad environment: QUARRY_LEASE_MS is \"0\", which is not valid; it must be a whole number of " +
          "milliseconds greater than 0"
      )
    }))
})
