/**
 * The deadline policy: an execution that runs longer than its deadline stops with `DeadlineExceeded` (status
 * `failed`, reason `deadline`); committed batches are kept and the run resumes.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import { DeadlineExceeded } from "./Errors.js"
import type { RunId } from "./Run.js"

/**
 * Bounds an execution by its deadline; without one, the execution is returned unchanged.
 *
 * @since 0.1.0
 * @category combinators
 */
export const bound =
  (runId: RunId, deadlineMs: number | undefined) =>
  <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E | DeadlineExceeded, R> =>
    deadlineMs === undefined ? self : Effect.timeoutFail(self, {
      duration: deadlineMs,
      onTimeout: () => new DeadlineExceeded({ runId, deadlineMs })
    })
