/** Leases: claiming a run with a fresh fencing token, keeping it, and releasing it when the run ends. */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { randomBytes } from "node:crypto"
import { RunCancelled } from "../../Errors.js"
import type { Artifact, RunId } from "../../Run.js"
import type * as RunStore from "../../RunStore.js"
import { lockedBy, persistence, retryDisconnects, type StoreContext } from "./context.js"
import { budgetJson, holderIsDead } from "./rows.js"

/** The lease operations of the store. */
// A namespace of short operations over one context (each reads at once), not one long function.
export const make = (ctx: StoreContext) => {
  const { getRun, me, reread, sql, touch, transaction } = ctx

  // Retried on a lost connection: a claim whose COMMIT never landed wrote nothing; one whose COMMIT landed before the
  // answer was lost left a lease nobody holds, so the retry is refused (`RunLocked`) until that lease expires.
  const claim = (runId: RunId, owner: string, leaseMs: number, options: RunStore.ClaimOptions = {}) =>
    retryDisconnects(transaction(Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      yield* touch(runId, now)
      const run = yield* getRun(runId)
      const changed = options.expectedVersion !== undefined && options.expectedVersion !== run.statusVersion
      // Cancelled since the caller read the run (e.g. while it prepared): the cancel wins.
      if (changed && run.status === "cancelled") return yield* new RunCancelled({ runId })
      if (run.status === "completed" && options.reopen !== true) {
        return { run, holder: Option.none() } satisfies RunStore.Claimed
      }
      if (
        run.status === "running" && Option.isSome(run.lease) && run.lease.value.expiresAt > now &&
        !holderIsDead(yield* ctx.readHolder(runId))
      ) {
        return yield* lockedBy(run)
      }
      // Its cancel was requested while it executed, and its holder stopped before honouring it (died, or paused past
      // its lease): the cancel wins here, as the holder would have let it. Committed, so not a failure in here.
      if (run.status === "running" && run.cancelRequested) {
        yield* sql`UPDATE runs SET
            status = 'cancelled',
            status_version = status_version + 1,
            finished_at = ${now},
            lease_owner = NULL,
            lease_token = NULL,
            lease_expires_at = NULL
          WHERE id = ${runId} AND status_version = ${run.statusVersion}`
        return "cancelled" as const
      }
      // The token is the fence: every later write of this claim presents it, and a new claim replaces it.
      const holder: RunStore.LeaseHolder = { owner, token: randomBytes(16).toString("hex") }
      // No budget given keeps the run's; one given replaces it whole (without a finite limit: none).
      const keepBudget = options.budget === undefined ? 1 : 0
      yield* sql`UPDATE runs SET
          status = 'running',
          status_version = status_version + 1,
          started_at = COALESCE(started_at, ${now}),
          finished_at = NULL,
          lease_owner = ${owner},
          lease_token = ${holder.token},
          lease_host = ${me.host},
          lease_pid = ${me.pid},
          lease_pid_started = ${me.started},
          lease_expires_at = ${now + leaseMs},
          cancel_requested = 0,
          budget = CASE WHEN ${keepBudget} = 1 THEN budget ELSE ${budgetJson(options.budget)} END
        WHERE id = ${runId} AND status_version = ${run.statusVersion}`
      if (options.dequeue === true) yield* sql`DELETE FROM queued_executions WHERE run_id = ${runId}`
      return { run: yield* reread(runId), holder: Option.some(holder) } satisfies RunStore.Claimed
    }))).pipe(
      Effect.flatMap((claimed) =>
        claimed === "cancelled" ? new RunCancelled({ runId, tookOver: true }) : Effect.succeed(claimed)
      ),
      persistence("claim"),
      Effect.withSpan("SqlRunStore.claim", { attributes: { runId } })
    )

  const heartbeat = (runId: RunId, holder: RunStore.LeaseHolder, leaseMs: number) =>
    Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      // Extending a lease twice is harmless: a broken connection is retried.
      const rows = yield* retryDisconnects(sql<{ cancel_requested: number }>`UPDATE runs
        SET lease_expires_at = ${now + leaseMs}
        WHERE id = ${runId} AND lease_token = ${holder.token} AND status = 'running'
        RETURNING cancel_requested`)
      if (rows[0] === undefined) return yield* lockedBy(yield* reread(runId))
      return { cancelRequested: rows[0].cancel_requested !== 0 }
    }).pipe(persistence("heartbeat"))

  // Retried on a lost connection; a retry after a COMMIT that did land finds the run completed with this artifact.
  const complete = (runId: RunId, holder: RunStore.LeaseHolder, artifact: Artifact) =>
    retryDisconnects(transaction(Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      const rows = yield* sql<{ id: string }>`UPDATE runs SET
          status = 'completed',
          status_version = status_version + 1,
          updated_at = ${now},
          finished_at = ${now},
          last_error = NULL,
          failure_reason = NULL,
          artifact_path = ${artifact.path},
          artifact_sha256 = ${artifact.sha256},
          artifact_bytes = ${artifact.bytes},
          artifact_format = ${artifact.format},
          lease_owner = NULL,
          lease_token = NULL,
          lease_expires_at = NULL
        WHERE id = ${runId} AND lease_token = ${holder.token} AND status = 'running'
        RETURNING id`
      const run = yield* reread(runId)
      const landed = run.status === "completed" &&
        Option.exists(run.artifact, (stored) => stored.sha256 === artifact.sha256 && stored.path === artifact.path)
      if (rows.length === 0 && !landed) return yield* lockedBy(run)
      return run
    }))).pipe(persistence("complete"))

  // Retried on a lost connection: a retry after a COMMIT that did land updates nothing (the token is gone).
  const finish = (runId: RunId, holder: RunStore.LeaseHolder, outcome: RunStore.Outcome) =>
    retryDisconnects(transaction(Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      const rows = yield* sql<{ id: string }>`UPDATE runs SET
          status = ${outcome.status},
          status_version = status_version + 1,
          updated_at = ${now},
          finished_at = ${now},
          last_error = ${outcome.error ?? null},
          failure_reason = ${outcome.reason ?? null},
          lease_owner = NULL,
          lease_token = NULL,
          lease_expires_at = NULL
        WHERE id = ${runId} AND lease_token = ${holder.token} AND status = 'running'
        RETURNING id`
      if (rows.length > 0 && outcome.error !== undefined) {
        yield* sql`INSERT INTO run_errors (run_id, at, reason, message)
          VALUES (${runId}, ${now}, ${outcome.reason ?? outcome.status}, ${outcome.error})`
      }
    }))).pipe(persistence("finish"))

  return { claim, heartbeat, complete, finish }
}
