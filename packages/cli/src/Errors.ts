/**
 * The CLI's own errors, and how any error of a command is worded for people.
 *
 * @since 0.1.0
 */
import * as ValidationError from "@effect/cli/ValidationError"
import { CompensationFailed } from "@quarry/core/Compensation"
import * as DatabaseUrl from "@quarry/core/DatabaseUrl"
import { PersistenceError, RunAlreadyExists, RunLocked, RunNotFound } from "@quarry/core/Errors"
import type * as ConfigError from "effect/ConfigError"
import * as FiberRef from "effect/FiberRef"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as os from "node:os"
import * as Help from "./Help.js"
import * as Settings from "./Settings.js"

/**
 * Bad usage or bad input (exit code 2); nothing was written.
 *
 * @since 0.1.0
 * @category errors
 */
export class UsageError extends Schema.TaggedError<UsageError>()("UsageError", { message: Schema.String }) {}

/**
 * A refused environment variable, as every command reports one: `bad environment: ` and what `Settings.namingVariables`
 * says of it (the variable, its value and what it accepts).
 *
 * @since 0.1.0
 * @category errors
 */
export const badEnvironment = (error: ConfigError.ConfigError): UsageError =>
  new UsageError({ message: `bad environment: ${error.message}` })

/**
 * A run ended without completing (failed, cancelled) and its terminal event was already reported; carries the exit
 * code and the message that says how to resume it.
 *
 * @since 0.1.0
 * @category errors
 */
export class RunEnded extends Schema.TaggedError<RunEnded>()("RunEnded", {
  exitCode: Schema.Int,
  message: Schema.String
}) {}

/**
 * The parts of a lease owner id (`host:pid:random`, see `Workflow.makeOwnerId`; a cluster runner puts its address
 * first: `runner/host:pid:random`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Holder {
  readonly host: string
  readonly pid: number
  readonly runner: Option.Option<string>
}

/**
 * Reads the host and process id out of a lease owner id, when it has that shape.
 *
 * @since 0.1.0
 * @category models
 */
export const parseOwner = (owner: string): Option.Option<Holder> => {
  const match = /^(?:(.+)\/)?([^/]*):(\d+):[0-9a-f]+$/.exec(owner)
  return match === null ?
    Option.none() :
    Option.some({ host: match[2]!, pid: Number(match[3]), runner: Option.fromNullable(match[1]) })
}

const processAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    // EPERM: it exists but belongs to another user.
    return typeof error === "object" && error !== null && "code" in error && error.code === "EPERM"
  }
}

/**
 * True when the lease holder is a process on this host that no longer exists: its lease can only run out. A holder
 * on another host (or whose pid was reused) counts as alive.
 *
 * @since 0.1.0
 * @category models
 */
export const holderIsGone = (owner: string): boolean =>
  Option.match(parseOwner(owner), {
    onNone: () => false,
    onSome: (holder) => holder.host === os.hostname() && holder.pid !== process.pid && !processAlive(holder.pid)
  })

/**
 * A lease holder for people: `process 1234 on host h`.
 *
 * @since 0.1.0
 * @category formatting
 */
export const describeHolder = (owner: string): string =>
  Option.match(parseOwner(owner), {
    onNone: () => owner,
    onSome: (holder) =>
      `process ${holder.pid} on host ${holder.host}${
        Option.match(holder.runner, { onNone: () => "", onSome: (runner) => ` (cluster runner ${runner})` })
      }`
  })

const seconds = (ms: number) => `${Math.max(0, Math.ceil(ms / 1000))}s`

/**
 * The message of exit code 4: who holds the run, until when, and what to do.
 *
 * @since 0.1.0
 * @category formatting
 */
export const lockedMessage = (error: RunLocked, now: number, db: string = Settings.defaultDatabase): string =>
  `run ${error.runId} is being executed by ${describeHolder(error.owner)} (lease owner ${error.owner}, renewed ` +
  `until ${new Date(error.expiresAt).toISOString()}, ${seconds(error.expiresAt - now)} from now); wait for it to ` +
  `finish, or stop it with: quarry cancel ${error.runId}${dbFlag(db)}`

/**
 * Quotes a word for a POSIX shell when it needs it.
 *
 * @since 0.1.0
 * @category formatting
 */
export const shellQuote = (word: string): string =>
  /^[A-Za-z0-9_./:=@%+-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`

/**
 * ` --db PATH` to repeat in a suggested command, or nothing for the default database.
 *
 * @since 0.1.0
 * @category formatting
 */
export const dbFlag = (db: string): string =>
  db === Settings.defaultDatabase || db === "quarry.db" ? "" : ` --db ${shellQuote(DatabaseUrl.redact(db))}`

/**
 * What a command was invoked on: the database it uses and the run it names (when valid), so that an error raised
 * anywhere in it is reported with them (the `--db` of a suggested command, the `runId` of a JSON `error` event).
 * Set by `Cli` before a command's handler runs.
 *
 * @since 0.1.0
 * @category models
 */
export interface Invocation {
  readonly db: string
  readonly runId: Option.Option<string>
}

/**
 * The invocation of the command running in this fiber, if it got as far as its handler.
 *
 * @since 0.1.0
 * @category models
 */
export const currentInvocation: FiberRef.FiberRef<Option.Option<Invocation>> = FiberRef.unsafeMake(
  Option.none<Invocation>()
)

const tagOf = (u: unknown): string | undefined =>
  typeof u === "object" && u !== null && "_tag" in u && typeof u._tag === "string" ? u._tag : undefined

/**
 * The error's tag (`RunLocked`, `UsageError`, ...), for JSON reports.
 *
 * @since 0.1.0
 * @category formatting
 */
export const nameOf = (error: unknown): string => tagOf(error) ?? "Error"

/**
 * How an error is told to people. Every command it suggests names `db` (the database the command used) unless it
 * is the default one, so that copying it acts on the same database.
 *
 * @since 0.1.0
 * @category formatting
 */
export const describe = (error: unknown, now: number, db: string = Settings.defaultDatabase): string => {
  if (ValidationError.isValidationError(error)) return Help.plain(error.error).trim().replace(/^quarry: /, "")
  if (error instanceof RunLocked) return lockedMessage(error, now, db)
  if (error instanceof RunNotFound) {
    return `run "${error.runId}" does not exist in this database; list runs with \`quarry runs${dbFlag(db)}\``
  }
  if (error instanceof RunAlreadyExists) {
    return `run "${error.runId}" already exists; choose another --run-id or resume it with \`quarry resume ` +
      `${error.runId}${dbFlag(db)}\``
  }
  if (error instanceof CompensationFailed) {
    return error.message.replace(
      `quarry cancel ${error.runId} --purge`,
      `quarry cancel ${error.runId} --purge${dbFlag(db)}`
    )
  }
  if (error instanceof PersistenceError) {
    return error.message.replace("`quarry doctor`", `\`quarry doctor${dbFlag(db)}\``)
  }
  return error instanceof Error ? error.message : String(error)
}

/** The command `args` (after the program) name, if they start with one. */
const commandOf = (args: ReadonlyArray<string>): string | undefined =>
  args[0] !== undefined && !args[0].startsWith("-") ? args[0] : undefined

/** Where the options of the command `args` name are listed. */
const helpOf = (args: ReadonlyArray<string>): string => {
  const command = commandOf(args)
  return command === undefined ? "quarry --help" : `quarry ${command} --help`
}

/**
 * The message for an argument that the command `args` (after the program) name does not take.
 *
 * @since 0.1.0
 * @category formatting
 */
export const unknownArgument = (arg: string, args: ReadonlyArray<string>): string =>
  `unknown argument ${JSON.stringify(arg)}; see \`${helpOf(args)}\``

/**
 * A parse error of @effect/cli for people, from the error and the arguments it parsed (after the program). An option
 * given twice is named as such: @effect/cli leaves the second one over, as "Received unknown argument".
 *
 * @since 0.1.0
 * @category formatting
 */
export const describeParseError = (error: ValidationError.ValidationError, args: ReadonlyArray<string>): string => {
  const text = Help.plain(error.error).trim().replace(/^quarry: /, "")
  const command = commandOf(args)
  const unknown = /^Received unknown argument: '(.*)'$/.exec(text)
  if (unknown !== null) {
    const name = unknown[1]!.split("=")[0]!
    const given = args.filter((arg) => arg === name || arg.startsWith(`${name}=`)).length
    if (name.startsWith("-") && given > 1) return `option ${name} is given ${given} times; give it once`
    return unknownArgument(unknown[1]!, args)
  }
  const missing = /^Missing argument <(.*)>$/.exec(text)
  if (missing !== null) return `${command ?? "quarry"} needs the argument <${missing[1]}>; see \`${helpOf(args)}\``
  if (/^Invalid subcommand for quarry/.test(text)) {
    return `unknown command ${JSON.stringify(command ?? args[0] ?? "")}; use one of start, resume, status, runs, ` +
      "cancel, export, doctor, serve (see `quarry --help`)"
  }
  return text
}
