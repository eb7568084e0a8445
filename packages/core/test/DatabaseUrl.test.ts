import { assert, describe, it } from "@effect/vitest"
import * as DatabaseUrl from "@quarry/core/DatabaseUrl"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as fs from "node:fs"
import * as path from "node:path"
import { tempDir } from "./fixtures.js"

/** What `overwrittenBy` finds, as `[path, companion]` (`database` for the database itself), or none. */
const overwritten = (file: string, db: string) =>
  Option.getOrUndefined(
    Option.map(DatabaseUrl.overwrittenBy(file, db), (hit) => [
      hit.path,
      Option.match(hit.companion, { onNone: () => "database", onSome: (c) => c.what })
    ])
  )

describe("DatabaseUrl.overwrittenBy", () => {
  it("names SQLite's -wal, -shm and -journal files", () => {
    assert.deepStrictEqual(DatabaseUrl.companions.map((c) => c.suffix), ["-wal", "-shm", "-journal"])
  })

  it.scoped("finds the database through a symbolic link to its directory", () =>
    Effect.gen(function*() {
      const dir = fs.realpathSync(yield* tempDir)
      fs.mkdirSync(path.join(dir, "real"))
      fs.symlinkSync("real", path.join(dir, "link"))
      const db = path.join(dir, "real", "runs.db")
      fs.writeFileSync(db, "")
      assert.deepStrictEqual(overwritten(path.join(dir, "link", "runs.db"), db), [db, "database"])
      assert.isUndefined(overwritten(path.join(dir, "link", "other.db"), db))
    }))

  it.scoped("finds a companion through a link to it, named after the database's resolved path", () =>
    Effect.gen(function*() {
      const dir = fs.realpathSync(yield* tempDir)
      const real = path.join(dir, "runs.jsonl")
      fs.writeFileSync(real, "")
      fs.writeFileSync(`${real}-wal`, "")
      const db = path.join(dir, "quarry.db")
      fs.symlinkSync("runs.jsonl", db)
      fs.symlinkSync("runs.jsonl-wal", path.join(dir, "log.jsonl"))
      assert.deepStrictEqual(overwritten(path.join(dir, "log.jsonl"), db), [`${real}-wal`, "write-ahead log"])
      assert.deepStrictEqual(overwritten(path.join(dir, "runs.jsonl-shm"), db), [
        `${real}-shm`,
        "shared-memory index"
      ])
      assert.deepStrictEqual(overwritten(real, db), [db, "database"])
    }))

  it.scoped("resolves the nearest existing ancestor of a path whose directory does not exist yet", () =>
    Effect.gen(function*() {
      const dir = fs.realpathSync(yield* tempDir)
      fs.mkdirSync(path.join(dir, "real"))
      fs.symlinkSync("real", path.join(dir, "link"))
      const db = path.join(dir, "real", "new", "runs.db")
      assert.deepStrictEqual(overwritten(path.join(dir, "link", "new", "runs.db"), db), [db, "database"])
      assert.deepStrictEqual(overwritten(path.join(dir, "link", "new", "runs.db-journal"), db), [
        `${db}-journal`,
        "rollback journal"
      ])
    }))

  it("is none for a PostgreSQL URL, which has no file here (not even one named like the URL)", () => {
    const url = "postgres://quarry@localhost/postgres"
    assert.isUndefined(overwritten(url, url))
  })
})

describe("DatabaseUrl.unsupportedScheme", () => {
  it("names the scheme of any URL but PostgreSQL's, and nothing in a SQLite path", () => {
    const scheme = (db: string) => Option.getOrUndefined(DatabaseUrl.unsupportedScheme(db))
    assert.strictEqual(scheme("mysql://quarry:secret@db/quarry"), "mysql")
    assert.strictEqual(scheme("file:///tmp/q.db"), "file")
    for (const db of ["postgres://u@h/d", "POSTGRESQL://u@h/d", "./quarry.db", "mysql:/x", "C://q.db", ":memory:"]) {
      assert.isUndefined(scheme(db), db)
    }
  })
})

describe("DatabaseUrl.malformed", () => {
  it("finds near-misses of a URL, and nothing in a URL quarry reads or a path with a colon elsewhere", () => {
    assert.deepStrictEqual(
      DatabaseUrl.malformed(" postgres://u:secret@h/d"),
      Option.some("a URL with spaces around it")
    )
    assert.deepStrictEqual(
      DatabaseUrl.malformed("postgres//u:secret@h/d"),
      Option.some(`a malformed PostgreSQL URL (it starts with "postgres//", not "postgres://")`)
    )
    const malformed = (db: string) => Option.isSome(DatabaseUrl.malformed(db))
    for (
      const db of [
        "postgres:/x",
        "postgresql:/x",
        "postgres:x",
        "Postgres:",
        "mysql:/x",
        "file:q.db",
        "sqlite:/q",
        "postgres//u@h/d",
        "PostgreSQL//u@h/d",
        " postgres://u@h/d",
        "postgres://u@h/d ",
        "\tmysql://x"
      ]
    ) {
      assert.isTrue(malformed(db), db)
    }
    for (
      const db of [
        "postgres://u@h/d",
        "mysql://x",
        "./postgres:x",
        "./data/run:1.db",
        "run:1.db",
        "C:/q.db",
        " q.db",
        "./postgres//u@h/d",
        "postgresx//d"
      ]
    ) {
      assert.isFalse(malformed(db), db)
    }
  })
})

describe("DatabaseUrl.redact", () => {
  it("hides the password of the user part", () => {
    assert.strictEqual(DatabaseUrl.redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db")
  })

  it("hides a password given in the query, which pg connects with, and keeps the other parameters as written", () => {
    assert.strictEqual(
      DatabaseUrl.redact("postgres://u@h:5432/db?options=-c%20x%3Dy&password=secret&sslmode=disable"),
      "postgres://u@h:5432/db?options=-c%20x%3Dy&password=***&sslmode=disable"
    )
    assert.strictEqual(
      DatabaseUrl.redact("postgresql://u:a@h/db?sslpassword=k3y&PASSWORD=b"),
      "postgresql://u:***@h/db?sslpassword=***&PASSWORD=***"
    )
  })

  it("hides a query password in a URL it cannot parse", () => {
    assert.strictEqual(
      DatabaseUrl.redact("postgres://u@h:99999/db?password=secret"),
      "postgres://u@h:99999/db?password=***"
    )
  })

  it("leaves a SQLite path as it is", () => {
    assert.strictEqual(DatabaseUrl.redact("./x?password=1.db"), "./x?password=1.db")
  })
})
