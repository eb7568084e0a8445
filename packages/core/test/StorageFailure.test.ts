import * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { classifyStorageFailure } from "@quarry/core/Errors"
import type * as Extractor from "@quarry/core/Extractor"
import * as RunStore from "@quarry/core/RunStore"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { randomBytes } from "node:crypto"
import * as path from "node:path"
import { storeLayer, tempDir } from "./fixtures.js"
import { newRun } from "./RunStoreSuite.js"

/** An output too large for a few free pages (random labels: compression cannot shrink it away). */
const bigOutput: Extractor.BatchOutput = {
  entities: Array.from({ length: 2_000 }, (_, i) => ({
    label: randomBytes(24).toString("hex"),
    type: "http://xmlns.com/foaf/0.1/Person",
    span: { start: i, end: i + 1 },
    confidence: 1,
    attributes: {}
  })),
  relations: []
}

describe("storage failures", () => {
  it("classifies SQLite result codes and errno values", () => {
    const sqlite = (code: string) => ({ _tag: "SqlError", cause: Object.assign(new Error(code), { code }) })
    assert.strictEqual(classifyStorageFailure(sqlite("SQLITE_FULL")), "disk-full")
    assert.strictEqual(classifyStorageFailure(sqlite("SQLITE_READONLY_DBMOVED")), "read-only")
    assert.strictEqual(classifyStorageFailure(sqlite("SQLITE_BUSY_SNAPSHOT")), "locked")
    assert.strictEqual(classifyStorageFailure(sqlite("SQLITE_LOCKED")), "locked")
    assert.strictEqual(classifyStorageFailure(sqlite("SQLITE_CORRUPT")), "corrupt")
    assert.strictEqual(classifyStorageFailure(sqlite("SQLITE_NOTADB")), "corrupt")
    assert.strictEqual(classifyStorageFailure(sqlite("SQLITE_IOERR_WRITE")), "io")
    assert.strictEqual(classifyStorageFailure(Object.assign(new Error("x"), { code: "ENOSPC" })), "disk-full")
    assert.strictEqual(classifyStorageFailure(sqlite("SQLITE_ERROR")), "other")
    assert.strictEqual(classifyStorageFailure(new Error("no code")), "other")
  })

  // SQLite rolls a transaction back by itself on SQLITE_FULL; @effect/sql's own ROLLBACK then fails and dies with
  // "cannot rollback - no transaction is active". The store must report the real cause, as a failure.
  it.scoped("a commit that fills the database (max_page_count) fails with disk-full, keeps nothing of it, and retries", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const store = yield* RunStore.RunStore
        const run = yield* store.createRun(newRun("full", { totalBatches: 1 }))
        const holder = Option.getOrThrow((yield* store.claim(run.id, "me", 60_000)).holder)
        const [{ page_count }] = yield* sql<{ page_count: number }>`PRAGMA page_count`
        yield* sql`PRAGMA max_page_count = ${sql.literal(String(page_count + 2))}`
        const commit = { runId: run.id, holder, batchIndex: 0, output: bigOutput, attempts: 1, durationMs: 0 }

        const error = yield* Effect.flip(store.commitBatch(commit))
        assert.strictEqual(error._tag, "PersistenceError")
        if (error._tag !== "PersistenceError") return
        assert.strictEqual(error.reason, "disk-full")
        assert.include(error.message, "storage failed during commitBatch (disk-full)")
        assert.include(error.message, "database or disk is full [SQLITE_FULL]; the file system of the database is full")
        assert.strictEqual((yield* store.getRun(run.id)).committedBatches, 0)

        yield* sql`PRAGMA max_page_count = 1073741823`
        yield* store.commitBatch(commit)
        assert.strictEqual((yield* store.getRun(run.id)).committedBatches, 1)
        assert.deepStrictEqual(yield* sql`PRAGMA integrity_check`, [{ integrity_check: "ok" }])
      }).pipe(Effect.provide(storeLayer(path.join(dir, "q.db"))))
    }))
})
