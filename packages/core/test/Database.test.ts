import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import * as Database from "@quarry/core/Database"
import * as DatabaseUrl from "@quarry/core/DatabaseUrl"
import * as Durability from "@quarry/core/Durability"
import { RunId } from "@quarry/core/Run"
import * as RunStore from "@quarry/core/RunStore"
import * as SqliteRunStore from "@quarry/core/SqliteRunStore"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as fs from "node:fs"
import * as path from "node:path"
import { entityKey } from "../src/internal/entities.js"
import { sqliteMigrations } from "../src/internal/migrations.js"
import { coreDist, spawnNode } from "./children.js"
import { tempDir } from "./fixtures.js"
import { newRun } from "./RunStoreSuite.js"

const pragma = (name: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql.unsafe<Record<string, unknown>>(`PRAGMA ${name}`)
    return Object.values(rows[0] ?? {})[0]
  })

const tables = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ name: string }>`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`
  return rows.map((r) => r.name)
})

const schemaVersion = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ v: number }>`SELECT MAX(migration_id) AS v FROM effect_sql_migrations`
  return rows[0]!.v
})

type OldEntity = { readonly label: string; readonly type: string; readonly firstBatch: number }

/**
 * A database as Quarry's schema 5 left it (migrations 0001-0005, entity rows with their own `type` column), holding
 * run `old` and `entities`. The run's rows are written by today's store in a database of its own and copied: their
 * tables are the same in both schemas.
 */
const schema5Database = (file: string, entities: ReadonlyArray<OldEntity>) =>
  Effect.gen(function*() {
    const current = `${file}.current`
    yield* Effect.flatMap(RunStore.RunStore, (store) => store.createRun(newRun("old"))).pipe(
      Effect.provide(Layer.provideMerge(SqliteRunStore.layer, Database.layer(current)))
    )
    const upTo5 = Object.fromEntries(Object.entries(sqliteMigrations).filter(([name]) => Number(name.slice(0, 4)) <= 5))
    yield* Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* Migrator.make({})({ loader: Migrator.fromRecord(upTo5) })
      yield* sql`ATTACH DATABASE ${current} AS current`
      // The columns of schema 5 (later migrations add some to `runs`).
      for (const table of ["ontologies", "runs", "run_inputs"]) {
        const columns = (yield* sql<{ name: string }>`SELECT name FROM pragma_table_info(${table})`).map((c) => c.name)
        const list = columns.map((c) => `"${c}"`).join(", ")
        yield* sql.unsafe(`INSERT INTO ${table} (${list}) SELECT ${list} FROM current.${table}`)
      }
      yield* sql`DETACH DATABASE current`
      for (const e of entities) {
        yield* sql`INSERT INTO entities (run_id, entity_key, label, type, first_batch)
          VALUES ('old', ${entityKey(e.label, e.type)}, ${e.label}, ${e.type}, ${e.firstBatch})`
      }
    }).pipe(Effect.provide(SqliteClient.layer({ filename: file })))
  })

describe("Database", () => {
  it.scoped("layer opens a file with durable pragmas and the migrated schema", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const file = path.join(dir, "q.db")
      yield* Effect.gen(function*() {
        assert.strictEqual(yield* pragma("journal_mode"), "wal")
        assert.strictEqual(yield* pragma("synchronous"), 2)
        assert.strictEqual(yield* pragma("foreign_keys"), 1)
        assert.strictEqual(yield* pragma("busy_timeout"), Database.busyTimeoutMs)
        assert.strictEqual(yield* pragma("application_id"), DatabaseUrl.sqliteApplicationId)
        const names = yield* tables
        for (const table of ["runs", "run_inputs", "batches", "checkpoints", "entities", "run_errors"]) {
          assert.include(names, table)
        }
        const report = yield* Durability.inspect(file)
        assert.strictEqual(yield* schemaVersion, report.supportedSchemaVersion)
        // The report reads the schema version of a database migrated on this very connection.
        assert.strictEqual(report.schemaVersion, report.supportedSchemaVersion)
      }).pipe(Effect.provide(Database.layer(file)))
      // Once closed (its log checkpointed), the file's header says whose it is: the CLI reads it without opening it.
      assert.strictEqual(fs.readFileSync(file).readUInt32BE(68), DatabaseUrl.sqliteApplicationId)
    }))

  it.scoped("reopening keeps the data and does not migrate again", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const file = path.join(dir, "q.db")
      const withStore = Layer.provideMerge(SqliteRunStore.layer, Database.layer(file))
      const created = yield* Effect.flatMap(RunStore.RunStore, (store) => store.createRun(newRun("kept"))).pipe(
        Effect.provide(withStore)
      )
      const [run, migrations] = yield* Effect.gen(function*() {
        const store = yield* RunStore.RunStore
        const sql = yield* SqlClient.SqlClient
        const rows = yield* sql<{ n: number }>`SELECT COUNT(*) AS n FROM effect_sql_migrations`
        return [yield* store.getRun(created.id), rows[0]!.n] as const
      }).pipe(Effect.provide(withStore))
      assert.deepStrictEqual(run, created)
      assert.strictEqual(migrations, yield* schemaVersion.pipe(Effect.provide(Database.layer(file))))
    }))

  it.scoped("refuses a database whose schema is newer than this code, and leaves it as it is", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const file = path.join(dir, "q.db")
      const future = yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const next = (yield* schemaVersion) + 1
        yield* sql`INSERT INTO effect_sql_migrations (migration_id, name) VALUES (${next}, 'from_the_future')`
        return next
      }).pipe(Effect.provide(Database.layer(file)))
      const error = yield* Effect.flip(Layer.build(Database.layer(file)))
      assert.strictEqual(error._tag, "DurabilityError")
      assert.match(error.reasons.join("\n"), new RegExp(`schema version is ${future}`))
      assert.include(error.message, "upgrade Quarry")
      // Read without Quarry's layer: still the future schema, nothing rolled back or migrated.
      const rows = yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        return yield* sql<{ migration_id: number }>`SELECT migration_id FROM effect_sql_migrations ORDER BY 1`
      }).pipe(Effect.provide(SqliteClient.layer({ filename: file })))
      assert.strictEqual(rows.at(-1)!.migration_id, future)
    }))

  it.scoped("migration 0006 keeps every entity of a schema-5 database, its class read back from its key", () =>
    Effect.gen(function*() {
      const file = path.join(yield* tempDir, "q.db")
      const entities: ReadonlyArray<OldEntity> = [
        { label: "Pequod", type: "http://schema.org/Vehicle", firstBatch: 2 },
        { label: "Nantucket", type: "http://schema.org/Place", firstBatch: 0 },
        { label: "Ishmael  Jr", type: "http://schema.org/Person", firstBatch: 0 }
      ]
      yield* schema5Database(file, entities)
      const [known, columns, version] = yield* Effect.gen(function*() {
        const store = yield* RunStore.RunStore
        const sql = yield* SqlClient.SqlClient
        const columns = yield* sql<{ name: string }>`SELECT name FROM pragma_table_info('entities')`
        return [
          yield* store.knownEntities(RunId.make("old"), 10),
          columns.map((c) => c.name),
          yield* schemaVersion
        ] as const
      }).pipe(Effect.provide(Layer.provideMerge(SqliteRunStore.layer, Database.layer(file))))
      assert.strictEqual(version, Object.keys(sqliteMigrations).length)
      assert.deepStrictEqual(columns, ["run_id", "entity_key", "label", "first_batch"])
      // In order of first batch, then key (Person before Place).
      assert.deepStrictEqual(known.map((e) => [e.label, e.type, e.firstBatch]), [
        ["Ishmael  Jr", "http://schema.org/Person", 0],
        ["Nantucket", "http://schema.org/Place", 0],
        ["Pequod", "http://schema.org/Vehicle", 2]
      ])
    }))

  it.scoped("refuses a schema-5 database whose entity classes hold a NUL, naming the run, and leaves it as it is", () =>
    Effect.gen(function*() {
      const file = path.join(yield* tempDir, "q.db")
      const type = "http://example.org/a\u0000b"
      yield* schema5Database(file, [{ label: "c", type, firstBatch: 0 }])
      const error = yield* Effect.flip(Layer.build(Database.layer(file)))
      assert.strictEqual(error._tag, "DurabilityError")
      assert.match(error.reasons.join("\n"), /entity classes with a NUL character in run old\b.*cannot migrate/)
      const [version, stored] = yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const rows = yield* sql<{ type: string }>`SELECT type FROM entities`
        return [yield* schemaVersion, rows.map((r) => r.type)] as const
      }).pipe(Effect.provide(SqliteClient.layer({ filename: file })))
      assert.strictEqual(version, 5)
      assert.deepStrictEqual(stored, [type])
    }))

  it.scoped("refuses a file that is not a SQLite database with a clear reason, and does not touch it", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const file = path.join(dir, "notes.db")
      const content = "These are my notes, not a database.\n".repeat(200)
      fs.writeFileSync(file, content)
      const error = yield* Effect.flip(Layer.build(Database.layer(file)))
      assert.strictEqual(error._tag, "DurabilityError")
      assert.match(error.reasons.join("\n"), /not a (SQLite )?database/i)
      assert.strictEqual(fs.readFileSync(file, "utf8"), content)
      assert.deepStrictEqual(fs.readdirSync(dir).filter((f) => f !== "notes.db" && !f.startsWith("notes.db-")), [])
    }))

  it.scoped("refuses in-memory and temporary databases before opening them", () =>
    Effect.gen(function*() {
      for (const filename of [":memory:", ""]) {
        const error = yield* Effect.flip(Layer.build(Database.layer(filename)))
        assert.strictEqual(error._tag, "DurabilityError")
        assert.match(error.reasons.join("\n"), /in-memory|temporary/)
      }
    }))

  it.scoped("layerEphemeral is a real, durable file that is removed with its scope", () =>
    Effect.gen(function*() {
      const file = yield* Effect.scoped(
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const rows = yield* sql<{ file: string }>`SELECT file FROM pragma_database_list WHERE name = 'main'`
          const filename = rows[0]!.file
          assert.isTrue(fs.existsSync(filename))
          assert.isTrue((yield* Durability.validate(filename)).durable)
          return filename
        }).pipe(Effect.provide(Database.layerEphemeral))
      )
      assert.isFalse(fs.existsSync(file))
      assert.isFalse(fs.existsSync(path.dirname(file)))
    }))

  it.live("two processes opening the same new, empty file at once both migrate it and succeed", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      for (let round = 0; round < 2; round++) {
        const file = path.join(dir, `new-${round}.db`)
        const open = () =>
          spawnNode(`
            import * as Effect from "effect/Effect"
            import * as Layer from "effect/Layer"
            import * as Database from ${JSON.stringify(coreDist("Database"))}
            console.log("ready")
            process.stdin.once("data", () => {
              Effect.runPromise(Effect.scoped(Layer.build(Database.layer(${JSON.stringify(file)})))).then(
                () => { console.log("ok"); process.exit(0) },
                (error) => { console.error(String(error)); process.exit(1) }
              )
            })
          `)
        const children = [open(), open()]
        yield* Effect.promise(() => Promise.all(children.map((child) => child.waitFor("ready"))))
        // Released together: both find an empty file and race to migrate it.
        for (const child of children) child.process.stdin!.write("go\n")
        const codes = yield* Effect.promise(() => Promise.all(children.map((child) => child.exited)))
        assert.deepStrictEqual(codes, [0, 0], children.map((child) => child.output()).join("\n"))
        const migrated = yield* Effect.all([schemaVersion, Durability.inspect(file)]).pipe(
          Effect.provide(Database.layer(file))
        )
        assert.strictEqual(migrated[0], migrated[1].supportedSchemaVersion)
      }
    }).pipe(Effect.scoped))
})
