/**
 * A run's progress as Server-Sent Events, with the event names of the CLI's `--json` (`run.started`,
 * `batch.committed`, `run.completed`, `run.failed`, `run.cancelled`, `run.interrupted`). The events are derived from
 * the stored run, so that any process answers for any run: a run that waits or executes in this process is read
 * again when admission announces a change (a batch committed, the run ended), with a slow safety read; a run owned
 * elsewhere is polled. An event's id is `<status version>:<n>`, `n` the committed batch count (`run.started` is 0, the
 * final event `totalBatches + 1`) and the version the run's as read, which grows with every execution and end: a
 * client that reconnects with `Last-Event-ID` gets only what it has not seen, also after the run was resumed. A
 * run waiting to execute (`Admission.waitingRuns`: for a slot here, for its runner's claim, or on a cluster
 * interrupted) is pending whatever its stored status (its last end). Heartbeat comments keep proxies
 * from closing a quiet stream. A drain ends every stream once the runs here are stopped, after a last reading: a
 * run it interrupted sends `run.interrupted`.
 *
 * @since 0.1.0
 */
import type { PersistenceError, RunNotFound } from "@quarry/core/Errors"
import { type FinishedStatus, isFinished, type Run, type RunId } from "@quarry/core/Run"
import { RunStore } from "@quarry/core/RunStore"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"

/**
 * Options of the event stream.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The id of the last event the client saw (`Last-Event-ID`, see `parseEventId`). */
  readonly lastEventId: Option.Option<EventId>
  /**
   * Which runs wait to execute, as read now (such a run is pending, whatever its stored status); default none. Read
   * before the run, so that a run claimed in between is seen executing rather than at its last end.
   */
  readonly waiting?: Effect.Effect<(run: Run) => boolean, PersistenceError> | undefined
  /** How often a run owned by another process is read. */
  readonly pollMs: number
  /** The change notices of runs executing here, when this run is one of them. */
  readonly local: Option.Option<PubSub.PubSub<RunId>>
  /** How often a local run is read when no notice came (a safety net; default 5 s). */
  readonly localPollMs?: number | undefined
  readonly heartbeatMs: number
  /**
   * Ends the stream after one last reading of the run (the server drained: the runs here were stopped, and the last
   * reading sends the final event of one that was interrupted).
   */
  readonly until: Effect.Effect<void>
}

interface State {
  readonly started: boolean
  readonly committed: number
}

/**
 * An event's id: the run's status version as read, and the committed batch count (0 for `run.started`,
 * `totalBatches + 1` for the final event). A version of `undefined` is an id of before versions (a plain number),
 * compared by its count alone.
 *
 * @since 0.1.0
 * @category models
 */
export interface EventId {
  readonly version: number | undefined
  readonly n: number
}

/**
 * The `Last-Event-ID` a client sent: `<version>:<n>`, or a plain `<n>` (ids before versions); none when unreadable.
 *
 * @since 0.1.0
 * @category decoding
 */
export const parseEventId = (header: string | undefined): Option.Option<EventId> => {
  const match = header === undefined ? null : /^(?:(\d+):)?(\d+)$/.exec(header.trim())
  if (match === null) return Option.none()
  const version = match[1] === undefined ? undefined : Number(match[1])
  const n = Number(match[2])
  return Number.isSafeInteger(n) && (version === undefined || Number.isSafeInteger(version)) ?
    Option.some({ version, n }) :
    Option.none()
}

/** Whether the event `id` comes after `seen`. */
const isAfter = (id: EventId, seen: EventId) =>
  seen.version === undefined || id.version === seen.version ?
    id.n > seen.n :
    (id.version ?? 0) > seen.version

/**
 * Whether `seen` is the final event of the run as it is: a client that saw it has nothing more to wait for.
 *
 * @since 0.1.0
 * @category predicates
 */
export const sawEnd = (run: Run, seen: EventId): boolean =>
  isFinished(run.status) && !isAfter({ version: run.statusVersion, n: run.plan.totalBatches + 1 }, seen)

interface Event {
  readonly id: EventId
  readonly name: string
  readonly fields: Readonly<Record<string, unknown>>
}

/** The final event of a run, by the status it ended in. */
const terminal: Record<FinishedStatus, string> = {
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
const step = (state: State, [run, waiting]: readonly [Run, boolean]): readonly [State, ReadonlyArray<Event>] => {
  if (run.status === "pending" || waiting) return [state, []]
  const events: Array<Event> = []
  // A run's end moved its version on by one: its started and batch events keep the version they were sent with.
  const executing = isFinished(run.status) ? run.statusVersion - 1 : run.statusVersion
  const id = (n: number): EventId => ({ version: executing, n })
  if (!state.started) {
    events.push({
      id: id(0),
      name: "run.started",
      fields: { totalBatches: run.plan.totalBatches, committedBatches: run.committedBatches }
    })
  }
  if (run.committedBatches > state.committed) {
    events.push({ id: id(run.committedBatches), name: "batch.committed", fields: progress(run) })
  }
  if (isFinished(run.status)) {
    events.push({
      id: { version: run.statusVersion, n: run.plan.totalBatches + 1 },
      name: terminal[run.status],
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
  `id: ${event.id.version}:${event.id.n}\nevent: ${event.name}\ndata: ${
    JSON.stringify({ event: event.name, time: new Date(now).toISOString(), runId, ...event.fields })
  }\n\n`

const encoder = new TextEncoder()

/**
 * When to read a local run: at once, on every notice for it, and every `safetyMs`. Subscribed before the first read,
 * so no change between the two is missed; notices that arrive while a read is under way collapse into one.
 */
const localTriggers = (runId: RunId, changes: PubSub.PubSub<RunId>, safetyMs: number) =>
  Stream.unwrapScoped(Effect.map(PubSub.subscribe(changes), (notices) =>
    Stream.merge(
      Stream.fromQueue(notices).pipe(Stream.filter((id) => id === runId)),
      Stream.tick(safetyMs).pipe(Stream.as(runId))
    ).pipe(Stream.buffer({ capacity: 1, strategy: "sliding" }))))

/**
 * The event stream of a run, as bytes, ending after the run's final event (or after a last reading once `until`
 * completes).
 *
 * @since 0.1.0
 * @category streams
 */
export const stream = (runId: RunId, options: Options): Stream.Stream<Uint8Array, never, RunStore> => {
  // Every reading derives its events afresh from the stored run; those the client saw are filtered out.
  const initial: State = { started: false, committed: 0 }
  const read = Effect.zipWith(
    options.waiting ?? Effect.succeed(() => false),
    Effect.flatMap(RunStore, (store) => store.getRun(runId)),
    (waiting, run) => [run, waiting(run)] as const
  )
  const triggered: Stream.Stream<readonly [Run, boolean], PersistenceError | RunNotFound, RunStore> = Option.match(
    options.local,
    {
      onNone: () => Stream.repeatEffectWithSchedule(read, Schedule.spaced(options.pollMs)),
      onSome: (changes) => Stream.mapEffect(localTriggers(runId, changes, options.localPollMs ?? 5_000), () => read)
    }
  )
  const readings = Stream.concat(Stream.interruptWhen(triggered, options.until), Stream.fromEffect(read))
  const events = readings.pipe(
    Stream.mapAccum(initial, step),
    Stream.mapConcatChunk((events) => Chunk.fromIterable(events)),
    // The run's end ends the stream even when the client saw it already (a reconnect after the final event).
    Stream.takeUntil(isEnd),
    Stream.filter((event) =>
      Option.match(options.lastEventId, { onNone: () => true, onSome: (seen) => isAfter(event.id, seen) })
    ),
    Stream.mapEffect((event) =>
      Effect.map(Effect.clockWith((clock) => clock.currentTimeMillis), (now) => encode(runId, event, now))
    ),
    Stream.catchAll((error) =>
      Stream.make(`event: error\ndata: ${JSON.stringify({ event: "error", runId, error: error._tag })}\n\n`)
    )
  )
  const heartbeats = Stream.tick(options.heartbeatMs).pipe(Stream.drop(1), Stream.as(": heartbeat\n\n"))
  // A comment first: the response's headers go out with it, so a client of a run that waits for a slot (no event
  // yet) knows at once that its stream is open.
  return Stream.merge(events, heartbeats, { haltStrategy: "left" }).pipe(
    Stream.prepend(Chunk.of(": connected\n\n")),
    Stream.map((text) => encoder.encode(text))
  )
}
