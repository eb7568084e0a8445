/**
 * Options shared by several commands.
 *
 * @since 0.1.0
 */
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import * as BooleanSetting from "@quarry/core/BooleanSetting"
import * as DatabaseUrl from "@quarry/core/DatabaseUrl"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as path from "node:path"
import * as Errors from "./Errors.js"
import { UsageError } from "./Errors.js"
import * as Inputs from "./Inputs.js"
import { Settings } from "./Settings.js"

/**
 * An optional option with a text value: a name, or a path the command checks itself when it opens it ("ontology X
 * does not exist; check the path", "... is a directory"), which @effect/cli's `Options.file` would say more vaguely.
 *
 * @since 0.1.0
 * @category options
 */
export const optionalText = (name: string, pseudo: string, description: string) =>
  Options.text(name).pipe(Options.withPseudoName(pseudo), Options.withDescription(description), Options.optional)

/**
 * An optional option whose value `check` turns into its real type as the command line is parsed. A bad value stops
 * the parse (exit 2, nothing written) with `check`'s own message, which names the option and what it must be:
 * @effect/cli's typed options (`Options.integer`, `Options.choice`) would answer "lots" with a vaguer one.
 *
 * @since 0.1.0
 * @category options
 */
export const checked = <A>(
  name: string,
  pseudo: string,
  description: string,
  check: (raw: string) => Effect.Effect<A, UsageError>
): Options.Options<Option.Option<A>> =>
  Options.text(name).pipe(
    Options.withPseudoName(pseudo),
    Options.withDescription(description),
    Options.mapEffect(validated(check)),
    Options.optional
  )

/**
 * `check` as an @effect/cli parse step: its `UsageError` becomes the parse error @effect/cli prints to stderr.
 *
 * @since 0.1.0
 * @category options
 */
export const validated = <A>(check: (raw: string) => Effect.Effect<A, UsageError>) => (raw: string) =>
  Effect.mapError(check(raw), (error) => ValidationError.invalidValue(HelpDoc.p(`quarry: ${error.message}`)))

/**
 * A switch that its environment variable can also turn on (`--cluster`, `QUARRY_CLUSTER`): `true` or `false` in any
 * case, or `yes`/`no`, `on`/`off`, `1`/`0` (`Config.boolean` took `true` but refused `TRUE`, with a message of
 * @effect/cli's own wrapping).
 *
 * @since 0.1.0
 * @category options
 */
export const switchWithVariable = (name: string, variable: string, description: string): Options.Options<boolean> =>
  Options.boolean(name).pipe(
    Options.withDescription(description),
    Options.withFallbackConfig(Config.string(variable)),
    Options.withDefault(false),
    Options.mapEffect((value) =>
      typeof value === "boolean" ? Effect.succeed(value) : validated((raw) => {
        const found = BooleanSetting.parse(raw)
        return Option.isNone(found) ?
          Effect.fail(
            new UsageError({
              message:
                `bad environment: ${variable} is ${
                  raw.trim() === "" ? "set but empty" : `${JSON.stringify(raw)}, which is not valid`
                }` +
                `; it must be ${BooleanSetting.accepted}, or unset`
            })
          ) :
          Effect.succeed(found.value)
      })(value)
    )
  )

/**
 * An optional number (`N`), refused unless it parses as one; the command checks its range.
 *
 * @since 0.1.0
 * @category options
 */
export const number = (name: string, description: string, requirement: string) =>
  checked(name, "N", description, (raw) => parseWhole(name, raw, requirement))

/**
 * Parses a number option written in plain decimal: digits (`1000`), or a negative or fractional decimal that the
 * caller's range check refuses with its own reason (`window (1.5) must be ...`). `0x10`, `1e3`, `Infinity` and the
 * like are refused, and so are digits past `Number.MAX_SAFE_INTEGER` (as too large, quoting the text as given:
 * `Number` would round them).
 *
 * @since 0.1.0
 * @category options
 */
export const parseWhole = (name: string, raw: string, requirement: string): Effect.Effect<number, UsageError> => {
  const text = raw.trim()
  if (/^\d+$/.test(text) && !Number.isSafeInteger(Number(text))) {
    return Effect.fail(
      new UsageError({
        message: `${name} (${JSON.stringify(raw)}) is too large: it must be ${requirement}, at most ` +
          `${Number.MAX_SAFE_INTEGER}`
      })
    )
  }
  return /^-?\d+(\.\d+)?$/.test(text) ?
    Effect.succeed(Number(text)) :
    Effect.fail(new UsageError({ message: `${name} (${JSON.stringify(raw)}) must be ${requirement}` }))
}

/**
 * Parses a count that must be a whole number greater than 0, in plain decimal (see `parseWhole`), naming the
 * option and the unit in the message.
 *
 * @since 0.1.0
 * @category options
 */
export const parseCount = (name: string, raw: string, unit: string): Effect.Effect<number, UsageError> => {
  const requirement = `a whole number of ${unit} greater than 0`
  return Effect.flatMap(parseWhole(name, raw, requirement), (n) =>
    Number.isInteger(n) && n >= 1 ?
      Effect.succeed(n) :
      Effect.fail(new UsageError({ message: `${name} (${JSON.stringify(raw)}) must be ${requirement}` })))
}

/**
 * `--db PATH`: the database file, or a `postgres://` URL; a URL of another scheme, or a near-miss of one
 * (`postgres:/x`, see `DatabaseUrl.malformed`), is refused as the command line is parsed (read as a path,
 * `mysql://x` would be a file `x` in a directory `mysql:`).
 *
 * @since 0.1.0
 * @category options
 */
export const db = checked(
  "db",
  "PATH",
  "The database holding the runs: a SQLite file (default ./quarry.db, or QUARRY_DB) " +
    "or a postgres:// URL (or QUARRY_DATABASE_URL).",
  (raw) =>
    Option.match(DatabaseUrl.unsupportedScheme(raw), {
      onNone: () => Effect.as(refuseMalformed(raw), raw),
      // Not echoed: a URL may carry a password.
      onSome: (scheme) =>
        new UsageError({
          message: `--db is a ${scheme}:// URL, which quarry cannot open; pass a postgres:// (or postgresql://) URL, ` +
            `or the path of a SQLite file`
        })
    })
)

/** A near-miss of a URL, refused before it is read as a path (`postgres:/x` would create a directory `postgres:`). */
const refuseMalformed = (raw: string): Effect.Effect<void, UsageError> =>
  Option.match(DatabaseUrl.malformed(raw), {
    onNone: () => Effect.void,
    onSome: (reason) =>
      new UsageError({
        message: `--db is ${reason}; pass a PostgreSQL URL as ${DatabaseUrl.postgresForm}, or the path of a SQLite ` +
          `file (start it with ./ to mean a file so named)`
      })
  })

/**
 * `--out FILE`: where an artifact goes. A value that cannot name a file is refused as the command line is parsed,
 * before the command resolves it to an absolute path, which would hide why: an empty one (the working directory),
 * and one that ends with `/`, `.` or `..` (a directory: `out/` was written as a file named `out`). `instead` says
 * what to pass.
 *
 * @since 0.1.0
 * @category options
 */
export const out = (description: string, instead = "pass a file name") =>
  checked("out", "FILE", description, (raw) => parseOut(raw, instead))

/**
 * Checks the form of an `--out` value (see `out`); the command checks the file itself when it reaches it.
 *
 * @since 0.1.0
 * @category options
 */
export const parseOut = (raw: string, instead: string): Effect.Effect<string, UsageError> => {
  if (raw === "") return Effect.fail(new UsageError({ message: `--out is empty; ${instead}` }))
  const ending = raw.endsWith("/") ? "/" : path.basename(raw)
  return ending === "/" || ending === "." || ending === ".." ?
    Effect.fail(
      new UsageError({
        message: `--out ${JSON.stringify(raw)} ends with ${ending}, so it names a directory, not a file; ${instead}`
      })
    ) :
    Effect.succeed(raw)
}

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
 * The command that resumes a run.
 *
 * @since 0.1.0
 * @category formatting
 */
export const resumeCommand = (runId: string, db: string, args: ReadonlyArray<string> = []): string =>
  `quarry resume ${runId}${Errors.dbFlag(db)}${args.map((arg) => ` ${arg}`).join("")}`

/**
 * `--max-cost`, `--max-tokens` and `--deadline`: limits of one execution (`start` or `resume`). The budget is kept
 * with the run, and a resume that gives neither `--max-cost` nor `--max-tokens` keeps it; `--deadline` is not.
 *
 * @since 0.1.0
 * @category options
 */
export const limits = {
  maxCost: checked(
    "max-cost",
    "USD",
    "Stop (failed, reason budget, resumable) before the run's spend would exceed USD, counting every attempt " +
      "(also those lost to crashes). Kept with the run: a resume without --max-cost or --max-tokens keeps " +
      "the run's; one with either replaces both.",
    (raw) => Inputs.parseUsd("max-cost", raw)
  ),
  maxTokens: checked(
    "max-tokens",
    "N",
    "Stop before the run's prompt + completion tokens would exceed N, counted and kept like --max-cost.",
    (raw) => parseCount("max-tokens", raw, "tokens")
  ),
  deadline: checked(
    "deadline",
    "DURATION",
    "Stop this execution (failed, reason deadline, resumable) after DURATION: 90s, 15m, 2h, 1h30m. Not stored.",
    (raw) =>
      Option.match(Option.filter(Inputs.parseDuration(raw), (ms) => ms >= 1 && Number.isFinite(ms)), {
        onNone: () =>
          new UsageError({
            message: `deadline (${JSON.stringify(raw)}) must be a duration of at least 1ms, such as 90s, 15m, 2h, ` +
              `1h30m or "5 minutes"`
          }),
        onSome: (ms) => Effect.succeed(Math.round(ms))
      })
  )
}

/**
 * The limits of one execution; `args` repeats them for a suggested resume command.
 *
 * @since 0.1.0
 * @category models
 */
export interface Limits {
  readonly budget?: { readonly maxCostUsd?: number | undefined; readonly maxTokens?: number | undefined } | undefined
  readonly deadlineMs?: number | undefined
  readonly args: ReadonlyArray<string>
}

/**
 * The limits `--max-cost`, `--max-tokens` and `--deadline` set.
 *
 * @since 0.1.0
 * @category options
 */
export const limitsOf = (flags: {
  readonly maxCost: Option.Option<number>
  readonly maxTokens: Option.Option<number>
  readonly deadline: Option.Option<number>
}): Limits => {
  const arg = <A>(flag: string, value: Option.Option<A>, show: (a: A) => string) =>
    Option.match(value, { onNone: () => [], onSome: (a) => [flag, show(a)] })
  return {
    budget: Option.isNone(flags.maxCost) && Option.isNone(flags.maxTokens) ? undefined : {
      maxCostUsd: Option.getOrUndefined(flags.maxCost),
      maxTokens: Option.getOrUndefined(flags.maxTokens)
    },
    deadlineMs: Option.getOrUndefined(flags.deadline),
    args: [
      ...arg("--max-cost", flags.maxCost, String),
      ...arg("--max-tokens", flags.maxTokens, String),
      ...arg("--deadline", flags.deadline, formatDuration)
    ]
  }
}

/**
 * `--no-budget` of `resume`: the run goes on without the budget it keeps (see `liftBudget`).
 *
 * @since 0.1.0
 * @category options
 */
export const noBudget = Options.boolean("no-budget").pipe(
  Options.withDescription(
    "Lift the run's budget (its --max-cost and --max-tokens): go on without limits, and keep none."
  )
)

/**
 * The limits with the run's budget lifted when `--no-budget` was given: an empty budget, which replaces the run's.
 * Fails when `--max-cost` or `--max-tokens` was given too, since they would set a new one.
 *
 * @since 0.1.0
 * @category options
 */
export const liftBudget = (limits: Limits, lift: boolean): Effect.Effect<Limits, UsageError> =>
  !lift ? Effect.succeed(limits) : limits.budget !== undefined ?
    Effect.fail(
      new UsageError({
        message: "--no-budget cannot go with --max-cost or --max-tokens: it lifts the run's budget, they set a new one"
      })
    ) :
    Effect.succeed({ ...limits, budget: {}, args: [...limits.args, "--no-budget"] })

const durationUnits: ReadonlyArray<readonly [string, number]> = [
  ["d", 86_400_000],
  ["h", 3_600_000],
  ["m", 60_000],
  ["s", 1000],
  ["ms", 1]
]

/**
 * Whole milliseconds as a duration `--deadline` reads back: 5400000 is `1h30m`.
 *
 * @since 0.1.0
 * @category formatting
 */
export const formatDuration = (ms: number): string => {
  let rest = ms
  let text = ""
  for (const [unit, size] of durationUnits) {
    const count = Math.floor(rest / size)
    if (count > 0) text += `${count}${unit}`
    rest -= count * size
  }
  return text === "" ? "0ms" : text
}

/**
 * `args` without the option `flag` and its value (`--max-cost 2` out of `--max-cost 2 --deadline 1h`).
 *
 * @since 0.1.0
 * @category formatting
 */
export const withoutOption = (args: ReadonlyArray<string>, flag: string): ReadonlyArray<string> =>
  args.filter((_, i) => args[i] !== flag && args[i - 1] !== flag)
