/**
 * One batch's extraction as a request that another process can serve: the owner of a run sends `Request` (the
 * batch's chunks and the exact extractor identity the run was planned with), a process sharing the run's database
 * extracts it with its own extractor and answers `Reply` (the output or the `ExtractorError`, plus the usage and
 * status the extractor reported on the way). `distribute` wraps an extractor so that the workflow, its ordering,
 * fencing and commits are untouched: only where `extract` runs changes. Transport-agnostic; `quarry serve
 * --cluster --distribute` carries it over `@effect/cluster`.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { Chunk } from "./Chunking.js"
import * as Compensation from "./Compensation.js"
import { ExtractorError } from "./Errors.js"
import * as Extractor from "./Extractor.js"
import * as FairScheduler from "./FairScheduler.js"
import { classSegments, seeKnown } from "./internal/entities.js"
import * as Ontology from "./Ontology.js"
import { type Run, RunId } from "./Run.js"
import { knownEntitiesReader, type KnownEntity, RunStore } from "./RunStore.js"

/**
 * The extractor a batch must be extracted with: its name, version and configuration hash, as the run stored them.
 *
 * @since 0.1.0
 * @category models
 */
export const ExtractorRef = Schema.Struct({ name: Schema.String, version: Schema.String, configHash: Schema.String })

/**
 * A batch to extract for a run.
 *
 * @since 0.1.0
 * @category models
 */
export const Request = Schema.Struct({
  runId: RunId,
  batchIndex: Schema.Int,
  chunks: Schema.Array(Chunk),
  extractor: ExtractorRef
})

/**
 * @since 0.1.0
 * @category models
 */
export type Request = typeof Request.Type

/**
 * The extractor's answer: its output or its error (with `retryable` as the extractor said), and the usage and status
 * it reported during the call, in order, so that the owner records them as if the call had been local.
 *
 * @since 0.1.0
 * @category models
 */
export const Reply = Schema.Struct({
  result: Schema.Union(
    Schema.TaggedStruct("Extracted", { output: Extractor.BatchOutput }),
    Schema.TaggedStruct("Failed", { error: ExtractorError })
  ),
  usage: Schema.Array(Extractor.Usage),
  statuses: Schema.Array(Schema.Record({ key: Schema.String, value: Schema.String }))
})

/**
 * @since 0.1.0
 * @category models
 */
export type Reply = typeof Reply.Type

/**
 * The batch was not extracted elsewhere: the serving process does not have the run's extractor at the run's version
 * and configuration, cannot read the run, or could not be reached. The owner then extracts the batch itself.
 *
 * @since 0.1.0
 * @category errors
 */
export class ExtractionRefused extends Schema.TaggedError<ExtractionRefused>()("ExtractionRefused", {
  runId: Schema.String,
  batchIndex: Schema.Int,
  reason: Schema.String
}) {
  override get message() {
    return `batch ${this.batchIndex} of run ${this.runId} was not extracted remotely: ${this.reason}`
  }
}

/** A small insertion-ordered cache: the oldest entry goes first when it is full. */
const boundedMap = <V>(capacity: number) => {
  const map = new Map<string, V>()
  return {
    get: (key: string) => map.get(key),
    set: (key: string, value: V) => {
      map.set(key, value)
      if (map.size > capacity) map.delete(map.keys().next().value!)
    }
  }
}

/** The extractor of this process must be the very one the run was planned with, or nothing is extracted. */
const checkIdentity = (request: Request, extractor: Extractor.Extractor) => {
  const wanted = request.extractor
  return extractor.version === wanted.version && extractor.configHash === wanted.configHash ?
    Effect.void :
    Effect.fail(
      new ExtractionRefused({
        runId: request.runId,
        batchIndex: request.batchIndex,
        reason: `this process has extractor ${extractor.name} ${extractor.version} (configuration ` +
          `${extractor.configHash}); the run needs ${wanted.version} (configuration ${wanted.configHash})`
      })
    )
}

/** Known entities with the IRIs the merge gives them: their classes seen as the merge sees them. */
const knownWithIris = (rows: ReadonlyArray<KnownEntity>): ReadonlyArray<Extractor.KnownEntity> => {
  const segments = classSegments()
  seeKnown(segments, rows)
  return rows.map((e) => ({ label: e.label, type: e.type, iri: segments.iri(e.label, e.type) }))
}

/** What the serving side reads for a batch (its run, ontology, known entities), cached across the run's batches. */
const makeReads = (store: RunStore["Type"]) => {
  const ontologies = boundedMap<Ontology.Ontology>(16)
  const readers = boundedMap<Effect.Effect.Success<ReturnType<typeof knownEntitiesReader>>>(64)

  const ontologyOf = (request: Request, sha256: Option.Option<string>) =>
    Effect.gen(function*() {
      if (Option.isNone(sha256)) return Option.none<Ontology.Ontology>()
      const cached = ontologies.get(sha256.value)
      if (cached !== undefined) return Option.some(cached)
      const source = yield* store.readOntologySource(sha256.value)
      const parsed = Option.isNone(source) ? undefined : yield* Effect.option(Ontology.parse(source.value))
      if (parsed === undefined || Option.isNone(parsed) || parsed.value.sha256 !== sha256.value) {
        return yield* refuse(request, `the run's ontology ${sha256.value} cannot be read here`)
      }
      ontologies.set(sha256.value, parsed.value)
      return parsed
    })

  // A run's plan never changes and its committed count only grows: read it again only when it is behind.
  const runs = boundedMap<Run>(64)
  const runOf = (request: Request) =>
    Effect.gen(function*() {
      // The owner sends batch i once every batch before i - concurrency + 1 is committed (see `Workflow`): the
      // entities of those batches are what the batch may see, exactly as on the owner.
      const horizonOf = (run: Run) => request.batchIndex - run.plan.concurrency + 1
      const cached = runs.get(request.runId)
      if (cached !== undefined && horizonOf(cached) <= cached.committedBatches) {
        return { run: cached, horizon: horizonOf(cached) }
      }
      const run = yield* store.getRun(request.runId).pipe(
        Effect.mapError((error) => new ExtractionRefused({ ...where(request), reason: error.message }))
      )
      runs.set(request.runId, run)
      const horizon = horizonOf(run)
      if (horizon > run.committedBatches) {
        return yield* refuse(request, `batches before ${horizon} are not all committed yet`)
      }
      return { run, horizon }
    })

  const readerOf = (runId: RunId) =>
    Effect.gen(function*() {
      const cached = readers.get(runId)
      if (cached !== undefined) return cached
      const reader = yield* knownEntitiesReader(store, runId)
      readers.set(runId, reader)
      return reader
    })

  return { ontologyOf, runOf, readerOf }
}

/**
 * Makes the serving side: extracts a requested batch with this process's registry, reading what else the extractor
 * needs (ontology, entities known to the run) from the run's store. Ontologies and known-entity readers are cached
 * per process, so a run's batches do not parse its ontology or read its entities from the start each time.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeServer = Effect.gen(function*() {
  const registry = yield* Extractor.Registry
  const store = yield* RunStore
  const { ontologyOf, readerOf, runOf } = makeReads(store)

  const serve = Effect.fnUntraced(function*(request: Request) {
    const extractor = yield* registry.get(request.extractor.name).pipe(
      Effect.mapError((error) => new ExtractionRefused({ ...where(request), reason: error.message }))
    )
    yield* checkIdentity(request, extractor)
    const { horizon, run } = yield* runOf(request)
    const ontology = yield* Effect.catchTag(
      ontologyOf(request, run.plan.ontologySha256),
      "PersistenceError",
      (error) => refuse(request, error.message)
    )
    const reader = yield* readerOf(request.runId)
    const usage: Array<Extractor.Usage> = []
    const statuses: Array<Readonly<Record<string, string>>> = []
    const result = yield* Effect.either(Extractor.extractBatch(extractor, {
      runId: request.runId,
      batchIndex: request.batchIndex,
      chunks: request.chunks,
      ontology,
      knownEntities: horizon <= 0 ?
        Effect.succeed([]) :
        Effect.map(reader(horizon), knownWithIris),
      recordUsage: (u) => Effect.sync(() => void usage.push(u)),
      reportStatus: (status) => Effect.sync(() => void statuses.push(status)),
      compensate: (step) =>
        Compensation.register(request.runId, step).pipe(
          Effect.asVoid,
          Effect.catchTag("RunNotFound", Effect.die), // read above
          Effect.provideService(RunStore, store)
        )
    }))
    return {
      result: result._tag === "Right" ?
        { _tag: "Extracted" as const, output: result.right } :
        { _tag: "Failed" as const, error: result.left },
      usage,
      statuses
    } satisfies Reply
  })
  // As in `Workflow.execute`: a synchronous extractor (the offline one) must let the event loop turn, or the runner's
  // timers starve (its shard locks expired under a served offline batch, and the runner lost its shards).
  return (request: Request): Effect.Effect<Reply, ExtractionRefused> =>
    Effect.withScheduler(serve(request), FairScheduler.shared)
})

const where = (request: Request) => ({ runId: request.runId, batchIndex: request.batchIndex })

const refuse = (request: Request, reason: string) => Effect.fail(new ExtractionRefused({ ...where(request), reason }))

/**
 * Sends a request to whichever process serves it and answers its reply; an `ExtractionRefused` makes the owner
 * extract the batch itself.
 *
 * @since 0.1.0
 * @category models
 */
export type Send = (request: Request) => Effect.Effect<Reply, ExtractionRefused>

/**
 * The extractor as the owner of a run uses it: the same name, version, configuration and compensation handlers, but
 * each batch is sent away. The reply's usage and statuses are recorded here as the remote call reported them, then
 * its output (or its error, retryable or not as the extractor said) is the call's. A refused batch (another version
 * over there, an unreachable runner) is extracted here, so an output never comes from another version.
 *
 * @since 0.1.0
 * @category constructors
 */
export const distribute = (
  extractor: Extractor.Extractor,
  send: Send,
  onRefused: (refused: ExtractionRefused) => Effect.Effect<void> = (refused) => Effect.logWarning(refused.message)
): Extractor.Extractor => ({
  ...extractor,
  extract: (input) =>
    send({
      runId: input.runId,
      batchIndex: input.batchIndex,
      chunks: input.chunks,
      extractor: { name: extractor.name, version: extractor.version, configHash: extractor.configHash }
    }).pipe(
      Effect.matchEffect({
        onFailure: (refused) => Effect.zipRight(onRefused(refused), extractor.extract(input)),
        onSuccess: (reply) =>
          Effect.gen(function*() {
            for (const usage of reply.usage) if (input.recordUsage !== undefined) yield* input.recordUsage(usage)
            for (const status of reply.statuses) if (input.reportStatus !== undefined) yield* input.reportStatus(status)
            return reply.result._tag === "Extracted" ? reply.result.output : yield* Effect.fail(reply.result.error)
          })
      })
    )
})

/**
 * A registry whose extractors are `distribute`d through `send`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const distributeRegistry = (
  registry: Extractor.Registry["Type"],
  send: Send,
  onRefused?: (refused: ExtractionRefused) => Effect.Effect<void>
): Extractor.Registry["Type"] => ({
  names: registry.names,
  get: (name) => Effect.map(registry.get(name), (extractor) => distribute(extractor, send, onRefused))
})
