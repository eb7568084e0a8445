/**
 * Prometheus metrics through Effect's `Metric`, exported by `@effect/opentelemetry` to the OpenTelemetry Prometheus
 * exporter, whose own serializer writes the text format (no hand-written exposition). Gauges that describe the
 * database (runs by status) and admission (active, queued) are refreshed when scraped.
 *
 * @since 0.1.0
 */
import * as OtelMetrics from "@effect/opentelemetry/Metrics"
import * as Resource from "@effect/opentelemetry/Resource"
import { PrometheusExporter, PrometheusSerializer } from "@opentelemetry/exporter-prometheus"
import * as Run from "@quarry/core/Run"
import { RunStore } from "@quarry/core/RunStore"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as Admission from "./Admission.js"

/** Runs in the database by status. */
const runsByStatus = Metric.gauge("quarry_runs", { description: "Runs in the database by status" })
const activeRuns = Metric.gauge("quarry_active_runs", { description: "Runs executing in this process" })
const ownedShards = Metric.gauge("quarry_cluster_owned_shards", {
  description: "With --cluster: the shards this runner owns (label runner: its id)"
})
const queueDepth = Metric.gauge("quarry_queued_runs", { description: "Runs waiting for a slot" })

/**
 * Runs that ended here, by outcome (completed, failed, cancelled, interrupted).
 *
 * @since 0.1.0
 * @category metrics
 */
export const runsEnded = Metric.counter("quarry_runs_ended_total", {
  description: "Runs that ended in this process",
  incremental: true
})

/**
 * Runs started (or resumed) here.
 *
 * @since 0.1.0
 * @category metrics
 */
export const runsStarted = Metric.counter("quarry_runs_started_total", {
  description: "Runs started in this process",
  incremental: true
})

/**
 * HTTP requests by method, route and status.
 *
 * @since 0.1.0
 * @category metrics
 */
export const httpRequests = Metric.counter("quarry_http_requests_total", {
  description: "HTTP requests answered",
  incremental: true
})

/**
 * HTTP request latency in seconds, by method and route.
 *
 * @since 0.1.0
 * @category metrics
 */
export const httpDuration = Metric.histogram(
  "quarry_http_request_duration_seconds",
  MetricBoundaries.exponential({ start: 0.001, factor: 2, count: 16 }),
  "HTTP request latency"
)

/**
 * The paths of the server's fixed routes.
 *
 * @since 0.1.0
 * @category metrics
 */
export const fixedRoutes: ReadonlySet<string> = new Set([
  "/",
  "/dashboard/app.js",
  "/dashboard/app.css",
  "/livez",
  "/readyz",
  "/startupz",
  "/healthz",
  "/metrics",
  "/openapi.json",
  "/docs",
  "/v1/runs"
])

const runRoute = /^\/v1\/runs\/[^/]+(\/(?:cancel|resume|artifact|events))?$/

/**
 * The route of a request path as a label value: run ids become `{id}`, and any path that is not a route (a scanner's
 * `/wp-login.php`, a typo) is `other`, so that no request can create a series of its own.
 *
 * @since 0.1.0
 * @category metrics
 */
export const routeOf = (path: string): string => {
  if (fixedRoutes.has(path)) return path
  const run = runRoute.exec(path)
  return run === null ? "other" : `/v1/runs/{id}${run[1] ?? ""}`
}

/**
 * The scrape endpoint's source.
 *
 * @since 0.1.0
 * @category tags
 */
export class Scrape extends Context.Tag("@quarry/server/Metrics/Scrape")<Scrape, Effect.Effect<string>>() {}

/**
 * Metrics export: registers Effect's metrics with a Prometheus exporter that only serializes on demand (no second
 * HTTP server), and `Scrape`, which refreshes the gauges and answers with the text format.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<Scrape, never, RunStore | Admission.Admission> = Layer.unwrapEffect(
  Effect.sync(() => {
    const exporter = new PrometheusExporter({ preventServerStart: true })
    const serializer = new PrometheusSerializer()
    const scrape = Effect.gen(function*() {
      const store = yield* RunStore
      const admission = yield* Admission.Admission
      // A database that does not answer leaves the gauges as they were (readyz reports it).
      const counts = yield* Effect.option(store.countRuns)
      if (counts._tag === "Some") {
        for (const status of Run.RunStatus.literals) {
          yield* Metric.set(runsByStatus.pipe(Metric.tagged("status", status)), counts.value[status])
        }
      }
      const stats = yield* admission.stats
      yield* Metric.set(activeRuns, stats.active)
      yield* Metric.set(queueDepth, stats.queued)
      if (stats.cluster !== undefined) {
        yield* Metric.set(ownedShards.pipe(Metric.tagged("runner", stats.cluster.runnerId)), stats.cluster.ownedShards)
      }
      const collected = yield* Effect.promise(() => exporter.collect())
      return serializer.serialize(collected.resourceMetrics)
    })
    return Layer.effect(
      Scrape,
      Effect.map(Effect.context<RunStore | Admission.Admission>(), (context) => Effect.provide(scrape, context))
    ).pipe(
      Layer.provideMerge(OtelMetrics.layer(() => exporter)),
      Layer.provide(Resource.layer({ serviceName: "quarry" }))
    )
  })
)
