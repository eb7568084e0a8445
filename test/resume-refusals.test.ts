/**
 * `resume` refuses, with a typed error and exit 2, a run whose stored plan no longer matches this process, and
 * writes nothing. The change is simulated by editing the stored row (this is not a crash test): the ontology, the
 * chunker version, the extractor's configuration hash alone, an extractor that is no longer registered, and the
 * batch count.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"
import { jsonLines, makeDir, readRun, removeDir, run, sha256File, texts, withWritableDb } from "./support.js"

interface Refusal {
  readonly name: string
  readonly tamper: string
  readonly error: string
  readonly message: string
}

const refusals: ReadonlyArray<Refusal> = [
  {
    name: "the stored ontology changed",
    tamper: "UPDATE ontologies SET source = source || ' ' || '<http://example.org/x> a <http://example.org/Y> .'",
    error: "PlanMismatch",
    message: "was started with ontology"
  },
  {
    name: "another chunker version",
    tamper: "UPDATE runs SET chunker_version = 'chunker-0-retired'",
    error: "PlanMismatch",
    message: "was started with chunker version chunker-0-retired"
  },
  {
    name: "the extractor's configuration hash alone changed",
    tamper: "UPDATE runs SET extractor_config_hash = 'an-older-configuration'",
    error: "PlanMismatch",
    message: "was started with extractor test-slow configuration an-older-configuration"
  },
  {
    name: "the extractor is no longer registered",
    tamper: "UPDATE runs SET extractor_name = 'retired-extractor'",
    error: "UnknownExtractor",
    message: "unknown extractor \"retired-extractor\"; available: "
  },
  {
    name: "another batch count",
    tamper: "UPDATE runs SET total_batches = total_batches + 1",
    error: "PlanMismatch",
    message: "was started with batch count"
  }
]

describe("resume refusals", () => {
  let dir = ""
  let failed = ""

  beforeAll(async () => {
    dir = makeDir()
    failed = path.join(dir, "failed.db")
    // A resumable run: the test extractor fails on batch 1, after batch 0 is committed.
    const result = await run(
      [
        "start",
        path.join(texts, "long-multi-chapter.txt"),
        "--db",
        failed,
        "--run-id",
        "r",
        "--window",
        "300",
        "--batch-size",
        "2",
        "--extractor",
        "test-slow"
      ],
      { env: { QUARRY_TEST_EXTRACTOR_DELAY_MS: "0", QUARRY_TEST_FAIL_BATCH: "1" } }
    )
    assert.strictEqual(result.code, 1, result.stderr)
    assert.strictEqual(readRun(failed, "r")!.status, "failed")
  }, 60_000)
  afterAll(() => removeDir(dir))

  describe.concurrent("each", () => {
    for (const refusal of refusals) {
      it(`${refusal.name}: ${refusal.error}, exit 2, nothing written`, async () => {
        const db = path.join(dir, `${refusal.name.replace(/\W+/g, "-")}.db`)
        fs.copyFileSync(failed, db)
        withWritableDb(db, (sqlite) => sqlite.exec(refusal.tamper))
        const before = sha256File(db)
        const result = await run(["resume", "r", "--db", db, "--json"], {
          env: { QUARRY_TEST_EXTRACTOR_DELAY_MS: "0" }
        })
        assert.strictEqual(result.code, 2, result.stderr)
        const [event, ...rest] = jsonLines(result.stdout)
        assert.deepStrictEqual(rest, [])
        assert.strictEqual(event!.event, "error")
        assert.strictEqual(event!.error, refusal.error)
        assert.strictEqual(event!.exitCode, 2)
        assert.include(String(event!.message), refusal.message)
        assert.strictEqual(sha256File(db), before, "the database is unchanged")
        assert.strictEqual(readRun(db, "r")!.status, "failed")
      }, 60_000)
    }
  })
})
