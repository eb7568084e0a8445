import * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import Sqlite from "better-sqlite3"
import * as Effect from "effect/Effect"
import * as path from "node:path"
import * as SqliteConnection from "../src/internal/sqliteConnection.js"
import { tempDir } from "./fixtures.js"

/** The connection of a new database file, reserved for the test's scope, with table `t (n INTEGER UNIQUE)`. */
const reserved = Effect.gen(function*() {
  const dir = yield* tempDir
  const { reserve } = yield* SqliteConnection.open(path.join(dir, "c.db"))
  const connection = yield* reserve
  yield* connection.execute("CREATE TABLE t (n INTEGER UNIQUE)", [], undefined)
  return connection
})

const values = (connection: SqliteConnection.BatchingConnection) =>
  Effect.map(connection.execute("SELECT n FROM t ORDER BY rowid", [], undefined), (rows) => rows.map((r) => r.n))

describe("SqliteConnection", () => {
  it.scoped("executeAll runs its statements in order", () =>
    Effect.gen(function*() {
      const connection = yield* reserved
      const insert = "INSERT INTO t (n) VALUES (?)"
      yield* connection.executeAll([[insert, [3]], [insert, [1]], ["UPDATE t SET n = n + 10 WHERE n = ?", [1]], [
        insert,
        [2]
      ]])
      assert.deepStrictEqual(yield* values(connection), [3, 11, 2])
    }))

  it.scoped("a failing statement stops executeAll with the driver's error, and its transaction rolls back", () =>
    Effect.gen(function*() {
      const connection = yield* reserved
      const insert = "INSERT INTO t (n) VALUES (?)"
      yield* connection.executeUnprepared("BEGIN IMMEDIATE", [], undefined)
      const failure = yield* Effect.flip(connection.executeAll([[insert, [1]], [insert, [1]], [insert, [2]]]))
      assert.strictEqual(failure.message, "Failed to execute statement")
      assert.include(String(failure.cause), "UNIQUE constraint failed: t.n")
      assert.deepStrictEqual(yield* values(connection), [1]) // the third never ran
      yield* connection.executeUnprepared("ROLLBACK", [], undefined)
      assert.deepStrictEqual(yield* values(connection), [])
    }))

  it.scoped("a statement that cannot be prepared fails with its reason", () =>
    Effect.gen(function*() {
      const connection = yield* reserved
      const failure = yield* Effect.flip(connection.execute("SELECT nope FROM t", [], undefined))
      assert.strictEqual(failure.message, "Failed to prepare statement")
      assert.include(String(failure.cause), "no such column: nope")
    }))

  it.scoped("safe integers are honoured per run of a statement", () =>
    Effect.gen(function*() {
      const connection = yield* reserved
      yield* connection.execute("INSERT INTO t (n) VALUES (?)", [2n ** 60n + 1n], undefined)
      const rows = yield* connection.execute("SELECT n FROM t", [], undefined).pipe(
        Effect.provideService(SqlClient.SafeIntegers, true)
      )
      assert.strictEqual(rows[0].n, 2n ** 60n + 1n)
      // The same (kept) statement without them reads numbers again.
      const again = yield* connection.execute("SELECT n FROM t", [], undefined)
      assert.strictEqual(typeof again[0].n, "number")
    }))

  it.scoped("the statement cache keeps the most recently used statements and prepares the rest again", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const db = new Sqlite(path.join(dir, "cache.db"))
      yield* Effect.addFinalizer(() => Effect.sync(() => db.close()))
      const prepared = SqliteConnection.statementCache(db)
      const text = (i: number) => `SELECT ${i} AS n`
      const first = prepared(text(0))
      const second = prepared(text(1))
      for (let i = 2; i < SqliteConnection.preparedKept; i++) prepared(text(i))
      assert.strictEqual(prepared(text(0)), first) // a hit: now the most recently used
      prepared(text(SqliteConnection.preparedKept)) // one too many: the least recently used (1) goes
      assert.strictEqual(prepared(text(0)), first)
      const again = prepared(text(1))
      assert.notStrictEqual(again, second)
      assert.deepStrictEqual(again.get(), { n: 1 })
    }))
})
