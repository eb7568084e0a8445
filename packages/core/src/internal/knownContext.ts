/**
 * The known-entity context of one execution (`BatchInput.knownEntities`), built incrementally so that batch i costs
 * the same whatever i is: each committed batch's entities are read from the store once and turned into context
 * entries once, and a batch is handed the execution's array itself, not a copy, when that array is exactly its
 * context (always at concurrency 1). The array is only appended to when no batch that holds it is still extracting;
 * otherwise the holders keep it unchanged and appending continues on a copy.
 */
import * as Effect from "effect/Effect"
import type { PersistenceError } from "../Errors.js"
import type * as Extractor from "../Extractor.js"
import type { RunId } from "../Run.js"
import type { RunStore } from "../RunStore.js"
import { classSegments, seeKnown } from "./entities.js"

/** A batch's context, and the release that says its extraction is over. */
export interface KnownContext {
  /** The entities first seen before `beforeBatch`, for batch `batchIndex`, in order of first appearance. */
  readonly read: (
    batchIndex: number,
    beforeBatch: number
  ) => Effect.Effect<ReadonlyArray<Extractor.KnownEntity>, PersistenceError>
  /** Batch `batchIndex` is done with what `read` gave it. */
  readonly release: (batchIndex: number) => Effect.Effect<void>
}

/** Makes the context of one execution of `runId`. */
export const make = (store: RunStore["Type"], runId: RunId): Effect.Effect<KnownContext> =>
  Effect.map(Effect.makeSemaphore(1), (lock) => {
    let entities: Array<Extractor.KnownEntity> = []
    // As the merge gives them (`ClassSegments`), so that an IRI in the context is the artifact's.
    const segments = classSegments()
    // The batches extracting with `entities` itself: while any is, it must not change.
    let holders = new Set<number>()
    // countBefore[b]: how many entities were first seen before batch b, for every b read so far.
    const countBefore: Array<number> = [0]
    const readUpTo = (beforeBatch: number) =>
      Effect.gen(function*() {
        const from = countBefore.length - 1
        if (beforeBatch <= from) return
        const rows = yield* store.knownEntities(runId, beforeBatch, from)
        if (holders.size > 0 && rows.length > 0) {
          entities = entities.slice()
          holders = new Set()
        }
        seeKnown(segments, rows)
        // Rows come in order of first batch: when a row of batch f arrives, every entity so far is from before f.
        for (const row of rows) {
          while (countBefore.length <= row.firstBatch) countBefore.push(entities.length)
          entities.push({ label: row.label, type: row.type, iri: segments.iri(row.label, row.type) })
        }
        while (countBefore.length <= beforeBatch) countBefore.push(entities.length)
      })
    return {
      read: (batchIndex, beforeBatch) =>
        lock.withPermits(1)(Effect.gen(function*() {
          yield* readUpTo(beforeBatch)
          const count = countBefore[beforeBatch] ?? 0
          if (count < entities.length) return entities.slice(0, count)
          holders.add(batchIndex)
          return entities
        })),
      release: (batchIndex) => Effect.sync(() => holders.delete(batchIndex))
    }
  })
