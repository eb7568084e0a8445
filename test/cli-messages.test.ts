/**
 * The messages of the built `quarry` that tell people what to do (and a resume that needs none: it keeps the offline
 * extractor's stored settings); a bad environment variable is named with what it accepts; a URL of another database
 * than PostgreSQL is refused; the command-line parser's errors carry the `quarry: ` prefix and say what is wrong;
 * `--log-level` works anywhere, `--wizard` is refused rather than waiting for a terminal; every suggested command
 * repeats the `--db` given; `--json` `error` events carry the run id; number options are plain decimal; and a new
 * run id that would read as an option is refused. A reader that goes away does not crash it with EPIPE.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import {
  bin,
  committedEvents,
  jsonLines,
  makeDir,
  removeDir,
  run,
  sha256File,
  start,
  startMobyDick,
  texts
} from "./support.js"

const book = path.join(texts, "long-multi-chapter.txt")

describe("cli messages", () => {
  let dir = ""
  let db = ""

  beforeAll(async () => {
    dir = makeDir()
    db = path.join(dir, "st.db")
    const done = await run(["start", book, "--db", db, "--run-id", "done"])
    assert.strictEqual(done.code, 0, done.stderr)
    // A run that stopped after its first batch, to be resumed under other settings.
    const failed = await run(["start", book, "--db", db, "--run-id", "pm", "--window", "600", "--batch-size", "2"], {
      env: { QUARRY_TEST_CRASH_AT: "commit.beforeEvent:1" }
    })
    assert.notStrictEqual(failed.code, 0)
  }, 120_000)
  afterAll(() => removeDir(dir))

  it("a resume keeps the offline settings the run was started with, whatever the environment says now", async () => {
    const changed = { QUARRY_OFFLINE_USE_KNOWN_ENTITIES: "false", QUARRY_OFFLINE_UNMAPPED: "generic" }
    const plan = ["--db", db, "--window", "600", "--batch-size", "2"]
    const reference = await run(["start", book, ...plan, "--run-id", "ref", "--out", path.join(dir, "ref.ttl")])
    assert.strictEqual(reference.code, 0, reference.stderr)
    // The changed settings change this text's graph, so an equal artifact below means they were not used.
    const other = await run(["start", book, ...plan, "--run-id", "other", "--out", path.join(dir, "other.ttl")], {
      env: changed
    })
    assert.strictEqual(other.code, 0, other.stderr)
    assert.notStrictEqual(sha256File(path.join(dir, "other.ttl")), sha256File(path.join(dir, "ref.ttl")))

    const badVariable = await run(["resume", "pm", "--db", db], { env: { QUARRY_OFFLINE_UNMAPPED: "bogus" } })
    assert.strictEqual(badVariable.code, 2, badVariable.stderr)
    assert.match(badVariable.stderr, /^quarry: bad environment: QUARRY_OFFLINE_UNMAPPED is "bogus"/)

    const resumed = await run(["resume", "pm", "--db", db, "--out", path.join(dir, "pm.ttl")], { env: changed })
    assert.strictEqual(resumed.code, 0, resumed.stderr)
    assert.strictEqual(sha256File(path.join(dir, "pm.ttl")), sha256File(path.join(dir, "ref.ttl")))
    const status = await run(["status", "pm", "--db", db, "--json"])
    const settings =
      (JSON.parse(status.stdout) as { plan: { extractor: { settings: unknown } } }).plan.extractor.settings
    assert.deepStrictEqual(settings, { unmapped: "drop", useKnownEntities: true })
  }, 120_000)

  it(
    "every yes-or-no variable takes the same spellings (QUARRY_OFFLINE_USE_KNOWN_ENTITIES refused \"FALSE \")",
    async () => {
      const cwd = makeDir()
      try {
        fs.writeFileSync(path.join(cwd, "in.txt"), "Captain Ahab met Ishmael in Nantucket.\n")
        const started = await run(["start", "in.txt", "--run-id", "spaced"], {
          cwd,
          env: { QUARRY_OFFLINE_USE_KNOWN_ENTITIES: " FALSE " }
        })
        assert.strictEqual(started.code, 0, started.stderr)
        const status = await run(["status", "spaced", "--json"], { cwd })
        const settings =
          (JSON.parse(status.stdout) as { plan: { extractor: { settings: unknown } } }).plan.extractor.settings
        assert.deepStrictEqual(settings, { unmapped: "drop", useKnownEntities: false })
        // The same spelling turns serve's --cluster on, which a SQLite database refuses.
        const served = await run(["serve", "--port", "0"], { cwd, env: { QUARRY_CLUSTER: " YES " } })
        assert.strictEqual(served.code, 2, served.stderr)
        assert.match(served.stderr, /^quarry: --cluster needs a PostgreSQL database/)
      } finally {
        removeDir(cwd)
      }
    },
    60_000
  )

  describe("a bad environment variable is named with what it accepts (exit 2)", () => {
    const cases: ReadonlyArray<readonly [string, Record<string, string>, ReadonlyArray<string>, string]> = [
      [
        "QUARRY_LEASE_MS=abc, for any command",
        { QUARRY_LEASE_MS: "abc" },
        ["runs"],
        "QUARRY_LEASE_MS is \"abc\", which is not valid; it must be a whole number of milliseconds greater than 0, such as 30000 (the default)"
      ],
      [
        "QUARRY_LEASE_MS=0",
        { QUARRY_LEASE_MS: "0" },
        ["runs"],
        "QUARRY_LEASE_MS is \"0\", which is not valid; it must be a whole number of milliseconds greater than 0, such as 30000 (the default)"
      ],
      [
        "QUARRY_OFFLINE_UNMAPPED=bogus",
        { QUARRY_OFFLINE_UNMAPPED: "bogus" },
        ["start", book],
        "QUARRY_OFFLINE_UNMAPPED is \"bogus\", which is not valid; it must be drop (the default) or generic"
      ],
      [
        "QUARRY_OFFLINE_USE_KNOWN_ENTITIES=maybe",
        { QUARRY_OFFLINE_USE_KNOWN_ENTITIES: "maybe" },
        ["start", book],
        "QUARRY_OFFLINE_USE_KNOWN_ENTITIES is \"maybe\", which is not valid; it must be true (the default) or false, in any case (also yes or no, on or off, 1 or 0)"
      ],
      [
        "QUARRY_MAX_INPUT_BYTES=abc, in the form of every other variable",
        { QUARRY_MAX_INPUT_BYTES: "abc" },
        ["start", book],
        "QUARRY_MAX_INPUT_BYTES is \"abc\", which is not valid; it must be a whole number of bytes greater than 0 and at most 9007199254740991, such as 536870912 (512 MB, the default)"
      ],
      [
        "QUARRY_MAX_INPUT_BYTES past the largest exact number (it was read as no limit)",
        { QUARRY_MAX_INPUT_BYTES: "99999999999999999999" },
        ["start", book],
        "QUARRY_MAX_INPUT_BYTES is \"99999999999999999999\", which is not valid; it must be a whole number of bytes greater than 0 and at most 9007199254740991, such as 536870912 (512 MB, the default)"
      ],
      [
        "QUARRY_CLUSTER=maybe, for serve's switches",
        { QUARRY_CLUSTER: "maybe" },
        ["serve", "--port", "0"],
        "QUARRY_CLUSTER is \"maybe\", which is not valid; it must be true or false, in any case (also yes or no, on or off, 1 or 0), or unset"
      ],
      [
        "an empty QUARRY_DB",
        { QUARRY_DB: "" },
        ["runs"],
        "QUARRY_DB is set but empty; it must be a SQLite file path, or unset (./quarry.db)"
      ],
      [
        "QUARRY_DATABASE_URL of another database than PostgreSQL (not shown: a URL may carry a password)",
        { QUARRY_DATABASE_URL: "mysql://quarry:secret@db/quarry" },
        ["runs"],
        "QUARRY_DATABASE_URL is set to a value (not shown), which is not valid; it must be a PostgreSQL URL " +
        "(postgres://user@host:port/db), or unset"
      ],
      [
        "QUARRY_DB that is a URL of another database",
        { QUARRY_DB: "mysql://quarry:secret@db/quarry" },
        ["runs"],
        "QUARRY_DB is set to a value (not shown), which is not valid; it must be a SQLite file path, or unset (./quarry.db)"
      ],
      [
        "an empty QUARRY_DATABASE_URL, also beside a set QUARRY_DB",
        { QUARRY_DATABASE_URL: "", QUARRY_DB: "elsewhere.db" },
        ["runs"],
        "QUARRY_DATABASE_URL is set but empty; it must be a PostgreSQL URL (postgres://user@host:port/db), or unset"
      ]
    ]
    for (const [name, env, args, message] of cases) {
      it(name, async () => {
        const result = await run(args, { env, cwd: dir })
        assert.strictEqual(result.code, 2, result.stderr)
        assert.strictEqual(result.stderr, `quarry: bad environment: ${message}\n`)
        assert.strictEqual(result.stdout, "")
        assert.isFalse(fs.existsSync(path.join(dir, "quarry.db")))
      })
    }
  })

  it(
    "a URL of another database is refused, not read as a SQLite path (start created mysql:/x in a directory mysql:)",
    async () => {
      const cwd = makeDir()
      try {
        fs.mkdirSync(path.join(cwd, "mysql:"))
        const runs = [
          run(["start", book], { cwd, env: { QUARRY_DATABASE_URL: "mysql://x" } }),
          run(["start", book, "--db", "mysql://x"], { cwd })
        ]
        const [fromVariable, fromOption] = await Promise.all(runs)
        assert.strictEqual(fromVariable!.code, 2, fromVariable!.stderr)
        assert.match(fromVariable!.stderr, /^quarry: bad environment: QUARRY_DATABASE_URL is set to a value/)
        assert.strictEqual(fromOption!.code, 2, fromOption!.stderr)
        assert.strictEqual(
          fromOption!.stderr,
          "quarry: --db is a mysql:// URL, which quarry cannot open; pass a postgres:// (or postgresql://) URL, or the " +
            "path of a SQLite file\n"
        )
        assert.deepStrictEqual(fs.readdirSync(path.join(cwd, "mysql:")), [])
      } finally {
        removeDir(cwd)
      }
    },
    60_000
  )

  describe("a near-miss of a URL is refused before anything is created (postgres:/x made a directory postgres:)", () => {
    const advice = "pass a PostgreSQL URL as postgres://user@host:port/db, or the path of a SQLite file (start it " +
      "with ./ to mean a file so named)"
    const variableAdvice = "set QUARRY_DATABASE_URL to postgres://user@host:port/db, or QUARRY_DB to the path of a " +
      "SQLite file (start it with ./ to mean a file so named)"
    const pg = (seen: string, scheme = "postgres") =>
      `a malformed PostgreSQL URL (it starts with "${seen}", not "${scheme}://")`
    const cases: ReadonlyArray<readonly [ReadonlyArray<string>, Readonly<Record<string, string>>, string]> = [
      [["start", "in.txt", "--db", "postgres:/x"], {}, `--db is ${pg("postgres:/")}; ${advice}`],
      [["start", "in.txt", "--db", "postgresql:/x"], {}, `--db is ${pg("postgresql:/", "postgresql")}; ${advice}`],
      [["start", "in.txt", "--db", "postgres:x"], {}, `--db is ${pg("postgres:")}; ${advice}`],
      [["start", "in.txt", "--db", "POSTGRES:/u:secret@h/d"], {}, `--db is ${pg("POSTGRES:/")}; ${advice}`],
      [["start", "in.txt", "--db", "postgres//u:secret@h/d"], {}, `--db is ${pg("postgres//")}; ${advice}`],
      [["runs", "--db", " postgres://u:secret@h/d"], {}, `--db is a URL with spaces around it; ${advice}`],
      [
        ["runs"],
        { QUARRY_DATABASE_URL: "postgres://u:secret@h/d " },
        `bad environment: QUARRY_DATABASE_URL is a URL with spaces around it; ${variableAdvice}`
      ],
      [
        ["runs", "--db", "mysql:/x"],
        {},
        `--db is a malformed URL (it starts with "mysql:/", not "mysql://"); ${advice}`
      ],
      [
        ["start", "in.txt", "--db", "file:q.db"],
        {},
        `--db is a file: URI (it starts with "file:"), which quarry does not read; ${advice}`
      ],
      [
        ["start", "in.txt", "--db", "sqlite:/q.db"],
        {},
        `--db is a sqlite: URI (it starts with "sqlite:/"), which quarry does not read; ${advice}`
      ],
      [["serve", "--port", "0", "--db", "postgres:/x"], {}, `--db is ${pg("postgres:/")}; ${advice}`],
      [
        ["start", "in.txt"],
        { QUARRY_DATABASE_URL: "postgres:/x" },
        `bad environment: QUARRY_DATABASE_URL is ${pg("postgres:/")}; ${variableAdvice}`
      ],
      [
        ["runs"],
        { QUARRY_DB: "postgresql:x" },
        `bad environment: QUARRY_DB is ${pg("postgresql:", "postgresql")}; ${variableAdvice}`
      ],
      [
        ["serve", "--port", "0"],
        { QUARRY_DATABASE_URL: "postgres:/u:secret@h/d" },
        `bad environment: QUARRY_DATABASE_URL is ${pg("postgres:/")}; ${variableAdvice}`
      ]
    ]
    for (const [args, env, message] of cases) {
      it(`${args.join(" ")} ${JSON.stringify(env)}`, async () => {
        const cwd = makeDir()
        try {
          fs.writeFileSync(path.join(cwd, "in.txt"), "Captain Ahab met Ishmael in Nantucket.\n")
          const result = await run(args, { cwd, env })
          assert.strictEqual(result.code, 2, result.stderr)
          assert.strictEqual(result.stderr, `quarry: ${message}\n`)
          assert.strictEqual(result.stdout, "")
          assert.deepStrictEqual(fs.readdirSync(cwd), ["in.txt"])
        } finally {
          removeDir(cwd)
        }
      })
    }

    it("paths with a colon elsewhere, or after ./, stay SQLite files", async () => {
      const cwd = makeDir()
      try {
        fs.writeFileSync(path.join(cwd, "in.txt"), "Captain Ahab met Ishmael in Nantucket.\n")
        fs.mkdirSync(path.join(cwd, "data"))
        for (const db of ["./data/run:1.db", "run:1.db", "./postgres:x"]) {
          const result = await run(["start", "in.txt", "--db", db, "--out", `${db}.ttl`], { cwd })
          assert.strictEqual(result.code, 0, result.stderr)
          assert.isTrue(fs.statSync(path.join(cwd, db)).isFile(), db)
        }
      } finally {
        removeDir(cwd)
      }
    }, 60_000)
  })

  describe("the parser's errors carry the prefix and say what is wrong (exit 2)", () => {
    const cases: ReadonlyArray<readonly [string, ReadonlyArray<string>, string]> = [
      [
        "a log level that is not one",
        ["start", book, "--log-level", "verbose"],
        "quarry: --log-level \"verbose\" is not a log level; use all, trace, debug, info, warning, error, fatal or none"
      ],
      [
        "--log-level given twice",
        ["runs", "--log-level", "info", "--log-level=debug"],
        "quarry: option --log-level is given 2 times; give it once"
      ],
      [
        "an option given twice",
        ["start", book, "--window", "100", "--window", "200"],
        "quarry: option --window is given 2 times; give it once"
      ],
      [
        "a shell without completions",
        ["--completions", "tcsh"],
        "quarry: --completions \"tcsh\" is not a shell quarry has completions for; use sh, bash, fish or zsh"
      ],
      ["a missing argument", ["start"], "quarry: start needs the argument <input>; see `quarry start --help`"],
      [
        "an unknown option",
        ["start", book, "--frob"],
        "quarry: unknown argument \"--frob\"; see `quarry start --help`"
      ],
      [
        "an unknown command",
        ["frob"],
        "quarry: unknown command \"frob\"; use one of start, resume, status, runs, cancel, export, doctor, serve (see `quarry --help`)"
      ]
    ]
    for (const [name, args, message] of cases) {
      it(name, async () => {
        const result = await run([...args, "--db", path.join(dir, "parse.db")])
        assert.strictEqual(result.code, 2, result.stderr)
        assert.strictEqual(result.stderr, `${message}\n`)
        assert.isFalse(fs.existsSync(path.join(dir, "parse.db")))
      })
    }
  })

  it("--wizard is refused as an unknown argument (exit 2), not a prompt that waits for a terminal", async () => {
    const db = path.join(dir, "wizard.db")
    for (const args of [["runs", "--wizard"], ["start", book, "--wizard=true"], ["--wizard"]]) {
      const child = start([...args, "--db", db])
      const hung = setTimeout(() => child.child.kill("SIGKILL"), 20_000)
      const { code } = await child.exited
      clearTimeout(hung)
      assert.strictEqual(code, 2, `${args.join(" ")}: ${child.stderr}`)
      const command = args[0] === "--wizard" ? "" : ` ${args[0]}`
      assert.include(child.stderr, `quarry: unknown argument "${args.at(-1)}"; see \`quarry${command} --help\`\n`)
    }
    assert.isFalse(fs.existsSync(db))
  }, 90_000)

  describe("--log-level works in any position, as any other option does", () => {
    const given = (): ReadonlyArray<readonly [ReadonlyArray<string>, number, string]> => [
      [["doctor", "--db", db, "--log-level", "error"], 0, ""],
      [["doctor", "--db", db, "--json", "--log-level", "error"], 0, ""],
      [["runs", "--json", "--log-level", "error", "--db", db], 0, ""],
      [["runs", "--status", "completed", "--log-level", "error", "--db", db], 0, ""],
      [["status", "--db", db, "--log-level", "error"], 0, ""],
      [["cancel", "--db", db, "--log-level", "error", "nope"], 2, "quarry: run \"nope\" does not exist"],
      [["start", "--db", db, "--log-level", "error", path.join(dir, "nope.txt")], 2, "quarry: input file"]
    ]
    it("after a command's options, before its argument: the command runs (or refuses what it refuses)", async () => {
      for (const [args, code, message] of given()) {
        const result = await run(args)
        assert.strictEqual(result.code, code, `${args.join(" ")}: ${result.stderr}`)
        assert.isTrue(result.stderr.startsWith(message), `${args.join(" ")}: ${result.stderr}`)
        assert.notInclude(result.stderr, "unknown argument")
      }
    }, 120_000)

    it("the level applies wherever it is given", async () => {
      const debug = [
        ["status", "done", "--db", db, "--log-level", "debug"],
        ["status", "--db", db, "--log-level=debug", "done"],
        ["status", "--log-level", "debug", "--db", db, "done"]
      ]
      for (const args of debug) {
        const result = await run(args)
        assert.strictEqual(result.code, 0, `${args.join(" ")}: ${result.stderr}`)
        assert.match(result.stderr, /level=DEBUG/, args.join(" "))
      }
      const quiet = await run(["status", "done", "--db", db])
      assert.notMatch(quiet.stderr, /level=DEBUG/)
    }, 60_000)
  })

  describe("suggested commands carry the --db given", () => {
    it("a run id already taken", async () => {
      const result = await run(["start", book, "--db", db, "--run-id", "done"])
      assert.strictEqual(result.code, 2, result.stderr)
      assert.include(result.stderr, `resume it with \`quarry resume done --db ${db}\``)
    })

    it("a run held by a live process (exit 4)", async () => {
      const { child, db: held } = startMobyDick(dir, "lk", { QUARRY_TEST_EXTRACTOR_DELAY_MS: "40" })
      try {
        await child.waitFor((stdout) => committedEvents(stdout) >= 1)
        const result = await run(["resume", "lk", "--db", held], { env: { QUARRY_TEST_EXTRACTOR_DELAY_MS: "40" } })
        assert.strictEqual(result.code, 4, result.stderr)
        assert.include(result.stderr, `stop it with: quarry cancel lk --db ${held}\n`)
      } finally {
        child.child.kill("SIGKILL")
        await child.exited
      }
    }, 60_000)

    it("none for the default database", async () => {
      const result = await run(["resume", "ghost"], { cwd: dir })
      assert.strictEqual(result.code, 2, result.stderr)
      assert.include(result.stderr, "list runs with `quarry runs`\n")
    })
  })

  it("start --json: the error event of a refused start carries the run id", async () => {
    const result = await run(["start", book, "--db", db, "--run-id", "done", "--json"])
    assert.strictEqual(result.code, 2, result.stderr)
    const events = jsonLines(result.stdout)
    assert.strictEqual(events.length, 1)
    assert.deepInclude(events[0], { event: "error", runId: "done", error: "RunAlreadyExists" })
  })

  it("resume --json: the error event carries the run id given, also for an error that does not name it", async () => {
    const result = await run(["resume", "done", "--db", db, "--json", "--out", path.join(dir, "missing", "x.ttl")])
    assert.strictEqual(result.code, 2, result.stderr)
    assert.deepInclude(jsonLines(result.stdout)[0], { event: "error", runId: "done", error: "UsageError" })
  })

  describe("number options are plain decimal", () => {
    const cases: ReadonlyArray<readonly [string, string]> = [
      [
        "99999999999999999999",
        "window (\"99999999999999999999\") is too large: it must be a whole number greater than 0, at most 9007199254740991"
      ],
      ["0x10", "window (\"0x10\") must be a whole number greater than 0"],
      ["1e3", "window (\"1e3\") must be a whole number greater than 0"]
    ]
    for (const [value, message] of cases) {
      it(`--window ${value} is refused`, async () => {
        const result = await run(["start", book, "--db", path.join(dir, "n.db"), "--window", value])
        assert.strictEqual(result.code, 2, result.stderr)
        assert.strictEqual(result.stderr, `quarry: ${message}\n`)
      })
    }
    for (const [value, accepted] of [["1e3", false], ["0x10", false], ["$2.50", true], [".5", true]] as const) {
      it(`--max-cost ${value} is ${accepted ? "accepted" : "refused"}`, async () => {
        const db = path.join(dir, `cost-${accepted}.db`)
        const result = await run(["start", book, "--db", db, "--max-cost", value, "--out", path.join(dir, "cost.ttl")])
        assert.strictEqual(result.code, accepted ? 0 : 2, result.stderr)
        if (!accepted) {
          assert.strictEqual(
            result.stderr,
            `quarry: max-cost ("${value}") must be an amount in US dollars greater than 0, such as 2.50\n`
          )
          assert.isFalse(fs.existsSync(db))
        }
      })
    }
    for (const option of ["--max-tokens", "--max-output-tokens"]) {
      it(`${option} 1e3 is refused`, async () => {
        const llm = option === "--max-output-tokens" ? ["--extractor", "llm", "--model", "m"] : []
        const result = await run(["start", book, "--db", path.join(dir, "n.db"), ...llm, option, "1e3"])
        assert.strictEqual(result.code, 2, result.stderr)
        assert.strictEqual(
          result.stderr,
          `quarry: ${option.slice(2)} ("1e3") must be a whole number of tokens greater than 0\n`
        )
      })
    }
  })

  describe("run ids", () => {
    it("one that starts with '-' is refused at creation (commands would read it as an option)", async () => {
      const result = await run(["start", book, "--db", path.join(dir, "r.db"), "--run-id=-x", "--json"])
      assert.strictEqual(result.code, 2, result.stderr)
      assert.strictEqual(
        result.stderr,
        "quarry: run id \"-x\" is not valid: a run id must not start with '-', which every command would read as an option (quarry status -x)\n"
      )
      assert.deepInclude(jsonLines(result.stdout)[0], { event: "error", error: "UsageError" })
      assert.isFalse(fs.existsSync(path.join(dir, "r.db")))
    })

    it("'.' is refused for what it is", async () => {
      const result = await run(["start", book, "--db", path.join(dir, "r.db"), "--run-id", "."])
      assert.strictEqual(result.code, 2, result.stderr)
      assert.strictEqual(result.stderr, "quarry: run id \".\" is not valid: a run id must not be '.' or contain '..'\n")
    })
  })

  it("a reader that goes away (quarry --version | true) ends the command quietly: no EPIPE crash, exit 0", async () => {
    const child = spawn(process.execPath, [bin, "--version"], { stdio: ["ignore", "pipe", "pipe"] })
    // The read end closes before anything is written: every write to stdout fails with EPIPE.
    child.stdout.destroy()
    let stderr = ""
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk
    })
    const code = await new Promise<number | null>((resolve) => child.on("exit", (exitCode) => resolve(exitCode)))
    assert.strictEqual(code, 0, stderr)
    assert.strictEqual(stderr, "")
  })
})
