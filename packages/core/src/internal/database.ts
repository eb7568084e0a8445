/** Only the validating layers (`Database.layer`, `PgDatabase.layer`) can build a `Database` service. */
export const validated: unique symbol = Symbol.for("@quarry/core/Database/validated")
