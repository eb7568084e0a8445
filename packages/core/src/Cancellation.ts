/**
 * How an execution learns that it must stop: a cancel requested by another process arrives with the lease's
 * heartbeat, and one requested while batches commit arrives with the checkpoint.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import { RunCancelled } from "./Errors.js"
import * as Lease from "./Lease.js"
import type { RunId } from "./Run.js"
import type { Checkpoint } from "./RunStore.js"

/**
 * Keeps the lease alive and fails with `RunCancelled` as soon as a heartbeat finds a cancel request. Race the
 * execution against it.
 *
 * @since 0.1.0
 * @category operations
 */
export const watch = (lease: Lease.Lease) => Lease.keepAlive(lease)

/**
 * Fails with `RunCancelled` when the checkpoint just written says that someone asked to cancel: the execution stops
 * at this batch boundary, with the batch committed.
 *
 * @since 0.1.0
 * @category operations
 */
export const afterCommit = (runId: RunId, checkpoint: Checkpoint): Effect.Effect<void, RunCancelled> =>
  checkpoint.cancelRequested ? new RunCancelled({ runId }) : Effect.void
