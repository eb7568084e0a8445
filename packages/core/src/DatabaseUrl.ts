/**
 * Telling a PostgreSQL URL from a SQLite path, and showing it without its password. Kept free of drivers, so that
 * the CLI can decide which database to open without loading either.
 *
 * @since 0.1.0
 */

/**
 * True for a `postgres://` or `postgresql://` URL: what `--db` and `QUARRY_DATABASE_URL` take for PostgreSQL.
 *
 * @since 0.1.0
 * @category urls
 */
export const isPostgres = (db: string): boolean => /^postgres(?:ql)?:\/\//i.test(db)

/**
 * The database as it may be shown: a URL without its password (a SQLite path as it is).
 *
 * @since 0.1.0
 * @category urls
 */
export const redact = (db: string): string => {
  if (!isPostgres(db)) return db
  try {
    const parsed = new URL(db)
    if (parsed.password !== "") parsed.password = "***"
    return parsed.toString()
  } catch {
    return db.replace(/\/\/([^:/@]*):[^@]*@/, "//$1:***@")
  }
}
