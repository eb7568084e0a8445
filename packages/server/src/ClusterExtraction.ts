/**
 * `quarry serve --cluster --distribute`: a run's batch extractions spread over the runners. The extraction of batch
 * `i` of run `r` is the entity `BatchExtraction` keyed `r/i`, so the shard of the key picks the runner; its one
 * message, `Extract`, is volatile (not stored: the run's owner holds the request and sends it again or extracts the
 * batch itself when no reply comes). The owner's `Workflow` is unchanged: its extractor is wrapped
 * (`BatchExtraction.distribute`), so ordering, commits and fencing stay on the owner.
 *
 * @since 0.1.0
 */
import * as Entity from "@effect/cluster/Entity"
import type * as Sharding from "@effect/cluster/Sharding"
import * as Rpc from "@effect/rpc/Rpc"
import * as BatchExtraction from "@quarry/core/BatchExtraction"
import * as Extractor from "@quarry/core/Extractor"
import type { RunStore } from "@quarry/core/RunStore"
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"

/**
 * Extracts one batch on the runner that owns its key; answers the output or the extractor's error.
 *
 * @since 0.1.0
 * @category rpcs
 */
export const Extract = Rpc.make("Extract", {
  payload: BatchExtraction.Request,
  success: BatchExtraction.Reply,
  error: BatchExtraction.ExtractionRefused
})

/**
 * The entity: one per (run, batch).
 *
 * @since 0.1.0
 * @category entities
 */
export const BatchExtractionEntity = Entity.make("BatchExtraction", [Extract])

/** The batches a node extracted for runs it does not necessarily own, and the batches it sent away or kept. */
const served = Metric.counter("quarry_distributed_extractions_served", {
  description: "With --cluster: batch extractions this runner served for a run's owner (any runner, itself included)",
  incremental: true
})
const fallbacks = Metric.counter("quarry_distributed_extractions_fallback", {
  description: "With --distribute: batches this owner extracted itself because no runner could (refused, no reply)",
  incremental: true
})

/**
 * Serves `Extract` on every cluster runner (with or without `--distribute`: a runner serves the owners that
 * distribute), with this process's own extractors.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<never, never, Sharding.Sharding | RunStore | Extractor.Registry> = Layer.unwrapEffect(
  // Made once per runner, not per entity (one per batch): its caches of ontologies and known entities are shared.
  Effect.map(BatchExtraction.makeServer, (serve) =>
    BatchExtractionEntity.toLayer(
      Effect.succeed(BatchExtractionEntity.of({
        Extract: (envelope) => Effect.tap(serve(envelope.payload), () => Metric.increment(served))
      })),
      // One entity per batch: let it go soon after its one message.
      { maxIdleTime: Duration.seconds(5) }
    ))
)

/**
 * How an owner sends its batches: to the entity keyed `run/batch`, waiting at most `timeoutMs` for the reply. A
 * runner that dies while extracting makes the cluster send the request again to the shard's next owner; anything
 * else that ends without a reply (the serving runner stopped, no reply in time) is `ExtractionRefused`, and the
 * owner extracts the batch itself.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeSend = (timeoutMs: number) =>
  Effect.map(BatchExtractionEntity.client, (client): BatchExtraction.Send => (request) => {
    const refused = (reason: string) =>
      new BatchExtraction.ExtractionRefused({ runId: request.runId, batchIndex: request.batchIndex, reason })
    return client(`${request.runId}/${request.batchIndex}`).Extract(request).pipe(
      Effect.timeoutFail({
        duration: Duration.millis(timeoutMs),
        onTimeout: () => refused(`no reply within ${timeoutMs} ms`)
      }),
      Effect.catchAllCause((cause) =>
        Effect.fail(
          Cause.failureOption(cause).pipe(
            (failure) =>
              failure._tag === "Some" && failure.value._tag === "ExtractionRefused" ?
                failure.value :
                refused(
                  Cause.isInterruptedOnly(cause) ?
                    "the runner extracting it stopped" :
                    `the cluster could not deliver it (${Cause.squash(cause)})`
                )
          )
        )
      )
    )
  })

/**
 * The registry a distributing owner's workflows use: the local registry's extractors, each batch sent through the
 * cluster. The send is set once the runner is up (`provideSend`): the workflow manager is built before the runner
 * (it must outlive it on shutdown), and no run executes before the runner delivers it.
 *
 * @since 0.1.0
 * @category constructors
 */
export const distributedRegistry = (
  local: Extractor.Registry["Type"],
  send: Deferred.Deferred<BatchExtraction.Send>
): Extractor.Registry["Type"] =>
  BatchExtraction.distributeRegistry(
    local,
    (request) => Effect.flatMap(Deferred.await(send), (f) => f(request)),
    (refused) => Effect.zipRight(Metric.increment(fallbacks), Effect.logWarning(refused.message))
  )

/**
 * Completes `send` with the cluster client once the runner is built.
 *
 * @since 0.1.0
 * @category layers
 */
export const provideSend = (
  send: Deferred.Deferred<BatchExtraction.Send>,
  timeoutMs: number
): Layer.Layer<never, never, Sharding.Sharding> =>
  Layer.effectDiscard(Effect.flatMap(makeSend(timeoutMs), (f) => Deferred.succeed(send, f)))

/**
 * Provides the distributing registry over the local one.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerRegistry = (
  send: Deferred.Deferred<BatchExtraction.Send>
): Layer.Layer<Extractor.Registry, never, Extractor.Registry> =>
  Layer.effect(Extractor.Registry, Effect.map(Extractor.Registry, (local) => distributedRegistry(local, send)))
