/**
 * A process-wide circuit breaker per endpoint. After `failureThreshold` consecutive failures the circuit opens and
 * calls fail at once for `cooldown`; then one trial call is let through (half-open): its success closes the circuit,
 * its failure opens it again. Transitions are logged; the state of every endpoint can be read for status reports.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"

/**
 * When to open and for how long.
 *
 * @since 0.1.0
 * @category models
 */
export interface Settings {
  readonly failureThreshold: number
  readonly cooldown: Duration.DurationInput
}

/**
 * The state of one endpoint's circuit.
 *
 * @since 0.1.0
 * @category models
 */
export type State =
  | { readonly _tag: "Closed"; readonly consecutiveFailures: number }
  | { readonly _tag: "Open"; readonly consecutiveFailures: number; readonly openUntil: number }
  | { readonly _tag: "HalfOpen"; readonly consecutiveFailures: number }

/**
 * A call refused because the endpoint's circuit is open (or its trial call is in flight).
 *
 * @since 0.1.0
 * @category errors
 */
export class CircuitOpen extends Schema.TaggedError<CircuitOpen>()("CircuitOpen", {
  key: Schema.String,
  consecutiveFailures: Schema.Int,
  retryAfterMillis: Schema.Number
}) {
  override get message() {
    return `calls to ${this.key} are suspended after ${this.consecutiveFailures} consecutive failures; ` +
      `the next trial call is in ${Duration.format(Duration.millis(Math.max(0, this.retryAfterMillis)))}`
  }
}

/**
 * The breaker.
 *
 * @since 0.1.0
 * @category tags
 */
export class CircuitBreaker extends Context.Tag("@quarry/llm/CircuitBreaker")<CircuitBreaker, {
  /**
   * Runs `effect` unless the circuit is open. A failure counts when `isFailure` says so (e.g. 5xx and timeouts,
   * not a 400 caused by the request); any other outcome counts as a success.
   */
  readonly protect: <A, E, R>(
    key: string,
    settings: Settings,
    effect: Effect.Effect<A, E, R>,
    isFailure: (error: E) => boolean
  ) => Effect.Effect<A, E | CircuitOpen, R>
  readonly state: (key: string) => Effect.Effect<State>
  /** Every endpoint seen so far, sorted by key. */
  readonly states: Effect.Effect<ReadonlyArray<{ readonly key: string; readonly state: State }>>
}>() {}

interface Circuit {
  state: State
  trialInFlight: boolean
}

const closed: State = { _tag: "Closed", consecutiveFailures: 0 }

/**
 * The state of each endpoint's circuit: 0 closed, 1 half-open (a trial call may go), 2 open (calls refused).
 *
 * @since 0.1.0
 * @category metrics
 */
export const stateMetric = Metric.gauge("quarry_llm_circuit_state", {
  description: "Circuit breaker state by endpoint: 0 closed, 1 half-open, 2 open"
})

const stateValue: Record<State["_tag"], number> = { Closed: 0, HalfOpen: 1, Open: 2 }

const recordState = (key: string, state: State) =>
  Metric.set(Metric.tagged(stateMetric, "endpoint", key), stateValue[state._tag])

const circuitFor = (circuits: Map<string, Circuit>, key: string) => {
  let circuit = circuits.get(key)
  if (circuit === undefined) {
    circuit = { state: closed, trialInFlight: false }
    circuits.set(key, circuit)
  }
  return circuit
}

/** Moves a circuit to `next`, logging a change of state. */
const transition = (key: string, circuit: Circuit, next: State) => {
  const previous = circuit.state
  circuit.state = next
  if (previous._tag === next._tag) return Effect.void
  const log = next._tag === "Open" ? Effect.logWarning : Effect.logInfo
  return log(`circuit breaker ${previous._tag} -> ${next._tag}`).pipe(
    Effect.annotateLogs({ endpoint: key, consecutiveFailures: next.consecutiveFailures }),
    Effect.zipRight(recordState(key, next))
  )
}

/** Decides, atomically, whether this call may go ahead and whether it is the half-open trial. */
const enter = (
  circuits: Map<string, Circuit>,
  key: string,
  settings: Settings
): Effect.Effect<{ circuit: Circuit; trial: boolean }, CircuitOpen> =>
  Effect.flatMap(Clock.currentTimeMillis, (now) =>
    Effect.suspend(() => {
      // An endpoint's series exists from its first call, so that alerts see it closed before it ever opens.
      if (!circuits.has(key)) {
        circuitFor(circuits, key)
        return Effect.zipRight(recordState(key, closed), enter(circuits, key, settings))
      }
      const circuit = circuitFor(circuits, key)
      const state = circuit.state
      switch (state._tag) {
        case "Closed":
          return Effect.succeed({ circuit, trial: false })
        case "Open": {
          if (now < state.openUntil) {
            return Effect.fail(
              new CircuitOpen({
                key,
                consecutiveFailures: state.consecutiveFailures,
                retryAfterMillis: state.openUntil - now
              })
            )
          }
          circuit.trialInFlight = true
          return Effect.as(
            transition(key, circuit, { _tag: "HalfOpen", consecutiveFailures: state.consecutiveFailures }),
            { circuit, trial: true }
          )
        }
        case "HalfOpen": {
          if (circuit.trialInFlight) {
            return Effect.fail(
              new CircuitOpen({
                key,
                consecutiveFailures: state.consecutiveFailures,
                retryAfterMillis: Duration.toMillis(settings.cooldown)
              })
            )
          }
          circuit.trialInFlight = true
          return Effect.succeed({ circuit, trial: true })
        }
      }
    }))

/** Opens a circuit for the cooldown. */
const open = (key: string, circuit: Circuit, settings: Settings, failures: number) =>
  Effect.flatMap(Clock.currentTimeMillis, (now) =>
    transition(key, circuit, {
      _tag: "Open",
      consecutiveFailures: failures,
      openUntil: now + Duration.toMillis(settings.cooldown)
    }))

/**
 * Builds a breaker with every circuit closed.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<CircuitBreaker["Type"]> = Effect.sync(() => {
  const circuits = new Map<string, Circuit>()

  const protect = <A, E, R>(
    key: string,
    settings: Settings,
    effect: Effect.Effect<A, E, R>,
    isFailure: (error: E) => boolean
  ): Effect.Effect<A, E | CircuitOpen, R> =>
    Effect.flatMap(
      enter(circuits, key, settings),
      ({ circuit, trial }) =>
        Effect.onExit(effect, (exit) =>
          Effect.suspend(() => {
            if (trial) circuit.trialInFlight = false
            if (Exit.isSuccess(exit)) return transition(key, circuit, closed)
            // An interrupted call proves nothing either way; an interrupted trial lets the next call be the trial.
            if (Exit.isInterrupted(exit)) return Effect.void
            const error = Cause.failureOption(exit.cause)
            // Defects are bugs on this side, not evidence about the endpoint.
            if (Option.isNone(error)) return Effect.void
            if (!isFailure(error.value)) return transition(key, circuit, closed)
            const failures = circuit.state.consecutiveFailures + 1
            if (trial || failures >= settings.failureThreshold) return open(key, circuit, settings, failures)
            circuit.state = { _tag: "Closed", consecutiveFailures: failures }
            return Effect.void
          }))
    )

  const state = (key: string) => Effect.sync(() => circuits.get(key)?.state ?? closed)

  const states = Effect.sync(() =>
    [...circuits.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([key, c]) => ({
      key,
      state: c.state
    }))
  )

  return CircuitBreaker.of({ protect, state, states })
})

/**
 * The process-wide breaker. Provide it once, at the top of the application.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<CircuitBreaker> = Layer.effect(CircuitBreaker, make)
