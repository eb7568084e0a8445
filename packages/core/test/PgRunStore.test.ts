import * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import * as Database from "@quarry/core/Database"
import * as DatabaseUrl from "@quarry/core/DatabaseUrl"
import * as Durability from "@quarry/core/Durability"
import * as PgDatabase from "@quarry/core/PgDatabase"
import type { RunId } from "@quarry/core/Run"
import * as RunStore from "@quarry/core/RunStore"
import * as SqlRunStore from "@quarry/core/SqlRunStore"
import { query } from "@quarry/testkit/Postgres"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import * as net from "node:net"
import { latestPgSchemaVersion } from "../src/internal/migrations.js"
import { coreDist, spawnNode } from "./children.js"
import { createDatabase, dropDatabase, freshDatabase, storeLayer, usePostgres } from "./postgres.js"
import { newRun, runStoreSuite, syntheticOutput } from "./RunStoreSuite.js"

const adminUrl = usePostgres()

runStoreSuite("SqlRunStore on PostgreSQL", () => storeLayer(adminUrl()))

/**
 * A loopback TCP proxy in front of PostgreSQL that, once armed, loses the answer to the next insert of one row: it
 * cuts the connection instead of forwarding that answer. `cuts` says for each cut whether the answer ended with
 * ReadyForQuery "idle" (`Z`, length 5, `I`), i.e. whether the insert's implicit transaction had committed.
 */
const answerLosingProxy = (target: URL) =>
  Effect.acquireRelease(
    Effect.async<{ readonly port: number; readonly arm: () => void; readonly cuts: Array<boolean>; close: () => void }>(
      (resume) => {
        let armed = false
        const cuts: Array<boolean> = []
        const sockets = new Set<net.Socket>()
        const server = net.createServer((client) => {
          const upstream = net.connect(Number(target.port), target.hostname)
          const close = () => (client.destroy(), upstream.destroy())
          for (const socket of [client, upstream]) {
            sockets.add(socket)
            socket.on("error", close).on("close", () => (close(), sockets.delete(socket)))
          }
          client.on("data", (chunk) => upstream.write(chunk))
          upstream.on("data", (chunk: Buffer) => {
            if (!armed || !chunk.includes("INSERT 0 1")) return void client.write(chunk)
            armed = false
            cuts.push(chunk.subarray(-6).equals(Buffer.from([0x5a, 0, 0, 0, 5, 0x49])))
            close()
          })
        })
        server.listen(0, "127.0.0.1", () => {
          const address = server.address()
          resume(Effect.succeed({
            port: typeof address === "object" && address !== null ? address.port : 0,
            arm: () => void (armed = true),
            cuts,
            close: () => {
              server.close()
              for (const socket of sockets) socket.destroy()
            }
          }))
        })
      }
    ),
    (proxy) => Effect.sync(proxy.close)
  )

/** The commit of synthetic batch `batchIndex` of `runId` by `holder`. */
const batchCommit = (runId: RunId, holder: RunStore.LeaseHolder, batchIndex: number): RunStore.BatchCommit => ({
  runId,
  holder,
  batchIndex,
  output: syntheticOutput(batchIndex),
  attempts: 1,
  durationMs: 1
})

describe("PostgreSQL database", () => {
  it.scoped("six processes migrating the same empty database at once all succeed, and it is migrated once", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase(adminUrl())
      const migrator = () =>
        spawnNode(`
          import * as SqlRunStore from "@quarry/core/SqlRunStore"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
          import * as Layer from "effect/Layer"
          import * as PgDatabase from ${JSON.stringify(coreDist("PgDatabase"))}
          console.log("ready")
          process.stdin.once("data", () => {
            Effect.runPromise(Effect.scoped(Layer.build(PgDatabase.layer(${JSON.stringify(url)})))).then(
              () => { console.log("migrated"); process.exit(0) },
              (error) => { console.error(String(error)); process.exit(1) }
            )
          })
        `)
      const children = Array.from({ length: 6 }, migrator)
      yield* Effect.promise(() => Promise.all(children.map((c) => c.waitFor("ready"))))
      for (const child of children) child.process.stdin?.write("go\n")
      const codes = yield* Effect.promise(() => Promise.all(children.map((c) => c.exited)))
      assert.deepStrictEqual(codes, [0, 0, 0, 0, 0, 0], children.map((c) => c.output()).join("\n"))
      const migrations = yield* Effect.promise(() =>
        query(url, "SELECT migration_id FROM effect_sql_migrations ORDER BY 1")
      )
      // Each migration once, whichever process ran it.
      assert.deepStrictEqual(
        migrations.map((r) => r.migration_id),
        Array.from({ length: latestPgSchemaVersion }, (_, i) => i + 1)
      )
      const tables = yield* Effect.promise(() => query(url, "SELECT to_regclass('runs') IS NOT NULL AS present"))
      assert.isTrue(tables[0]?.present)
    }))

  it.scoped("BIGINTs read back exactly: Quarry's as numbers, 64-bit ids (the cluster's snowflakes) as their digits", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase(adminUrl())
      const database = yield* Layer.build(PgDatabase.layer(url))
      const sql = Context.get(database, SqlClient.SqlClient)
      const rows = yield* sql<{ small: unknown; snowflake: unknown; sum: unknown }>`
        SELECT 1733400000000::bigint AS small, 255114397729427456::bigint AS snowflake, 0.25::numeric AS sum`
      assert.deepStrictEqual(rows[0], { small: 1733400000000, snowflake: "255114397729427456", sum: 0.25 })
    }))

  it.scoped("an unsafe server is refused with every reason, before anything is migrated", () =>
    Effect.gen(function*() {
      const url = yield* Effect.acquireRelease(
        Effect.promise(() => createDatabase(adminUrl())),
        (url) => Effect.promise(() => dropDatabase(adminUrl(), url))
      )
      const name = new URL(url).pathname.slice(1)
      // Settings of this database only: the server's own stay safe for the other tests.
      yield* Effect.promise(() => query(adminUrl(), `ALTER DATABASE ${name} SET synchronous_commit = off`))
      const error = yield* Effect.flip(Effect.scoped(Layer.build(PgDatabase.layer(url))))
      assert.strictEqual(error._tag, "DurabilityError")
      assert.match(error.reasons.join("\n"), /synchronous_commit is off/)
      assert.notInclude(error.message, ":quarry@", "the password is not in the message")
      const tables = yield* Effect.promise(() => query(url, "SELECT to_regclass('runs') IS NOT NULL AS present"))
      assert.isFalse(tables[0]?.present)
    }))

  it.scoped("a database holding another application's table named like Quarry's is refused, and left as it was", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase(adminUrl())
      yield* Effect.promise(() => query(url, "CREATE TABLE runs (id TEXT PRIMARY KEY, note TEXT)"))
      yield* Effect.promise(() => query(url, "INSERT INTO runs VALUES ('a', 'theirs')"))
      const error = yield* Effect.flip(Effect.scoped(Layer.build(PgDatabase.layer(url))))
      assert.strictEqual(error._tag, "DurabilityError")
      assert.deepStrictEqual(error.reasons, [
        "migration failed: Migration \"1_create_runs\" failed (relation \"runs\" already exists)"
      ])
      const tables = yield* Effect.promise(() =>
        query(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
      )
      assert.deepStrictEqual(tables.map((t) => t.tablename), ["runs"])
      assert.deepStrictEqual(yield* Effect.promise(() => query(url, "SELECT * FROM runs")), [{
        id: "a",
        note: "theirs"
      }])
    }))

  it.scoped("a database whose effect_sql_migrations holds another application's migrations is refused, unmigrated", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase(adminUrl())
      yield* Effect.promise(() =>
        query(url, "CREATE TABLE effect_sql_migrations (migration_id integer primary key, name text not null)")
      )
      yield* Effect.promise(() => query(url, "INSERT INTO effect_sql_migrations VALUES (1, 'init'), (2, 'users')"))
      const error = yield* Effect.flip(Effect.scoped(Layer.build(PgDatabase.layer(url))))
      assert.strictEqual(error._tag, "DurabilityError")
      assert.deepStrictEqual(error.reasons, [
        "it holds the migrations of something else (effect_sql_migrations: 1 init, 2 users), not Quarry's; " +
        "give Quarry a database of its own"
      ])
      const tables = yield* Effect.promise(() =>
        query(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
      )
      assert.deepStrictEqual(tables.map((t) => t.tablename), ["effect_sql_migrations"])
    }))

  it.scoped("doctor's report on a safe server lists its settings and the schema version", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase(adminUrl())
      const db = DatabaseUrl.redact(url)
      const report = yield* Durability.inspect(db).pipe(Effect.provide(PgDatabase.layer(url)), Effect.orDie)
      assert.isTrue(report.durable, report.reasons.join("; "))
      assert.strictEqual(report.filename, db)
      assert.notInclude(report.filename, ":quarry@")
      assert.deepStrictEqual(Option.fromNullable(report.postgres).pipe(Option.map((p) => p.fsync)), Option.some("on"))
      assert.strictEqual(report.schemaVersion, report.supportedSchemaVersion)
    }))

  it.scoped("each entity's class is still written to the type column, which runners of the version before read", () =>
    Effect.gen(function*() {
      const store = yield* RunStore.RunStore
      const { sql } = yield* Database.Database
      const run = yield* store.createRun(newRun("typed"))
      const holder = Option.getOrThrow((yield* store.claim(run.id, "runner", 60_000)).holder)
      const extra = [
        { label: "Ahab", type: "http://schema.org/Person", span: { start: 0, end: 4 }, confidence: 1, attributes: {} },
        {
          label: "Pequod",
          type: "http://schema.org/Vehicle",
          span: { start: 5, end: 11 },
          confidence: 1,
          attributes: {}
        }
      ]
      yield* store.commitBatch({ ...batchCommit(run.id, holder, 0), output: syntheticOutput(0, extra) })
      const rows = yield* sql<{ label: string; type: string }>`SELECT label, type FROM entities
        WHERE run_id = ${run.id} ORDER BY label`
      const expected = syntheticOutput(0, extra).entities.map((e) => [e.label, e.type]).sort()
      assert.deepStrictEqual(rows.map((r) => [r.label, r.type]), expected)
      // The class this version reads back from the key is the same.
      const known = yield* store.knownEntities(run.id, 1)
      assert.deepStrictEqual(known.map((e) => [e.label, e.type]).sort(), expected)
    }).pipe(Effect.provide(Layer.fresh(storeLayer(adminUrl())))))

  it.scoped("a holder whose claim was taken over while it waited is refused at commit and writes nothing", () =>
    Effect.gen(function*() {
      const store = yield* RunStore.RunStore
      const run = yield* store.createRun(newRun("fenced"))
      const first = Option.getOrThrow((yield* store.claim(run.id, "first", 1)).holder)
      yield* TestClock.adjust(5)
      // The lease expired: another runner takes the run over; the first runner's late commit must not land.
      const second = Option.getOrThrow((yield* store.claim(run.id, "second", 60_000)).holder)
      const late = yield* Effect.flip(store.commitBatch(batchCommit(run.id, first, 0)))
      assert.strictEqual(late._tag, "RunLocked")
      assert.strictEqual((yield* store.getRun(run.id)).committedBatches, 0)
      yield* store.commitBatch(batchCommit(run.id, second, 0))
      assert.strictEqual((yield* store.getRun(run.id)).committedBatches, 1)
    }).pipe(Effect.provide(Layer.fresh(storeLayer(adminUrl())))))

  it.scoped("a takeover waits for the commit that holds the run's row; the old holder's next commit is refused", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase(adminUrl())
      const database = yield* Layer.build(PgDatabase.layer(url))
      const inCommit = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      // Holds batch 0's commit transaction open (after its first statement locked the row) until released.
      const store = yield* SqlRunStore.make({
        beforeCheckpoint: (commit) =>
          commit.batchIndex === 0 ?
            Effect.zipRight(Deferred.succeed(inCommit, undefined), Deferred.await(release)) :
            Effect.void
      }).pipe(Effect.provide(database))
      const commit = (holder: RunStore.LeaseHolder, batchIndex: number) =>
        store.commitBatch(batchCommit(run.id, holder, batchIndex))
      const run = yield* store.createRun(newRun("race"))
      const first = Option.getOrThrow((yield* store.claim(run.id, "first", 1)).holder)
      const committing = yield* Effect.fork(commit(first, 0))
      yield* Deferred.await(inCommit)
      yield* TestClock.adjust(5)
      // The lease has expired, but the first holder's commit holds the row: the takeover waits for it.
      const takeover = yield* Effect.fork(store.claim(run.id, "second", 60_000))
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 300)))
      assert.isTrue(Option.isNone(yield* Fiber.poll(takeover)), "the claim did not wait for the row lock")
      yield* Deferred.succeed(release, undefined)
      assert.strictEqual((yield* Fiber.join(committing)).committedBatches, 1)
      const second = yield* Fiber.join(takeover)
      assert.strictEqual(second.run.committedBatches, 1)
      // From now on the first holder is fenced off; the second continues from the committed batch.
      assert.strictEqual((yield* Effect.flip(commit(first, 1)))._tag, "RunLocked")
      yield* commit(Option.getOrThrow(second.holder), 1)
      assert.strictEqual((yield* store.getRun(run.id)).committedBatches, 2)
    }))

  // Live clock: the commit's retry after its session ended sleeps for real.
  it.scopedLive("a commit frozen inside its transaction: the server ends its session, the takeover goes on, the commit is refused", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase(adminUrl())
      const database = yield* Layer.build(PgDatabase.layer(url, { idleInTransactionTimeoutMs: 200 }))
      const inCommit = yield* Deferred.make<void>()
      const thaw = yield* Deferred.make<void>()
      // The holder "freezes" (as under SIGSTOP) after its first statement locked the run's row, until thawed.
      const store = yield* SqlRunStore.make({
        beforeCheckpoint: () => Deferred.succeed(inCommit, undefined).pipe(Effect.zipRight(Deferred.await(thaw)))
      }).pipe(Effect.provide(database))
      const run = yield* store.createRun(newRun("frozen"))
      const first = Option.getOrThrow((yield* store.claim(run.id, "first", 1)).holder)
      const committing = yield* Effect.fork(store.commitBatch(batchCommit(run.id, first, 0)))
      yield* Deferred.await(inCommit)
      yield* Effect.sleep("5 millis")
      // Without the server's idle-in-transaction timeout this claim would wait for the thaw.
      const second = yield* store.claim(run.id, "second", 60_000)
      assert.isTrue(Option.isSome(second.holder))
      assert.isTrue(Option.isNone(yield* Fiber.poll(committing)), "the frozen commit ended before the takeover")
      yield* Deferred.succeed(thaw, undefined)
      assert.strictEqual((yield* Effect.flip(Fiber.join(committing)))._tag, "RunLocked")
      assert.strictEqual((yield* store.getRun(run.id)).committedBatches, 0)
    }))

  // As under SIGSTOP: the whole process, event loop included, stands still inside the transaction. The server ends the
  // idle session meanwhile, and on waking the commit's next statement is answered by that FATAL (25P03), not by a
  // closed socket.
  it.scopedLive("a commit whose process froze past the idle-in-transaction timeout is retried on a new session and lands once", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase(adminUrl())
      const database = yield* Layer.build(PgDatabase.layer(url, { idleInTransactionTimeoutMs: 200 }))
      let frozen = 0
      const store = yield* SqlRunStore.make({
        beforeCheckpoint: () =>
          Effect.sync(() => {
            if (frozen++ === 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1_000)
          })
      }).pipe(Effect.provide(database))
      const run = yield* store.createRun(newRun("frozen-process"))
      const holder = Option.getOrThrow((yield* store.claim(run.id, "only", 60_000)).holder)
      const committed = yield* store.commitBatch(batchCommit(run.id, holder, 0))
      assert.strictEqual(frozen, 2, "the frozen attempt failed and a second one ran")
      assert.strictEqual(committed.committedBatches, 1)
      assert.strictEqual((yield* store.getRun(run.id)).committedBatches, 1)
    }))

  it.scopedLive("recordAttempt whose session is terminated (pg_terminate_backend) is retried and lands once", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase(adminUrl())
      const store = yield* SqlRunStore.make().pipe(Effect.provide(yield* Layer.build(PgDatabase.layer(url))))
      const run = yield* store.createRun(newRun("usage-cut"))
      // The first insert into usage_attempts terminates its own session before it commits. A sequence is outside
      // transactions, so the insert's retry finds the trigger spent.
      yield* Effect.promise(() =>
        query(
          url,
          `CREATE SEQUENCE cut_usage;
          CREATE FUNCTION cut_usage() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
            IF nextval('cut_usage') = 1 THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF;
            RETURN NEW;
          END $$;
          CREATE TRIGGER cut_usage BEFORE INSERT ON usage_attempts FOR EACH ROW EXECUTE FUNCTION cut_usage();`
        )
      )
      yield* store.recordAttempt(run.id, 0, { requests: 1, promptTokens: 12, completionTokens: 3 }, "only")
      const [cut] = yield* Effect.promise(() => query(url, "SELECT last_value FROM cut_usage"))
      assert.strictEqual(Number(cut?.last_value), 2, "the first insert was cut, the retry went through")
      const totals = yield* store.attemptTotals(run.id)
      assert.deepStrictEqual([totals.requests, totals.promptTokens], [1, 12])
    }))

  it.scopedLive("reads whose session is terminated mid-statement (pg_terminate_backend) are retried and answer", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase(adminUrl())
      const store = yield* SqlRunStore.make().pipe(Effect.provide(yield* Layer.build(PgDatabase.layer(url))))
      const created = newRun("reads-cut")
      const run = yield* store.createRun(created)
      const holder = Option.getOrThrow((yield* store.claim(run.id, "runner", 60_000)).holder)
      // Skipped, so that the read of skipped batches has a row to read.
      yield* store.commitBatch({ ...batchCommit(run.id, holder, 0), skipped: { error: "boom" } })
      // Each table is read through a view whose first row read, once its sequence is reset, terminates the session.
      const tables = ["ontologies", "runs", "batches"] as const
      yield* Effect.promise(() =>
        query(
          url,
          `CREATE FUNCTION cut_once(seq regclass) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$ BEGIN
            IF nextval(seq) = 1 THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF;
            RETURN true;
          END $$;` +
            tables.map((t) =>
              `CREATE SEQUENCE cut_${t} START 2; ALTER TABLE ${t} RENAME TO ${t}_stored;
              CREATE VIEW ${t} AS SELECT * FROM ${t}_stored WHERE cut_once('cut_${t}');`
            ).join("\n")
        )
      )
      const cutOnce = <A, E>(table: (typeof tables)[number], read: Effect.Effect<A, E>) =>
        Effect.gen(function*() {
          yield* Effect.promise(() => query(url, `SELECT setval('cut_${table}', 1, false)`))
          const answer = yield* read
          const [cut] = yield* Effect.promise(() => query(url, `SELECT last_value FROM cut_${table}`))
          assert.isAbove(Number(cut?.last_value), 1, `a read of ${table} was cut, and read again`)
          return answer
        })
      const ontology = Option.getOrThrow(created.ontology)
      assert.deepStrictEqual(
        yield* cutOnce("ontologies", store.readOntologySource(ontology.sha256)),
        Option.some(ontology.source)
      )
      assert.deepStrictEqual((yield* cutOnce("runs", store.listRuns())).map((r) => r.id), [run.id])
      assert.strictEqual((yield* cutOnce("runs", store.countRuns)).running, 1)
      assert.strictEqual(yield* cutOnce("runs", store.countStatus("running")), 1)
      assert.deepStrictEqual(yield* cutOnce("batches", store.skippedBatches(run.id)), [{
        batchIndex: 0,
        error: "boom"
      }])
    }))

  it.scopedLive("recordAttempt whose answer is lost after its COMMIT (connection cut) is retried and counted once", () =>
    Effect.gen(function*() {
      const url = new URL(yield* freshDatabase(adminUrl()))
      const proxy = yield* answerLosingProxy(url)
      const proxied = new URL(url)
      proxied.port = String(proxy.port)
      const store = yield* SqlRunStore.make().pipe(
        Effect.provide(yield* Layer.build(PgDatabase.layer(proxied.toString())))
      )
      const run = yield* store.createRun(newRun("usage-answer-lost"))
      proxy.arm()
      yield* store.recordAttempt(run.id, 0, { requests: 1, promptTokens: 12, completionTokens: 3 }, "only")
      assert.deepStrictEqual(proxy.cuts, [true], "one answer was lost, after the insert had committed")
      const rows = yield* Effect.promise(() =>
        query<{ n: number }>(url.toString(), "SELECT count(*)::int AS n FROM usage_attempts")
      )
      assert.strictEqual(rows[0]?.n, 1)
      assert.strictEqual((yield* store.attemptTotals(run.id)).requests, 1)
    }))
})
