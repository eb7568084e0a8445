/**
 * The budget policy: stop before spend would exceed a cost or token limit, also with many batches in flight.
 *
 * Each batch reserves its projected spend (the average spend per settled batch so far) before it starts; a batch
 * starts only when what is spent, plus what in-flight batches still hold, plus its own projection fits the limit.
 * As a batch records usage its reservation shrinks by that much, and it is released when the batch settles. Until
 * one batch has settled nothing is measured about the cost of a batch, so the first one runs alone, reserving the
 * extractor's estimate of it (`Extractor.estimate`) when there is one: what the batch will spend at least (the llm
 * extractor: its prompt), so a budget it does not fit stops the run before anything is spent. Once a batch has
 * settled, the measured average is the projection and the estimate is not asked again. So, whatever the
 * concurrency, spend exceeds the limit by no more than the batches that cost more than projected (or, the first,
 * than estimated).
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { BudgetExceeded } from "./Errors.js"
import type { Estimate, Usage } from "./Extractor.js"
import { reportedCost } from "./internal/usage.js"
import type { RunId, UsageTotals } from "./Run.js"

/**
 * Spend limits; either may be absent.
 *
 * @since 0.1.0
 * @category models
 */
export interface Limits {
  readonly maxCostUsd?: number | undefined
  readonly maxTokens?: number | undefined
}

/**
 * Why limits are no budget, if they are not: a limit must be a number above 0 (`Infinity` is no limit), and tokens
 * whole. The CLI's flags and the API's schema refuse such limits first; this is the library's check.
 *
 * @since 0.1.0
 * @category validation
 */
export const invalidLimits = (limits: Limits): string | undefined => {
  const { maxCostUsd, maxTokens } = limits
  if (maxCostUsd !== undefined && !(maxCostUsd > 0)) return `maxCostUsd must be a number above 0, got ${maxCostUsd}`
  if (maxTokens !== undefined && !(maxTokens > 0 && (Number.isInteger(maxTokens) || maxTokens === Infinity))) {
    return `maxTokens must be a whole number above 0, got ${maxTokens}`
  }
  return undefined
}

/**
 * An amount of spend.
 *
 * @since 0.1.0
 * @category models
 */
export interface Spend {
  readonly costUsd: number
  readonly tokens: number
}

/**
 * The budget of one execution.
 *
 * @since 0.1.0
 * @category models
 */
export interface Budget {
  /**
   * Waits until the batch's projected spend fits and reserves it. Fails with `BudgetExceeded` when it does not fit
   * and no other batch holds a reservation (so none can free one). Call in batch order. `estimate` is run only when
   * no batch has settled yet (and no other is in flight), to stand in for the projection.
   */
  readonly reserve: (
    batchIndex: number,
    estimate?: Effect.Effect<Option.Option<Estimate>> | undefined
  ) => Effect.Effect<void, BudgetExceeded>
  /** Counts one attempt's usage against the budget and against the batch's reservation. */
  readonly record: (batchIndex: number, usage: Usage) => Effect.Effect<void>
  /** Releases the batch's reservation; its recorded spend now informs the projection. */
  readonly settle: (batchIndex: number) => Effect.Effect<void>
  /** Everything spent so far, including earlier executions' attempts. */
  readonly spent: Effect.Effect<Spend>
  /** What a batch is projected to cost: the average spend per settled batch; none before any batch settled. */
  readonly projection: Effect.Effect<Option.Option<Spend>>
}

interface Held {
  readonly reserved: Spend
  readonly recorded: Spend
}

interface State {
  /** Every recorded attempt. */
  readonly spent: Spend
  /** The spend of settled batches, and how many there are (committed before this execution included). */
  readonly settledSpent: Spend
  readonly settled: number
  /** Per outstanding batch: what its reservation still holds, and what it has recorded so far. */
  readonly held: ReadonlyMap<number, Held>
}

type Decision = { readonly _tag: "Reserve"; readonly spend: Spend } | NoReservation

type NoReservation =
  | { readonly _tag: "Wait" }
  | {
    readonly _tag: "Exceeded"
    readonly limit: "cost" | "tokens"
    readonly spent: number
    readonly max: number
    /** The estimate that stood in for the projection, when it is what did not fit. */
    readonly estimate: Option.Option<Estimate>
  }

const zero: Spend = { costUsd: 0, tokens: 0 }
const plus = (a: Spend, b: Spend): Spend => ({ costUsd: a.costUsd + b.costUsd, tokens: a.tokens + b.tokens })
const minusFloor = (a: Spend, b: Spend): Spend => ({
  costUsd: Math.max(0, a.costUsd - b.costUsd),
  tokens: Math.max(0, a.tokens - b.tokens)
})
const ofUsage = (usage: Usage): Spend => ({
  costUsd: usage.costUsd ?? 0,
  tokens: usage.promptTokens + usage.completionTokens
})

const projectionOf = (state: State): Option.Option<Spend> =>
  state.settled === 0 && state.settledSpent.costUsd === 0 && state.settledSpent.tokens === 0 ?
    Option.none() :
    Option.some({
      costUsd: state.settledSpent.costUsd / Math.max(1, state.settled),
      tokens: state.settledSpent.tokens / Math.max(1, state.settled)
    })

const ofEstimate = (estimate: Estimate): Spend => ({
  costUsd: estimate.costUsd ?? 0,
  tokens: estimate.promptTokens + estimate.completionTokens
})

/**
 * Whether a batch may start now, must wait for in-flight batches, or would exceed the budget. `estimate` is the
 * batch's, used only while no batch has settled.
 */
const decide = (limits: Limits, state: State, estimate: Option.Option<Estimate>): Decision => {
  const outstanding = [...state.held.values()].reduce((sum, held) => plus(sum, held.reserved), zero)
  const projected = projectionOf(state)
  // The first batch runs alone: it tells what a batch costs.
  if (Option.isNone(projected) && state.held.size > 0) return { _tag: "Wait" }
  const estimated = Option.isNone(projected) ? estimate : Option.none()
  const spend = Option.getOrElse(projected, () => Option.match(estimated, { onNone: () => zero, onSome: ofEstimate }))
  const checks = [
    {
      limit: "cost" as const,
      max: limits.maxCostUsd,
      spent: state.spent.costUsd,
      more: outstanding.costUsd + spend.costUsd
    },
    {
      limit: "tokens" as const,
      max: limits.maxTokens,
      spent: state.spent.tokens,
      more: outstanding.tokens + spend.tokens
    }
  ]
  for (const { limit, max, more, spent } of checks) {
    if (max === undefined || (spent < max && spent + more <= max)) continue
    // In-flight batches may cost less than they reserved: wait for them before giving up.
    return state.held.size > 0 ? { _tag: "Wait" } : { _tag: "Exceeded", limit, spent, max, estimate: estimated }
  }
  return { _tag: "Reserve", spend }
}

const withHeld = (state: State, batchIndex: number, held: Held | undefined): State => {
  const map = new Map(state.held)
  if (held === undefined) map.delete(batchIndex)
  else map.set(batchIndex, held)
  return { ...state, held: map }
}

/** One attempt's usage: spent, and taken off the batch's reservation when it holds one. */
const recorded = (state: State, batchIndex: number, usage: Usage): State => {
  const spend = ofUsage(usage)
  const next = { ...state, spent: plus(state.spent, spend) }
  const held = state.held.get(batchIndex)
  // A batch that holds no reservation (no limits, or settled already) only adds to what is spent.
  return held === undefined ?
    next :
    withHeld(next, batchIndex, { reserved: minusFloor(held.reserved, spend), recorded: plus(held.recorded, spend) })
}

/** A batch whose extraction ended: its reservation is released and its spend informs the projection. */
const settled = (state: State, batchIndex: number): State =>
  withHeld(
    {
      ...state,
      settled: state.settled + 1,
      settledSpent: plus(state.settledSpent, state.held.get(batchIndex)?.recorded ?? zero)
    },
    batchIndex,
    undefined
  )

/** What a budget does without waiting, over its state's cell. */
const bookkeeping = (update: (f: (state: State) => State) => Effect.Effect<void>, get: Effect.Effect<State>) => ({
  record: (batchIndex: number, usage: Usage) => update((current) => recorded(current, batchIndex, usage)),
  settle: (batchIndex: number) => update((current) => settled(current, batchIndex)),
  spent: Effect.map(get, (s) => s.spent),
  projection: Effect.map(get, projectionOf)
})

const hasLimits = (limits: Limits | undefined): limits is Limits =>
  limits !== undefined && (limits.maxCostUsd !== undefined || limits.maxTokens !== undefined)

/**
 * A budget for one execution, starting from what earlier executions spent (`UsageTotals` of every recorded attempt)
 * and how many batches they settled. Without limits, `reserve` never waits.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: {
  readonly runId: RunId
  readonly limits?: Limits | undefined
  readonly spent: UsageTotals
  readonly settledBatches: number
}): Effect.Effect<Budget> =>
  Effect.gen(function*() {
    const { limits, runId } = options
    const initial: Spend = { costUsd: options.spent.costUsd, tokens: options.spent.tokens }
    const start: State = { spent: initial, settledSpent: initial, settled: options.settledBatches, held: new Map() }
    // Without limits no batch waits for a change: a plain `Ref`, which publishes nothing (a `SubscriptionRef`'s
    // update and its publication cost about a tenth of a batch's CPU time, pnpm bench section 1).
    if (!hasLimits(limits)) {
      const cell = yield* Ref.make(start)
      return { reserve: () => Effect.void, ...bookkeeping((f) => Ref.update(cell, f), Ref.get(cell)) }
    }
    const state = yield* SubscriptionRef.make<State>(start)

    // Every change of the state (usage recorded, a batch settled) may make room: decide again on each, atomically.
    // Only a reservation changes the state: a `Wait` must not publish, or every waiter would wake every other one.
    const attempt = (limits: Limits, batchIndex: number, estimate: Option.Option<Estimate>) =>
      SubscriptionRef.modifyEffect(state, (current) => {
        const decision = decide(limits, current, estimate)
        return decision._tag === "Reserve" ?
          Effect.succeed([true, withHeld(current, batchIndex, { reserved: decision.spend, recorded: zero })] as const) :
          Effect.fail(decision)
      }).pipe(
        Effect.catchAll((decision) =>
          decision._tag === "Wait" ?
            Effect.succeed(false) :
            new BudgetExceeded({
              runId,
              limit: decision.limit,
              spent: decision.limit === "cost" ? reportedCost(decision.spent) : decision.spent,
              max: decision.max,
              estimate: Option.getOrUndefined(Option.map(decision.estimate, (e) => {
                const spend = ofEstimate(e)
                return { tokens: spend.tokens, costUsd: reportedCost(spend.costUsd), basis: e.basis }
              }))
            })
        )
      )
    const reserveWithin = (
      limits: Limits,
      batchIndex: number,
      estimate: Effect.Effect<Option.Option<Estimate>> | undefined
    ) =>
      Effect.gen(function*() {
        // Estimated only when the estimate can count: no projection yet, and no batch in flight to wait for.
        const current = yield* SubscriptionRef.get(state)
        const estimated = estimate !== undefined && Option.isNone(projectionOf(current)) && current.held.size === 0 ?
          yield* estimate :
          Option.none()
        yield* state.changes.pipe(
          Stream.mapEffect(() => attempt(limits, batchIndex, estimated)),
          Stream.filter((reserved) => reserved),
          Stream.runHead
        )
      })

    return {
      reserve: (batchIndex, estimate) => reserveWithin(limits, batchIndex, estimate),
      ...bookkeeping((f) => SubscriptionRef.update(state, f), SubscriptionRef.get(state))
    } satisfies Budget
  })
