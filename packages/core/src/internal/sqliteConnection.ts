/**
 * Quarry's SQLite connection under `@effect/sql`: one better-sqlite3 connection whose statements are prepared once
 * and kept (least recently used out), plus `executeAll`, which runs a list of statements in one synchronous step.
 *
 * `@effect/sql-sqlite-node`'s connection cannot do the latter: each statement is an Effect of its own, and a
 * commit's 50 single-row entity inserts then cost more than the multi-row insert they would replace. Run in one
 * step, they cost about what a hand-written better-sqlite3 loop costs (pnpm bench section 1).
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type * as SqlConnection from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import Sqlite from "better-sqlite3"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Scope from "effect/Scope"

/** A statement compiled for its connection's dialect: its text and parameters. */
export type Compiled = readonly [sql: string, params: ReadonlyArray<unknown>]

/**
 * A connection that can run several statements in one step.
 */
export interface BatchingConnection extends SqlConnection.Connection {
  /** Runs `statements` in order with nothing in between; the first failure stops the rest. */
  readonly executeAll: (statements: ReadonlyArray<Compiled>) => Effect.Effect<void, SqlError>
}

/** True for a connection made here. */
export const isBatching = (connection: SqlConnection.Connection): connection is BatchingConnection =>
  "executeAll" in connection

/** Prepared statements kept per connection; the rest are prepared again when next used. */
export const preparedKept = 200

/** The statement cache: a `Map` in use order (a hit moves its entry to the end). */
export const statementCache = (db: Sqlite.Database) => {
  const kept = new Map<string, Sqlite.Statement>()
  return (sql: string): Sqlite.Statement => {
    const hit = kept.get(sql)
    if (hit !== undefined) {
      kept.delete(sql)
      kept.set(sql, hit)
      return hit
    }
    const statement = db.prepare(sql)
    kept.set(sql, statement)
    if (kept.size > preparedKept) kept.delete(kept.keys().next().value!)
    return statement
  }
}

const failure = (message: string) => (cause: unknown) => new SqlError({ cause, message })

/**
 * Opens `filename` (in WAL mode) for the scope. The connection is used by one fiber at a time: `reserve` takes it
 * until the caller's scope closes (the way `@effect/sql-sqlite-node` hands out its connection).
 */
export const open = (filename: string) =>
  Effect.gen(function*() {
    const db = new Sqlite(filename)
    yield* Effect.addFinalizer(() => Effect.sync(() => db.close()))
    db.pragma("journal_mode = WAL")
    const prepared = statementCache(db)

    // Synchronous: a statement's rows (a reader) or its result. A kept statement is set for each run, so that one
    // run with `SafeIntegers` does not change what the next run without it reads.
    const runSync = (statement: Sqlite.Statement, params: ReadonlyArray<unknown>, safeIntegers: boolean) => {
      statement.safeIntegers(safeIntegers)
      return statement.reader ? statement.all(...params) : statement.run(...params)
    }
    const run = (sql: string, params: ReadonlyArray<unknown>, raw: boolean) =>
      Effect.withFiberRuntime<unknown, SqlError>((fiber) => {
        const safeIntegers = Context.get(fiber.currentContext, SqlClient.SafeIntegers)
        let statement: Sqlite.Statement
        try {
          statement = prepared(sql)
        } catch (cause) {
          return Effect.fail(failure("Failed to prepare statement")(cause))
        }
        try {
          const result = runSync(statement, params, safeIntegers)
          return Effect.succeed(statement.reader || raw ? result : [])
        } catch (cause) {
          return Effect.fail(failure("Failed to execute statement")(cause))
        }
      })
    const rows = (sql: string, params: ReadonlyArray<unknown>) =>
      run(sql, params, false) as Effect.Effect<ReadonlyArray<object>, SqlError>

    const connection: BatchingConnection = {
      execute: (sql, params, transformRows) =>
        transformRows ? Effect.map(rows(sql, params), transformRows) : rows(sql, params),
      executeRaw: (sql, params) => run(sql, params, true),
      executeValues: (sql, params) =>
        Effect.try({
          try: () => {
            const statement = prepared(sql)
            if (!statement.reader) {
              statement.run(...params)
              return []
            }
            try {
              return statement.raw(true).all(...params) as ReadonlyArray<ReadonlyArray<unknown>>
            } finally {
              statement.raw(false)
            }
          },
          catch: failure("Failed to execute statement")
        }),
      // better-sqlite3 prepares every statement; BEGIN and COMMIT are worth keeping prepared too.
      executeUnprepared: (sql, params, transformRows) =>
        transformRows ? Effect.map(rows(sql, params ?? []), transformRows) : rows(sql, params ?? []),
      executeStream: () => Effect.dieMessage("executeStream not implemented") as never,
      executeAll: (statements) =>
        Effect.try({
          try: () => {
            // Runs of one statement (a commit's entity rows) look it up once.
            let last: { readonly sql: string; readonly statement: Sqlite.Statement } | undefined
            for (const [sql, params] of statements) {
              if (last?.sql !== sql) last = { sql, statement: prepared(sql) }
              last.statement.run(...params)
            }
          },
          catch: failure("Failed to execute statement")
        })
    }

    const permit = yield* Effect.makeSemaphore(1)
    const reserve: Effect.Effect<BatchingConnection, never, Scope.Scope> = Effect.uninterruptibleMask((restore) =>
      restore(permit.take(1)).pipe(
        Effect.zipRight(Effect.flatMap(Effect.scope, (scope) => Scope.addFinalizer(scope, permit.release(1)))),
        Effect.as(connection)
      )
    )
    return { reserve }
  })
