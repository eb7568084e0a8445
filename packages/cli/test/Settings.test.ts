import { assert, describe, it } from "@effect/vitest"
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Settings from "../src/Settings.js"

const refusal = (name: string, value: string) => {
  const provider = Settings.namingVariables(ConfigProvider.fromMap(new Map([[name, value]])))
  return Effect.flip(provider.load(Config.integer(name))).pipe(Effect.map((error) => String(error)))
}

describe("Settings.namingVariables", () => {
  it.effect("names a refused variable with its value, but never quotes one that may hold a secret", () =>
    Effect.gen(function*() {
      assert.include(yield* refusal("QUARRY_SOME_COUNT", "abc"), "QUARRY_SOME_COUNT is \"abc\", which is not valid")
      for (const name of ["QUARRY_LLM_API_KEY", "QUARRY_DATABASE_URL", "OTEL_EXPORTER_OTLP_HEADERS"]) {
        const message = yield* refusal(name, "sk-secret")
        assert.include(message, `${name} is set to a value (not shown), which is not valid`)
        assert.notInclude(message, "sk-secret")
      }
    }))
})
