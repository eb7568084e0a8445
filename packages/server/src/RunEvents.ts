/**
 * A run's progress as Server-Sent Events, with the event names of the CLI's `--json` (`run.started`,
 * `batch.committed`, `run.completed`, `run.failed`, `run.cancelled`, `run.interrupted`). The events are derived from
 * the stored run, polled, so that any process answers for any run. Event ids are the committed batch count
 * (`run.started` is 0, the final event `totalBatches + 1`): a client that reconnects with `Last-Event-ID` gets only
 * what it has not seen. Heartbeat comments keep proxies from closing a quiet stream.
 *
 * @since 0.1.0
 */
import type { PersistenceError, RunNotFound } from "@quarry/core/Errors"
import type { Run, RunId } from "@quarry/core/Run"
import { RunStore } from "@quarry/core/RunStore"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"

/**
 * Options of the event stream.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The id of the last event the client saw (`Last-Event-ID`). */
  readonly lastEventId: Option.Option<number>
  readonly pollMs: number
  readonly heartbeatMs: number
  /** Ends the stream (the server is draining). */
  readonly until: Effect.Effect<void>
}

interface State {
  readonly started: boolean
  readonly committed: number
}

interface Event {
  readonly id: number
  readonly name: string
  readonly fields: Readonly<Record<string, unknown>>
}

const terminal: Partial<Record<Run["status"], string>> = {
  completed: "run.completed",
  failed: "run.failed",
  cancelled: "run.cancelled",
  interrupted: "run.interrupted"
}

const progress = (run: Run) => ({
  committedBatches: run.committedBatches,
  totalBatches: run.plan.totalBatches,
  skippedBatches: run.skippedBatches,
  entityMentions: run.entityMentions,
  relations: run.relations
})

/** The events a new reading of the run adds to what was already sent. */
const step = (state: State, run: Run): readonly [State, ReadonlyArray<Event>] => {
  if (run.status === "pending") return [state, []]
  const events: Array<Event> = []
  if (!state.started) {
    events.push({
      id: 0,
      name: "run.started",
      fields: { totalBatches: run.plan.totalBatches, committedBatches: run.committedBatches }
    })
  }
  if (run.committedBatches > state.committed) {
    events.push({ id: run.committedBatches, name: "batch.committed", fields: progress(run) })
  }
  const end = terminal[run.status]
  if (end !== undefined) {
    events.push({
      id: run.plan.totalBatches + 1,
      name: end,
      fields: {
        ...progress(run),
        ...(run.status === "completed" ?
          {
            artifact: Option.getOrNull(
              Option.map(run.artifact, (a) => ({ format: a.format, bytes: a.bytes, sha256: a.sha256 }))
            )
          } :
          {}),
        ...(run.status === "failed" ?
          {
            reason: Option.getOrNull(run.failureReason),
            error: Option.getOrNull(run.lastError)
          } :
          {})
      }
    })
  }
  return [{ started: true, committed: Math.max(state.committed, run.committedBatches) }, events]
}

const isEnd = (event: Event) => event.name !== "run.started" && event.name !== "batch.committed"

/**
 * One event in the SSE wire format.
 *
 * @since 0.1.0
 * @category encoding
 */
export const encode = (runId: RunId, event: Event, now: number): string =>
  `id: ${event.id}\nevent: ${event.name}\ndata: ${
    JSON.stringify({ event: event.name, time: new Date(now).toISOString(), runId, ...event.fields })
  }\n\n`

const encoder = new TextEncoder()

/**
 * The event stream of a run, as bytes, ending after the run's final event (or when `until` completes).
 *
 * @since 0.1.0
 * @category streams
 */
export const stream = (runId: RunId, options: Options): Stream.Stream<Uint8Array, never, RunStore> => {
  const seen = Option.getOrElse(options.lastEventId, () => -1)
  const initial: State = { started: seen >= 0, committed: Math.max(0, seen) }
  const readings: Stream.Stream<Run, PersistenceError | RunNotFound, RunStore> = Stream
    .repeatEffectWithSchedule(Effect.flatMap(RunStore, (store) => store.getRun(runId)), Schedule.spaced(options.pollMs))
  const events = readings.pipe(
    Stream.mapAccum(initial, step),
    Stream.mapConcatChunk((events) => Chunk.fromIterable(events)),
    Stream.filter((event) => event.id > seen),
    Stream.takeUntil(isEnd),
    Stream.mapEffect((event) =>
      Effect.map(Effect.clockWith((clock) => clock.currentTimeMillis), (now) => encode(runId, event, now))
    ),
    Stream.catchAll((error) =>
      Stream.make(`event: error\ndata: ${JSON.stringify({ event: "error", runId, error: error._tag })}\n\n`)
    )
  )
  const heartbeats = Stream.tick(options.heartbeatMs).pipe(Stream.drop(1), Stream.as(": heartbeat\n\n"))
  return Stream.merge(events, heartbeats, { haltStrategy: "left" }).pipe(
    Stream.interruptWhen(options.until),
    Stream.map((text) => encoder.encode(text))
  )
}
