/**
 * The cluster half of `quarry serve --cluster`: this process is a runner of `@effect/cluster` (socket transport,
 * `SqlMessageStorage` + `SqlRunnerStorage` on Quarry's own database) that hosts the `QuarryRun` entities of the
 * shards it owns, and its admission sends every run to its owner.
 *
 * @since 0.1.0
 */
import * as MessageStorage from "@effect/cluster/MessageStorage"
import * as RunnerAddress from "@effect/cluster/RunnerAddress"
import * as RunnerHealth from "@effect/cluster/RunnerHealth"
import * as Runners from "@effect/cluster/Runners"
import type * as Sharding from "@effect/cluster/Sharding"
import * as ShardingConfig from "@effect/cluster/ShardingConfig"
import * as SocketRunner from "@effect/cluster/SocketRunner"
import * as SqlMessageStorage from "@effect/cluster/SqlMessageStorage"
import * as SqlRunnerStorage from "@effect/cluster/SqlRunnerStorage"
import * as NodeClusterSocket from "@effect/platform-node/NodeClusterSocket"
import type { SocketServerError } from "@effect/platform/SocketServer"
import * as RpcSerialization from "@effect/rpc/RpcSerialization"
import * as SqlClient from "@effect/sql/SqlClient"
import type * as BatchExtraction from "@quarry/core/BatchExtraction"
import type * as Extractor from "@quarry/core/Extractor"
import type { RunStore } from "@quarry/core/RunStore"
import * as Workflow from "@quarry/core/Workflow"
import * as WorkflowManager from "@quarry/core/WorkflowManager"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as path from "node:path"
import type { Admission } from "./Admission.js"
import * as ClusterAdmission from "./ClusterAdmission.js"
import * as ClusterExtraction from "./ClusterExtraction.js"
import * as ClusterRun from "./ClusterRun.js"

/**
 * Options of the runner.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The address other runners reach this one at. */
  readonly runnerHost: string
  readonly runnerPort: number
  /** The interface to listen on (default `runnerHost`). */
  readonly runnerListenHost?: string | undefined
  /** Quarry's lease on a run (fencing token lifetime): a dead runner's run resumes elsewhere after it expires. */
  readonly leaseMs: number
  /** How often a runner refreshes its shard locks (default 2 s, `defaults`). */
  readonly shardLockRefreshMs?: number | undefined
  /** When an unrefreshed shard lock may be taken by another runner (default 6 s, `defaults`). */
  readonly shardLockExpirationMs?: number | undefined
  /** Spread each run's batch extractions over all runners (`--distribute`); commits stay on the run's owner. */
  readonly distribute?: boolean | undefined
  /** With `distribute`: how long the owner waits for a batch's reply before extracting it itself (default 10 min). */
  readonly distributeTimeoutMs?: number | undefined
  /**
   * How long a run whose shard moves (a runner joining) may take to reach its next commit, which loses no extracted
   * batch, before it is interrupted at once (default 30 s).
   */
  readonly stopGraceMs?: number | undefined
  /** Runs executing at once on this runner; the others of its shards wait, their messages stored (default 4). */
  readonly maxActiveRuns?: number | undefined
  /** Runs stored `pending` in the whole cluster beyond which a submission or resume is refused (`QueueFull`). */
  readonly maxQueuedRuns?: number | undefined
  /**
   * The server's artifacts directory (default the working directory): a run submitted here stores its artifact's
   * path relative to it (`<run>.<ext>`), and a run executing here writes such a path into it. Nodes need not share a
   * directory; a run stored with an absolute path is written at that path. `Server.layer` sets it to its own.
   */
  readonly artifacts?: string | undefined
}

/**
 * The defaults, chosen so that a dead runner's runs continue elsewhere within about 10 s: the shard lock expires
 * after 6 s, the survivors look for free shards every 1 s (`refreshAssignmentsInterval`), and Quarry's lease is
 * what the new owner then waits for: `serve --cluster` uses 8 s (`QUARRY_LEASE_MS`; 30 s outside a cluster).
 *
 * @since 0.1.0
 * @category constants
 */
// A lock refresh is a write; @effect/cluster gives it min(refresh, expiration / 3) to finish before it calls the lock
// storage unhealthy and interrupts every run here. At 1 s that fired on a loaded database; 2 s halves the chance,
// and the lease (8 s) still bounds failover more than the 6 s expiration does.
export const defaults = { shardLockRefreshMs: 2_000, shardLockExpirationMs: 6_000, leaseMs: 8_000 } as const

/** The sharding configuration; explicit, not `ShardingConfig.layerFromEnv` (which reads plain `HOST`, `PORT`). */
const shardingConfig = (options: Options) =>
  ShardingConfig.layer({
    runnerAddress: Option.some(RunnerAddress.make(options.runnerHost, options.runnerPort)),
    runnerListenAddress: Option.some(
      RunnerAddress.make(options.runnerListenHost ?? options.runnerHost, options.runnerPort)
    ),
    shardLockRefreshInterval: Duration.millis(options.shardLockRefreshMs ?? defaults.shardLockRefreshMs),
    shardLockExpiration: Duration.millis(options.shardLockExpirationMs ?? defaults.shardLockExpirationMs),
    // Shard locks as rows with an expiry, not session advisory locks: a paused runner (SIGSTOP, a frozen VM) keeps
    // its database sessions open, so its advisory locks never expire and its runs stall until it wakes (measured:
    // no run moved within 60 s). Rows expire after `shardLockExpiration` whatever the session does.
    shardLockDisableAdvisory: true,
    refreshAssignmentsInterval: Duration.seconds(1),
    // A persisted message whose owner died is found by the poll of the next owner.
    entityMessagePollInterval: Duration.seconds(1),
    // On shutdown a run's handler is interrupted after this (its run records `interrupted` once its commit ends).
    entityTerminationTimeout: Duration.millis(500)
  })

/** `NodeClusterSocket.layer` with the storage on Quarry's SQL client and an explicit configuration. */
const runner = (options: Options) =>
  SocketRunner.layer.pipe(
    Layer.provide([NodeClusterSocket.layerSocketServer, NodeClusterSocket.layerClientProtocol]),
    Layer.provide(
      RunnerHealth.layerPing.pipe(
        Layer.provide(Runners.layerRpc),
        Layer.provide(NodeClusterSocket.layerClientProtocol)
      )
    ),
    Layer.provideMerge(Layer.orDie(SqlMessageStorage.layer)),
    Layer.provide(Layer.orDie(SqlRunnerStorage.layer)),
    Layer.provide(shardingConfig(options)),
    Layer.provide(RpcSerialization.layerMsgPack)
  )

/** An advisory lock key of its own (not Quarry's migration key): "quarry cluster tables". */
const clusterTablesLockKey = 0x51_43_54

/**
 * Creates the cluster's tables once, under a session advisory lock: `SqlMessageStorage` and `SqlRunnerStorage`
 * migrate when their layers build, and two runners doing that at once on an empty database race on `CREATE TABLE`.
 * The second runner waits here, then finds the tables (the storages' own migration tables say so).
 */
const migrateClusterTables = (options: Options) =>
  Effect.scoped(Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const connection = yield* sql.reserve
    yield* Effect.acquireRelease(
      connection.executeRaw(`SELECT pg_advisory_lock(${clusterTablesLockKey})`, []),
      () => Effect.ignore(connection.executeRaw(`SELECT pg_advisory_unlock(${clusterTablesLockKey})`, []))
    )
    yield* Layer.build(
      Layer.mergeAll(SqlMessageStorage.layer, SqlRunnerStorage.layer).pipe(Layer.provide(shardingConfig(options)))
    )
  })).pipe(Effect.orDie)

/** The start of `pg`'s notice that a client was given a statement while it still executed others (pg 8.x). */
const pgQueueNotice = "Calling client.query() when the client is already executing a query"

/**
 * Logs `pg`'s queueing notice once, as a warning of the JSON log, instead of Node's plain text on stderr; every other
 * warning keeps Node's own output. The statements come from `@effect/cluster`, not from Quarry: `SqlRunnerStorage`
 * sends all its shard-lock statements over one reserved connection, and `Sharding` releases each shard in a fiber of
 * its own, so a runner that gives up many shards at once (another runner joins) hands their `DELETE`s to that one
 * `pg` client together (measured: 150 at once, and no statement of Quarry's among them). `pg` runs them one after the
 * other, as it always has; pg 9 will refuse them, so upgrading `pg` past 8 waits for `@effect/cluster` to change.
 */
const routePgQueueNotice = Effect.gen(function*() {
  const printers = process.listeners("warning")
  // Warnings are off (`--no-warnings`): nothing to route.
  if (printers.length === 0) return
  const notice = yield* Deferred.make<string>()
  const listener = (warning: Error) => {
    if (warning.name === "DeprecationWarning" && warning.message.startsWith(pgQueueNotice)) {
      Deferred.unsafeDone(notice, Exit.succeed(warning.message))
    } else {
      for (const print of printers) print(warning)
    }
  }
  yield* Effect.acquireRelease(
    Effect.sync(() => {
      for (const print of printers) process.removeListener("warning", print)
      process.on("warning", listener)
    }),
    () =>
      Effect.sync(() => {
        process.removeListener("warning", listener)
        for (const print of printers) process.on("warning", print)
      })
  )
  // `pg` says it once per process (`util.deprecate`).
  yield* Deferred.await(notice).pipe(
    Effect.flatMap((message) =>
      Effect.logWarning(
        `pg: ${message} (said once: @effect/cluster's shard-lock storage sends concurrent statements over one ` +
          "connection, which pg runs in order; nothing is lost)"
      )
    ),
    Effect.annotateLogs({ package: "pg", warning: "DeprecationWarning" }),
    Effect.forkScoped
  )
})

/**
 * The runner id shown in `/healthz`, `/metrics` and as the lease owner of the runs it executes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const runnerId = (options: Options) => `${options.runnerHost}:${options.runnerPort}`

/**
 * Admission over the cluster, with this process as a runner. Built in this order so that it closes in reverse:
 * admission, then the runner (its entities are interrupted, their messages stay for the next owners), then the
 * workflow manager.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<
  Admission | Sharding.Sharding | MessageStorage.MessageStorage | WorkflowManager.WorkflowManager,
  SocketServerError,
  RunStore | Extractor.Registry | SqlClient.SqlClient
> =>
  Layer.unwrapScoped(Effect.gen(function*() {
    // First, so that it is in place before this runner takes or gives up shards, and until it has released them.
    yield* routePgQueueNotice
    yield* migrateClusterTables(options)
    const local = yield* ClusterAdmission.makeLocalRuns(options.maxActiveRuns ?? 4)
    const artifacts = path.resolve(options.artifacts ?? ".")
    const owner = `${runnerId(options)}/${Workflow.makeOwnerId()}`
    // With --distribute, the manager's extractors send their batches through the cluster once the runner is up.
    const send = yield* Deferred.make<BatchExtraction.Send>()
    const manager = Layer.scoped(
      WorkflowManager.WorkflowManager,
      WorkflowManager.make({ leaseMs: options.leaseMs, owner })
    ).pipe(options.distribute === true ? Layer.provide(ClusterExtraction.layerRegistry(send)) : (layer) => layer)
    const base = runner(options).pipe(Layer.provideMerge(manager))
    const entities = Layer.mergeAll(
      ClusterRun.layer({
        runnerId: runnerId(options),
        artifacts,
        onLocal: ClusterAdmission.onLocal(local),
        onWaiting: ClusterAdmission.onWaiting(local),
        slots: local.slots,
        draining: local.draining,
        stopped: local.stopped,
        stopGraceMs: options.stopGraceMs
      }),
      ClusterExtraction.layer,
      options.distribute === true ?
        ClusterExtraction.provideSend(send, options.distributeTimeoutMs ?? 600_000) :
        Layer.empty
    )
    const admission = ClusterAdmission.layer(local, {
      runnerId: runnerId(options),
      artifacts,
      maxQueuedRuns: options.maxQueuedRuns
    })
    return Layer.mergeAll(entities, admission).pipe(Layer.provideMerge(base))
  }))
