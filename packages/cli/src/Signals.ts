/**
 * The process's SIGINT and SIGTERM after the first. The first interrupts the program (`runMain`'s handler); by
 * default the next one exits at once (`main.ts`), but a command may take it for a while to end a wait of its own
 * (`serve`'s drain delay), after which the default holds again.
 *
 * @since 0.1.0
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Scope from "effect/Scope"

// Signals are the process's, so the one taker is too.
let taker: ((signal: NodeJS.Signals) => void) | undefined

/**
 * Gives `signal` to the command that takes the next one, if any, and answers whether one did (it then takes no
 * other). For the entry point's signal listener, which otherwise exits.
 *
 * @since 0.1.0
 * @category signals
 */
export const handOver = (signal: NodeJS.Signals): boolean => {
  const take = taker
  if (take === undefined) return false
  taker = undefined
  take(signal)
  return true
}

/**
 * Until the scope closes, the next SIGINT or SIGTERM completes the returned `Deferred` instead of exiting the
 * process; the one after that exits at once again.
 *
 * @since 0.1.0
 * @category signals
 */
export const takeNext: Effect.Effect<Deferred.Deferred<NodeJS.Signals>, never, Scope.Scope> = Effect.flatMap(
  Deferred.make<NodeJS.Signals>(),
  (next) => {
    const take = (signal: NodeJS.Signals) => Deferred.unsafeDone(next, Exit.succeed(signal))
    return Effect.acquireRelease(
      Effect.sync(() => {
        taker = take
        return next
      }),
      () =>
        Effect.sync(() => {
          if (taker === take) taker = undefined
        })
    )
  }
)
