/**
 * The lease an execution holds on its run: who holds it and for how long without a heartbeat. One value, passed
 * whole to every write that must come from the lease holder, so that what identifies the holder can change in one
 * place.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import { randomBytes } from "node:crypto"
import * as os from "node:os"
import type { PersistenceError, RunLocked } from "./Errors.js"
import type { RunId } from "./Run.js"
import { RunStore } from "./RunStore.js"

/**
 * The lease of one execution.
 *
 * @since 0.1.0
 * @category models
 */
export interface Lease {
  readonly runId: RunId
  /** Who holds the lease. */
  readonly owner: string
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
 * The lease an execution asks for: the given owner and length, or a fresh owner id and the default length.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  runId: RunId,
  options: { readonly owner?: string | undefined; readonly leaseMs?: number | undefined } = {}
): Lease => ({ runId, owner: options.owner ?? makeOwnerId(), leaseMs: options.leaseMs ?? defaultLeaseMs })

/**
 * Renews the lease every third of its length, forever, handing each renewal's answer to `onRenewed`. Fails when the
 * lease was lost (`RunLocked`), when storage fails, or when `onRenewed` does.
 *
 * @since 0.1.0
 * @category operations
 */
export const heartbeat = <E>(
  lease: Lease,
  onRenewed: (renewal: { readonly cancelRequested: boolean }) => Effect.Effect<void, E>
): Effect.Effect<never, E | RunLocked | PersistenceError, RunStore> => {
  const interval = Math.max(1, Math.floor(lease.leaseMs / 3))
  return Effect.flatMap(RunStore, (store) =>
    store.heartbeat(lease.runId, lease.owner, lease.leaseMs).pipe(
      Effect.flatMap(onRenewed),
      Effect.repeat(Schedule.spaced(interval)),
      Effect.delay(interval),
      Effect.zipRight(Effect.never)
    ))
}
