/**
 * Checks of everything a command is given (files, numbers, paths), made before anything is written. Each failure is
 * a `UsageError` whose message names the problem and the fix.
 *
 * @since 0.1.0
 */
import * as DatabaseUrl from "@quarry/core/DatabaseUrl"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { UsageError } from "./Errors.js"

const fail = (message: string) => Effect.fail(new UsageError({ message }))

/** A synchronous file-system call, failing with the thrown error itself (its `code` tells what went wrong). */
const attempt = <A>(f: () => A): Effect.Effect<A, unknown> => Effect.try({ try: f, catch: (error) => error })

const errnoCode = (error: unknown): string | undefined =>
  typeof error === "object" && error !== null && "code" in error && typeof error.code === "string" ?
    error.code :
    undefined

const describeFsError = (error: unknown): string => {
  switch (errnoCode(error)) {
    case "ENOENT":
      return "it does not exist"
    case "EACCES":
    case "EPERM":
      return "permission denied"
    case "EISDIR":
      return "it is a directory"
    case "ENOTDIR":
      return "a part of its path is not a directory"
    default:
      return error instanceof Error ? error.message : String(error)
  }
}

/** The offset where the first invalid UTF-8 sequence of `bytes` starts. */
const firstInvalidUtf8 = (bytes: Uint8Array): number => {
  // Streaming decodes accept a prefix that ends inside a sequence, so prefix validity is monotonic: binary search
  // for the shortest prefix that fails.
  const fails = (n: number) => {
    try {
      new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(0, n), { stream: true })
      return false
    } catch {
      return true
    }
  }
  let lo = 1
  let hi = bytes.length
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2)
    if (fails(mid)) hi = mid
    else lo = mid + 1
  }
  const culprit = lo - 1
  // The byte that failed may end a sequence that started earlier (a lead byte cut short): report that start.
  for (let start = culprit - 1; start >= Math.max(0, culprit - 3); start--) {
    const byte = bytes[start]!
    if (byte >= 0xc0) return start
    if (byte < 0x80) break
  }
  return culprit
}

/**
 * The largest input read by default: 512 MiB (`--max-input-size`, `QUARRY_MAX_INPUT_BYTES`).
 *
 * @since 0.1.0
 * @category validation
 */
export const defaultMaxInputBytes = 512 * 1024 * 1024

const sizeUnits: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3
}

/**
 * Parses a size: bytes, or a number with a binary unit (`K`/`KB`, `M`/`MB`, `G`/`GB`, powers of 1024). A size past
 * `Number.MAX_SAFE_INTEGER` bytes is refused as too large (it could not be counted exactly).
 *
 * @since 0.1.0
 * @category validation
 */
export const parseSize = (name: string, raw: string): Effect.Effect<number, UsageError> => {
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(raw.trim())
  const unit = match === null ? undefined : sizeUnits[match[2]!.toLowerCase()]
  const bytes = match === null || unit === undefined ? Number.NaN : Math.floor(Number(match[1]) * unit)
  const given = `${name} (${JSON.stringify(raw)})`
  if (bytes > Number.MAX_SAFE_INTEGER) {
    return fail(`${given} is too large: it must be a size greater than 0, at most ${Number.MAX_SAFE_INTEGER} bytes`)
  }
  return Number.isSafeInteger(bytes) && bytes > 0 ?
    Effect.succeed(bytes) :
    fail(`${given} must be a size greater than 0: bytes, or with a unit, such as 64MB or 2GB`)
}

/** A size for people: `536870912 bytes (512 MB)`. */
const formatSize = (bytes: number) =>
  bytes >= 1024 * 1024 ? `${bytes} bytes (${Math.round(bytes / 1024 / 1024)} MB)` : `${bytes} bytes`

/**
 * Reads a UTF-8 text file: it must exist, be a readable file (not a directory) of at most `maxBytes` (checked with
 * `stat` before reading a regular file; a pipe or device, whose size `stat` cannot tell, is read up to the limit and
 * refused beyond it), contain no NUL byte (binary) and be valid UTF-8. A byte order mark is dropped: offsets count
 * from the first character after it. `what` names the file in messages ("input file", "ontology").
 *
 * @since 0.1.0
 * @category validation
 */
export const readTextFile = (
  file: string,
  what: string,
  maxBytes: number = defaultMaxInputBytes
): Effect.Effect<string, UsageError> =>
  Effect.gen(function*() {
    const stat = yield* attempt(() => fs.statSync(file)).pipe(
      Effect.catchAll((error) =>
        errnoCode(error) === "ENOENT" ?
          fail(`${what} ${file} does not exist; check the path`) :
          fail(`cannot read ${what} ${file}: ${describeFsError(error)}`)
      )
    )
    if (stat.isDirectory()) return yield* fail(`${what} ${file} is a directory; pass a text file`)
    if (stat.size > maxBytes) {
      return yield* fail(
        `${what} ${file} is ${formatSize(stat.size)}, over the limit of ${formatSize(maxBytes)}; split it, or raise ` +
          `the limit with --max-input-size (or QUARRY_MAX_INPUT_BYTES)`
      )
    }
    const bytes = yield* (stat.isFile() ? attempt(() => fs.readFileSync(file)) : readStreamed(file, maxBytes)).pipe(
      Effect.catchAll((error) =>
        fail(
          `cannot read ${what} ${file}: ${describeFsError(error)}${
            isPermissionError(error) ? "; make it readable by this user (e.g. chmod a+r)" : ""
          }`
        )
      )
    )
    if (bytes === "over") {
      return yield* fail(
        `${what} ${file} gives more than the limit of ${formatSize(maxBytes)} (${specialKind(stat)}, read up to ` +
          `the limit); raise the limit with --max-input-size (or QUARRY_MAX_INPUT_BYTES)`
      )
    }
    const wide = wideEncodingOf(bytes)
    if (wide !== undefined) {
      return yield* fail(
        `${what} ${file} is ${wide} text (it starts with a ${wide} byte order mark); Quarry reads UTF-8, so ` +
          `convert it first, e.g. \`iconv -f ${wide} -t UTF-8 ${file} > ${file}.utf8\``
      )
    }
    const nul = bytes.indexOf(0)
    if (nul >= 0) {
      return yield* fail(
        `${what} ${file} looks like a binary file (a NUL byte at offset ${nul}); Quarry reads UTF-8 text, so ` +
          `extract the text first (e.g. with pdftotext)`
      )
    }
    return yield* attempt(() => new TextDecoder("utf-8", { fatal: true }).decode(bytes)).pipe(
      Effect.catchAll(() =>
        fail(
          `${what} ${file} is not valid UTF-8 (first invalid byte at offset ${firstInvalidUtf8(bytes)}); ` +
            `convert it first, e.g. \`iconv -f latin1 -t utf-8 ${file}\``
        )
      )
    )
  })

/**
 * Reads a pipe or device whose size `stat` cannot tell: `"over"` past `maxBytes`, and no further than a chunk holding
 * a NUL byte (a binary stream such as /dev/zero, refused by the caller). Asynchronous, so a signal still stops it.
 */
const readStreamed = (file: string, maxBytes: number): Effect.Effect<Buffer | "over", unknown> =>
  Effect.tryPromise({
    try: async () => {
      // This process's standard input is read where it is: a pipe from a spawning process may be a socket, which
      // cannot be opened again by its /dev/stdin name (ENXIO).
      const stream = stdinNames.has(path.resolve(file)) ? process.stdin : fs.createReadStream(file)
      const chunks: Array<Buffer> = []
      let total = 0
      try {
        for await (const chunk of stream as AsyncIterable<Buffer>) {
          total += chunk.length
          if (total > maxBytes) return "over"
          chunks.push(chunk)
          if (chunk.includes(0)) break
        }
      } finally {
        if (stream !== process.stdin) stream.destroy()
      }
      return Buffer.concat(chunks)
    },
    catch: (error) => error
  })

const stdinNames = new Set(["/dev/stdin", "/dev/fd/0", "/proc/self/fd/0"])

/** `UTF-16` or `UTF-32` when the bytes start with that encoding's byte order mark (either byte order). */
const wideEncodingOf = (bytes: Uint8Array): string | undefined => {
  const [a, b, c, d] = bytes
  if (a === 0xff && b === 0xfe) return c === 0 && d === 0 ? "UTF-32" : "UTF-16"
  if (a === 0xfe && b === 0xff) return "UTF-16"
  if (a === 0 && b === 0 && c === 0xfe && d === 0xff) return "UTF-32"
  return undefined
}

const isPermissionError = (error: unknown) => errnoCode(error) === "EACCES" || errnoCode(error) === "EPERM"

/**
 * True for the names SQLite treats as in-memory or temporary databases (refused by the durability check, exit 3).
 *
 * @since 0.1.0
 * @category validation
 */
export const isEphemeralDatabase = (db: string): boolean =>
  db.trim() === "" || db === ":memory:" || db.startsWith("file::memory:") || /[?&]mode=memory\b/.test(db)

/** A `postgres://` URL must at least parse, with a host and a database name. */
const checkUrl = (db: string) =>
  Effect.gen(function*() {
    const url = yield* attempt(() => new URL(db)).pipe(
      Effect.catchAll(() => fail(`--db ${DatabaseUrl.redact(db)} is not a valid PostgreSQL URL`))
    )
    if (url.hostname === "" || url.pathname.length <= 1) {
      return yield* fail(
        `--db ${DatabaseUrl.redact(db)} needs a host and a database name: postgres://USER:PASSWORD@HOST:PORT/DATABASE`
      )
    }
  })

const sqliteHeader = Buffer.from("SQLite format 3\u0000", "latin1")

/** What is read of a database file's header: the magic string up to the application id (bytes 68 to 71). */
const headerBytes = 72

/**
 * The directory a file would be created in must exist, be a directory and be writable. `flag` is the option that
 * names another place; none for a path the user cannot change here (a run's stored artifact).
 */
const checkDirectory = (file: string, what: string, flag: string | undefined) =>
  Effect.gen(function*() {
    const directory = path.dirname(path.resolve(file))
    const stat = yield* attempt(() => fs.statSync(directory)).pipe(Effect.option)
    if (stat._tag === "None") {
      return yield* fail(
        `the directory ${directory} of ${what} ${file} does not exist; create it first (mkdir -p ${directory})` +
          (flag === undefined ? "" : ` or pass another ${flag}`)
      )
    }
    if (!stat.value.isDirectory()) {
      return yield* fail(`${directory} (in ${flag ?? what} ${file}) is not a directory`)
    }
    const writable = yield* attempt(() => fs.accessSync(directory, fs.constants.W_OK)).pipe(Effect.isSuccess)
    if (!writable) {
      return yield* fail(
        `the directory ${directory} of ${what} ${file} is not writable; ` +
          (flag === undefined ? "make it writable for this user" : `pass a ${flag} in a writable directory`)
      )
    }
  })

/**
 * Checks a database path before it is opened: its directory exists and is writable, and an existing file is a
 * SQLite database (its 16-byte header). In-memory names pass here: the durability check refuses them (exit 3).
 *
 * @since 0.1.0
 * @category validation
 */
export const checkDatabase = (db: string): Effect.Effect<void, UsageError> =>
  Effect.gen(function*() {
    if (isEphemeralDatabase(db)) return
    // A PostgreSQL URL: opening it says whether the server is there and safe (exit 3 otherwise).
    if (DatabaseUrl.isPostgres(db)) return yield* checkUrl(db)
    yield* checkDirectory(db, "the database", "--db")
    const stat = yield* attempt(() => fs.statSync(db)).pipe(Effect.option)
    if (stat._tag === "None") return
    if (stat.value.isDirectory()) return yield* fail(`--db ${db} is a directory, not a database file`)
    if (stat.value.size === 0) return
    const header = yield* attempt(() => {
      const fd = fs.openSync(db, "r")
      try {
        const buffer = Buffer.alloc(headerBytes)
        const read = fs.readSync(fd, buffer, 0, buffer.length, 0)
        return buffer.subarray(0, read)
      } finally {
        fs.closeSync(fd)
      }
    }).pipe(Effect.catchAll((error) => fail(`cannot read the database ${db}: ${describeFsError(error)}`)))
    if (!header.subarray(0, sqliteHeader.length).equals(sqliteHeader)) {
      return yield* fail(
        `--db ${db} is not a SQLite database (it does not start with the SQLite header); pass a Quarry ` +
          `database, or a new file name to create one`
      )
    }
    if (header.length === headerBytes && header.readUInt32BE(68) === DatabaseUrl.sqliteApplicationId) return
    const foreign = yield* foreignTables(db)
    if (foreign.length > 0) {
      const shown = foreign.length > 5 ? [...foreign.slice(0, 5), `and ${foreign.length - 5} more`] : foreign
      return yield* fail(
        `--db ${db} is a SQLite database of something else (its tables: ${shown.join(", ")}), not a Quarry ` +
          `database; pass a Quarry database, or a new file name to create one`
      )
    }
  })

/**
 * The tables of an existing SQLite file that Quarry did not create (none for a Quarry database or an empty one),
 * read without writing: opening it as a database would switch it to WAL and add Quarry's tables to it. Only for a
 * file without Quarry's application id (another application's, or one written before Quarry set it): a read-only
 * connection to a database in WAL mode leaves its -wal and -shm files behind. A file that cannot be read here
 * (locked, damaged) is left to the durability check.
 */
const foreignTables = (db: string): Effect.Effect<ReadonlyArray<string>> =>
  Effect.promise(() => import("better-sqlite3")).pipe(
    Effect.flatMap(({ default: Sqlite }) =>
      attempt(() => {
        const connection = new Sqlite(db, { readonly: true, fileMustExist: true })
        try {
          const tables = connection.prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
          ).pluck().all() as Array<string>
          // Quarry's first migration as the migrator recorded it (another Effect application has that table too),
          // or none yet: the migrator creates its table before the migrations, which another process may be running.
          const first = tables.includes("effect_sql_migrations") ?
            connection.prepare("SELECT name FROM effect_sql_migrations ORDER BY migration_id LIMIT 1").pluck().get() :
            "none"
          const quarry = first === "create_runs" || first === undefined
          return quarry ? [] : tables
        } finally {
          connection.close()
        }
      })
    ),
    Effect.orElseSucceed((): ReadonlyArray<string> => [])
  )

/**
 * True when the database file exists (read-only commands never create one).
 *
 * @since 0.1.0
 * @category validation
 */
export const databaseExists = (db: string): boolean => {
  // A server database is created by its operator; Quarry migrates it when it opens it.
  if (DatabaseUrl.isPostgres(db)) return true
  try {
    return fs.statSync(db).isFile()
  } catch {
    return false
  }
}

/**
 * A file a command reads (its input, its ontology), which the artifact must not overwrite.
 *
 * @since 0.1.0
 * @category validation
 */
export interface Source {
  /** How messages name it: `input file`, `ontology`. */
  readonly what: string
  /** Its path, as the user gave it. */
  readonly path: string
}

/**
 * How the checks of an artifact's path name it, what they protect and what they tell the user to do instead.
 *
 * @since 0.1.0
 * @category validation
 */
export interface OutputCheck {
  /** How messages name the artifact: `the output`, `the default output`, `run x's artifact`. */
  readonly what: string
  /** The option that puts the artifact elsewhere (`--out`); none for a run's stored artifact. */
  readonly flag: string | undefined
  /** What to do when the artifact would overwrite a file Quarry needs: `pass another --out`. */
  readonly instead: string
  /** The database (`--db`): the artifact may be neither it nor its `-wal`, `-shm` or `-journal` file. */
  readonly db: string
  /** The files the command reads. */
  readonly sources?: ReadonlyArray<Source> | undefined
}

/**
 * The naming of an artifact given with `--out FILE`, for `checkOutput`.
 *
 * @since 0.1.0
 * @category validation
 */
export const outFlag = { what: "the output", flag: "--out", instead: "pass another --out" } as const

/**
 * Checks an artifact path before any work: its directory exists and is writable, it is not a directory, and it is
 * not the database (nor one of its `-wal`, `-shm`, `-journal` files), a file the command reads, or a device, pipe or
 * socket. The artifact is renamed into place at the end, which would replace any of those; paths are compared with
 * symbolic links resolved.
 *
 * @since 0.1.0
 * @category validation
 */
export const checkOutput = (out: string, check: OutputCheck): Effect.Effect<void, UsageError> =>
  Effect.gen(function*() {
    const { flag, instead, what } = check
    yield* checkDirectory(out, what, flag)
    // A PostgreSQL database has no file here; an in-memory one is refused by the durability check.
    const overwritten = isEphemeralDatabase(check.db) ? Option.none() : DatabaseUrl.overwrittenBy(out, check.db)
    if (Option.isSome(overwritten)) {
      const file = overwritten.value
      return yield* fail(Option.match(file.companion, {
        onNone: () =>
          `${what} ${out} is the same file as the database ${check.db}: writing the artifact there would replace ` +
          `the database and every run in it; ${instead}`,
        onSome: (companion) =>
          `${what} ${out} is the ${companion.what} of the database ${check.db} (${file.path}): writing the ` +
          `artifact there would corrupt the database; ${instead}`
      }))
    }
    for (const source of check.sources ?? []) {
      if (!DatabaseUrl.sameFile(out, source.path)) continue
      return yield* fail(
        `${what} ${out} is the same file as the ${source.what} ${source.path}: writing the artifact there would ` +
          `overwrite it; ${instead}`
      )
    }
    const stat = yield* attempt(() => fs.statSync(out, { throwIfNoEntry: false })).pipe(
      Effect.orElseSucceed(() => undefined)
    )
    if (stat?.isDirectory() === true) {
      return yield* fail(
        `${what} ${out} is a directory; ${flag === undefined ? "move it out of the way" : "pass a file name"}`
      )
    }
    // The rename would replace the device (`/dev/stdout`, `/dev/null`), pipe or socket itself, not write into it.
    if (stat !== undefined && !stat.isFile()) {
      return yield* fail(
        `${what} ${out} is ${specialKind(stat)}, not a regular file: the artifact is renamed into place, which ` +
          `would replace it; ${instead}`
      )
    }
  })

/**
 * A text a run stored when it was created (its input, its ontology), which `export` and `resume --out` know by content
 * only: the run keeps no path of the files it read.
 *
 * @since 0.1.0
 * @category validation
 */
export interface StoredText {
  /** How messages name it: `the input of run r3`. */
  readonly what: string
  /** The SHA-256 of its UTF-8 bytes. */
  readonly sha256: string
  /** Its length in UTF-16 code units. */
  readonly length: number
}

const byteOrderMark = Buffer.from([0xef, 0xbb, 0xbf])

/**
 * The SHA-256 of a file's bytes, read in chunks (memory stays flat); `dropBom` leaves out a leading UTF-8 byte order
 * mark, as `readTextFile` does.
 *
 * @since 0.1.0
 * @category validation
 */
export const fileSha256 = (file: string, dropBom = false): Effect.Effect<string, unknown> =>
  attempt(() => {
    const hash = createHash("sha256")
    const buffer = Buffer.alloc(1024 * 1024)
    const fd = fs.openSync(file, "r")
    try {
      let first = true
      while (true) {
        const read = fs.readSync(fd, buffer)
        if (read === 0) break
        const chunk = buffer.subarray(0, read)
        const bom = dropBom && first && chunk.subarray(0, byteOrderMark.length).equals(byteOrderMark)
        hash.update(bom ? chunk.subarray(byteOrderMark.length) : chunk)
        first = false
      }
    } finally {
      fs.closeSync(fd)
    }
    return hash.digest("hex")
  })

/**
 * Refuses an artifact path whose file holds one of `texts` (its bytes, a byte order mark aside), which the rename
 * would replace. Only a file whose size fits a text's length is read: UTF-8 takes one to three bytes per UTF-16 code
 * unit. An empty text is left out: an empty file loses nothing.
 *
 * @since 0.1.0
 * @category validation
 */
export const checkNotStoredText = (
  out: string,
  texts: ReadonlyArray<StoredText>,
  check: Pick<OutputCheck, "what" | "instead">
): Effect.Effect<void, UsageError> =>
  Effect.gen(function*() {
    const stat = yield* attempt(() => fs.statSync(out, { throwIfNoEntry: false })).pipe(
      Effect.orElseSucceed(() => undefined)
    )
    if (stat === undefined || !stat.isFile()) return
    const size = stat.size
    const candidates = texts.filter((text) =>
      text.length > 0 && size >= text.length && size <= 3 * text.length + byteOrderMark.length
    )
    if (candidates.length === 0) return
    // An unreadable file is left to the write, which says why it failed.
    const digest = yield* Effect.option(fileSha256(out, true))
    const held = candidates.find((text) => Option.contains(digest, text.sha256))
    if (held !== undefined) {
      return yield* fail(
        `${check.what} ${out} holds ${held.what} (the same SHA-256): writing the artifact there would overwrite ` +
          `it; ${check.instead}`
      )
    }
  })

const specialKind = (stat: fs.Stats) =>
  stat.isCharacterDevice() ?
    "a character device" :
    stat.isBlockDevice() ?
    "a block device" :
    stat.isFIFO() ?
    "a named pipe" :
    stat.isSocket() ?
    "a socket" :
    "a special file"

const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/**
 * Parses a duration given on the command line into milliseconds: compact (`500ms`, `90s`, `15m`, `2h`, `1h30m`,
 * `1d`) or Effect's own form (`90 seconds`, `5 minutes`, as in `QUARRY_LLM_TIMEOUT`). `None` for anything else.
 *
 * @since 0.1.0
 * @category validation
 */
export const parseDuration = (raw: string): Option.Option<number> => {
  const text = raw.trim()
  if (/^(\d+(\.\d+)?(ms|s|m|h|d))+$/.test(text)) {
    let ms = 0
    for (const [, value, unit] of text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)) ms += Number(value) * units[unit!]!
    return Option.some(ms)
  }
  return Option.map(Duration.decodeUnknown(text), Duration.toMillis)
}

/**
 * A number written in plain decimal (`2`, `0.7`, `.5`), as every number option takes it: not `1e3` or `0x10`.
 *
 * @since 0.1.0
 * @category validation
 */
export const isPlainDecimal = (text: string): boolean => /^(?:\d+(?:\.\d*)?|\.\d+)$/.test(text)

/**
 * Parses `--max-cost`: US dollars, a finite number greater than 0 (a leading `$` is allowed), plain decimal.
 *
 * @since 0.1.0
 * @category validation
 */
export const parseUsd = (name: string, raw: string): Effect.Effect<number, UsageError> => {
  const amount = raw.trim().replace(/^\$/, "")
  const value = Number(amount)
  return !isPlainDecimal(amount) || !Number.isFinite(value) || value <= 0 ?
    fail(`${name} (${JSON.stringify(raw)}) must be an amount in US dollars greater than 0, such as 2.50`) :
    Effect.succeed(value)
}
