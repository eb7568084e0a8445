/**
 * The artifact is renamed into place when a run ends, which replaces whatever file had its path. An artifact path
 * that is the database (or its -wal, -shm or -journal file), the input or the ontology is refused before anything is
 * written (exit 2, the file's bytes unchanged, no run created), with the built `quarry` as users run it: `start`
 * with `--out` or its default path, `resume --out`, `export` with `--out` or its default path, paths compared with
 * symbolic links resolved. `resume` also refuses a run whose artifact directory went away, before extracting.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"
import { makeDir, readRun, removeDir, run, sha256File, texts } from "./support.js"

const small = path.join(texts, "long-multi-chapter.txt")
// The lightest extractor (start builds it before it checks the files).
const light = ["--extractor", "capitalized"]
const ontology = [
  "@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .",
  "@prefix ex: <http://example.org/> .",
  "ex:Person a rdfs:Class .",
  ""
].join("\n")

describe.concurrent("an artifact path that would replace a file Quarry reads or keeps", () => {
  let root = ""
  // A database with one completed run, "done"; each case gets its own copy.
  let template = ""

  beforeAll(async () => {
    root = fs.realpathSync(makeDir())
    template = path.join(root, "template.db")
    const done = await run([
      "start",
      small,
      ...light,
      "--db",
      template,
      "--run-id",
      "done",
      "--out",
      path.join(root, "done.ttl")
    ])
    assert.strictEqual(done.code, 0, done.stderr)
  }, 60_000)
  afterAll(() => removeDir(root))

  /** A fresh directory holding a copy of the template database named `name`. */
  const withDatabase = (name = "q.db") => {
    const dir = fs.mkdtempSync(path.join(root, "case-"))
    const db = path.join(dir, name)
    fs.copyFileSync(template, db)
    return { dir, db, sha256: sha256File(db) }
  }

  const refused = async (args: ReadonlyArray<string>, cwd: string, message: string) => {
    const result = await run(args, { cwd })
    assert.strictEqual(result.code, 2, result.stderr)
    assert.include(result.stderr, message)
    assert.strictEqual(result.stdout, "")
  }

  const replaceMessage = (what: string, db: string, instead = "pass another --out") =>
    `${what} is the same file as the database ${db}: writing the artifact there would replace the database and ` +
    `every run in it; ${instead}`

  it("start --out the database: exit 2, the database unchanged, no run created", async () => {
    const { db, dir, sha256 } = withDatabase()
    await refused(
      ["start", small, ...light, "--db", db, "--run-id", "new", "--out", db],
      dir,
      replaceMessage(`the output ${db}`, db)
    )
    assert.strictEqual(sha256File(db), sha256)
    assert.isUndefined(readRun(db, "new"))
  }, 60_000)

  it("start --out the database through a symbolic link to its directory: the real paths are compared", async () => {
    const { db, dir, sha256 } = withDatabase()
    const alias = path.join(dir, "alias")
    fs.symlinkSync(dir, alias)
    const out = path.join(alias, "q.db")
    await refused(
      ["start", small, ...light, "--db", db, "--run-id", "new", "--out", out],
      dir,
      replaceMessage(`the output ${out}`, db)
    )
    assert.strictEqual(sha256File(db), sha256)
    assert.isUndefined(readRun(db, "new"))
  }, 60_000)

  for (
    const [suffix, what] of [["-wal", "write-ahead log"], ["-shm", "shared-memory index"], [
      "-journal",
      "rollback journal"
    ]]
  ) {
    it(`start --out the database's ${suffix} file: exit 2, the database unchanged`, async () => {
      const { db, dir, sha256 } = withDatabase()
      await refused(
        ["start", small, ...light, "--db", db, "--run-id", "new", "--out", `${db}${suffix}`],
        dir,
        `the output ${db}${suffix} is the ${what} of the database ${db} (${db}${suffix}): writing the artifact ` +
          `there would corrupt the database; pass another --out`
      )
      assert.strictEqual(sha256File(db), sha256)
      assert.isUndefined(readRun(db, "new"))
    }, 60_000)
  }

  it("start --db v.db --out v.db with no database yet: exit 2, nothing created", async () => {
    const dir = fs.mkdtempSync(path.join(root, "case-"))
    await refused(
      ["start", small, ...light, "--db", "v.db", "--out", "v.db"],
      dir,
      replaceMessage(`the output ${path.join(dir, "v.db")}`, "v.db")
    )
    assert.deepStrictEqual(fs.readdirSync(dir), [])
  }, 60_000)

  it(
    "start --db foo.ttl --run-id foo, whose default artifact is the database: exit 2, the database unchanged",
    async () => {
      const { db, dir, sha256 } = withDatabase("foo.ttl")
      await refused(
        ["start", small, ...light, "--db", "foo.ttl", "--run-id", "foo"],
        dir,
        replaceMessage(`the default output ${db}`, "foo.ttl", "pass --out FILE, or another --run-id")
      )
      assert.strictEqual(sha256File(db), sha256)
      assert.isUndefined(readRun(db, "foo"))
    },
    60_000
  )

  it("start in.txt --out in.txt: exit 2, the input unchanged, no database created", async () => {
    const dir = fs.mkdtempSync(path.join(root, "case-"))
    const input = path.join(dir, "in.txt")
    fs.copyFileSync(small, input)
    await refused(
      ["start", "in.txt", ...light, "--db", "q.db", "--out", "in.txt"],
      dir,
      `the output ${input} is the same file as the input file in.txt: writing the artifact there would overwrite ` +
        `it; pass another --out`
    )
    assert.strictEqual(sha256File(input), sha256File(small))
    assert.deepStrictEqual(fs.readdirSync(dir), ["in.txt"])
  }, 60_000)

  it("start --ontology myont.ttl --out myont.ttl: exit 2, the ontology unchanged, the database unchanged", async () => {
    const { db, dir, sha256 } = withDatabase()
    const file = path.join(dir, "myont.ttl")
    fs.writeFileSync(file, ontology)
    await refused(
      ["start", small, ...light, "--db", db, "--run-id", "new", "--ontology", "myont.ttl", "--out", "myont.ttl"],
      dir,
      `the output ${file} is the same file as the ontology myont.ttl: writing the artifact there would overwrite ` +
        `it; pass another --out`
    )
    assert.strictEqual(fs.readFileSync(file, "utf8"), ontology)
    assert.strictEqual(sha256File(db), sha256)
    assert.isUndefined(readRun(db, "new"))
  }, 60_000)

  it("resume --out the database: exit 2, the database unchanged", async () => {
    const { db, dir, sha256 } = withDatabase()
    await refused(["resume", "done", "--db", db, "--out", db], dir, replaceMessage(`the output ${db}`, db))
    assert.strictEqual(sha256File(db), sha256)
  }, 60_000)

  it("export --out the database: exit 2, the database unchanged", async () => {
    const { db, dir, sha256 } = withDatabase()
    await refused(["export", "done", "--db", db, "--out", db], dir, replaceMessage(`the output ${db}`, db))
    assert.strictEqual(sha256File(db), sha256)
  }, 60_000)

  // export and resume know the run's input and ontology by content only (the run keeps no path of them).
  const holdsMessage = (out: string, what: string, instead = "pass another --out") =>
    `the output ${out} holds ${what} (the same SHA-256): writing the artifact there would overwrite it; ${instead}`

  it("export --out a copy of the run's input: exit 2, the file unchanged, the database unchanged", async () => {
    const { db, dir, sha256 } = withDatabase()
    const input = path.join(dir, "in.txt")
    fs.copyFileSync(small, input)
    await refused(
      ["export", "done", "--db", db, "--out", "in.txt"],
      dir,
      holdsMessage(input, "the input of run done", "pass another --out (- for stdout)")
    )
    assert.strictEqual(sha256File(input), sha256File(small))
    assert.strictEqual(sha256File(db), sha256)
  }, 60_000)

  it("resume --out the run's input with a byte order mark: exit 2, the file unchanged", async () => {
    const { db, dir, sha256 } = withDatabase()
    const input = path.join(dir, "in.txt")
    fs.writeFileSync(input, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), fs.readFileSync(small)]))
    const before = sha256File(input)
    await refused(["resume", "done", "--db", db, "--out", "in.txt"], dir, holdsMessage(input, "the input of run done"))
    assert.strictEqual(sha256File(input), before)
    assert.strictEqual(sha256File(db), sha256)
  }, 60_000)

  it("export and resume --out the run's ontology file: exit 2, the ontology unchanged", async () => {
    const { db, dir } = withDatabase()
    fs.writeFileSync(path.join(dir, "myont.ttl"), ontology)
    const started = await run(
      ["start", small, ...light, "--db", db, "--run-id", "ont", "--ontology", "myont.ttl", "--out", "ont.ttl"],
      { cwd: dir }
    )
    assert.strictEqual(started.code, 0, started.stderr)
    const sha256 = sha256File(db)
    const file = path.join(dir, "myont.ttl")
    const commands = [["export", "pass another --out (- for stdout)"], ["resume", "pass another --out"]] as const
    for (const [command, instead] of commands) {
      await refused(
        [command, "ont", "--db", db, "--out", "myont.ttl"],
        dir,
        holdsMessage(file, "the ontology of run ont", instead)
      )
    }
    assert.strictEqual(fs.readFileSync(file, "utf8"), ontology)
    assert.strictEqual(sha256File(db), sha256)
  }, 60_000)

  it("export done, whose default artifact holds the run's input: exit 2, the file unchanged", async () => {
    const { db, dir, sha256 } = withDatabase()
    const input = path.join(dir, "done.ttl")
    fs.copyFileSync(small, input)
    await refused(
      ["export", "done", "--db", db],
      dir,
      `the default output ${input} holds the input of run done (the same SHA-256): writing the artifact there would ` +
        `overwrite it; pass --out FILE`
    )
    assert.strictEqual(sha256File(input), sha256File(small))
    assert.strictEqual(sha256File(db), sha256)
  }, 60_000)

  it("export done --db done.ttl, whose default artifact is the database: exit 2, the database unchanged", async () => {
    const { db, dir, sha256 } = withDatabase("done.ttl")
    await refused(
      ["export", "done", "--db", "done.ttl"],
      dir,
      replaceMessage(`the default output ${db}`, "done.ttl", "pass --out FILE")
    )
    assert.strictEqual(sha256File(db), sha256)
  }, 60_000)
})

describe("resume of a run whose artifact directory was removed", () => {
  let dir = ""
  beforeAll(() => {
    dir = fs.realpathSync(makeDir())
  })
  afterAll(() => removeDir(dir))

  it("exits 2 with the mkdir -p fix before extracting anything, and resumes once the directory is back", async () => {
    const db = path.join(dir, "g.db")
    const gone = path.join(dir, "gone")
    const out = path.join(gone, "g.ttl")
    const calls = path.join(dir, "calls.log")
    fs.mkdirSync(gone)
    const flags = ["--window", "300", "--batch-size", "2", "--extractor", "test-slow"]
    const started = await run(["start", small, ...flags, "--db", db, "--run-id", "g2", "--out", out], {
      env: { QUARRY_TEST_EXTRACTOR_DELAY_MS: "0", QUARRY_TEST_FAIL_BATCH: "1" }
    })
    assert.strictEqual(started.code, 1, started.stderr)
    const before = readRun(db, "g2")!
    assert.strictEqual(before.status, "failed")
    assert.isBelow(before.committed_batches, before.total_batches)
    fs.rmSync(gone, { recursive: true })
    const sha256 = sha256File(db)

    const env = { QUARRY_TEST_EXTRACTOR_DELAY_MS: "0", QUARRY_TEST_CALL_LOG: calls }
    const resumed = await run(["resume", "g2", "--db", db], { env })
    assert.strictEqual(resumed.code, 2, resumed.stderr)
    assert.include(
      resumed.stderr,
      `the directory ${gone} of run g2's artifact ${out} does not exist; create it first (mkdir -p ${gone})`
    )
    assert.strictEqual(resumed.stdout, "")
    assert.isFalse(fs.existsSync(calls), "no batch may be extracted before the refusal")
    assert.strictEqual(sha256File(db), sha256)
    assert.deepStrictEqual(readRun(db, "g2"), before)

    fs.mkdirSync(gone)
    const again = await run(["resume", "g2", "--db", db], { env })
    assert.strictEqual(again.code, 0, again.stderr)
    assert.strictEqual(readRun(db, "g2")!.status, "completed")
    assert.isTrue(fs.existsSync(out))
  }, 120_000)
})
