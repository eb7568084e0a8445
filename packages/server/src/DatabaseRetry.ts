/**
 * How the server tries an execution again when the database failed it beyond the store's own retries: before its
 * claim (nothing recorded, nothing extracted) for as long as the database fails; after its claim, when the
 * connection was lost (the run was recorded `failed` with every committed batch kept), at most
 * `maxFailuresWithoutProgress` times in a row without a batch committed, since each execution may extract a batch
 * again, which an LLM bills. Both wait 250 ms after the first failure in a row, doubling up to 5 s.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Schedule from "effect/Schedule"

/**
 * Executions in a row that lost their connection after their claim, none committing a batch, before giving up.
 *
 * @since 0.1.0
 * @category constants
 */
export const maxFailuresWithoutProgress = 10

/**
 * The wait before trying again after the n-th failure in a row (from 1).
 *
 * @since 0.1.0
 * @category utils
 */
export const delayMs = (failuresInARow: number): number => Math.min(5_000, 250 * 2 ** (failuresInARow - 1))

/**
 * The same waits as a schedule.
 *
 * @since 0.1.0
 * @category utils
 */
export const schedule = Schedule.exponential(Duration.millis(250)).pipe(
  Schedule.either(Schedule.spaced(Duration.seconds(5)))
)

/**
 * The line logged when the server gives a run up.
 *
 * @since 0.1.0
 * @category utils
 */
export const gaveUp = `the database failed the execution ${maxFailuresWithoutProgress + 1} times in a row ` +
  "without a batch committed: the run stays failed; resume it once the database is back"
