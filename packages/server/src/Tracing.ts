/**
 * Optional trace export over OTLP/HTTP, configured with the standard OpenTelemetry variables: when
 * `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, the spans Effect already creates
 * (`Effect.fn` operations, HTTP requests; a run's spans carry `quarry.run_id`) are batched and sent by
 * `@effect/opentelemetry`'s `OtlpTracer`. Unset, the layer is empty: Effect's built-in tracer stays, nothing is
 * exported, nothing is loaded.
 *
 * @since 0.1.0
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"

/**
 * The trace export settings.
 *
 * @since 0.1.0
 * @category models
 */
export interface Settings {
  /** Where spans are POSTed (`<endpoint>/v1/traces`, or the traces endpoint as given). */
  readonly url: string
  readonly protocol: "http/protobuf" | "http/json"
  readonly headers: Record<string, string>
  readonly serviceName: string
  readonly exportInterval: Duration.Duration
}

/** `key=value,key=value` with percent-encoded values, as the OpenTelemetry specification writes headers. */
const parseHeaders = (raw: string): Record<string, string> =>
  Object.fromEntries(
    raw.split(",").map((pair) => pair.trim()).filter((pair) => pair.includes("=")).map((pair) => {
      const at = pair.indexOf("=")
      return [pair.slice(0, at).trim(), decodeURIComponent(pair.slice(at + 1).trim())] as const
    })
  )

const tracesUrl = (endpoint: string) => `${endpoint.replace(/\/+$/, "")}/v1/traces`

/**
 * The settings from the environment; `None` when no endpoint is set.
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<Option.Option<Settings>> = Config.all({
  endpoint: Config.option(Config.nonEmptyString("OTEL_EXPORTER_OTLP_ENDPOINT")),
  tracesEndpoint: Config.option(Config.nonEmptyString("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")),
  protocol: Config.literal("http/protobuf", "http/json")("OTEL_EXPORTER_OTLP_PROTOCOL").pipe(
    Config.withDefault("http/protobuf" as const)
  ),
  headers: Config.string("OTEL_EXPORTER_OTLP_HEADERS").pipe(Config.withDefault("")),
  serviceName: Config.nonEmptyString("OTEL_SERVICE_NAME").pipe(Config.withDefault("quarry")),
  // The batch span processor's delay (milliseconds), as the specification names it.
  scheduleDelayMs: Config.integer("OTEL_BSP_SCHEDULE_DELAY").pipe(
    Config.validate({ message: "must be a whole number of milliseconds above 0", validation: (n) => n > 0 }),
    Config.withDefault(5000)
  )
}).pipe(Config.map((c) => {
  const url = Option.orElse(c.tracesEndpoint, () => Option.map(c.endpoint, tracesUrl))
  return Option.map(url, (url): Settings => ({
    url,
    protocol: c.protocol,
    headers: parseHeaders(c.headers),
    serviceName: c.serviceName,
    exportInterval: Duration.millis(c.scheduleDelayMs)
  }))
}))

/**
 * The exporter for given settings: spans are sent every `exportInterval` (and when the layer closes, which flushes).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerExporter = (settings: Settings, serviceVersion: string): Layer.Layer<never> =>
  Layer.unwrapEffect(
    // `@effect/opentelemetry`'s OTLP modules are loaded only when traces are exported.
    Effect.promise(() =>
      Promise.all([import("@effect/opentelemetry/OtlpTracer"), import("@effect/opentelemetry/OtlpSerialization")])
    ).pipe(Effect.map(([OtlpTracer, OtlpSerialization]) =>
      OtlpTracer.layer({
        url: settings.url,
        headers: settings.headers,
        exportInterval: settings.exportInterval,
        resource: { serviceName: settings.serviceName, serviceVersion }
      }).pipe(
        Layer.provide(
          settings.protocol === "http/json" ? OtlpSerialization.layerJson : OtlpSerialization.layerProtobuf
        ),
        Layer.provide(FetchHttpClient.layer)
      )
    ))
  )

/**
 * Trace export as configured by the environment: empty when no endpoint is set; bad settings fail the layer with
 * the `ConfigError` naming the variable.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (serviceVersion: string) =>
  Layer.unwrapEffect(
    Effect.map(
      config,
      Option.match({
        onNone: () => Layer.empty,
        onSome: (settings) => layerExporter(settings, serviceVersion)
      })
    )
  )
