/**
 * Compensation (saga-style undo): extractors and applications record steps that undo what a run did outside the
 * database (delete an uploaded file, release a remote job, remove a partial artifact). A step is a row of the run
 * (`RunStore.addCompensation`): a handler name and a JSON payload, never a closure, so that it survives a crash and
 * any process that registers the handler (the CLI's `quarry cancel --purge`, a service) can run it.
 *
 * When a run is cancelled the steps not done yet run newest first, all of them even when some fail, and each outcome
 * is stored. A failing step never hides why the run stopped: `CompensationFailed` carries both, and the run's
 * compensation state is `compensation_failed` until running the steps again (only the pending and failed ones)
 * succeeds. Handlers may run more than once (a process can die between a handler's success and its record), so they
 * must be idempotent: undoing what is already undone succeeds.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Extractor from "./Extractor.js"
import { RunId } from "./Run.js"
import { type CompensationStep, RunStore } from "./RunStore.js"

/**
 * A step to record: which handler undoes it, with what payload (anything `JSON.stringify` keeps).
 *
 * @since 0.1.0
 * @category models
 */
export interface Step {
  readonly handler: string
  /** Shown in errors and in the run's status, e.g. `delete upload file-123`. */
  readonly name: string
  readonly payload?: unknown
}

/**
 * The code that undoes steps of one kind. `undo` receives the step's payload as parsed from its JSON.
 *
 * @since 0.1.0
 * @category models
 */
export interface Handler {
  readonly name: string
  readonly undo: (payload: unknown, runId: RunId) => Effect.Effect<void, unknown>
}

/**
 * The handlers this process can run, by name. Empty unless provided (`layer`): a step whose handler is missing
 * fails, it is never skipped.
 *
 * @since 0.1.0
 * @category tags
 */
export class Registry extends Context.Reference<Registry>()("@quarry/core/Compensation/Registry", {
  defaultValue: (): { readonly handlers: ReadonlyMap<string, Handler> } => ({ handlers: new Map() })
}) {}

/**
 * The registry of these handlers (an extractor's and the application's); a name given twice is a defect.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (handlers: ReadonlyArray<Handler>): Layer.Layer<Registry> =>
  Layer.effect(
    Registry,
    Effect.suspend(() => {
      const byName = new Map<string, Handler>()
      for (const handler of handlers) {
        if (byName.has(handler.name)) return Effect.dieMessage(`compensation handler "${handler.name}" given twice`)
        byName.set(handler.name, handler)
      }
      return Effect.succeed({ handlers: byName })
    })
  )

/**
 * Some compensation steps failed. `stoppedBecause` is why the run was being undone (kept, never replaced). The
 * message is also stored as the run's last error, so it names the way on for the CLI and for a server alike.
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
      `steps failed: ${failed}; fix the cause and run them again: quarry cancel ${this.runId} --purge, or ` +
      `DELETE /v1/runs/${this.runId} on a server`
  }
}

/**
 * Records a step of the run, durably, before the action it undoes should be taken.
 *
 * @since 0.1.0
 * @category operations
 */
export const register = Effect.fn("Compensation.register")(function*(runId: RunId, step: Step) {
  const store = yield* RunStore
  const payload = JSON.stringify(step.payload ?? null)
  return yield* store.addCompensation(runId, { handler: step.handler, name: step.name, payload })
})

/**
 * Runs the run's steps that are not done (pending or failed), newest first, all of them even when some fail, and
 * stores each outcome; fails with `CompensationFailed` naming each failed step and `stoppedBecause`.
 *
 * @since 0.1.0
 * @category operations
 */
export const run = Effect.fn("Compensation.run")(function*(runId: RunId, stoppedBecause: string) {
  const store = yield* RunStore
  const handlers = yield* handlersFor(runId)
  const steps = yield* store.compensationSteps(runId).pipe(
    Effect.mapError((e) =>
      new CompensationFailed({ runId, stoppedBecause, failures: [{ step: "(reading the steps)", error: e.message }] })
    )
  )
  const failures: Array<{ readonly step: string; readonly error: string }> = []
  for (const step of steps.filter((s) => s.state !== "done").reverse()) {
    const error = yield* undo(handlers, runId, step)
    const settled = yield* Effect.either(
      store.settleCompensation(runId, step.seq, error === undefined ? { _tag: "done" } : { _tag: "failed", error })
    )
    if (error !== undefined) failures.push({ step: step.name, error })
    else if (settled._tag === "Left") {
      // It ran, but stays pending: the next run repeats it (handlers are idempotent).
      failures.push({ step: step.name, error: `undone, but the outcome was not recorded: ${settled.left.message}` })
    }
  }
  if (failures.length > 0) return yield* new CompensationFailed({ runId, stoppedBecause, failures })
})

/** The application's handlers (`Registry`), then those of the run's extractor when this process can build it. */
const handlersFor = (runId: RunId) =>
  Effect.gen(function*() {
    const { handlers } = yield* Registry
    const extractors = yield* Effect.serviceOption(Extractor.Registry)
    if (Option.isNone(extractors)) return handlers
    const extractor = yield* Effect.exit(
      Effect.flatMap(RunStore, (store) => store.getRun(runId)).pipe(
        Effect.flatMap((run) => extractors.value.get(run.plan.extractor.name))
      )
    )
    if (Exit.isFailure(extractor)) return handlers
    const all = new Map((extractor.value.compensationHandlers ?? []).map((h) => [h.name, h] as const))
    for (const [name, handler] of handlers) all.set(name, handler)
    return all
  })

/** Runs one step; the error message when it failed. */
const undo = (handlers: ReadonlyMap<string, Handler>, runId: RunId, step: CompensationStep) =>
  Effect.gen(function*() {
    const handler = handlers.get(step.handler)
    if (handler === undefined) {
      return `no compensation handler "${step.handler}" is registered in this process (the extractor or ` +
        `application that recorded the step must provide it)`
    }
    const exit = yield* Effect.exit(
      Effect.suspend(() => handler.undo(JSON.parse(step.payload), runId))
    )
    return exit._tag === "Failure" ? describe(exit.cause) : undefined
  })

/**
 * A run's compensation state: `none` (no steps), `pending` (steps not run yet), `done`, or `compensation_failed`
 * (some step failed at its last attempt).
 *
 * @since 0.1.0
 * @category models
 */
export type State = "none" | "pending" | "done" | "compensation_failed"

/**
 * The compensation state of these steps.
 *
 * @since 0.1.0
 * @category models
 */
export const stateOf = (steps: ReadonlyArray<CompensationStep>): State =>
  steps.length === 0 ?
    "none" :
    steps.some((s) => s.state === "failed") ?
    "compensation_failed" :
    steps.some((s) => s.state === "pending") ?
    "pending" :
    "done"

const describe = (cause: Cause.Cause<unknown>): string => {
  const squashed = Cause.squash(cause)
  // `Effect.try` without `catch` wraps what was thrown; its own message says nothing.
  const failure = Cause.isUnknownException(squashed) ? squashed.error : squashed
  return failure instanceof Error ? failure.message : String(failure)
}
