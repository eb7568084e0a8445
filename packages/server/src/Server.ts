/**
 * The service as a layer: admission over the workflow manager, the API handlers with bearer auth and no access for
 * other sites' pages (`CrossSite`), the OpenAPI document (`/openapi.json`), the API reference UI (`/docs`, served from
 * the package, nothing from another host), the web dashboard (`/`), the Node HTTP server, and the OTLP trace exporter
 * when configured. Closing the layer drains: the runs are
 * interrupted (recorded `interrupted`) before the HTTP server and the database close. `Admission.stopAdmitting` may
 * precede the drain: not ready, still serving.
 *
 * @since 0.1.0
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import type { ServeError } from "@effect/platform/HttpServerError"
import * as OpenApi from "@effect/platform/OpenApi"
import type { SocketServerError } from "@effect/platform/SocketServer"
import type * as SqlClient from "@effect/sql/SqlClient"
import * as DatabaseUrl from "@quarry/core/DatabaseUrl"
import type * as Extractor from "@quarry/core/Extractor"
import type { RunStore } from "@quarry/core/RunStore"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Redacted from "effect/Redacted"
import { createServer } from "node:http"
import type * as Net from "node:net"
import * as path from "node:path"
import * as Admission from "./Admission.js"
import { QuarryApi } from "./Api.js"
import * as Auth from "./Auth.js"
import * as Cluster from "./Cluster.js"
import * as Connections from "./Connections.js"
import * as CrossSite from "./CrossSite.js"
import * as Dashboard from "./Dashboard.js"
import * as Docs from "./Docs.js"
import * as Handlers from "./Handlers.js"
import * as Metrics from "./Metrics.js"
import * as NoRoute from "./NoRoute.js"
import * as RequestLog from "./RequestLog.js"
import * as Tracing from "./Tracing.js"

/**
 * Options of the server.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends Admission.Options {
  readonly host: string
  /** 0 picks a free port. */
  readonly port: number
  readonly maxBodyBytes: number
  readonly tokens: ReadonlyArray<Redacted.Redacted<string>>
  /** Host names of the server besides `host`, IP addresses and `localhost` (`CrossSite`); `*` takes any. */
  readonly allowedHosts?: ReadonlyArray<string> | undefined
  /** The database file (reported by `/healthz`; artifacts go next to it unless `artifacts` is set). */
  readonly database: string
  readonly artifacts?: string | undefined
  readonly version: string
  readonly startedAt: number
  /** How often an event stream reads its run (default 200 ms). */
  readonly pollMs?: number | undefined
  /** How often an event stream sends a heartbeat comment (default 15 s). */
  readonly heartbeatMs?: number | undefined
  /** Serve as a runner of a cluster on the (PostgreSQL) database: runs execute on the runner owning them. */
  readonly cluster?: Cluster.Options | undefined
  /** Export traces over OTLP (`Tracing.config` reads them from the environment); none when unset. */
  readonly tracing?: Tracing.Settings | undefined
}

/** Characters a path parameter may have: a run id's 128, and any longer path for the route of last resort. */
const maxPathParameter = 8192

/**
 * The Node HTTP server, its connections tracked from before it listens, so that a drain can end them and a request
 * that arrives before the handler waits for it (`Connections`).
 */
const nodeServer = (options: Net.ListenOptions) =>
  Layer.scopedContext(Effect.gen(function*() {
    const server = createServer()
    const connections = yield* Connections.make(server)
    const listening = yield* NodeHttpServer.make(() => server, options)
    // Before the server's own close, which waits for every connection: a start that fails or is interrupted once
    // listening never serves the requests waiting for the handler.
    yield* Effect.addFinalizer(() => connections.dropWaiting)
    return Context.make(HttpServer.HttpServer, listening).pipe(Context.add(Connections.Connections, connections))
  })).pipe(Layer.provideMerge(NodeHttpServer.layerContext))

/**
 * The server: listening once built, drained when its scope closes (`Admission.stopAdmitting` may come before).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options
): Layer.Layer<
  HttpServer.HttpServer | Admission.Admission | Connections.Connections,
  ServeError | SocketServerError,
  RunStore | Extractor.Registry | SqlClient.SqlClient
> => {
  // The document's version is the server's, as /healthz reports it.
  const api = HttpApiBuilder.api(QuarryApi.annotate(OpenApi.Version, options.version)).pipe(
    Layer.provide(Handlers.layer),
    Layer.provide(Metrics.layer),
    Layer.provide(Auth.layer(options.tokens)),
    Layer.provide(Layer.succeed(Handlers.ServerInfo, {
      version: options.version,
      database: options.database,
      // A PostgreSQL URL has no directory: the working directory, as `quarry start` does.
      artifacts: options.artifacts ??
        (DatabaseUrl.isPostgres(options.database) ? process.cwd() : path.dirname(path.resolve(options.database))),
      startedAt: options.startedAt,
      pollMs: options.pollMs ?? 200,
      heartbeatMs: options.heartbeatMs ?? 15_000
    }))
  )
  const http = HttpApiBuilder.serve(RequestLog.middleware(options.maxBodyBytes)).pipe(
    // Probes and scrapes arrive every few seconds: no span each (they are counted in the metrics).
    HttpMiddleware.withTracerDisabledForUrls(["/livez", "/readyz", "/startupz", "/healthz", "/metrics"]),
    Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
    Layer.provide(Docs.layer),
    Layer.provide(Dashboard.layer),
    Layer.provide(NoRoute.layer),
    Layer.provide(CrossSite.layer({
      host: options.host,
      allowedHosts: options.allowedHosts ?? [],
      withTokens: options.tokens.length > 0
    })),
    Layer.provide(api),
    // The router's default takes no path parameter over 100 characters; a run id may have 128. Past this, a path is
    // still the route of last resort's (a JSON 404), never the router's empty one.
    Layer.provide(HttpRouter.setRouterConfig({ maxParamLength: maxPathParameter })),
    Layer.provideMerge(nodeServer({ host: options.host, port: options.port }))
  )
  // The tracer is installed first, so that the fibers of admission and of the HTTP server start with it.
  return http.pipe(
    Layer.provideMerge(
      options.cluster === undefined
        ? Admission.layer(options)
        : Cluster.layer({
          ...options.cluster,
          artifacts: options.artifacts,
          maxActiveRuns: options.maxActiveRuns,
          maxQueuedRuns: options.maxQueuedRuns
        })
    ),
    Layer.provide(options.tracing === undefined ? Layer.empty : Tracing.layerExporter(options.tracing, options.version))
  )
}
