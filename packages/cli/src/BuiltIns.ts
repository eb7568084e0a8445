/**
 * The built-in options quarry reads itself, before @effect/cli parses the command line. @effect/cli finds its
 * built-ins only ahead of a command's own options (`quarry doctor --db x --log-level error` was an unknown argument),
 * so `--log-level` and `--completions` are taken out wherever they are given; its `--wizard` (an interactive prompt
 * that waits forever without a terminal) is refused, and left out of the completion scripts.
 *
 * @since 0.1.0
 */
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as ValidationError from "@effect/cli/ValidationError"
import * as Arr from "effect/Array"
import * as Effect from "effect/Effect"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Errors from "./Errors.js"

/**
 * The arguments after the program, with the built-in options that take a value taken out.
 *
 * @since 0.1.0
 * @category models
 */
export interface CommandLine {
  /** What is left for @effect/cli to parse. */
  readonly args: ReadonlyArray<string>
  /** The values given to `--log-level`, in order (`undefined`: the option ended the command line). */
  readonly logLevels: ReadonlyArray<string | undefined>
  /** The values given to `--completions`, likewise. */
  readonly completions: ReadonlyArray<string | undefined>
}

/** After `--`, every argument is the command's own, as @effect/cli reads it. */
const optionsEnd = (args: ReadonlyArray<string>) => {
  const end = args.indexOf("--")
  return end < 0 ? args.length : end
}

/** `args` without option `name` (`--name value` or `--name=value`), and the values it was given. */
const take = (args: ReadonlyArray<string>, name: string) => {
  const rest: Array<string> = []
  const values: Array<string | undefined> = []
  const end = optionsEnd(args)
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    if (i < end && arg === name) {
      values.push(i + 1 < end ? args[++i] : undefined)
    } else if (i < end && arg.startsWith(`${name}=`)) {
      values.push(arg.slice(name.length + 1))
    } else {
      rest.push(arg)
    }
  }
  return { rest, values }
}

/**
 * Takes `--log-level` and `--completions` out of `args` (the arguments after the program), wherever they are.
 *
 * @since 0.1.0
 * @category parsing
 */
export const split = (args: ReadonlyArray<string>): CommandLine => {
  const logLevel = take(args, "--log-level")
  const completions = take(logLevel.rest, "--completions")
  return { args: completions.rest, logLevels: logLevel.values, completions: completions.values }
}

/** A refused command line, as @effect/cli's own parse errors are (exit 2, and an `error` event for `--json`). */
const refused = (message: string) => ValidationError.invalidValue(HelpDoc.p(`quarry: ${message}`))

/** The one value given to a built-in option, checked against its choices. */
const choice = <A>(
  values: ReadonlyArray<string | undefined>,
  name: string,
  what: string,
  choices: ReadonlyArray<readonly [string, A]>
): Effect.Effect<Option.Option<A>, ValidationError.ValidationError> => {
  const [value] = values
  const listed = `${choices.slice(0, -1).map(([key]) => key).join(", ")} or ${choices.at(-1)![0]}`
  if (values.length > 1) return Effect.fail(refused(`option ${name} is given ${values.length} times; give it once`))
  if (values.length === 0) return Effect.succeed(Option.none())
  if (value === undefined) return Effect.fail(refused(`${name} needs a value: ${listed}`))
  return Option.match(Arr.findFirst(choices, ([key]) => key === value.toLowerCase()), {
    onNone: () => Effect.fail(refused(`${name} ${JSON.stringify(value)} is not ${what}; use ${listed}`)),
    onSome: ([, a]) => Effect.succeed(Option.some(a))
  })
}

const logLevels = LogLevel.allLevels.map((level) => [level._tag.toLowerCase(), level] as const)

/**
 * The level `--log-level` sets, else `warning`.
 *
 * @since 0.1.0
 * @category parsing
 */
export const logLevel = (line: CommandLine): Effect.Effect<LogLevel.LogLevel, ValidationError.ValidationError> =>
  Effect.map(
    choice(line.logLevels, "--log-level", "a log level", logLevels),
    Option.getOrElse(() => LogLevel.Warning)
  )

/**
 * Refuses `--wizard` as the unknown option it is here: @effect/cli's wizard prompts for every option with its
 * generic placeholders, and waits forever for a terminal that is not there.
 *
 * @since 0.1.0
 * @category parsing
 */
export const refuseWizard = (line: CommandLine): Effect.Effect<void, ValidationError.ValidationError> => {
  const wizard = line.args.slice(0, optionsEnd(line.args)).find((arg) => /^--wizard(=|$)/.test(arg))
  return wizard === undefined ? Effect.void : Effect.fail(refused(Errors.unknownArgument(wizard, line.args)))
}

const shells = [
  ["sh", Command.getBashCompletions],
  ["bash", Command.getBashCompletions],
  ["fish", Command.getFishCompletions],
  ["zsh", Command.getZshCompletions]
] as const

/** @effect/cli offers its built-in `--wizard` in every script: a line of its own in zsh and fish, a word in bash. */
const withoutWizard = (lines: ReadonlyArray<string>): ReadonlyArray<string> =>
  lines.filter((line) => !/'--wizard\[| -l wizard /.test(line)).map((line) => line.replace(" --wizard ", " "))

/**
 * The completion script `--completions` asks for, for `command` run as `quarry`, without `--wizard`.
 *
 * @since 0.1.0
 * @category completions
 */
export const completions = <Name extends string, R, E, A>(
  line: CommandLine,
  command: Command.Command<Name, R, E, A>
): Effect.Effect<Option.Option<string>, ValidationError.ValidationError> =>
  Effect.flatMap(
    choice(line.completions, "--completions", "a shell quarry has completions for", shells),
    Option.match({
      onNone: () => Effect.succeedNone,
      onSome: (script) => Effect.map(script(command, "quarry"), (lines) => Option.some(withoutWizard(lines).join("\n")))
    })
  )
