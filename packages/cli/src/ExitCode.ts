/**
 * The exit codes of `quarry`, and how errors and fiber exits map to them.
 *
 * @since 0.1.0
 */
import * as ValidationError from "@effect/cli/ValidationError"
import * as Cause from "effect/Cause"
import * as Exit from "effect/Exit"
import { RunEnded } from "./Errors.js"

/**
 * The run completed (or the command succeeded).
 *
 * @since 0.1.0
 * @category codes
 */
export const ok = 0

/**
 * The run failed; every committed batch is kept and `quarry resume` continues it.
 *
 * @since 0.1.0
 * @category codes
 */
export const runFailed = 1

/**
 * Bad usage or bad input; nothing was written.
 *
 * @since 0.1.0
 * @category codes
 */
export const usage = 2

/**
 * The database cannot be trusted to keep committed work.
 *
 * @since 0.1.0
 * @category codes
 */
export const durability = 3

/**
 * The run is held by another live process.
 *
 * @since 0.1.0
 * @category codes
 */
export const locked = 4

/**
 * The run was cancelled (`quarry cancel`); it can be resumed.
 *
 * @since 0.1.0
 * @category codes
 */
export const cancelled = 5

/**
 * Interrupted by SIGINT or SIGTERM; the run is left `interrupted` and can be resumed.
 *
 * @since 0.1.0
 * @category codes
 */
export const interrupted = 130

const tagOf = (u: unknown): string | undefined =>
  typeof u === "object" && u !== null && "_tag" in u && typeof u._tag === "string" ? u._tag : undefined

/**
 * The exit code for a typed error of a command.
 *
 * @since 0.1.0
 * @category mapping
 */
export const fromError = (error: unknown): number => {
  if (ValidationError.isValidationError(error)) return usage
  if (error instanceof RunEnded) return error.exitCode
  switch (tagOf(error)) {
    case "UsageError":
    case "ChunkingError":
    case "OntologyError":
    case "RunAlreadyExists":
    case "RunNotFound":
    case "UnknownExtractor":
    case "InvalidRunState":
    case "PlanMismatch":
      return usage
    case "DurabilityError":
    case "InputMismatch":
      return durability
    case "RunLocked":
      return locked
    case "RunCancelled":
      return cancelled
    case "RunInterrupted":
      return interrupted
    default:
      return runFailed
  }
}

/**
 * The exit code of the whole program: its value when it succeeded with a code, 130 when it was interrupted (a
 * signal), 1 for anything else (a defect).
 *
 * @since 0.1.0
 * @category mapping
 */
export const fromExit = <E, A>(exit: Exit.Exit<A, E>): number => {
  if (Exit.isSuccess(exit)) return typeof exit.value === "number" ? exit.value : ok
  if (Cause.isInterruptedOnly(exit.cause)) return interrupted
  return runFailed
}
