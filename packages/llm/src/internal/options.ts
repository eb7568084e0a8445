/**
 * The rule of each `llm` option, shared by the `QUARRY_LLM_*` readers (`LlmExtractor.config`) and the check of the
 * options a program gives `LlmExtractor.make`, so that both refuse the same values in the same words.
 */
import * as DecodeIssues from "@quarry/core/DecodeIssues"
import * as Duration from "effect/Duration"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type { Options } from "../LlmExtractor.js"
import * as Pricing from "../Pricing.js"
import * as Rules from "./config.js"

const count = (min: number, unit: string, example: number) =>
  Rules.wholeRule(min, `a whole number of ${unit} ${min === 0 ? "(0 or more)" : "greater than 0"}, such as ${example}`)

const durationOf = (positive: boolean, example: string) =>
  Rules.durationRule(positive, `a duration${positive ? " greater than 0" : ""}, such as "${example}" or "1500 millis"`)

/** The rule of each option (`price` is the rule of each price in `prices`). */
export const rules = {
  baseUrl: Rules.httpUrlRule(
    "an http:// or https:// URL including the API version path and no credentials, such as " +
      "http://127.0.0.1:8080/v1 or https://api.openai.com/v1"
  ),
  apiKey: Rules.secretRule("the API key; leave it unset for a server that needs none"),
  model: Rules.nameRule("a model name, such as gpt-4o-mini"),
  temperature: Rules.decimalRule(0, 2, "a number from 0 to 2, such as 0.7"),
  maxTokens: count(1, "tokens", 4096),
  seed: Rules.wholeRule(Number.MIN_SAFE_INTEGER, "a whole number, such as 42"),
  callTimeout: durationOf(true, "120 seconds"),
  maxAttempts: count(1, "attempts", 6),
  maxRetryTime: durationOf(false, "10 minutes"),
  retryBaseDelay: durationOf(false, "1 second"),
  retryMaxDelay: durationOf(false, "60 seconds"),
  repairAttempts: count(0, "repair prompts", 2),
  maxKnownEntities: count(0, "entities", 50),
  requestsPerMinute: count(1, "requests per minute", 500),
  tokensPerMinute: count(1, "tokens per minute", 200000),
  maxConcurrent: count(1, "requests", 4),
  failureThreshold: count(1, "failures", 5),
  cooldown: durationOf(false, "30 seconds"),
  price: Rules.decimalRule(0, Number.MAX_VALUE, "a price in USD per million tokens (0 or more), such as 0.15")
}

/** What `prices` (and `QUARRY_LLM_PRICES`) accepts. */
export const pricesAccepts =
  `prices in USD per million tokens by model, such as {"gpt-4o-mini":{"prompt":0.15,"completion":0.6}}`

/** The values of `maxTokensParameter`. */
export const maxTokensParameters = ["max_tokens", "max_completion_tokens"] as const

/** The values of `responseFormat`. */
export const responseFormats = ["auto", "json_schema", "json_object", "none"] as const

/** A refused option: its name (`limits.maxConcurrent`), what it accepts, and what it was (never the key or the URL). */
export interface Problem {
  readonly option: string
  readonly expected: string
  readonly actual?: string
}

const show = (value: unknown) => typeof value === "string" ? JSON.stringify(value) : String(value)

const check = <A>(
  option: string,
  value: unknown,
  is: (value: unknown) => value is A,
  rule: Rules.Rule<A>,
  secret = false
): Problem | undefined =>
  value === undefined || (is(value) && rule.test(value)) ?
    undefined :
    { option, expected: rule.accepts, ...(secret ? {} : { actual: show(value) }) }

const isNumber = (value: unknown): value is number => typeof value === "number"
const isString = (value: unknown): value is string => typeof value === "string"
const isSecret = (value: unknown): value is Redacted.Redacted<string> =>
  Redacted.isRedacted(value) && typeof Redacted.value(value) === "string"

const duration = (option: string, value: unknown, rule: Rules.Rule<Duration.Duration>): Problem | undefined =>
  value === undefined || Option.exists(Rules.decodeDuration(value), rule.test) ?
    undefined :
    { option, expected: rule.accepts, actual: Duration.isDuration(value) ? Duration.format(value) : show(value) }

const oneOf = (option: string, value: unknown, values: ReadonlyArray<string>): Problem | undefined =>
  value === undefined || (typeof value === "string" && values.includes(value)) ?
    undefined :
    { option, expected: `one of ${values.map((v) => JSON.stringify(v)).join(", ")}`, actual: show(value) }

const decodePrices = Schema.decodeUnknownEither(Pricing.PriceTable)

const prices = (value: unknown): Problem | undefined =>
  value === undefined ? undefined : Either.match(decodePrices(value), {
    onLeft: (error) => ({
      option: "prices",
      expected: `${pricesAccepts} (${DecodeIssues.describe(error, { max: 1 })})`
    }),
    onRight: () => undefined
  })

/**
 * The first option that its rule refuses, if any. Checked on what a program gave, at run time: a JavaScript caller
 * (or a value computed as `NaN`) gets past the types.
 */
export const problem = (options: Options): Problem | undefined => {
  const { breaker, limits } = options
  return [
    check("baseUrl", options.baseUrl, isString, rules.baseUrl, true),
    check("apiKey", options.apiKey, isSecret, rules.apiKey, true),
    check("model", options.model, isString, rules.model),
    check("temperature", options.temperature, isNumber, rules.temperature),
    check("maxTokens", options.maxTokens, isNumber, rules.maxTokens),
    oneOf("maxTokensParameter", options.maxTokensParameter, maxTokensParameters),
    check("seed", options.seed, isNumber, rules.seed),
    oneOf("responseFormat", options.responseFormat, responseFormats),
    duration("callTimeout", options.callTimeout, rules.callTimeout),
    check("maxAttempts", options.maxAttempts, isNumber, rules.maxAttempts),
    duration("maxRetryTime", options.maxRetryTime, rules.maxRetryTime),
    duration("retryBaseDelay", options.retryBaseDelay, rules.retryBaseDelay),
    duration("retryMaxDelay", options.retryMaxDelay, rules.retryMaxDelay),
    check("repairAttempts", options.repairAttempts, isNumber, rules.repairAttempts),
    check("maxKnownEntities", options.maxKnownEntities, isNumber, rules.maxKnownEntities),
    check("limits.requestsPerMinute", limits?.requestsPerMinute, isNumber, rules.requestsPerMinute),
    check("limits.tokensPerMinute", limits?.tokensPerMinute, isNumber, rules.tokensPerMinute),
    check("limits.maxConcurrent", limits?.maxConcurrent, isNumber, rules.maxConcurrent),
    check("breaker.failureThreshold", breaker?.failureThreshold, isNumber, rules.failureThreshold),
    duration("breaker.cooldown", breaker?.cooldown, rules.cooldown),
    prices(options.prices)
  ].find((p) => p !== undefined)
}
