/**
 * A resume of a run that already waits to execute (in this server's queue, or on a cluster an `Execute` not yet
 * claimed): the waiting execution runs with its own options, so the same options again are granted and other ones
 * are refused, rather than answered 202 and ignored.
 *
 * @since 0.1.0
 */
import type * as Budget from "@quarry/core/Budget"
import { InvalidRunState } from "@quarry/core/Errors"
import type { Run } from "@quarry/core/Run"

/**
 * The options an execution was requested with, as a submission or a resume gives them.
 *
 * @since 0.1.0
 * @category models
 */
export interface Requested {
  readonly retrySkipped?: boolean | undefined
  readonly budget?: Budget.Limits | undefined
}

const normal = (r: Requested) =>
  JSON.stringify({
    retrySkipped: r.retrySkipped === true,
    budget: r.budget === undefined
      ? null
      : { maxCostUsd: r.budget.maxCostUsd ?? null, maxTokens: r.budget.maxTokens ?? null }
  })

/**
 * Whether two requests ask for the same execution.
 *
 * @since 0.1.0
 * @category comparing
 */
export const same = (a: Requested, b: Requested): boolean => normal(a) === normal(b)

const limitsText = (limits: Budget.Limits) => {
  const set = [
    ...(limits.maxCostUsd === undefined ? [] : [`maxCostUsd ${limits.maxCostUsd}`]),
    ...(limits.maxTokens === undefined ? [] : [`maxTokens ${limits.maxTokens}`])
  ]
  return set.length === 0 ? "no budget" : `budget ${set.join(", ")}`
}

/**
 * A request's options for people: `budget maxCostUsd 1, retrySkipped`.
 *
 * @since 0.1.0
 * @category formatting
 */
export const describe = (r: Requested): string => {
  const budget = r.budget === undefined ? "the run's budget" : limitsText(r.budget)
  return r.retrySkipped === true ? `${budget}, retrySkipped` : budget
}

/**
 * The refusal of a resume with other options than the execution waiting (`waitingFor`: what it waits for).
 *
 * @since 0.1.0
 * @category errors
 */
export const conflict = (run: Run, waiting: Requested, waitingFor: string): InvalidRunState =>
  new InvalidRunState({
    runId: run.id,
    status: `${run.status} with an execution waiting for ${waitingFor} (${describe(waiting)})`,
    expected: "not waiting to execute: cancel it, then resume it with the new options"
  })
