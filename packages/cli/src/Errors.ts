/**
 * The CLI's own errors, and how any error of a command is worded for people.
 *
 * @since 0.1.0
 */
import * as ValidationError from "@effect/cli/ValidationError"
import { RunLocked } from "@quarry/core/Errors"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as os from "node:os"

/**
 * Bad usage or bad input (exit code 2); nothing was written.
 *
 * @since 0.1.0
 * @category errors
 */
export class UsageError extends Schema.TaggedError<UsageError>()("UsageError", { message: Schema.String }) {}

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
 * The parts of a lease owner id (`host:pid:random`, see `Workflow.makeOwnerId`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Holder {
  readonly host: string
  readonly pid: number
}

/**
 * Reads the host and process id out of a lease owner id, when it has that shape.
 *
 * @since 0.1.0
 * @category models
 */
export const parseOwner = (owner: string): Option.Option<Holder> => {
  const match = /^(.*):(\d+):[0-9a-f]+$/.exec(owner)
  return match === null ? Option.none() : Option.some({ host: match[1]!, pid: Number(match[2]) })
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
    onSome: (holder) => `process ${holder.pid} on host ${holder.host}`
  })

const seconds = (ms: number) => `${Math.max(0, Math.ceil(ms / 1000))}s`

/**
 * The message of exit code 4: who holds the run, until when, and what to do.
 *
 * @since 0.1.0
 * @category formatting
 */
export const lockedMessage = (error: RunLocked, now: number): string =>
  `run ${error.runId} is being executed by ${describeHolder(error.owner)} (lease owner ${error.owner}, renewed ` +
  `until ${new Date(error.expiresAt).toISOString()}, ${seconds(error.expiresAt - now)} from now); wait for it to ` +
  `finish, or stop it with: quarry cancel ${error.runId}`

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
 * How an error is told to people; `None` for the parse errors that `@effect/cli` has already printed.
 *
 * @since 0.1.0
 * @category formatting
 */
export const describe = (error: unknown, now: number): Option.Option<string> => {
  if (ValidationError.isValidationError(error)) return Option.none()
  if (error instanceof RunLocked) return Option.some(lockedMessage(error, now))
  return Option.some(error instanceof Error ? error.message : String(error))
}
