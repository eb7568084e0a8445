import { assert, describe, it } from "@effect/vitest"
import * as Database from "@quarry/core/Database"
import * as Durability from "@quarry/core/Durability"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as fs from "node:fs"
import * as path from "node:path"
import { crashWhileOpen, damage } from "../../../test/damagedDatabase.js"
import { tempDir } from "./fixtures.js"

/** A migrated Quarry database, closed again, then damaged so that `quick_check` fails. */
const damagedDatabase = Effect.gen(function*() {
  const dir = yield* tempDir
  const file = path.join(dir, "q.db")
  yield* Layer.build(Database.layer(file)).pipe(Effect.scoped)
  assert.isFalse(fs.existsSync(`${file}-wal`), "closing the last connection removes the write-ahead log")
  const finding = damage(file)
  return { file, finding }
})

const open = (file: string, options?: Database.Options) =>
  Layer.build(Database.layer(file, options)).pipe(Effect.scoped, Effect.flip, Effect.option)

describe("Database quickCheck", () => {
  it.scoped("always: a damaged file is refused, naming quick_check's finding", () =>
    Effect.gen(function*() {
      const { file, finding } = yield* damagedDatabase
      const refused = yield* open(file, { quickCheck: "always" })
      assert.isTrue(refused._tag === "Some", "the damaged file must be refused")
      if (refused._tag === "Some") {
        assert.match(refused.value.reasons.join("\n"), /quick_check failed/)
        assert.include(refused.value.reasons.join("\n"), finding.split("\n")[0])
      }
    }))

  it.scoped("never, and the default after a clean shutdown: the file is opened without reading all of it", () =>
    Effect.gen(function*() {
      const { file } = yield* damagedDatabase
      // Opening succeeds only because the check was skipped: the file is damaged.
      assert.isTrue((yield* open(file, { quickCheck: "never" }))._tag === "None")
      assert.isTrue((yield* open(file))._tag === "None")
      const report = yield* Durability.inspect(file, { quickCheck: false }).pipe(
        Effect.provide(Database.layer(file, { quickCheck: "never" }))
      )
      assert.strictEqual(report.quickCheck, "skipped")
      assert.isTrue(report.durable)
    }))

  it.scoped("the default after an unclean shutdown (a process died with the file open): the damage is found", () =>
    Effect.gen(function*() {
      const { file } = yield* damagedDatabase
      assert.isAbove(crashWhileOpen(file), 0, "the dead process must leave its write-ahead log")
      const refused = yield* open(file)
      assert.isTrue(refused._tag === "Some", "the damaged file must be refused after an unclean shutdown")
      if (refused._tag === "Some") assert.match(refused.value.reasons.join("\n"), /quick_check failed/)
    }))

  it.scoped("after an unclean shutdown an undamaged file opens, and closing it cleanly removes the log again", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const file = path.join(dir, "q.db")
      yield* Layer.build(Database.layer(file)).pipe(Effect.scoped)
      crashWhileOpen(file)
      assert.isTrue((yield* open(file))._tag === "None")
      // The clean close above removed the log.
      assert.isFalse(fs.existsSync(`${file}-wal`))
    }))
})
