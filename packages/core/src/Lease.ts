/**
 * The lease an execution holds on its run: who holds it and for how long without a heartbeat. One value, passed
 * whole to every write that must come from the lease holder, so that what identifies the holder can change in one
 * place.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { randomBytes } from "node:crypto"
import * as os from "node:os"
import type { PersistenceError, RunCancelled, RunLocked } from "./Errors.js"
import type { RunId } from "./Run.js"
import { type ClaimOptions, keepLease, type LeaseHolder, RunStore } from "./RunStore.js"

/**
 * The lease of one execution, once its claim succeeded.
 *
 * @since 0.1.0
 * @category models
 */
export interface Lease {
  readonly runId: RunId
  /** The claim's owner name and random token, presented by every write of the execution. */
  readonly holder: LeaseHolder
  /** How long the lease lasts without a heartbeat. */
  readonly leaseMs: number
}

/**
 * The default lease length.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultLeaseMs = 30_000

/**
 * A lease owner id naming this host and process, unique per call.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeOwnerId = (): string => `${os.hostname()}:${process.pid}:${randomBytes(4).toString("hex")}`

/**
 * Claims the run for the given owner (default: a fresh owner id) and lease length (default `defaultLeaseMs`). The
 * lease is absent when the run is completed and was not reopened. With `expectedVersion`, a cancel that landed since
 * the caller read the run sticks (`RunCancelled`).
 *
 * @since 0.1.0
 * @category operations
 */
export const claim = (
  runId: RunId,
  options: { readonly owner?: string | undefined; readonly leaseMs?: number | undefined },
  claimOptions: ClaimOptions
) =>
  Effect.gen(function*() {
    const leaseMs = options.leaseMs ?? defaultLeaseMs
    const claimed = yield* (yield* RunStore).claim(runId, options.owner ?? makeOwnerId(), leaseMs, claimOptions)
    return { run: claimed.run, lease: Option.map(claimed.holder, (holder): Lease => ({ runId, holder, leaseMs })) }
  })

/**
 * Keeps the lease alive (`RunStore.keepLease`: renewals every third of its length, transient failures retried while
 * the lease is still valid). Fails with `RunLocked` when it was lost and `RunCancelled` when a renewal finds a
 * cancel request; never succeeds.
 *
 * @since 0.1.0
 * @category operations
 */
export const keepAlive = (lease: Lease): Effect.Effect<never, RunLocked | RunCancelled | PersistenceError, RunStore> =>
  Effect.flatMap(RunStore, (store) => keepLease(store, lease.runId, lease.holder, lease.leaseMs))
