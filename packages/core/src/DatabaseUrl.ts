/**
 * Telling a PostgreSQL URL from a SQLite path, showing it without its password, and knowing which files a SQLite
 * database is kept in. Kept free of drivers (Node's `fs` and `path` only), so that the CLI can decide which database
 * to open, and check the paths it is given, without loading either.
 *
 * @since 0.1.0
 */
import * as Option from "effect/Option"
import * as fs from "node:fs"
import * as path from "node:path"

/**
 * True for a `postgres://` or `postgresql://` URL: what `--db` and `QUARRY_DATABASE_URL` take for PostgreSQL.
 *
 * @since 0.1.0
 * @category urls
 */
export const isPostgres = (db: string): boolean => /^postgres(?:ql)?:\/\//i.test(db)

/**
 * The scheme of a URL that names a database quarry cannot open (`mysql` of `mysql://x`): any `scheme://` but
 * PostgreSQL's. Such a value is no SQLite path either: read as one, `mysql://x` is a file `x` in a directory `mysql:`.
 *
 * @since 0.1.0
 * @category urls
 */
export const unsupportedScheme = (db: string): Option.Option<string> => {
  // Two characters at least: `C://x` is a Windows drive, not a scheme.
  const scheme = /^([a-z][a-z0-9+.-]+):\/\//i.exec(db)
  return scheme === null || isPostgres(db) ? Option.none() : Option.some(scheme[1]!)
}

/**
 * The form a PostgreSQL URL takes, for messages that refuse a malformed one.
 *
 * @since 0.1.0
 * @category urls
 */
export const postgresForm = "postgres://user@host:port/db"

/**
 * What is wrong with a value that is a near-miss of a URL rather than a SQLite path, or none: a PostgreSQL URL
 * without its `//` (`postgres:/x`, `postgres:x`) or its colon (`postgres//x`), any `scheme:/` with one slash
 * (`mysql:/x`), a SQLite URI (`file:q.db`, `sqlite:q.db`), which SQLite opens here as a file of that very name, or
 * a URL with spaces around it (a quoted variable's stray space). Read as paths, these create files and directories
 * named after the URL. A path that starts with `./` is never one (`./postgres:x`).
 *
 * @since 0.1.0
 * @category urls
 */
export const malformed = (db: string): Option.Option<string> => {
  const trimmed = db.trim()
  if (trimmed !== db && (isPostgres(trimmed) || Option.isSome(unsupportedScheme(trimmed)))) {
    return Option.some("a URL with spaces around it")
  }
  if (isPostgres(db) || Option.isSome(unsupportedScheme(db))) return Option.none()
  const colonless = /^(postgres(?:ql)?)\/\//i.exec(db)
  if (colonless !== null) {
    const scheme = colonless[1]!.toLowerCase()
    return Option.some(`a malformed PostgreSQL URL (it starts with "${colonless[0]}", not "${scheme}://")`)
  }
  const start = /^([a-z][a-z0-9+.-]*):(\/*)/i.exec(db)
  if (start === null) return Option.none()
  const [seen, scheme] = [JSON.stringify(start[0]), start[1]!.toLowerCase()]
  if (scheme === "postgres" || scheme === "postgresql") {
    return Option.some(`a malformed PostgreSQL URL (it starts with ${seen}, not "${scheme}://")`)
  }
  if (scheme === "file" || scheme === "sqlite" || scheme === "sqlite3") {
    return Option.some(`a ${scheme}: URI (it starts with ${seen}), which quarry does not read`)
  }
  // One letter is a drive (`C:/x`), and a name with a colon but no slash after it a file (`run:1.db`).
  return scheme.length > 1 && start[2] === "/" ?
    Option.some(`a malformed URL (it starts with ${seen}, not "${scheme}://")`) :
    Option.none()
}

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
    return hideQueryPasswords(parsed.toString())
  } catch {
    return hideQueryPasswords(db.replace(/\/\/([^:/@]*):[^@]*@/, "//$1:***@"))
  }
}

// `pg` also takes the password from the query (`postgres://u@h/db?password=secret`), libpq the TLS key's
// (`sslpassword`). Replaced in the text, not through `searchParams`, which would re-encode the other parameters (`%20` as `+`).
const hideQueryPasswords = (url: string): string => url.replace(/([?&](?:ssl)?password=)[^&#]*/gi, "$1***")

/**
 * A file SQLite keeps beside a database, named after the database's path plus a suffix.
 *
 * @since 0.1.0
 * @category files
 */
export interface Companion {
  /** What follows the database's path: `-wal`. */
  readonly suffix: string
  /** What it is, for messages: `write-ahead log`. */
  readonly what: string
}

/**
 * The files SQLite keeps beside a database: replacing one corrupts the database as surely as replacing the database.
 *
 * @since 0.1.0
 * @category files
 */
export const companions: ReadonlyArray<Companion> = [
  { suffix: "-wal", what: "write-ahead log" },
  { suffix: "-shm", what: "shared-memory index" },
  { suffix: "-journal", what: "rollback journal" }
]

// The C library's realpath: Node's own (JavaScript) one, given a pipe's /proc link (`/dev/stdin` from a pipe),
// leaves the module loader unable to find packages afterwards (Node 20: better-sqlite3's `bindings`).
const realpath = (file: string) => fs.realpathSync.native(file)

/** The real path of `absolute`'s nearest existing ancestor, plus the rest of `absolute`: where it would be created. */
const entryOf = (absolute: string): string => {
  let rest = path.basename(absolute)
  for (let directory = path.dirname(absolute);; directory = path.dirname(directory)) {
    try {
      return path.join(realpath(directory), rest)
    } catch {
      // Nothing there yet (or not readable): try its parent.
    }
    if (path.dirname(directory) === directory) return absolute
    rest = path.join(path.basename(directory), rest)
  }
}

/**
 * `file` as the file system finds it, symbolic links resolved: the path of its directory entry (its directory's real
 * path plus its name, which a rename replaces; for a directory that does not exist yet, the nearest existing
 * ancestor's real path plus the rest) and, when it exists, the real path of what it points to.
 *
 * @since 0.1.0
 * @category files
 */
export const realPaths = (file: string): ReadonlyArray<string> => {
  const absolute = path.resolve(file)
  const entry = entryOf(absolute)
  try {
    return [entry, realpath(absolute)]
  } catch {
    return [entry]
  }
}

/**
 * True when `a` and `b` are the same file or the same directory entry, once symbolic links are resolved: writing
 * one would replace the other.
 *
 * @since 0.1.0
 * @category files
 */
export const sameFile = (a: string, b: string): boolean => {
  const found = realPaths(a)
  return realPaths(b).some((candidate) => found.includes(candidate))
}

/**
 * The application id Quarry writes into its SQLite files (`PRAGMA application_id`, bytes 68 to 71 of the file's
 * header, "Qrry"): a file that carries it is a Quarry database, which can be told without opening it.
 *
 * @since 0.1.0
 * @category files
 */
export const sqliteApplicationId = 0x51727279

/**
 * A file of a SQLite database: the database itself (no companion) or one of its companions.
 *
 * @since 0.1.0
 * @category files
 */
export interface DatabaseFile {
  /** Its path: the database's path, as given or resolved, plus the companion's suffix. */
  readonly path: string
  readonly companion: Option.Option<Companion>
}

/**
 * The file of the SQLite database `db` that writing `file` would replace: the database itself or one of its
 * companions, compared with symbolic links resolved. None for a PostgreSQL URL, which has no file here.
 *
 * @since 0.1.0
 * @category files
 */
export const overwrittenBy = (file: string, db: string): Option.Option<DatabaseFile> => {
  if (isPostgres(db)) return Option.none()
  if (sameFile(file, db)) return Option.some({ path: db, companion: Option.none() })
  // SQLite names its files after the database's path, as given and as resolved.
  for (const base of realPaths(db)) {
    for (const companion of companions) {
      const candidate = `${base}${companion.suffix}`
      if (sameFile(file, candidate)) return Option.some({ path: candidate, companion: Option.some(companion) })
    }
  }
  return Option.none()
}
