/**
 * Compensation (saga-style undo): extractors and applications register steps that undo what a run did outside the
 * database (delete uploaded files, release a remote job, remove a partial artifact). When the run is cancelled, the
 * steps run newest first, each once, and all of them run even when some fail. A failing step never hides why the
 * run stopped: `CompensationFailed` carries both, and the run records reason `compensation_failed` with both
 * messages.
 *
 * Steps live in memory with the execution that registered them: after a crash, the steps of the lost execution are
 * gone (a durable journal of steps is future work).
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import { RunId } from "./Run.js"

/**
 * One undo step.
 *
 * @since 0.1.0
 * @category models
 */
export interface Step {
  /** Shown in errors and in the run's status, e.g. `delete upload file-123`. */
  readonly name: string
  readonly undo: Effect.Effect<void, unknown>
}

/**
 * Some compensation steps failed. `stoppedBecause` is why the run was being undone (kept, never replaced).
 *
 * @since 0.1.0
 * @category errors
 */
export class CompensationFailed extends Schema.TaggedError<CompensationFailed>()("CompensationFailed", {
  runId: RunId,
  stoppedBecause: Schema.String,
  failures: Schema.Array(Schema.Struct({ step: Schema.String, error: Schema.String }))
}) {
  override get message() {
    const failed = this.failures.map((f) => `${f.step} (${f.error})`).join("; ")
    return `run "${this.runId}" stopped (${this.stoppedBecause}), and ${this.failures.length} of its compensation ` +
      `steps failed: ${failed}; undo those by hand, or fix the cause and cancel the run again`
  }
}

/**
 * The compensation steps of one execution.
 *
 * @since 0.1.0
 * @category models
 */
export interface Compensations {
  /** Registers a step; steps run in the reverse order of registration. */
  readonly register: (step: Step) => Effect.Effect<void>
  /**
   * Runs every registered step not run yet, newest first, all of them even when some fail; fails with
   * `CompensationFailed` naming each failed step and `stoppedBecause`. A step that succeeded is not run again.
   */
  readonly run: (stoppedBecause: string) => Effect.Effect<void, CompensationFailed>
}

/**
 * An empty set of compensation steps for the run.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (runId: RunId): Effect.Effect<Compensations> =>
  Effect.map(Ref.make<ReadonlyArray<Step>>([]), (steps) => ({
    register: (step) => Ref.update(steps, (all) => [...all, step]),
    run: (stoppedBecause) =>
      Effect.gen(function*() {
        const pending = [...(yield* Ref.getAndSet(steps, []))].reverse()
        const failures: Array<{ readonly step: Step; readonly error: string }> = []
        for (const step of pending) {
          const exit = yield* Effect.exit(step.undo)
          if (exit._tag === "Failure") failures.push({ step, error: describe(exit.cause) })
        }
        if (failures.length === 0) return
        // Failed steps stay registered, oldest first, so that running again retries exactly those.
        yield* Ref.update(steps, (all) => [...failures.map((f) => f.step).reverse(), ...all])
        return yield* new CompensationFailed({
          runId,
          stoppedBecause,
          failures: failures.map((f) => ({ step: f.step.name, error: f.error }))
        })
      })
  }))

const describe = (cause: Cause.Cause<unknown>): string => {
  const failure = Cause.squash(cause)
  return failure instanceof Error ? failure.message : String(failure)
}
