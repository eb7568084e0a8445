import type * as SqlClient from "@effect/sql/SqlClient"
import type * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"

/** True for an `@effect/sql` `SqlError`. */
export const isSqlError = (u: unknown): boolean =>
  typeof u === "object" && u !== null && "_tag" in u && u._tag === "SqlError"

/**
 * `sql.withTransaction` that keeps the cause of a failed transaction. SQLite rolls a transaction back by itself
 * after some errors (SQLITE_FULL, SQLITE_IOERR); `@effect/sql`'s own ROLLBACK then fails, and it dies with "cannot
 * rollback - no transaction is active", hiding the error that says what happened. A failed COMMIT also dies: that
 * one is its own cause and stays a defect here, for the store boundary to turn into a `PersistenceError`.
 */
export const withTransaction = (sql: SqlClient.SqlClient) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.suspend(() => {
    let failure: Cause.Cause<E> | undefined
    return sql.withTransaction(Effect.tapErrorCause(effect, (cause) => Effect.sync(() => (failure = cause)))).pipe(
      Effect.catchSomeDefect((defect) =>
        failure !== undefined && isSqlError(defect) ? Option.some(Effect.failCause(failure)) : Option.none()
      )
    )
  })

/** Turns `SqlError` defects (a failed COMMIT, see `withTransaction`) into a typed failure. */
export const failOnSqlDefect = <E2>(onDefect: (defect: unknown) => E2) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.catchSomeDefect(
    effect,
    (defect) => isSqlError(defect) ? Option.some(Effect.fail(onDefect(defect))) : Option.none()
  )
