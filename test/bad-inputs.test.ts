/**
 * The catalogue of bad inputs: every case exits 2 (3 for an in-memory database) with a specific message, prints
 * nothing on stdout, and leaves the database exactly as it was (same bytes, same modification time, no journal).
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import Database from "better-sqlite3"
import * as fs from "node:fs"
import * as path from "node:path"
import {
  assertUnprivilegedCanRun,
  giveToUnprivileged,
  setUnprivilegedReadOnly,
  unprivileged,
  unprivilegedCanWrite
} from "./readOnlyDirectory.js"
import { jsonLines, makeDir, removeDir, run, sha256File, texts } from "./support.js"

const notes = "these are my notes, not a database\n".repeat(10)

interface Snapshot {
  readonly sha256: string
  readonly mtimeMs: number
  readonly siblings: ReadonlyArray<string>
  /** The other application's database, which no command may change (nor switch to WAL). */
  readonly foreign: string
}

describe("bad inputs", () => {
  let dir = ""
  let db = ""
  let snapshot: Snapshot | undefined
  const small = path.join(texts, "long-multi-chapter.txt")
  // The cases run concurrently, so a case may see another one's database open (its -wal and -shm files): those
  // are compared once all cases are done.
  const take = (withJournal = false): Snapshot => ({
    sha256: sha256File(db),
    mtimeMs: fs.statSync(db).mtimeMs,
    siblings: fs.readdirSync(dir).filter((name) => withJournal || !/-(wal|shm|journal)$/.test(name)).sort(),
    foreign: sha256File(path.join(dir, "foreign.db"))
  })

  beforeAll(async () => {
    dir = makeDir()
    db = path.join(dir, "q.db")
    const done = await run(["start", small, "--db", db, "--run-id", "done", "--window", "500"])
    assert.strictEqual(done.code, 0, done.stderr)
    const binary = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48])
    fs.writeFileSync(path.join(dir, "image.png"), binary)
    fs.writeFileSync(
      path.join(dir, "latin1.txt"),
      Buffer.from("Ahab's caf\u00e9 na\u00efve r\u00e9sum\u00e9\n", "latin1")
    )
    fs.writeFileSync(path.join(dir, "notes.db"), notes)
    fs.writeFileSync(path.join(dir, "utf16.txt"), Buffer.from("\uFEFFCaptain Ahab\n", "utf16le"))
    const foreign = new Database(path.join(dir, "foreign.db"))
    foreign.exec("CREATE TABLE runs (x); CREATE TABLE notes (y); INSERT INTO notes VALUES ('mine')")
    foreign.close()
    fs.mkdirSync(path.join(dir, "folder"))
    fs.mkdirSync(path.join(dir, "readonly"))
    fs.writeFileSync(path.join(dir, "secret.txt"), "Captain Ahab's private log.\n", { mode: 0o600 })
    fs.writeFileSync(path.join(dir, "broken.ttl"), "@prefix ex: <http://example.org/> .\nex:a ex:b\n")
    fs.writeFileSync(path.join(dir, "classless.ttl"), "@prefix ex: <http://example.org/> .\nex:a ex:b ex:c .\n")
    fs.writeFileSync(
      path.join(dir, "rdfxml.owl"),
      "<?xml version=\"1.0\"?>\n<rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\"/>\n"
    )
    // 600 MB that take no space: read whole, they would take seconds and 600 MB of memory.
    fs.writeFileSync(path.join(dir, "huge.txt"), "")
    fs.truncateSync(path.join(dir, "huge.txt"), 600 * 1024 * 1024)
    // The unprivileged user (nobody, when these tests run as root) must reach the directory to be refused a file.
    assertUnprivilegedCanRun()
    fs.chmodSync(dir, 0o755)
    giveToUnprivileged(path.join(dir, "readonly"))
    snapshot = take(true)
  }, 60_000)
  afterAll(() => {
    setUnprivilegedReadOnly(path.join(dir, "readonly"), false)
    removeDir(dir)
  })

  const cases: ReadonlyArray<{
    readonly name: string
    readonly args: () => ReadonlyArray<string>
    readonly message: () => string
    readonly code?: number
    readonly env?: Readonly<Record<string, string>>
    /** Run as the unprivileged user (permissions apply even when the tests run as root). */
    readonly unprivileged?: boolean
    /** Text that must appear nowhere in the output (a secret given where it does not belong). */
    readonly absent?: string
    /** Given to the command on its standard input (a pipe). */
    readonly stdin?: string
  }> = [
    {
      name: "missing input file",
      args: () => ["start", path.join(dir, "missing.txt"), "--db", db],
      message: () => `input file ${path.join(dir, "missing.txt")} does not exist; check the path`
    },
    {
      name: "directory as input",
      args: () => ["start", path.join(dir, "folder"), "--db", db],
      message: () => `input file ${path.join(dir, "folder")} is a directory; pass a text file`
    },
    {
      name: "binary input",
      args: () => ["start", path.join(dir, "image.png"), "--db", db],
      message: () => "looks like a binary file (a NUL byte at offset 8)"
    },
    {
      name: "a binary device (/dev/zero, read only up to its first NUL byte)",
      args: () => ["start", "/dev/zero", "--db", db],
      message: () => "input file /dev/zero looks like a binary file (a NUL byte at offset 0)"
    },
    {
      name: "UTF-16 input (its byte order mark)",
      args: () => ["start", path.join(dir, "utf16.txt"), "--db", db],
      message: () =>
        `input file ${path.join(dir, "utf16.txt")} is UTF-16 text (it starts with a UTF-16 byte order mark); ` +
        `Quarry reads UTF-8, so convert it first`
    },
    {
      name: "a pipe that gives more than --max-input-size (read up to the limit, refused beyond)",
      args: () => ["start", "/dev/stdin", "--db", db, "--max-input-size", "1K"],
      stdin: "Call me Ishmael. ".repeat(200),
      message: () => "input file /dev/stdin gives more than the limit of 1024 bytes"
    },
    {
      name: "invalid UTF-8",
      args: () => ["start", path.join(dir, "latin1.txt"), "--db", db],
      message: () => "is not valid UTF-8 (first invalid byte at offset 10)"
    },
    {
      name: "unreadable input file (EACCES, as an unprivileged user)",
      args: () => ["start", path.join(dir, "secret.txt"), "--db", db],
      unprivileged: true,
      message: () =>
        `cannot read input file ${path.join(dir, "secret.txt")}: permission denied; make it readable by this user`
    },
    {
      name: "input over the default size limit (512 MB), refused before reading it",
      args: () => ["start", path.join(dir, "huge.txt"), "--db", db],
      message: () =>
        `input file ${path.join(dir, "huge.txt")} is 629145600 bytes (600 MB), over the limit of 536870912 bytes ` +
        `(512 MB); split it, or raise the limit with --max-input-size (or QUARRY_MAX_INPUT_BYTES)`
    },
    {
      name: "input over --max-input-size",
      args: () => ["start", small, "--db", db, "--max-input-size", "1K"],
      message: () => `input file ${small} is ${fs.statSync(small).size} bytes, over the limit of 1024 bytes`
    },
    {
      name: "input over QUARRY_MAX_INPUT_BYTES",
      args: () => ["start", small, "--db", db],
      env: { QUARRY_MAX_INPUT_BYTES: "100" },
      message: () => `input file ${small} is ${fs.statSync(small).size} bytes, over the limit of 100 bytes`
    },
    {
      name: "unreadable --max-input-size",
      args: () => ["start", small, "--db", db, "--max-input-size", "lots"],
      message: () =>
        "max-input-size (\"lots\") must be a size greater than 0: bytes, or with a unit, such as 64MB or 2GB"
    },
    {
      name: "--max-input-size too large to count",
      args: () => ["start", small, "--db", db, "--max-input-size", "99999999999G"],
      message: () =>
        "max-input-size (\"99999999999G\") is too large: it must be a size greater than 0, at most " +
        "9007199254740991 bytes"
    },
    {
      name: "ontology with a syntax error",
      args: () => ["start", small, "--db", db, "--ontology", path.join(dir, "broken.ttl")],
      message: () => `ontology ${path.join(dir, "broken.ttl")} could not be read (line 3, column 1)`
    },
    {
      name: "ontology without classes",
      args: () => ["start", small, "--db", db, "--ontology", path.join(dir, "classless.ttl")],
      message: () =>
        `ontology ${path.join(dir, "classless.ttl")} declares no classes (no rdfs:Class or owl:Class), so nothing ` +
        `could be extracted with it`
    },
    {
      name: "ontology in RDF/XML (.owl, an extension that names no format)",
      args: () => ["start", small, "--db", db, "--ontology", path.join(dir, "rdfxml.owl")],
      message: () =>
        `ontology ${path.join(dir, "rdfxml.owl")} could not be read (line 1, column 1): Unexpected "<?xml"; this ` +
        "looks like RDF/XML, which Quarry does not read: convert it to Turtle first (e.g. rapper -i rdfxml -o turtle)"
    },
    {
      name: "missing ontology file",
      args: () => ["start", small, "--db", db, "--ontology", path.join(dir, "missing.ttl")],
      message: () => `ontology ${path.join(dir, "missing.ttl")} does not exist; check the path`
    },
    {
      name: "window 0",
      args: () => ["start", small, "--db", db, "--window", "0"],
      message: () => "window (0) must be a whole number greater than 0"
    },
    {
      name: "negative window",
      args: () => ["start", small, "--db", db, "--window", "-5"],
      message: () => "window (-5) must be a whole number greater than 0"
    },
    {
      name: "negative overlap",
      args: () => ["start", small, "--db", db, "--overlap=-1"],
      message: () => "overlap (-1) must be a whole number of 0 or more"
    },
    {
      name: "negative batch size",
      args: () => ["start", small, "--db", db, "--batch-size", "-3"],
      message: () => "batch-size (-3) must be a whole number greater than 0"
    },
    {
      name: "non-integer window",
      args: () => ["start", small, "--db", db, "--window", "1.5"],
      message: () => "window (1.5) must be a whole number greater than 0"
    },
    {
      name: "non-numeric window",
      args: () => ["start", small, "--db", db, "--window", "lots"],
      message: () => "window (\"lots\") must be a whole number greater than 0"
    },
    {
      name: "non-integer concurrency",
      args: () => ["start", small, "--db", db, "--concurrency", "2.5"],
      message: () => "concurrency (2.5) must be a whole number greater than 0"
    },
    {
      name: "overlap equal to window",
      args: () => ["start", small, "--db", db, "--window", "200", "--overlap", "200"],
      message: () => "overlap (200) must be smaller than window (200)"
    },
    {
      name: "overlap larger than window",
      args: () => ["start", small, "--db", db, "--window", "200", "--overlap", "300"],
      message: () => "overlap (300) must be smaller than window (200)"
    },
    {
      name: "batch size 0",
      args: () => ["start", small, "--db", db, "--batch-size", "0"],
      message: () => "batch-size (0) must be a whole number greater than 0"
    },
    {
      name: "run id with /",
      args: () => ["start", small, "--db", db, "--run-id", "a/b"],
      message: () => "run id \"a/b\" is not valid: a run id is 1 to 128 characters of letters, digits, '.', '_' or '-'"
    },
    {
      name: "run id with ..",
      args: () => ["start", small, "--db", db, "--run-id", "x..y"],
      message: () => "run id \"x..y\" is not valid: a run id must not be '.' or contain '..'"
    },
    {
      name: "run id over 128 characters",
      args: () => ["start", small, "--db", db, "--run-id", "r".repeat(129)],
      message: () => "is not valid: a run id is 1 to 128 characters"
    },
    {
      name: "duplicate run id",
      args: () => ["start", small, "--db", db, "--run-id", "done"],
      message: () =>
        `run "done" already exists; choose another --run-id or resume it with \`quarry resume done --db ${db}\``
    },
    {
      name: "unknown run id for resume",
      args: () => ["resume", "ghost", "--db", db],
      message: () => `run "ghost" does not exist in this database; list runs with \`quarry runs --db ${db}\``
    },
    {
      name: "unknown run id for status",
      args: () => ["status", "ghost", "--db", db],
      message: () => "run \"ghost\" does not exist in this database"
    },
    {
      name: "unknown run id for export",
      args: () => ["export", "ghost", "--db", db],
      message: () => "run \"ghost\" does not exist in this database"
    },
    {
      name: "unknown format",
      args: () => ["start", small, "--db", db, "--format", "rdfxml"],
      message: () => "format \"rdfxml\" is unknown; use turtle, ntriples or jsonl"
    },
    {
      name: "unknown format for export",
      args: () => ["export", "done", "--db", db, "--format", "rdfxml"],
      message: () => "format \"rdfxml\" is unknown; use turtle, ntriples or jsonl"
    },
    {
      name: "unknown extractor",
      args: () => ["start", small, "--db", db, "--extractor", "gpt-17"],
      message: () => "unknown extractor \"gpt-17\"; available: "
    },
    {
      name: "--max-cost 0",
      args: () => ["start", small, "--db", db, "--max-cost", "0"],
      message: () => "max-cost (\"0\") must be an amount in US dollars greater than 0, such as 2.50"
    },
    {
      name: "non-numeric --max-cost",
      args: () => ["start", small, "--db", db, "--max-cost", "lots"],
      message: () => "max-cost (\"lots\") must be an amount in US dollars greater than 0"
    },
    {
      name: "non-integer --max-tokens",
      args: () => ["start", small, "--db", db, "--max-tokens", "1.5"],
      message: () => "max-tokens (\"1.5\") must be a whole number of tokens greater than 0"
    },
    {
      name: "unreadable --deadline",
      args: () => ["start", small, "--db", db, "--deadline", "soon"],
      message: () => "deadline (\"soon\") must be a duration of at least 1ms, such as 90s, 15m, 2h, 1h30m"
    },
    {
      name: "--deadline 0s",
      args: () => ["start", small, "--db", db, "--deadline", "0s"],
      message: () => "deadline (\"0s\") must be a duration of at least 1ms"
    },
    {
      name: "unknown --on-batch-error",
      args: () => ["start", small, "--db", db, "--on-batch-error", "ignore"],
      message: () => "on-batch-error \"ignore\" is unknown; use fail (the run fails and stays resumable) or skip"
    },
    {
      name: "an llm option for another extractor",
      args: () => ["start", small, "--db", db, "--model", "gpt-4o-mini"],
      message: () => "--model applies only to the llm extractor; pass --extractor llm, or leave --model out"
    },
    {
      name: "llm without a model",
      args: () => ["start", small, "--db", db, "--extractor", "llm"],
      message: () => "the llm extractor needs a model: pass --model NAME or set QUARRY_LLM_MODEL"
    },
    {
      name: "llm temperature out of range",
      args: () => ["start", small, "--db", db, "--extractor", "llm", "--model", "m", "--temperature", "3"],
      message: () => "temperature (\"3\") must be a number from 0 to 2"
    },
    {
      name: "llm --max-output-tokens 0",
      args: () => ["start", small, "--db", db, "--extractor", "llm", "--model", "m", "--max-output-tokens", "0"],
      message: () => "max-output-tokens (\"0\") must be a whole number of tokens greater than 0"
    },
    {
      name: "llm --base-url that is not http(s)",
      args: () => ["start", small, "--db", db, "--extractor", "llm", "--model", "m", "--base-url", "ftp://x/v1"],
      message: () => "base-url must be an http:// or https:// URL including the API version path"
    },
    {
      name: "llm --base-url with credentials",
      args:
        () => ["start", small, "--db", db, "--extractor", "llm", "--model", "m", "--base-url", "https://u:sk-pw@h/v1"],
      message: () => "base-url must not carry credentials; put the API key in QUARRY_LLM_API_KEY",
      absent: "sk-pw"
    },
    {
      name: "llm --max-cost without prices",
      args: () => ["start", small, "--db", db, "--extractor", "llm", "--model", "m", "--max-cost", "5"],
      message: () =>
        "--max-cost needs the price of model m: set QUARRY_LLM_PRICE_PROMPT and QUARRY_LLM_PRICE_COMPLETION"
    },
    {
      name: "bad QUARRY_LLM_* configuration",
      args: () => ["start", small, "--db", db, "--extractor", "llm"],
      env: { QUARRY_LLM_MODEL: "m", QUARRY_LLM_TEMPERATURE: "warm" },
      message: () => "bad llm extractor configuration: "
    },
    {
      name: "an API key as an option",
      args: () => ["start", small, "--db", db, "--extractor", "llm", "--api-key=sk-live-SECRET-1234"],
      message: () =>
        "quarry takes no --api-key option: the API key is read only from the environment variable " +
        "QUARRY_LLM_API_KEY",
      absent: "SECRET"
    },
    {
      name: "--max-cost for resume",
      args: () => ["resume", "done", "--db", db, "--max-cost=-2"],
      message: () => "max-cost (\"-2\") must be an amount in US dollars greater than 0"
    },
    {
      name: "--deadline for resume",
      args: () => ["resume", "done", "--db", db, "--deadline", "1 fortnight"],
      message: () => "deadline (\"1 fortnight\") must be a duration"
    },
    {
      name: "an llm option to resume a run of another extractor",
      args: () => ["resume", "done", "--db", db, "--model", "m"],
      message: () => "--model applies only to the llm extractor; run done uses the offline extractor"
    },
    {
      name: "--db that is not SQLite",
      args: () => ["start", small, "--db", path.join(dir, "notes.db")],
      message: () =>
        `--db ${path.join(dir, "notes.db")} is not a SQLite database (it does not start with the SQLite header)`
    },
    {
      name: "--db of another application (a SQLite file without Quarry's tables, one named like Quarry's)",
      args: () => ["runs", "--db", path.join(dir, "foreign.db")],
      message: () =>
        `--db ${path.join(dir, "foreign.db")} is a SQLite database of something else (its tables: notes, runs), ` +
        "not a Quarry database; pass a Quarry database, or a new file name to create one"
    },
    {
      name: "start on a --db of another application",
      args: () => ["start", small, "--db", path.join(dir, "foreign.db")],
      message: () => `--db ${path.join(dir, "foreign.db")} is a SQLite database of something else`
    },
    {
      name: "--db :memory:",
      args: () => ["start", small, "--db", ":memory:"],
      message: () => "database :memory: is not durable: it is an in-memory database",
      code: 3
    },
    {
      name: "doctor with a PostgreSQL URL without a database name",
      args: () => ["doctor", "--db", "postgres://quarry:secret@127.0.0.1:5432"],
      message: () =>
        "--db postgres://quarry:***@127.0.0.1:5432 needs a host and a database name: " +
        "postgres://USER:PASSWORD@HOST:PORT/DATABASE"
    },
    {
      name: "start on a PostgreSQL URL with its password in the query, which cannot be reached",
      args: () => ["start", small, "--db", "postgres://quarry@127.0.0.1:1/quarry?password=secret"],
      message: () =>
        "database postgres://quarry@127.0.0.1:1/quarry?password=*** is not durable: it cannot be reached as a " +
        "PostgreSQL database",
      code: 3,
      absent: "secret"
    },
    {
      name: "doctor with a PostgreSQL URL that does not parse, its password in the query",
      args: () => ["doctor", "--db", "postgres://quarry@127.0.0.1:99999/quarry?password=secret"],
      message: () => "--db postgres://quarry@127.0.0.1:99999/quarry?password=*** is not a valid PostgreSQL URL",
      absent: "secret"
    },
    {
      name: "--db that is a URL of another database than PostgreSQL",
      args: () => ["start", small, "--db", "mysql://quarry:secret@127.0.0.1/quarry"],
      message: () =>
        "--db is a mysql:// URL, which quarry cannot open; pass a postgres:// (or postgresql://) URL, or the path of " +
        "a SQLite file",
      absent: "secret"
    },
    {
      name: "--db in a directory that does not exist",
      args: () => ["start", small, "--db", path.join(dir, "nowhere", "q.db")],
      message: () =>
        `the directory ${path.join(dir, "nowhere")} of the database ${
          path.join(dir, "nowhere", "q.db")
        } does not exist; create it first`
    },
    {
      name: "--out in a directory that does not exist",
      args: () => ["start", small, "--db", db, "--out", path.join(dir, "nowhere", "out.ttl")],
      message: () => `the directory ${path.join(dir, "nowhere")} of the output`
    },
    // Checked before the path is resolved: `out/` was written as a file named `out`, '' as the working directory.
    ...(["start", "resume", "export"] as const).flatMap((command) => {
      const withOut = (out: string) => [command, command === "start" ? small : "done", "--db", db, "--out", out]
      return [
        {
          name: `${command} --out out/ (a directory that does not exist)`,
          args: () => withOut("out/"),
          message: () => `--out "out/" ends with /, so it names a directory, not a file; pass a file name`
        },
        {
          name: `${command} --out ''`,
          args: () => withOut(""),
          message: () => "--out is empty; pass a file name"
        }
      ]
    }),
    {
      name: "--out new/. (a directory that does not exist)",
      args: () => ["start", small, "--db", db, "--out", "new/."],
      message: () => `--out "new/." ends with ., so it names a directory, not a file; pass a file name`
    }
  ]

  describe.concurrent("each case", () => {
    for (const c of cases) {
      it(`${c.name}: exit ${c.code ?? 2} with a specific message, database unchanged`, async () => {
        const result = await run(c.args(), {
          cwd: dir,
          ...(c.env === undefined ? {} : { env: c.env }),
          ...(c.unprivileged === true ? unprivileged : {}),
          ...(c.stdin === undefined ? {} : { stdin: c.stdin })
        })
        assert.strictEqual(result.code, c.code ?? 2, result.stderr)
        assert.include(result.stderr, c.message())
        assert.strictEqual(result.stdout, "")
        if (c.absent !== undefined) assert.notInclude(result.stderr, c.absent)
        assert.deepStrictEqual(take(), snapshot)
        assert.strictEqual(fs.readFileSync(path.join(dir, "notes.db"), "utf8"), notes)
        assert.strictEqual(sha256File(path.join(dir, "foreign.db")), snapshot!.foreign)
      }, 180_000) // a generous bound: under a loaded machine one CLI start can take a minute
    }
  })

  it("leaves no journal behind: the database and its directory are exactly as before", () => {
    assert.deepStrictEqual(take(true), snapshot, JSON.stringify([take(true), snapshot]))
  })

  it("--db in a read-only directory (as an unprivileged user): exit 2, nothing created", async () => {
    const readonly = path.join(dir, "readonly")
    setUnprivilegedReadOnly(readonly, true)
    try {
      assert.isFalse(unprivilegedCanWrite(readonly), "the directory must really be read-only for this test to mean it")
      const result = await run(["start", small, "--db", path.join(readonly, "q.db")], { cwd: dir, ...unprivileged })
      assert.strictEqual(result.code, 2, result.stderr)
      assert.include(
        result.stderr,
        `the directory ${readonly} of the database ${path.join(readonly, "q.db")} is not writable`
      )
      assert.deepStrictEqual(fs.readdirSync(readonly), [])
      assert.deepStrictEqual(take(), snapshot)
    } finally {
      setUnprivilegedReadOnly(readonly, false)
    }
  }, 30_000)
})

describe("inputs that are valid but unusual", () => {
  let dir = ""
  beforeAll(() => {
    dir = makeDir()
  })
  afterAll(() => removeDir(dir))

  it("an empty input: exit 0, said explicitly, an empty valid artifact", async () => {
    fs.writeFileSync(path.join(dir, "empty.txt"), "")
    const db = path.join(dir, "empty.db")
    const out = path.join(dir, "empty.nt")
    const result = await run(["start", path.join(dir, "empty.txt"), "--db", db, "--run-id", "empty", "--out", out])
    assert.strictEqual(result.code, 0, result.stderr)
    assert.include(
      result.stderr,
      `input file ${path.join(dir, "empty.txt")} is empty: the run completes at once with an empty artifact`
    )
    assert.include(result.stdout, "run empty completed: 0/0 batches")
    assert.strictEqual(fs.readFileSync(out, "utf8"), "")
  }, 60_000)

  it("a UTF-8 byte order mark is dropped: the same input, SHA-256 and artifact as without it", async () => {
    const text = fs.readFileSync(path.join(texts, "long-multi-chapter.txt"), "utf8")
    fs.writeFileSync(path.join(dir, "plain.txt"), text)
    fs.writeFileSync(path.join(dir, "bom.txt"), "\uFEFF" + text)
    assert.strictEqual(fs.readFileSync(path.join(dir, "bom.txt"))[0], 0xef)
    const ran = await Promise.all(["plain", "bom"].map(async (name) => {
      const out = path.join(dir, `${name}.ttl`)
      const result = await run([
        "start",
        path.join(dir, `${name}.txt`),
        "--db",
        path.join(dir, `${name}.db`),
        "--run-id",
        name,
        "--out",
        out
      ])
      assert.strictEqual(result.code, 0, result.stderr)
      const status = await run(["status", name, "--db", path.join(dir, `${name}.db`), "--json"])
      return { sha256: sha256File(out), input: (jsonLines(status.stdout)[0]!.plan as { input: unknown }).input }
    }))
    assert.deepStrictEqual(ran[1], ran[0])
  }, 60_000)

  it(
    "an ontology in Turtle named .owl (no format of its own) is read as Ontology.load reads it: the .ttl's artifact",
    async () => {
      const foaf = path.join(path.dirname(texts), "ontologies", "foaf.ttl")
      fs.copyFileSync(foaf, path.join(dir, "foaf.owl"))
      const ran = await Promise.all(
        [["ttl", foaf], ["owl", path.join(dir, "foaf.owl")]].map(async ([name, ontology]) => {
          const out = path.join(dir, `onto-${name}.ttl`)
          const db = path.join(dir, `onto-${name}.db`)
          const result = await run([
            "start",
            path.join(texts, "long-multi-chapter.txt"),
            "--db",
            db,
            "--run-id",
            "o",
            "--ontology",
            ontology!,
            "--out",
            out
          ])
          assert.strictEqual(result.code, 0, result.stderr)
          return sha256File(out)
        })
      )
      assert.strictEqual(ran[1], ran[0])
    },
    60_000
  )

  it("an input read from a pipe (/dev/stdin) gives the same input, SHA-256 and artifact as the file", async () => {
    const file = path.join(texts, "long-multi-chapter.txt")
    const text = fs.readFileSync(file, "utf8")
    const ran = await Promise.all([["file", file], ["pipe", "/dev/stdin"]].map(async ([name, input]) => {
      const out = path.join(dir, `${name}.ttl`)
      const piped = path.join(dir, `${name}.db`)
      const result = await run(["start", input!, "--db", piped, "--run-id", "r", "--out", out], {
        ...(name === "pipe" ? { stdin: text } : {})
      })
      assert.strictEqual(result.code, 0, result.stderr)
      const status = await run(["status", "r", "--db", piped, "--json"])
      return { sha256: sha256File(out), input: (jsonLines(status.stdout)[0]!.plan as { input: unknown }).input }
    }))
    assert.deepStrictEqual(ran[1], ran[0])
  }, 60_000)
})
