/**
 * The `llm` extractor on the command line: its options (`--model`, `--base-url`, `--temperature`,
 * `--max-output-tokens`, each overriding its `QUARRY_LLM_*` variable), the process-wide services it runs on (an
 * undici HTTP client, the rate limiter and the circuit breaker), and building it. The API key is read only from
 * `QUARRY_LLM_API_KEY`: an option would end up in shell history and process lists.
 *
 * A resumed run's extractor is built from the settings stored with the run (model, temperature, max output tokens,
 * seed, response format), whatever the environment says; an option that contradicts them is refused. The base URL,
 * the key, limits and prices are not part of a run's identity and still come from the options and the environment.
 *
 * `@quarry/llm/LlmExtractor` (with its bundled tokenizer, about 200 ms of start-up) is loaded only when a command
 * builds the extractor, and undici only when it sends its first request; the limiter and the breaker are small and
 * provided to every command.
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import type * as Extractor from "@quarry/core/Extractor"
import * as CircuitBreaker from "@quarry/llm/CircuitBreaker"
import type * as LlmExtractor from "@quarry/llm/LlmExtractor"
import * as RateLimiter from "@quarry/llm/RateLimiter"
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Errors from "./Errors.js"
import { UsageError } from "./Errors.js"
import * as Flags from "./Flags.js"
import * as Inputs from "./Inputs.js"

/**
 * The extractor's registry name (`LlmExtractor.name`, repeated here so that naming it does not load the module).
 *
 * @since 0.1.0
 * @category constants
 */
export const name = "llm"

/**
 * What the `llm` extractor runs on.
 *
 * @since 0.1.0
 * @category models
 */
export type Services = HttpClient.HttpClient | RateLimiter.RateLimiter | CircuitBreaker.CircuitBreaker

/**
 * The services, once per process: every run of the process shares one limiter and one breaker per endpoint.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerServices: Layer.Layer<Services> = Layer.mergeAll(
  Layer.scoped(
    HttpClient.HttpClient,
    Effect.gen(function*() {
      // undici is about a megabyte of JavaScript that only a run of this extractor needs: load it on the first request.
      // The load runs in its own fiber in the layer's scope and each request only waits for it: a first request
      // interrupted while it loads (its call timeout, a cancelled run) must not leave the interruption cached for
      // every later request of the process, which would then end its run as interrupted.
      const scope = yield* Effect.scope
      const load = Effect.promise(() => import("@effect/platform-node/NodeHttpClient")).pipe(
        Effect.flatMap((module) => Layer.buildWithScope(module.layerUndici, scope)),
        Effect.map(Context.get(HttpClient.HttpClient))
      )
      const loading = yield* Effect.cached(
        Effect.uninterruptibleMask((restore) => Effect.forkIn(restore(load), scope))
      )
      return HttpClient.make((request) =>
        loading.pipe(Effect.flatMap(Fiber.join), Effect.flatMap((client) => client.execute(request)))
      )
    })
  ),
  RateLimiter.layer,
  CircuitBreaker.layer
)

const fail = (message: string) => Effect.fail(new UsageError({ message }))

const checkBaseUrl = (raw: string): Effect.Effect<string, UsageError> => {
  const url = URL.canParse(raw) ? new URL(raw) : undefined
  // The value is not echoed: a URL may carry credentials.
  if (url === undefined || (url.protocol !== "http:" && url.protocol !== "https:")) {
    return fail(
      "base-url must be an http:// or https:// URL including the API version path, such as " +
        "http://127.0.0.1:8080/v1 or https://api.openai.com/v1"
    )
  }
  if (url.username !== "" || url.password !== "") {
    return fail("base-url must not carry credentials; put the API key in QUARRY_LLM_API_KEY")
  }
  return Effect.succeed(raw)
}

const checkTemperature = (raw: string): Effect.Effect<number, UsageError> => {
  // Plain decimal, as QUARRY_LLM_TEMPERATURE: 1e0 and 0x1 are refused.
  const value = Number(raw.trim())
  return !Inputs.isPlainDecimal(raw.trim()) || value < 0 || value > 2 ?
    fail(`temperature (${JSON.stringify(raw)}) must be a number from 0 to 2`) :
    Effect.succeed(value)
}

/**
 * The options of `start` and `resume` that configure the `llm` extractor.
 *
 * @since 0.1.0
 * @category options
 */
export const options = {
  model: Flags.checked(
    "model",
    "NAME",
    "llm extractor: the model (default: QUARRY_LLM_MODEL; resume uses the run's own).",
    (raw) => raw.trim() === "" ? fail("model must not be empty") : Effect.succeed(raw.trim())
  ),
  baseUrl: Flags.checked(
    "base-url",
    "URL",
    "llm extractor: the OpenAI-compatible endpoint, with its version path, e.g. http://127.0.0.1:8080/v1 " +
      "(default: QUARRY_LLM_BASE_URL, else https://api.openai.com/v1).",
    (raw) => checkBaseUrl(raw)
  ),
  temperature: Flags.checked(
    "temperature",
    "0..2",
    "llm extractor: sampling temperature (default: QUARRY_LLM_TEMPERATURE, else 0; resume uses the run's own).",
    (raw) => checkTemperature(raw)
  ),
  maxOutputTokens: Flags.checked(
    "max-output-tokens",
    "N",
    "llm extractor: completion tokens per call (default: QUARRY_LLM_MAX_TOKENS, else 4096; resume uses the run's " +
      "own).",
    (raw) => Flags.parseCount("max-output-tokens", raw, "tokens")
  )
}

/**
 * The options as given on the command line, checked.
 *
 * @since 0.1.0
 * @category models
 */
export interface Overrides {
  readonly model?: string | undefined
  readonly baseUrl?: string | undefined
  readonly temperature?: number | undefined
  readonly maxTokens?: number | undefined
  /** The names of the options that were given (`--model`, ...). */
  readonly given: ReadonlyArray<string>
  /**
   * The options a resume needs again, with their values, for a suggested resume command: `--base-url` only, since
   * the model, temperature and max output tokens are stored with the run.
   */
  readonly args: ReadonlyArray<string>
}

/**
 * The options as `Overrides` (each was checked as the command line was parsed).
 *
 * @since 0.1.0
 * @category options
 */
export const parse = (flags: {
  readonly model: Option.Option<string>
  readonly baseUrl: Option.Option<string>
  readonly temperature: Option.Option<number>
  readonly maxOutputTokens: Option.Option<number>
}): Effect.Effect<Overrides> =>
  Effect.sync(() => {
    const given = ([
      ["--model", Option.isSome(flags.model)],
      ["--base-url", Option.isSome(flags.baseUrl)],
      ["--temperature", Option.isSome(flags.temperature)],
      ["--max-output-tokens", Option.isSome(flags.maxOutputTokens)]
    ] as const).filter(([, isGiven]) => isGiven).map(([flag]) => flag)
    return {
      given,
      model: Option.getOrUndefined(flags.model),
      baseUrl: Option.getOrUndefined(flags.baseUrl),
      temperature: Option.getOrUndefined(flags.temperature),
      maxTokens: Option.getOrUndefined(flags.maxOutputTokens),
      args: Option.match(flags.baseUrl, {
        onNone: () => [],
        onSome: (url) => ["--base-url", Errors.shellQuote(url.trim())]
      })
    }
  })

/**
 * Refuses the options for an extractor other than `llm` (they would be silently ignored).
 *
 * @since 0.1.0
 * @category options
 */
export const refuseFor = (extractor: string, overrides: Overrides, what: string): Effect.Effect<void, UsageError> => {
  const given = overrides.given
  if (extractor === name || given.length === 0) return Effect.void
  return fail(`${given.join(", ")} ${given.length === 1 ? "applies" : "apply"} only to the llm extractor; ${what}`)
}

/**
 * What building the extractor depends on beyond its options.
 *
 * @since 0.1.0
 * @category models
 */
export interface MakeOptions {
  /** The run being resumed, named in the message about a missing model. */
  readonly runId?: string | undefined
  /** A cost budget was given: the model must have a price, or the budget could never stop the run. */
  readonly needsPrice?: boolean | undefined
  /**
   * The settings the run being resumed was started with (`Run.plan.extractor.settings`): they, not the environment,
   * decide the model, temperature, max output tokens, seed and response format.
   */
  readonly stored?: Readonly<Record<string, string | number | boolean>> | undefined
}

/**
 * Builds the extractor from `QUARRY_LLM_*` and the options (which win), or, for a resumed run, from its stored
 * settings (an option that contradicts one is refused). Bad configuration is a `UsageError` (exit 2); nothing is
 * sent to the server.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  overrides: Overrides,
  options: MakeOptions = {}
): Effect.Effect<Extractor.Extractor, UsageError, Services> =>
  Effect.gen(function*() {
    const what = options.runId === undefined ? "the run" : `run ${options.runId}`
    const hasStored = options.stored !== undefined && Object.keys(options.stored).length > 0
    if (!hasStored && overrides.model === undefined) {
      const model = yield* Config.option(Config.string("QUARRY_LLM_MODEL")).pipe(Effect.orElseSucceed(Option.none))
      if (Option.isNone(model) || model.value.trim() === "") {
        return yield* fail(
          options.runId === undefined ?
            "the llm extractor needs a model: pass --model NAME or set QUARRY_LLM_MODEL" :
            `${what} uses the llm extractor, which needs a model: pass --model with the model it was started with, ` +
            `or set QUARRY_LLM_MODEL`
        )
      }
    }
    const module: typeof LlmExtractor = yield* Effect.promise(() => import("@quarry/llm/LlmExtractor"))
    const stored = hasStored ?
      Option.some(
        yield* Either.match(module.decodeSettings(options.stored), {
          onLeft: (error) =>
            fail(
              `${what} was started with llm settings this version of quarry cannot read ` +
                `(${ParseResult.TreeFormatter.formatErrorSync(error)}); start a new run`
            ),
          onRight: Effect.succeed
        })
      ) :
      Option.none()
    if (Option.isSome(stored)) {
      const contradicted = ([
        ["--model", overrides.model, stored.value.model],
        ["--temperature", overrides.temperature, stored.value.temperature],
        ["--max-output-tokens", overrides.maxTokens, stored.value.maxTokens]
      ] as const).filter(([, given, was]) => given !== undefined && given !== was)
      if (contradicted.length > 0) {
        const started = contradicted.map(([option, , was]) => `${option} ${was}`).join(" ")
        const names = contradicted.map(([option]) => option).join(", ")
        return yield* fail(
          `${what} was started with ${started}, and a run resumes with the settings it was started with; leave ` +
            `${names} out, or start a new run to change ${contradicted.length === 1 ? "it" : "them"}`
        )
      }
    }
    const given: Partial<LlmExtractor.Options> = Option.match(stored, {
      onNone: () => ({
        ...(overrides.model === undefined ? {} : { model: overrides.model }),
        ...(overrides.baseUrl === undefined ? {} : { baseUrl: overrides.baseUrl }),
        temperature: overrides.temperature,
        maxTokens: overrides.maxTokens
      }),
      onSome: (settings) => ({
        model: settings.model,
        ...(overrides.baseUrl === undefined ? {} : { baseUrl: overrides.baseUrl })
      })
    })
    const fromConfig = yield* module.configWith(given).pipe(
      Effect.mapError((error) => new UsageError({ message: `bad llm extractor configuration: ${error.message}` }))
    )
    // The stored settings win over the environment too (QUARRY_LLM_TEMPERATURE, QUARRY_LLM_SEED, ...).
    const configured = Option.match(stored, {
      onNone: () => fromConfig,
      onSome: (settings) => module.withSettings(fromConfig, settings)
    })
    if (options.needsPrice === true && configured.prices?.[configured.model] === undefined) {
      return yield* fail(
        `--max-cost needs the price of model ${configured.model}: set QUARRY_LLM_PRICE_PROMPT and ` +
          `QUARRY_LLM_PRICE_COMPLETION (or QUARRY_LLM_PRICES), in USD per million tokens; without prices every ` +
          `call costs $0 and the budget would never stop the run (bound a free model with --max-tokens)`
      )
    }
    // Only the stored settings can still be refused here: `configWith` checked everything else.
    return yield* module.make(configured).pipe(
      Effect.mapError((error) => new UsageError({ message: `bad llm extractor configuration: ${error.message}` }))
    )
  })
