import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import * as Database from "@quarry/core/Database"
import * as Durability from "@quarry/core/Durability"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { canWrite, lockMethod, setReadOnly } from "../../../test/readOnlyDirectory.js"
import { tempDir } from "./fixtures.js"

/** A bare client (no Quarry pragmas, no validation) on `filename`, to validate databases Quarry did not set up. */
const bareClient = (filename: string) => SqliteClient.layer({ filename })

const validateOn = (filename: string, client: Layer.Layer<SqlClient.SqlClient, unknown>) =>
  Effect.flip(Durability.validate(filename)).pipe(Effect.provide(client))

/** Makes `dir` unwritable until the scope closes. */
const lockDirectory = (dir: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      setReadOnly(dir, true)
      assert.isFalse(canWrite(dir), "the directory must really be unwritable for this test to mean anything")
    }),
    () => Effect.sync(() => setReadOnly(dir, false))
  )

describe("Durability", () => {
  describe("checkLocation", () => {
    it("refuses in-memory and temporary databases, and missing directories", () => {
      for (const memory of [":memory:", "file::memory:", "file:x.db?mode=memory&cache=shared"]) {
        assert.match(Durability.checkLocation(memory).join(), /in-memory/, memory)
      }
      for (const empty of ["", "   "]) assert.match(Durability.checkLocation(empty).join(), /temporary/)
      const missing = path.join(os.tmpdir(), "quarry-does-not-exist-a8f3", "q.db")
      assert.match(Durability.checkLocation(missing).join(), /does not exist/)
      assert.match(Durability.checkLocation(os.tmpdir()).join(), /is a directory/)
      assert.deepStrictEqual(Durability.checkLocation(path.join(os.tmpdir(), "fine.db")), [])
    })
  })

  describe("validate", () => {
    it.scoped("passes on a normal file database", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const file = path.join(dir, "q.db")
        const report = yield* Durability.validate(file).pipe(Effect.provide(Database.layer(file)))
        assert.isTrue(report.durable)
        assert.deepStrictEqual(report.reasons, [])
        assert.strictEqual(report.journalMode, "wal")
        assert.strictEqual(report.synchronous, "FULL")
        assert.isTrue(report.foreignKeys)
        assert.strictEqual(report.quickCheck, "ok")
        assert.strictEqual(report.schemaVersion, report.supportedSchemaVersion)
        assert.isAbove(report.supportedSchemaVersion, 0)
      }))

    it.scoped("fails on an in-memory database", () =>
      Effect.gen(function*() {
        const error = yield* validateOn(":memory:", bareClient(":memory:"))
        assert.strictEqual(error._tag, "DurabilityError")
        if (error._tag === "DurabilityError") {
          assert.match(error.reasons.join("\n"), /in-memory/)
          // Every reason is listed, not only the first: an in-memory database cannot use WAL either.
          assert.match(error.reasons.join("\n"), /journal_mode is memory/)
        }
      }))

    it.scoped("fails on an empty (temporary) file name", () =>
      Effect.gen(function*() {
        const error = yield* validateOn("", bareClient(""))
        assert.strictEqual(error._tag, "DurabilityError")
        if (error._tag === "DurabilityError") assert.match(error.reasons.join("\n"), /temporary/)
      }))

    it.scoped("fails with synchronous below FULL, and lists every reason at once", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const file = path.join(dir, "q.db")
        yield* Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          yield* sql`PRAGMA synchronous = NORMAL`
          const error = yield* Effect.flip(Durability.validate(file))
          assert.strictEqual(error._tag, "DurabilityError")
          if (error._tag === "DurabilityError") {
            assert.strictEqual(error.reasons.length, 1)
            assert.match(error.reasons[0]!, /synchronous is NORMAL/)
            assert.include(error.message, "synchronous is NORMAL")
          }
          yield* sql`PRAGMA synchronous = OFF`
          yield* sql`PRAGMA foreign_keys = OFF`
          yield* sql`PRAGMA journal_mode = DELETE`
          const all = yield* Effect.flip(Durability.validate(file))
          if (all._tag !== "DurabilityError") return assert.fail(`unexpected ${all._tag}`)
          assert.strictEqual(all.reasons.length, 3)
          assert.match(all.reasons.join("\n"), /synchronous is OFF/)
          assert.match(all.reasons.join("\n"), /foreign_keys is OFF/)
          assert.match(all.reasons.join("\n"), /journal_mode is delete/)

          yield* sql`PRAGMA synchronous = FULL`
          yield* sql`PRAGMA foreign_keys = ON`
          yield* sql`PRAGMA journal_mode = WAL`
          assert.isTrue((yield* Durability.validate(file)).durable)
        }).pipe(Effect.provide(Database.layer(file)))
      }))

    it.scoped("fails when the database's directory does not exist", () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const file = path.join(dir, "q.db")
        yield* Effect.gen(function*() {
          fs.renameSync(dir, `${dir}-moved`)
          const error = yield* Effect.flip(Durability.validate(file))
          fs.renameSync(`${dir}-moved`, dir)
          assert.strictEqual(error._tag, "DurabilityError")
          if (error._tag === "DurabilityError") assert.match(error.reasons.join("\n"), /does not exist/)
        }).pipe(Effect.provide(Database.layer(file)))
      }))

    it.scoped(`fails when the database's directory is not writable (${lockMethod ?? "impossible here"})`, (ctx) => {
      // Never pretend: when this process cannot make an unwritable directory, say so by skipping; never under CI,
      // where .ci/run runs as root and the bind-mount method is always there.
      if (lockMethod === undefined) {
        if (process.env.CI === "true") throw new Error("CI=true: no way to make a directory unwritable here")
        ctx.skip()
      }
      return Effect.gen(function*() {
        const dir = yield* tempDir
        const file = path.join(dir, "q.db")
        yield* Effect.gen(function*() {
          yield* Effect.scoped(Effect.gen(function*() {
            yield* lockDirectory(dir)
            const error = yield* Effect.flip(Durability.validate(file))
            assert.strictEqual(error._tag, "DurabilityError")
            if (error._tag === "DurabilityError") {
              assert.strictEqual(error.reasons.length, 1)
              assert.match(error.reasons[0]!, /is not writable/)
            }
          }))
          assert.isTrue((yield* Durability.validate(file)).durable)
        }).pipe(Effect.provide(Database.layer(file)))
        // A fresh open is refused before anything is written.
        yield* lockDirectory(dir)
        const refused = yield* Effect.flip(Layer.build(Database.layer(file)))
        assert.match(refused.reasons.join("\n"), /is not writable/)
      })
    })
  })
})
