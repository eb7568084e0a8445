/**
 * Where artifacts go and what is served as them, with real files: `quarry export --out -` writes the artifact to
 * stdout (the same bytes as a file, valid for `rapper -c`), `--out` never replaces a named pipe or a symbolic link
 * (the rename of the atomic write would), an export of a run with skipped batches says that it is partial (and, as
 * the manifest of those batches does, how to retry them on this database), an export or a `resume --out` of it to a
 * file writes that manifest beside the file (and an export of a run without skipped batches removes one left there;
 * `start` checks its place before anything is written), a resume of a completed run writes its missing artifact and manifest
 * again, and the server never serves other bytes under an artifact's ETag when its
 * file was replaced by one of the same size.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { call, ended, serve, stop } from "./serverProcess.js"
import { jsonLines, makeDir, removeDir, run } from "./support.js"

const text = "Captain Ahab commanded the Pequod. Ishmael sailed from Nantucket with Queequeg. Starbuck was the " +
  "first mate of the ship and Stubb the second. Flask was the third mate."

const rapperAccepts = (file: string, syntax: "turtle" | "ntriples") => {
  const rapper = spawnSync("rapper", ["-q", "-c", "-i", syntax, file, "http://example.org/"], { encoding: "utf8" })
  assert.isUndefined(rapper.error, "rapper is missing: apt-get install raptor2-utils")
  assert.strictEqual(rapper.status, 0, `${file}: ${rapper.stdout}${rapper.stderr}`)
}

/** The manifest of a partial artifact's skipped batches. */
interface Manifest {
  readonly runId: string
  readonly artifact: string
  readonly skipped: ReadonlyArray<unknown>
  readonly resume: string
}

/** A run of `text` in batches of one chunk of 40 characters, whose batch 2 fails and is skipped. */
const partialFlags = [
  "--extractor",
  "test-slow",
  "--window",
  "40",
  "--overlap",
  "0",
  "--batch-size",
  "1",
  "--on-batch-error",
  "skip"
]
const failSecondBatch = { QUARRY_TEST_EXTRACTOR_DELAY_MS: "1", QUARRY_TEST_FAIL_BATCH: "2" }

describe("quarry export: stdout, special files and partial runs", () => {
  let dir = ""
  let db = ""
  beforeAll(async () => {
    dir = makeDir()
    db = path.join(dir, "q.db")
    const input = path.join(dir, "in.txt")
    fs.writeFileSync(input, text)
    const started = await run(["start", input, "--db", db, "--run-id", "partial", ...partialFlags], {
      env: failSecondBatch
    })
    assert.strictEqual(started.code, 0, started.stderr)
    assert.include(
      started.stdout,
      `1 batch was skipped (--on-batch-error skip), so the artifact is partial; it is listed in ` +
        `${path.join(dir, "partial.ttl.skipped.json")}. Retry it with: quarry resume partial --db ${db} --retry-skipped`
    )
  }, 60_000)
  afterAll(() => removeDir(dir))

  it("writes the artifact to stdout with --out -, the same bytes as a file, and says the run is partial", async () => {
    for (const [format, syntax] of [["turtle", "turtle"], ["ntriples", "ntriples"], ["jsonl", undefined]] as const) {
      const file = path.join(dir, `partial.${format}`)
      const toFile = await run(["export", "partial", "--db", db, "--format", format, "--out", file])
      assert.strictEqual(toFile.code, 0, toFile.stderr)
      // Its temp folder goes under TMPDIR.
      const toStdout = await run(["export", "partial", "--db", db, "--format", format, "--out", "-", "--json"], {
        env: { TMPDIR: dir }
      })
      assert.strictEqual(toStdout.code, 0, toStdout.stderr)
      assert.strictEqual(toStdout.stdout, fs.readFileSync(file, "utf8"), format)
      // The summary goes to stderr, with the skipped batch.
      const summary = JSON.parse(toStdout.stderr.trim()) as {
        artifact: { path: string; sha256: string }
        skippedBatches: number
      }
      assert.strictEqual(summary.artifact.path, "-")
      assert.strictEqual(summary.artifact.sha256, createHash("sha256").update(toStdout.stdout).digest("hex"))
      assert.strictEqual(summary.skippedBatches, 1)
      assert.include(toFile.stderr, "1 batch of run partial was skipped")
      if (syntax !== undefined) rapperAccepts(file, syntax)
    }
    // No temp folder is left behind.
    assert.deepStrictEqual(fs.readdirSync(dir).filter((name) => name.startsWith("quarry-export-")), [])
  }, 60_000)

  it("the skipped batches' manifest and export's summary give the retry command with the --db", async () => {
    const retry = `quarry resume partial --db ${db} --retry-skipped`
    const manifest = JSON.parse(fs.readFileSync(path.join(dir, "partial.ttl.skipped.json"), "utf8")) as {
      resume: string
    }
    assert.strictEqual(manifest.resume, retry)
    const exported = await run(["export", "partial", "--db", db, "--out", path.join(dir, "retry.ttl")])
    assert.strictEqual(exported.code, 0, exported.stderr)
    assert.include(exported.stderr, `retry it with: ${retry}\n`)
  }, 60_000)

  /** `command partial --out blocked`, where a directory stands in the manifest's place: exit 2, nothing written. */
  const refusedForManifestPlace = async (command: "export" | "resume", blocked: string, runId = "partial") => {
    fs.mkdirSync(`${blocked}.skipped.json`)
    const refused = await run([command, runId, "--db", db, "--out", blocked])
    assert.strictEqual(refused.code, 2, refused.stderr)
    assert.include(
      refused.stderr,
      `the manifest of skipped batches of the output ${blocked}.skipped.json is a directory`
    )
    assert.isFalse(fs.existsSync(blocked))
  }

  it("export to a file of a partial run writes its manifest of skipped batches beside it (it wrote none)", async () => {
    const out = path.join(dir, "shared", "partial-copy.jsonl")
    fs.mkdirSync(path.dirname(out))
    const exported = await run(["export", "partial", "--db", db, "--out", out, "--json"])
    assert.strictEqual(exported.code, 0, exported.stderr)
    const own = JSON.parse(fs.readFileSync(path.join(dir, "partial.ttl.skipped.json"), "utf8")) as Manifest
    const copy = JSON.parse(fs.readFileSync(`${out}.skipped.json`, "utf8")) as Manifest
    assert.deepStrictEqual(copy, { ...own, artifact: out })
    const summary = JSON.parse(exported.stdout) as { manifest: string | null; skippedBatches: number }
    assert.strictEqual(summary.manifest, `${out}.skipped.json`)
    assert.deepStrictEqual(fs.readdirSync(path.dirname(out)).sort(), [
      "partial-copy.jsonl",
      "partial-copy.jsonl.skipped.json"
    ])
    // Refused before anything is written when the manifest's place cannot take it.
    await refusedForManifestPlace("export", path.join(dir, "shared", "blocked.ttl"))
  }, 60_000)

  it(
    "start refuses an output whose manifest of skipped batches cannot go beside it, before anything is written",
    async () => {
      const out = path.join(dir, "start-blocked.ttl")
      const fresh = path.join(dir, "start-blocked.db")
      fs.mkdirSync(`${out}.skipped.json`)
      const refused = await run(["start", path.join(dir, "in.txt"), "--db", fresh, "--out", out, ...partialFlags], {
        env: { QUARRY_TEST_EXTRACTOR_DELAY_MS: "1" }
      })
      assert.strictEqual(refused.code, 2, refused.stderr)
      assert.include(refused.stderr, `the manifest of skipped batches of the output ${out}.skipped.json is a directory`)
      assert.isFalse(fs.existsSync(fresh))
      assert.isFalse(fs.existsSync(out))
    },
    60_000
  )

  it(
    "export of a run that skipped nothing removes the manifest an earlier export left beside its file, and checks its place",
    async () => {
      const out = path.join(dir, "reused.ttl")
      assert.strictEqual((await run(["export", "partial", "--db", db, "--out", out])).code, 0)
      assert.isTrue(fs.existsSync(`${out}.skipped.json`))
      const input = path.join(dir, "in.txt")
      const whole = path.join(dir, "whole.ttl")
      const started = await run(["start", input, "--db", db, "--run-id", "whole", "--out", whole, ...partialFlags], {
        env: { QUARRY_TEST_EXTRACTOR_DELAY_MS: "1" }
      })
      assert.strictEqual(started.code, 0, started.stderr)
      const exported = await run(["export", "whole", "--db", db, "--out", out])
      assert.strictEqual(exported.code, 0, exported.stderr)
      assert.strictEqual(fs.readFileSync(out, "utf8"), fs.readFileSync(whole, "utf8"))
      assert.isFalse(fs.existsSync(`${out}.skipped.json`))
      // Where no manifest can be removed, refused before anything is written, as for a partial run.
      await refusedForManifestPlace("export", path.join(dir, "whole-blocked.ttl"), "whole")
      await refusedForManifestPlace("resume", path.join(dir, "whole-resume-blocked.ttl"), "whole")
    },
    60_000
  )

  it("resume --out of a partial run writes its manifest beside the copy too", async () => {
    const out = path.join(dir, "resumed-copy.ttl")
    const resumed = await run(["resume", "partial", "--db", db, "--out", out, "--json"])
    assert.strictEqual(resumed.code, 0, resumed.stderr)
    const own = JSON.parse(fs.readFileSync(path.join(dir, "partial.ttl.skipped.json"), "utf8")) as Manifest
    assert.deepStrictEqual(JSON.parse(fs.readFileSync(`${out}.skipped.json`, "utf8")), { ...own, artifact: out })
    const written = jsonLines(resumed.stdout).find((event) => event.event === "artifact.written")
    assert.strictEqual(written?.manifest, `${out}.skipped.json`)
    await refusedForManifestPlace("resume", path.join(dir, "resume-blocked.ttl"))
  }, 60_000)

  it(
    "resume of a completed run writes its missing artifact and manifest of skipped batches again, same bytes",
    async () => {
      const started = await run(
        ["start", path.join(dir, "in.txt"), "--db", db, "--run-id", "lost", ...partialFlags],
        { env: failSecondBatch }
      )
      assert.strictEqual(started.code, 0, started.stderr)
      const [artifact, manifest] = [path.join(dir, "lost.ttl"), path.join(dir, "lost.ttl.skipped.json")]
      const original = { artifact: fs.readFileSync(artifact), manifest: fs.readFileSync(manifest) }
      fs.rmSync(artifact)
      fs.rmSync(manifest)
      const resumed = await run(["resume", "lost", "--db", db])
      assert.strictEqual(resumed.code, 0, resumed.stderr)
      assert.include(
        resumed.stderr,
        `quarry: run lost's manifest of skipped batches ${manifest} was missing; written again`
      )
      assert.isTrue(fs.readFileSync(artifact).equals(original.artifact))
      assert.isTrue(fs.readFileSync(manifest).equals(original.manifest), fs.readFileSync(manifest, "utf8"))
      // The manifest alone, under an artifact that is still there.
      fs.rmSync(manifest)
      const again = await run(["resume", "lost", "--db", db])
      assert.strictEqual(again.code, 0, again.stderr)
      assert.isTrue(fs.readFileSync(manifest).equals(original.manifest))
    },
    60_000
  )

  it("refuses a named pipe as --out (the rename would replace it) and writes through a symbolic link", async () => {
    const fifo = path.join(dir, "pipe.ttl")
    assert.strictEqual(spawnSync("mkfifo", [fifo]).status, 0)
    const refused = await run(["export", "partial", "--db", db, "--out", fifo])
    assert.strictEqual(refused.code, 2)
    assert.include(refused.stderr, "is a named pipe, not a regular file")
    assert.include(refused.stderr, "- for stdout")
    assert.isTrue(fs.lstatSync(fifo).isFIFO())

    const real = path.join(dir, "real.nt")
    const link = path.join(dir, "link.nt")
    fs.writeFileSync(real, "old\n")
    fs.symlinkSync("real.nt", link)
    const written = await run(["export", "partial", "--db", db, "--out", link])
    assert.strictEqual(written.code, 0, written.stderr)
    assert.isTrue(fs.lstatSync(link).isSymbolicLink())
    assert.include(fs.readFileSync(real, "utf8"), "<https://w3id.org/quarry/entity/")
    rapperAccepts(real, "ntriples")
  }, 60_000)
})

describe("GET /v1/runs/{id}/artifact: the bytes of its ETag", () => {
  let dir = ""
  beforeAll(() => {
    dir = makeDir()
  })
  afterAll(() => removeDir(dir))

  it("serves the run's own bytes when its file was replaced by one of the same size", async () => {
    const server = await serve(path.join(dir, "q.db"))
    try {
      assert.strictEqual((await call(server, "POST", "/v1/runs", { runId: "ahab", input: text })).status, 202)
      const done = await ended(server, "ahab") as { status: string; artifact: { sha256: string } }
      assert.strictEqual(done.status, "completed")
      const file = path.join(dir, "ahab.ttl")
      const original = fs.readFileSync(file)
      const first = await fetch(`${server.url}/v1/runs/ahab/artifact`)
      assert.strictEqual(Buffer.from(await first.arrayBuffer()).compare(original), 0)
      // Same size, other bytes: an edit in place.
      fs.writeFileSync(file, Buffer.alloc(original.length, "Z"))
      for (const range of [undefined, "bytes=0-9"]) {
        const response = await fetch(`${server.url}/v1/runs/ahab/artifact`, {
          headers: range === undefined ? {} : { range }
        })
        const body = Buffer.from(await response.arrayBuffer())
        assert.strictEqual(response.headers.get("etag"), `"${done.artifact.sha256}"`)
        assert.strictEqual(body.compare(range === undefined ? original : original.subarray(0, 10)), 0, range)
      }
    } finally {
      await stop(server)
    }
  }, 60_000)
})
