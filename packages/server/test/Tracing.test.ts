import { assert, describe, it } from "@effect/vitest"
import * as Tracing from "@quarry/server/Tracing"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"

const withEnv = (env: Record<string, string>) =>
  Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))

describe("Tracing", () => {
  it.effect("off when no endpoint is set: no settings, and the layer leaves Effect's own tracer in place", () =>
    Effect.gen(function*() {
      assert.isTrue(Option.isNone(yield* Tracing.config.pipe(withEnv({}))))
      const before = yield* Effect.tracer
      const after = yield* Effect.tracer.pipe(Effect.provide(Tracing.layer("0.1.0")), withEnv({}))
      assert.strictEqual(after, before)
    }))

  it.effect("the standard variables: traces URL, protocol, headers, service name, schedule delay", () =>
    Effect.gen(function*() {
      const settings = yield* Tracing.config.pipe(withEnv({
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318/",
        OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
        OTEL_EXPORTER_OTLP_HEADERS: "authorization=Bearer%20abc, x-tenant=q",
        OTEL_SERVICE_NAME: "quarry-eu",
        OTEL_BSP_SCHEDULE_DELAY: "1000"
      }))
      assert.deepStrictEqual(Option.getOrThrow(settings), {
        url: "http://collector:4318/v1/traces",
        protocol: "http/json",
        headers: { authorization: "Bearer abc", "x-tenant": "q" },
        serviceName: "quarry-eu",
        exportInterval: Duration.millis(1000)
      })
      const defaults = Option.getOrThrow(
        yield* Tracing.config.pipe(withEnv({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://c:4318/custom" }))
      )
      assert.strictEqual(defaults.url, "http://c:4318/custom")
      assert.strictEqual(defaults.protocol, "http/protobuf")
      assert.strictEqual(defaults.serviceName, "quarry")
    }))

  it.effect("a protocol other than OTLP/HTTP is a config error naming the variable", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Tracing.config.pipe(withEnv({
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318",
        OTEL_EXPORTER_OTLP_PROTOCOL: "grpc"
      })))
      assert.include(String(error), "OTEL_EXPORTER_OTLP_PROTOCOL")
    }))
})
