/**
 * Options shared by several commands.
 *
 * @since 0.1.0
 */
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { Settings } from "./Settings.js"

/**
 * `--db PATH`: the database file.
 *
 * @since 0.1.0
 * @category options
 */
export const db = Options.text("db").pipe(
  Options.withPseudoName("PATH"),
  Options.withDescription("The SQLite database holding the runs (default ./quarry.db, or QUARRY_DB)."),
  Options.optional
)

/**
 * `--json`: machine-readable output on stdout.
 *
 * @since 0.1.0
 * @category options
 */
export const json = Options.boolean("json").pipe(
  Options.withDescription("Print JSON on stdout instead of text (JSON lines of events for start and resume).")
)

/**
 * The database a command uses: `--db`, else `QUARRY_DB`, else `./quarry.db`.
 *
 * @since 0.1.0
 * @category options
 */
export const resolveDb = (flag: Option.Option<string>): Effect.Effect<string, never, Settings> =>
  Effect.map(Settings, (settings) => Option.getOrElse(flag, () => settings.database))

/**
 * ` --db PATH` to repeat in a suggested command, or nothing for the default database.
 *
 * @since 0.1.0
 * @category formatting
 */
export const dbFlag = (db: string): string =>
  db === "./quarry.db" || db === "quarry.db" ? "" : ` --db ${shellQuote(db)}`

/**
 * The command that resumes a run.
 *
 * @since 0.1.0
 * @category formatting
 */
export const resumeCommand = (runId: string, db: string): string => `quarry resume ${runId}${dbFlag(db)}`

/**
 * Quotes a word for a POSIX shell when it needs it.
 *
 * @since 0.1.0
 * @category formatting
 */
export const shellQuote = (word: string): string =>
  /^[A-Za-z0-9_./:=@%+-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`
