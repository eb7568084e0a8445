/**
 * The `llm` extractor: one Chat Completions call per batch (plus retries and repairs) against any OpenAI-compatible
 * server, with the reply constrained to a JSON schema derived from the run's ontology and mapped to document spans.
 *
 * Every HTTP attempt goes through the process-wide `CircuitBreaker` and `RateLimiter` of its endpoint (base URL +
 * model). Transient failures (network, timeout, 429, 5xx) are retried with exponential backoff and jitter, bounded in
 * attempts and total time, honouring `Retry-After`, and a retry waits for the circuit breaker's trial call rather than
 * meet the open circuit; a reply that is not valid JSON or does not match the schema is
 * sent back with the validation error, a bounded number of times. The batch's `usage` sums every attempt. After an
 * attempt, a change of the endpoint's circuit state is published with the run (`BatchInput.reportStatus`).
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as Errors from "@quarry/core/Errors"
import type * as Extractor from "@quarry/core/Extractor"
import type * as Ontology from "@quarry/core/Ontology"
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import type * as Redacted from "effect/Redacted"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import { createHash } from "node:crypto"
import * as ChatCompletions from "./ChatCompletions.js"
import * as CircuitBreaker from "./CircuitBreaker.js"
import * as ConfigValues from "./internal/config.js"
import * as OptionRules from "./internal/options.js"
import { type BatchText, batchText, occurrences } from "./internal/spans.js"
import * as Tokens from "./internal/tokens.js"
import * as Waits from "./internal/waits.js"
import * as Pricing from "./Pricing.js"
import * as Prompt from "./Prompt.js"
import * as RateLimiter from "./RateLimiter.js"

/**
 * The extractor's registry name.
 *
 * @since 0.1.0
 * @category constants
 */
export const name = "llm"

/**
 * The extractor's version: bumped when the mapping from replies to batch outputs changes.
 *
 * @since 0.1.0
 * @category constants
 */
export const version = "1"

/**
 * How the reply's JSON format is requested. `auto` asks for a strict JSON schema and, if the server rejects that,
 * falls back to a plain JSON object, then to the prompt's instructions alone (remembered for the extractor's life).
 *
 * @since 0.1.0
 * @category models
 */
export type ResponseFormatMode = "auto" | "json_schema" | "json_object" | "none"

/**
 * Everything the extractor can be told. Only `baseUrl` and `model` are required.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Including the API version path: `https://api.openai.com/v1`, `http://localhost:11434/v1`. */
  readonly baseUrl: string
  readonly apiKey?: Redacted.Redacted<string> | undefined
  readonly model: string
  /** Default 0. */
  readonly temperature?: number | undefined
  /** Completion budget per call, default 4096. */
  readonly maxTokens?: number | undefined
  /** Default `max_tokens`; OpenAI's reasoning models need `max_completion_tokens`. */
  readonly maxTokensParameter?: "max_tokens" | "max_completion_tokens" | undefined
  readonly seed?: number | undefined
  /** Default `auto`. */
  readonly responseFormat?: ResponseFormatMode | undefined
  /** Per HTTP call, default 120 seconds. */
  readonly callTimeout?: Duration.DurationInput | undefined
  /** HTTP attempts per call, including the first, default 6. */
  readonly maxAttempts?: number | undefined
  /** Time spent retrying one call, from its first failure; default 10 minutes. No attempt starts after it. */
  readonly maxRetryTime?: Duration.DurationInput | undefined
  /** First backoff delay, default 1 second; doubles per attempt up to `retryMaxDelay` (default 60 seconds). */
  readonly retryBaseDelay?: Duration.DurationInput | undefined
  readonly retryMaxDelay?: Duration.DurationInput | undefined
  /** Repair prompts after an invalid reply, default 2. */
  readonly repairAttempts?: number | undefined
  /** Known entities quoted in the prompt (only those named in the batch text), default 50. */
  readonly maxKnownEntities?: number | undefined
  /** Default: 4 concurrent requests, no per-minute limits. */
  readonly limits?: RateLimiter.Limits | undefined
  /** Default: open after 5 consecutive failures for 30 seconds. */
  readonly breaker?: Partial<CircuitBreaker.Settings> | undefined
  readonly prices?: Pricing.PriceTable | undefined
}

/**
 * Why a batch failed, with the usage its attempts consumed (the `cause` of the `ExtractorError`).
 *
 * @since 0.1.0
 * @category errors
 */
export class LlmBatchFailure extends Schema.TaggedError<LlmBatchFailure>()("LlmBatchFailure", {
  reason: Schema.Union(ChatCompletions.ChatErrorReason, Schema.Literal("invalid_output", "known_entities")),
  detail: Schema.String,
  attempts: Schema.Int,
  usage: Schema.Struct({
    requests: Schema.Int,
    promptTokens: Schema.Int,
    completionTokens: Schema.Int,
    costUsd: Schema.optional(Schema.Number)
  })
}) {
  override get message() {
    return this.detail
  }
}

/**
 * The usage an `llm` extractor failure had consumed before it failed, if the error came from this extractor (the
 * same as `ExtractorError.usage`, which the extractor sets too).
 *
 * @since 0.1.0
 * @category errors
 */
export const usageOfError = (error: Errors.ExtractorError): Option.Option<Extractor.Usage> =>
  error.cause instanceof LlmBatchFailure ? Option.some(error.cause.usage) : Option.none()

/**
 * Options a program gave that `make` refuses: the option (`temperature`, `limits.maxConcurrent`), what it accepts
 * (the words `QUARRY_LLM_*` refusals use) and what it was (never for the key or the URL, which may hold secrets).
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidOptions extends Schema.TaggedError<InvalidOptions>()("InvalidOptions", {
  option: Schema.String,
  expected: Schema.String,
  actual: Schema.optional(Schema.String)
}) {
  override get message() {
    return `LlmExtractor option ${this.option}: expected ${this.expected}${
      this.actual === undefined ? "" : `, got ${this.actual}`
    }`
  }
}

const { rules } = OptionRules

const price = (key: string) => Config.option(ConfigValues.decimal(key, rules.price))

/** The configuration with the model from `model` (an explicit model makes `QUARRY_LLM_MODEL` optional). */
const configWithModel = (model: Config.Config<string>): Config.Config<Options> =>
  Config.all({
    baseUrl: ConfigValues.httpUrl("QUARRY_LLM_BASE_URL", rules.baseUrl).pipe(
      Config.withDefault("https://api.openai.com/v1"),
      Config.withDescription("Chat Completions base URL including the version path")
    ),
    apiKey: Config.option(ConfigValues.secret("QUARRY_LLM_API_KEY", rules.apiKey)).pipe(
      Config.withDescription("API key sent as a bearer token; local servers usually need none")
    ),
    model,
    temperature: ConfigValues.decimal("QUARRY_LLM_TEMPERATURE", rules.temperature).pipe(Config.withDefault(0)),
    maxTokens: ConfigValues.whole("QUARRY_LLM_MAX_TOKENS", rules.maxTokens).pipe(Config.withDefault(4096)),
    maxTokensParameter: Config.literal(...OptionRules.maxTokensParameters)("QUARRY_LLM_MAX_TOKENS_PARAMETER").pipe(
      Config.withDefault("max_tokens" as const)
    ),
    seed: Config.option(ConfigValues.whole("QUARRY_LLM_SEED", rules.seed)),
    responseFormat: Config.literal(...OptionRules.responseFormats)("QUARRY_LLM_RESPONSE_FORMAT").pipe(
      Config.withDefault("auto" as const)
    ),
    callTimeout: ConfigValues.duration("QUARRY_LLM_TIMEOUT", rules.callTimeout).pipe(
      Config.withDefault(Duration.seconds(120))
    ),
    maxAttempts: ConfigValues.whole("QUARRY_LLM_MAX_ATTEMPTS", rules.maxAttempts).pipe(Config.withDefault(6)),
    maxRetryTime: ConfigValues.duration("QUARRY_LLM_MAX_RETRY_TIME", rules.maxRetryTime).pipe(
      Config.withDefault(Duration.minutes(10))
    ),
    repairAttempts: ConfigValues.whole("QUARRY_LLM_REPAIR_ATTEMPTS", rules.repairAttempts).pipe(Config.withDefault(2)),
    maxKnownEntities: ConfigValues.whole("QUARRY_LLM_MAX_KNOWN_ENTITIES", rules.maxKnownEntities).pipe(
      Config.withDefault(50)
    ),
    requestsPerMinute: Config.option(ConfigValues.whole("QUARRY_LLM_RPM", rules.requestsPerMinute)),
    tokensPerMinute: Config.option(ConfigValues.whole("QUARRY_LLM_TPM", rules.tokensPerMinute)),
    maxConcurrent: ConfigValues.whole("QUARRY_LLM_MAX_CONCURRENT", rules.maxConcurrent).pipe(Config.withDefault(4)),
    failureThreshold: ConfigValues.whole("QUARRY_LLM_BREAKER_THRESHOLD", rules.failureThreshold).pipe(
      Config.withDefault(5)
    ),
    cooldown: ConfigValues.duration("QUARRY_LLM_BREAKER_COOLDOWN", rules.cooldown).pipe(
      Config.withDefault(Duration.seconds(30))
    ),
    prices: Config.option(
      ConfigValues.json("QUARRY_LLM_PRICES", Pricing.PriceTable, `JSON ${OptionRules.pricesAccepts}`)
    ),
    pricePrompt: price("QUARRY_LLM_PRICE_PROMPT"),
    priceCompletion: price("QUARRY_LLM_PRICE_COMPLETION")
  }).pipe(Config.map((c): Options => {
    const prices: Record<string, Pricing.Price> = { ...Option.getOrElse(c.prices, () => ({})) }
    if (Option.isSome(c.pricePrompt) || Option.isSome(c.priceCompletion)) {
      prices[c.model] = {
        prompt: Option.getOrElse(c.pricePrompt, () => 0),
        completion: Option.getOrElse(c.priceCompletion, () => 0)
      }
    }
    return {
      baseUrl: c.baseUrl,
      apiKey: Option.getOrUndefined(c.apiKey),
      model: c.model,
      temperature: c.temperature,
      maxTokens: c.maxTokens,
      maxTokensParameter: c.maxTokensParameter,
      seed: Option.getOrUndefined(c.seed),
      responseFormat: c.responseFormat,
      callTimeout: c.callTimeout,
      maxAttempts: c.maxAttempts,
      maxRetryTime: c.maxRetryTime,
      repairAttempts: c.repairAttempts,
      maxKnownEntities: c.maxKnownEntities,
      limits: {
        requestsPerMinute: Option.getOrUndefined(c.requestsPerMinute),
        tokensPerMinute: Option.getOrUndefined(c.tokensPerMinute),
        maxConcurrent: c.maxConcurrent
      },
      breaker: { failureThreshold: c.failureThreshold, cooldown: c.cooldown },
      prices
    }
  }))

/**
 * The options read from the environment (`QUARRY_LLM_*`); see `docs/llm.md` for the list.
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<Options> = configWithModel(
  ConfigValues.name("QUARRY_LLM_MODEL", rules.model).pipe(Config.withDescription("model name"))
)

interface Settings {
  readonly endpoint: ChatCompletions.Endpoint
  readonly key: string
  readonly model: string
  readonly temperature: number
  readonly maxTokens: number
  readonly maxTokensParameter: "max_tokens" | "max_completion_tokens"
  readonly seed: number | undefined
  readonly responseFormat: ResponseFormatMode
  readonly callTimeout: Duration.Duration
  readonly maxAttempts: number
  readonly maxRetryTime: number
  readonly retryBaseDelay: number
  readonly retryMaxDelay: number
  readonly repairAttempts: number
  readonly maxKnownEntities: number
  readonly limits: RateLimiter.Limits
  readonly breaker: CircuitBreaker.Settings
  readonly prices: Pricing.PriceTable
}

const millis = (d: Duration.DurationInput | undefined, fallback: Duration.DurationInput) =>
  Duration.toMillis(d ?? fallback)

const resolve = (o: Options): Settings => ({
  endpoint: { baseUrl: o.baseUrl, apiKey: Option.fromNullable(o.apiKey) },
  key: endpointKey(o.baseUrl, o.model),
  model: o.model,
  temperature: o.temperature ?? 0,
  maxTokens: o.maxTokens ?? 4096,
  maxTokensParameter: o.maxTokensParameter ?? "max_tokens",
  seed: o.seed,
  responseFormat: o.responseFormat ?? "auto",
  callTimeout: Duration.decode(o.callTimeout ?? Duration.seconds(120)),
  maxAttempts: Math.max(1, o.maxAttempts ?? 6),
  maxRetryTime: millis(o.maxRetryTime, Duration.minutes(10)),
  retryBaseDelay: millis(o.retryBaseDelay, Duration.seconds(1)),
  retryMaxDelay: millis(o.retryMaxDelay, Duration.seconds(60)),
  repairAttempts: Math.max(0, o.repairAttempts ?? 2),
  maxKnownEntities: Math.max(0, o.maxKnownEntities ?? 50),
  limits: o.limits ?? { maxConcurrent: 4 },
  breaker: {
    failureThreshold: o.breaker?.failureThreshold ?? 5,
    cooldown: o.breaker?.cooldown ?? Duration.seconds(30)
  },
  prices: o.prices ?? {}
})

/**
 * The key the limiter and the breaker use for an endpoint: the sanitised base URL and the model.
 *
 * @since 0.1.0
 * @category endpoints
 */
export const endpointKey = (baseUrl: string, model: string): string =>
  `${ChatCompletions.sanitizeBaseUrl(baseUrl)} ${model}`

/**
 * The configuration hash: what changes the output (model, temperature, max tokens, seed, response format mode, the
 * prompt template hash). Not the URL, the key, timeouts, limits or prices: a run can resume with new ones. The same
 * options but the template are published as the run's `settings` (`settingsOf`).
 *
 * @since 0.1.0
 * @category identity
 */
export const configHash = (options: Options): string => {
  const s = resolve(options)
  return createHash("sha256").update(JSON.stringify({
    model: s.model,
    temperature: s.temperature,
    maxTokens: s.maxTokens,
    seed: s.seed ?? null,
    responseFormat: s.responseFormat,
    promptTemplate: Prompt.templateHash
  })).digest("hex")
}

/**
 * The settings the extractor publishes with each run (`Extractor.settings`): the options its `configHash` covers (the
 * prompt template aside, which is code, not a setting). Nothing secret: no key, no URL, no price.
 *
 * @since 0.1.0
 * @category identity
 */
export const RunSettings = Schema.Struct({
  model: Schema.String,
  temperature: Schema.Finite,
  maxTokens: Schema.Int,
  seed: Schema.optionalWith(Schema.Int, { exact: true }),
  responseFormat: Schema.Literal("auto", "json_schema", "json_object", "none")
})

/**
 * @since 0.1.0
 * @category identity
 */
export type RunSettings = typeof RunSettings.Type

/**
 * The settings `options` resolve to (defaults filled in), as the extractor publishes them.
 *
 * @since 0.1.0
 * @category identity
 */
export const settingsOf = (options: Options): RunSettings => {
  const s = resolve(options)
  return {
    model: s.model,
    temperature: s.temperature,
    maxTokens: s.maxTokens,
    ...(s.seed === undefined ? {} : { seed: s.seed }),
    responseFormat: s.responseFormat
  }
}

/**
 * Reads the settings stored with a run (e.g. to resume it).
 *
 * @since 0.1.0
 * @category identity
 */
export const decodeSettings = Schema.decodeUnknownEither(RunSettings)

/**
 * `options` with the given settings in place of their own, so that the extractor is the one that published them
 * (same `configHash`): a seed the settings lack is removed, whatever the options said.
 *
 * @since 0.1.0
 * @category identity
 */
export const withSettings = (options: Options, settings: RunSettings): Options => ({
  ...options,
  model: settings.model,
  temperature: settings.temperature,
  maxTokens: settings.maxTokens,
  seed: settings.seed,
  responseFormat: settings.responseFormat
})

interface Prepared {
  readonly vocabulary: Prompt.Vocabulary
  readonly system: string
  readonly schema: Record<string, unknown>
  readonly decode: (content: string) => Either.Either<Prompt.Reply, string>
}

const prepare = (ontology: Option.Option<Ontology.Ontology>): Prepared => {
  const vocabulary = Prompt.vocabulary(ontology)
  return {
    vocabulary,
    system: Prompt.systemMessage(vocabulary),
    schema: Prompt.jsonSchema(vocabulary),
    decode: Prompt.decodeReply(vocabulary)
  }
}

interface MutableUsage {
  requests: number
  promptTokens: number
  completionTokens: number
  costUsd: number | undefined
}

/** What one batch has spent so far, and where to report each attempt as it happens. */
interface Ledger {
  readonly usage: Ref.Ref<MutableUsage>
  readonly attempts: Ref.Ref<number>
  readonly record: (usage: Extractor.Usage) => Effect.Effect<void>
  /** Publishes the endpoint's circuit state with the run when it changed since the run last heard of it. */
  readonly publishCircuit: Effect.Effect<void>
  /** Announces a long wait for the rate limiter (see `internal/waits`). */
  readonly announceWait: (wait: RateLimiter.Wait) => Effect.Effect<void>
}

const circuitName = (state: CircuitBreaker.State): string =>
  state._tag === "Closed" ? "closed" : state._tag === "Open" ? "open" : "half-open"

const toUsage = (u: MutableUsage): Extractor.Usage =>
  u.costUsd === undefined ?
    { requests: u.requests, promptTokens: u.promptTokens, completionTokens: u.completionTokens } :
    { requests: u.requests, promptTokens: u.promptTokens, completionTokens: u.completionTokens, costUsd: u.costUsd }

// Counters (OpenTelemetry sums, `_total` in Prometheus), by endpoint: a few series per configured endpoint.
const requestsMetric = Metric.counter("quarry_llm_requests_total", {
  description: "Chat Completions requests sent",
  incremental: true
})
const promptTokensMetric = Metric.counter("quarry_llm_prompt_tokens_total", {
  description: "Prompt tokens used",
  incremental: true
})
const completionTokensMetric = Metric.counter("quarry_llm_completion_tokens_total", {
  description: "Completion tokens used",
  incremental: true
})
const costMetric = Metric.counter("quarry_llm_cost_usd_total", {
  description: "Cost of the requests in US dollars, from the configured prices (requests of unpriced models add 0)",
  incremental: true
})
const droppedMetric = Metric.counter("quarry_llm_dropped_mentions_total", {
  description: "Entity and relation mentions dropped because they are not in the batch text",
  incremental: true
})

const clamp01 = (n: number) => Number.isFinite(n) ? Math.min(1, Math.max(0, n)) : 0.5

const countsForBreaker = (reason: ChatCompletions.ChatErrorReason) =>
  reason === "network" || reason === "timeout" || reason === "server" || reason === "bad_response"

const mentionsResponseFormat = (detail: string) =>
  /response_format|json_schema|json_object|structured output|response format/i.test(detail)

/** Maps a decoded reply to document spans; counts what it had to drop. */
const toOutput = (
  vocabulary: Prompt.Vocabulary,
  reply: Prompt.Reply,
  batch: BatchText,
  known: ReadonlyArray<Extractor.KnownEntity>
) => {
  const classes = new Map(vocabulary.classes.map((c) => [c.key, c]))
  const properties = new Map(vocabulary.properties.map((p) => [p.key, p]))
  const entities = new Map<string, Extractor.EntityMention>()
  let droppedEntities = 0
  for (const e of reply.entities) {
    const type = classes.get(e.type)
    const found = occurrences(batch, e.label)
    if (type === undefined || found.length === 0) {
      droppedEntities++
      continue
    }
    for (const o of found) {
      const id = `${o.start}:${o.end}:${type.iri}`
      if (entities.has(id)) continue
      entities.set(id, {
        label: o.text.replace(/\s+/g, " "),
        type: type.iri,
        span: { start: o.start, end: o.end },
        confidence: clamp01(e.confidence),
        attributes: {}
      })
    }
  }
  const knownLabels = new Map(known.map((k) => [k.label.toLowerCase(), k.label]))
  const resolveLabel = (label: string): Option.Option<string> => {
    const [first] = occurrences(batch, label)
    if (first !== undefined) return Option.some(first.text.replace(/\s+/g, " "))
    return Option.fromNullable(knownLabels.get(label.trim().toLowerCase()))
  }
  const relations = new Map<string, Extractor.RelationMention>()
  let droppedRelations = 0
  for (const r of reply.relations) {
    const property = properties.get(r.predicate)
    const subjectType = classes.get(r.subjectType)
    const subject = resolveLabel(r.subject)
    if (property === undefined || subjectType === undefined || Option.isNone(subject)) {
      droppedRelations++
      continue
    }
    let object: Extractor.RelationMention["object"]
    if (r.objectType === "literal") {
      if (r.object.trim() === "") {
        droppedRelations++
        continue
      }
      const value = storableText(r.object)
      object = property.datatype === undefined ?
        { _tag: "Literal", value } :
        { _tag: "Literal", value, datatype: property.datatype }
    } else {
      const objectType = classes.get(r.objectType)
      const label = resolveLabel(r.object)
      if (objectType === undefined || Option.isNone(label)) {
        droppedRelations++
        continue
      }
      object = { _tag: "Entity", label: label.value, type: objectType.iri }
    }
    const [evidence] = r.evidence.trim() === "" ? [] : occurrences(batch, r.evidence)
    const relation: Extractor.RelationMention = {
      subject: { _tag: "Entity", label: subject.value, type: subjectType.iri },
      predicate: property.iri,
      object,
      ...(evidence === undefined ? {} : { span: { start: evidence.start, end: evidence.end } }),
      confidence: clamp01(r.confidence)
    }
    const id = JSON.stringify([relation.subject, relation.predicate, relation.object, relation.span ?? null])
    if (!relations.has(id)) relations.set(id, relation)
  }
  const sorted = [...entities.values()].sort((a, b) =>
    a.span.start - b.span.start || a.span.end - b.span.end || (a.type < b.type ? -1 : a.type > b.type ? 1 : 0)
  )
  return { entities: sorted, relations: [...relations.values()], droppedEntities, droppedRelations }
}

/**
 * A literal is the model's own text, not the document's: a `\u0000` or half a surrogate pair it wrote (JSON allows
 * both) becomes U+FFFD, as a decoder does with bytes that are not text, since the store refuses them
 * (`Extractor.checkOutput`) and the batch would fail as if the extractor had a bug.
 */
const storableText = (text: string): string =>
  text.replace(/\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, "\ufffd")

/** Known entities named in the batch text, in the run's order, at most `max`. */
const relevantKnown = (known: ReadonlyArray<Extractor.KnownEntity>, text: string, max: number) => {
  const seen = new Set<string>()
  const out: Array<Extractor.KnownEntity> = []
  for (const k of known) {
    if (out.length >= max) break
    const id = `${k.label}\u0000${k.type}`
    if (seen.has(id) || k.label.trim() === "" || !text.includes(k.label)) continue
    seen.add(id)
    out.push(k)
  }
  return out
}

type Format = "json_schema" | "json_object" | "none"

/** What one built extractor's calls share: its services, settings, response format and metrics. */
interface Env {
  readonly client: HttpClient.HttpClient
  readonly limiter: RateLimiter.RateLimiter["Type"]
  readonly breaker: CircuitBreaker.CircuitBreaker["Type"]
  readonly s: Settings
  /** The response format in use: `auto` steps down from json_schema when the server rejects it. */
  readonly format: Ref.Ref<Format>
  readonly metrics: {
    readonly requests: Metric.Metric.Counter<number>
    readonly promptTokens: Metric.Metric.Counter<number>
    readonly completionTokens: Metric.Metric.Counter<number>
    readonly cost: Metric.Metric.Counter<number>
    readonly dropped: Metric.Metric.Counter<number>
  }
  /** The prompt pieces for an ontology (a few cached). */
  readonly preparedFor: (ontology: Option.Option<Ontology.Ontology>) => Prepared
  /** Publishes the endpoint's circuit state with the run, when it changed since the run last heard of it. */
  readonly publishCircuit: (input: Extractor.BatchInput) => Effect.Effect<void>
}

/** Adds one HTTP attempt to the batch's usage and reports it at once to the run's ledger, if any. */
const account = (env: Env, ledger: Ledger, prompt: number, completion: number) => {
  const cost = Pricing.cost(env.s.prices, env.s.model, prompt, completion)
  const attempt: Extractor.Usage = Option.isSome(cost) ?
    { requests: 1, promptTokens: prompt, completionTokens: completion, costUsd: cost.value } :
    { requests: 1, promptTokens: prompt, completionTokens: completion }
  return Effect.all([
    Ref.update(ledger.usage, (u) => ({
      requests: u.requests + 1,
      promptTokens: u.promptTokens + prompt,
      completionTokens: u.completionTokens + completion,
      costUsd: Option.isSome(cost) ? (u.costUsd ?? 0) + cost.value : u.costUsd
    })),
    ledger.record(attempt),
    Metric.update(env.metrics.requests, 1),
    Metric.update(env.metrics.promptTokens, prompt),
    Metric.update(env.metrics.completionTokens, completion),
    Metric.update(env.metrics.cost, Option.getOrElse(cost, () => 0))
  ], { discard: true })
}

/** The request of one attempt, in response format `used`. */
const requestFor = (
  s: Settings,
  messages: ReadonlyArray<ChatCompletions.Message>,
  schema: Record<string, unknown>,
  used: Format
): ChatCompletions.Request => ({
  model: s.model,
  messages,
  temperature: s.temperature,
  maxTokens: s.maxTokens,
  maxTokensParameter: s.maxTokensParameter,
  seed: s.seed,
  responseFormat: used === "json_schema" ?
    { type: "json_schema", name: "quarry_extraction", schema } :
    used === "json_object" ?
    { type: "json_object" } :
    { type: "text" }
})

/** One request under a rate-limiter permit: sent is spent, whatever the reply; a 429's Retry-After pauses the endpoint. */
const sendCounted = (env: Env, request: ChatCompletions.Request, promptEstimate: number, ledger: Ledger) =>
  env.limiter.withPermit(env.s.key, env.s.limits, promptEstimate + env.s.maxTokens, (permit) =>
    Effect.gen(function*() {
      // Sent is spent: an attempt counts even when it fails or is interrupted before the reply.
      const reply = yield* Effect.either(
        ChatCompletions.complete(env.client, env.s.endpoint, request, env.s.callTimeout)
      ).pipe(Effect.onInterrupt(() => account(env, ledger, 0, 0)))
      if (Either.isLeft(reply)) {
        const error = reply.left
        yield* account(env, ledger, 0, 0)
        if (error.reason === "rate_limited" && error.retryAfterMillis !== undefined) {
          // No call waits past the retry time limit, so neither does the endpoint, whatever the server asked.
          yield* env.limiter.pause(env.s.key, Duration.millis(Math.min(error.retryAfterMillis, env.s.maxRetryTime)))
        }
        return yield* Effect.fail(error)
      }
      const completion = reply.right
      // Servers that do not report usage get an estimate with the bundled tokenizer.
      const reported = Option.getOrElse(completion.usage, () => ({
        promptTokens: promptEstimate,
        completionTokens: Tokens.count(completion.content)
      }))
      yield* permit.settle(reported.promptTokens + reported.completionTokens)
      yield* account(env, ledger, reported.promptTokens, reported.completionTokens)
      return completion
    }), ledger.announceWait)

/** One HTTP attempt through the breaker and the limiter, accounted in the ledger. */
const attemptOnce = (
  env: Env,
  messages: ReadonlyArray<ChatCompletions.Message>,
  schema: Record<string, unknown>,
  used: Format,
  promptEstimate: number,
  ledger: Ledger
): Effect.Effect<ChatCompletions.Completion, ChatCompletions.ChatError> => {
  const endpoint = ChatCompletions.sanitizeBaseUrl(env.s.endpoint.baseUrl)
  return env.breaker.protect(
    env.s.key,
    env.s.breaker,
    sendCounted(env, requestFor(env.s, messages, schema, used), promptEstimate, ledger),
    (e) => e._tag === "ChatError" && countsForBreaker(e.reason)
  ).pipe(
    Effect.catchTags({
      CircuitOpen: (e) =>
        Effect.fail(
          new ChatCompletions.ChatError({
            reason: "circuit_open",
            endpoint,
            detail: e.message,
            retryAfterMillis: e.retryAfterMillis
          })
        ),
      RequestTooLarge: (e) =>
        Effect.fail(new ChatCompletions.ChatError({ reason: "too_large", endpoint, detail: e.message }))
    })
  )
}

/**
 * With `responseFormat: "auto"`, a 400 about the response format steps down json_schema -> json_object -> none;
 * true when this error did (or a concurrent batch already had), so the attempt is repeated.
 */
const stepDownFormat = (env: Env, error: ChatCompletions.ChatError, used: Format) =>
  Effect.gen(function*() {
    if (
      env.s.responseFormat !== "auto" || error.reason !== "bad_request" || used === "none" ||
      !mentionsResponseFormat(error.detail)
    ) return false
    const next: Format = used === "json_schema" ? "json_object" : "none"
    // Concurrent batches may all see the rejection: step down once per format actually rejected.
    const stepped = yield* Ref.modify(env.format, (current) => current === used ? [true, next] : [false, current])
    if (stepped) {
      yield* Effect.logWarning(`the server rejected response_format ${used}; falling back to ${next}`).pipe(
        Effect.annotateLogs({ detail: error.detail })
      )
    }
    return true
  })

/** The wait before the next attempt, and what it waits for. */
interface RetryWait {
  readonly millis: number
  readonly cause: "backoff" | "retry_after" | "circuit"
}

/**
 * The wait before attempt `sent + 1` after `last` failed: its backoff or the server's Retry-After, but never less than
 * the rest of an open circuit's cooldown, so that the attempt is sent, not refused. After a refusal while another
 * call's trial was in flight (the circuit half-open), the backoff again: that trial may end at any moment.
 */
const retryWait = (env: Env, last: ChatCompletions.ChatError, refused: boolean, sent: number, now: number) =>
  Effect.gen(function*() {
    const s = env.s
    const jitter = yield* Random.next
    const backoff = Math.min(s.retryMaxDelay, s.retryBaseDelay * 2 ** (sent - 1))
    const backoffWait = backoff / 2 + jitter * backoff / 2
    const state = yield* env.breaker.state(s.key)
    const cooldown = state._tag === "Open" ? state.openUntil - now : 0
    // At least 100 ms after a refusal, so that a zero backoff and cooldown do not spin.
    if (refused) return { millis: Math.max(100, cooldown, backoffWait), cause: "circuit" } satisfies RetryWait
    const own: RetryWait = last.retryAfterMillis !== undefined ?
      { millis: last.retryAfterMillis + jitter * Math.min(1000, s.retryBaseDelay), cause: "retry_after" } :
      { millis: backoffWait, cause: "backoff" }
    return cooldown > own.millis ? { millis: cooldown, cause: "circuit" } satisfies RetryWait : own
  })

/** Why no attempt follows `wait`: it would start past the retry time limit. */
const pastLimit = (s: Settings, last: ChatCompletions.ChatError, wait: RetryWait, attempts: string) => {
  const limit = `the retry time limit (QUARRY_LLM_MAX_RETRY_TIME ${Duration.format(Duration.millis(s.maxRetryTime))})`
  switch (wait.cause) {
    case "backoff":
      return exhausted(last, `${attempts}; the next would start after ${limit}`)
    case "retry_after":
      return exhausted(
        last,
        `${attempts}; the server asked to wait ${waitText(last.retryAfterMillis ?? wait.millis)}, past ${limit}`
      )
    case "circuit":
      return exhausted(
        last,
        `${attempts}; the circuit breaker is open and its next trial call is in ${waitText(wait.millis)}, ` +
          `past ${limit}`
      )
  }
}

/** A wait as a message shows it: whole seconds from a second up; an absurd one (a server's) is only "more than 24h". */
const waitText = (millis: number) =>
  millis > 24 * 60 * 60_000 ?
    "more than 24h" :
    Duration.format(Duration.millis(millis < 1000 ? Math.round(millis) : Math.ceil(millis / 1000) * 1000))

/**
 * Attempts until success, a permanent failure, or the attempt/time budget is spent. A retry never meets the open
 * circuit: it waits for the breaker's trial call instead, and an attempt the breaker refuses anyway (another call's
 * trial in flight) sent nothing and is not counted.
 */
const callWithRetries = (
  env: Env,
  messages: ReadonlyArray<ChatCompletions.Message>,
  schema: Record<string, unknown>,
  ledger: Ledger
): Effect.Effect<ChatCompletions.Completion, ChatCompletions.ChatError> =>
  Effect.gen(function*() {
    const s = env.s
    const promptEstimate = Tokens.estimatePrompt(messages)
    // The retry time counts from the first failure: time queued in the rate limiter before it is not retrying.
    let firstFailureAt: number | undefined
    // The last failure of an attempt that was sent: what a batch that gives up names, not the open circuit.
    let lastSent: ChatCompletions.ChatError | undefined
    let sent = 0
    while (true) {
      const used = yield* Ref.get(env.format)
      const result = yield* Effect.either(attemptOnce(env, messages, schema, used, promptEstimate, ledger))
      yield* ledger.publishCircuit
      // A call the open circuit refused sent nothing: not an attempt (as the message's count says).
      if (Either.isRight(result) || result.left.reason !== "circuit_open") {
        yield* Ref.update(ledger.attempts, (n) => n + 1)
      }
      if (Either.isRight(result)) return result.right
      const error = result.left
      if (yield* stepDownFormat(env, error, used)) continue
      const refused = error.reason === "circuit_open"
      const last = refused ? lastSent : error
      // A circuit that was open before this call sent anything fails it at once: that is what a breaker is for.
      if (last === undefined) return yield* Effect.fail(error)
      if (!refused) sent++
      lastSent = last
      if (!last.retryable) return yield* Effect.fail(last)
      const attempts = `${sent} ${sent === 1 ? "attempt" : "attempts"}`
      if (sent >= s.maxAttempts) return yield* Effect.fail(exhausted(last, attempts))
      const now = yield* Clock.currentTimeMillis
      firstFailureAt ??= now
      const wait = yield* retryWait(env, last, refused, sent, now)
      if (now - firstFailureAt + wait.millis > s.maxRetryTime) {
        return yield* Effect.fail(pastLimit(s, last, wait, attempts))
      }
      const when = wait.cause === "circuit" ?
        `the circuit breaker is open: retrying when it lets a call through, in ${waitText(wait.millis)}` :
        `retrying in ${waitText(wait.millis)}`
      yield* Effect.logWarning(`${last.message}; ${when} (attempt ${sent + 1} of ${s.maxAttempts})`)
      yield* Effect.sleep(Duration.millis(wait.millis))
    }
  })

const exhausted = (error: ChatCompletions.ChatError, what: string) =>
  new ChatCompletions.ChatError({
    reason: error.reason,
    endpoint: error.endpoint,
    detail: `${error.detail} (gave up after ${what})`,
    ...(error.status === undefined ? {} : { status: error.status })
  })

/** Fails the batch with an `ExtractorError` that carries what its attempts spent. */
const failBatch = (
  input: Extractor.BatchInput,
  reason: LlmBatchFailure["reason"],
  detail: string,
  retryable: boolean,
  ledger: Ledger
) =>
  Effect.gen(function*() {
    const used = toUsage(yield* Ref.get(ledger.usage))
    const failure = new LlmBatchFailure({ reason, detail, attempts: yield* Ref.get(ledger.attempts), usage: used })
    // Info, not a warning: the engine reports the failure itself (the run's error, or its "skipping batch" warning),
    // and a second line with the same text only doubles the noise on a terminal.
    yield* Effect.logInfo(`batch failed: ${detail}`).pipe(
      Effect.annotateLogs({ reason, requests: used.requests, promptTokens: used.promptTokens })
    )
    return yield* Effect.fail(
      new Errors.ExtractorError({
        extractor: name,
        batchIndex: input.batchIndex,
        reason: detail,
        retryable,
        // Committed with the batch if the run skips it, so that this spend is not reported as lost.
        usage: used,
        cause: failure
      })
    )
  })

/** What is wrong with a reply (refused, cut off, not the schema), or its decoded extraction. */
const replyProblem = (s: Settings, p: Prepared, completion: ChatCompletions.Completion) =>
  completion.refusal !== null && completion.refusal !== "" ?
    Either.left(`the model refused: ${completion.refusal}`) :
    completion.finishReason === "length" ?
    Either.left(
      `the reply was cut off at the limit of ${s.maxTokens} completion tokens; reply with a shorter JSON ` +
        `object (fewer entities and relations)`
    ) :
    p.decode(completion.content)

/** The messages that ask the model to repair a reply that failed with `problem`. */
const repairMessages = (
  base: ReadonlyArray<ChatCompletions.Message>,
  completion: ChatCompletions.Completion,
  problem: string
): ReadonlyArray<ChatCompletions.Message> =>
  completion.finishReason === "length" ?
    [...base, { role: "user", content: Prompt.repairMessage(problem) }] :
    [...base, { role: "assistant", content: completion.content }, {
      role: "user",
      content: Prompt.repairMessage(problem)
    }]

/** Extracts one batch: ask, decode, repair up to `repairAttempts` times; mentions not in the text are dropped. */
const extractWith = (env: Env) =>
  Effect.fn("LlmExtractor.extract")(function*(input: Extractor.BatchInput) {
    const s = env.s
    const ledger: Ledger = {
      usage: yield* Ref.make<MutableUsage>({ requests: 0, promptTokens: 0, completionTokens: 0, costUsd: undefined }),
      attempts: yield* Ref.make(0),
      record: input.recordUsage ?? (() => Effect.void),
      publishCircuit: env.publishCircuit(input),
      announceWait: Waits.announcer(input)
    }
    const batch = batchText(input.chunks)
    const text = batch.text
    if (text.trim() === "") return { entities: [], relations: [], usage: toUsage(yield* Ref.get(ledger.usage)) }
    const p = env.preparedFor(input.ontology)
    const known = yield* Effect.either(input.knownEntities)
    if (Either.isLeft(known)) return yield* failBatch(input, "known_entities", known.left.message, true, ledger)
    const base: ReadonlyArray<ChatCompletions.Message> = [
      { role: "system", content: p.system },
      {
        role: "user",
        content: Prompt.userMessage(p.vocabulary, text, relevantKnown(known.right, text, s.maxKnownEntities))
      }
    ]
    let messages = base
    for (let repair = 0;; repair++) {
      const result = yield* Effect.either(callWithRetries(env, messages, p.schema, ledger))
      if (Either.isLeft(result)) {
        const error = result.left
        const retryable = error.retryable || error.reason === "circuit_open"
        return yield* failBatch(input, error.reason, error.message, retryable, ledger)
      }
      const completion = result.right
      const problem = replyProblem(s, p, completion)
      if (Either.isRight(problem)) {
        const output = toOutput(p.vocabulary, problem.right, batch, known.right)
        const dropped = output.droppedEntities + output.droppedRelations
        if (dropped > 0) {
          yield* Metric.update(env.metrics.dropped, dropped)
          yield* Effect.logInfo(`dropped ${dropped} mentions that are not in the batch text`).pipe(
            Effect.annotateLogs({ droppedEntities: output.droppedEntities, droppedRelations: output.droppedRelations })
          )
        }
        const out: Extractor.BatchOutput = {
          entities: output.entities,
          relations: output.relations,
          usage: toUsage(yield* Ref.get(ledger.usage))
        }
        return out
      }
      if (repair >= s.repairAttempts) {
        // The problem is worded for the model; a reply cut off at max tokens needs the user to act.
        const detail = completion.finishReason === "length" ?
          `the model's reply was cut off at the limit of ${s.maxTokens} completion tokens` +
          `${
            repair === 0 ? "" : `, also after ${repair} ${repair === 1 ? "request" : "requests"} for a shorter one`
          }; ` +
          `start a new run with a higher --max-output-tokens (QUARRY_LLM_MAX_TOKENS) or a smaller --batch-size` :
          `the model's reply did not match the extraction schema` +
          `${repair === 0 ? "" : ` after ${repair} repair ${repair === 1 ? "attempt" : "attempts"}`}: ${problem.left}`
        return yield* failBatch(input, "invalid_output", detail, true, ledger)
      }
      yield* Effect.logWarning("the reply did not match the extraction schema; asking the model to repair it").pipe(
        Effect.annotateLogs({ error: problem.left })
      )
      messages = repairMessages(base, completion, problem.left)
    }
  }, (effect, input) =>
    Effect.annotateLogs(effect, {
      extractor: name,
      endpoint: env.s.key,
      runId: input.runId,
      batch: input.batchIndex
    }))

/**
 * What a batch will spend at least, before it is sent, for a budget: its prompt as the bundled tokenizer counts it
 * (without known entities, which are read when the batch runs) at the configured prompt price. The reply is not
 * counted: its length is known only once it arrives, and a full `maxTokens` reply (the worst case, often ten times
 * the usual one) would stop budgets that hold many batches.
 */
const estimateWith = (env: Env) => (input: Extractor.EstimateInput): Effect.Effect<Extractor.Estimate> =>
  Effect.sync(() => {
    const s = env.s
    const text = batchText(input.chunks).text
    // An empty batch sends nothing (see `extractWith`).
    if (text.trim() === "") return { promptTokens: 0, completionTokens: 0, costUsd: 0, basis: "an empty batch" }
    const p = env.preparedFor(input.ontology)
    const prompt = Tokens.estimatePrompt([
      { role: "system", content: p.system },
      { role: "user", content: Prompt.userMessage(p.vocabulary, text, []) }
    ])
    const price = Object.hasOwn(s.prices, s.model) ? s.prices[s.model] : undefined
    const tokens = `its prompt alone: about ${prompt} tokens, counted with the bundled tokenizer`
    return {
      promptTokens: prompt,
      completionTokens: 0,
      costUsd: Option.getOrUndefined(Pricing.cost(s.prices, s.model, prompt, 0)),
      basis: price === undefined ?
        `${tokens}; model ${s.model} has no price` :
        `${tokens}, at $${price.prompt} per million prompt tokens`
    }
  })

/** The prompt pieces per ontology, at most 8 kept. */
const preparedCache = () => {
  const prepared = new Map<string, Prepared>()
  return (ontology: Option.Option<Ontology.Ontology>) => {
    const id = Option.match(ontology, { onNone: () => "", onSome: (o) => o.sha256 })
    let p = prepared.get(id)
    if (p === undefined) {
      if (prepared.size >= 8) prepared.clear()
      p = prepare(ontology)
      prepared.set(id, p)
    }
    return p
  }
}

/** Publishes the circuit state with a run only when it changed (the state last published per run is kept). */
const circuitPublisher = (breaker: CircuitBreaker.CircuitBreaker["Type"], s: Settings) => {
  const published = new Map<string, string>()
  return (input: Extractor.BatchInput): Effect.Effect<void> => {
    const report = input.reportStatus
    if (report === undefined) return Effect.void
    return Effect.flatMap(breaker.state(s.key), (state) => {
      const circuit = circuitName(state)
      if (published.get(input.runId) === circuit) return Effect.void
      if (published.size >= 256) published.clear()
      published.set(input.runId, circuit)
      return report({ circuit, endpoint: s.key })
    })
  }
}

/**
 * Builds the extractor. Uses the process-wide `RateLimiter` and `CircuitBreaker` and the given `HttpClient`. Options
 * that the `QUARRY_LLM_*` readers would refuse (a temperature of `Infinity`, a negative `maxTokens`, a base URL that
 * is not http(s)) are refused here too, as `InvalidOptions` naming the first one, before anything is sent.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options
): Effect.Effect<
  Extractor.Extractor,
  InvalidOptions,
  HttpClient.HttpClient | RateLimiter.RateLimiter | CircuitBreaker.CircuitBreaker
> =>
  Effect.gen(function*() {
    const invalid = OptionRules.problem(options)
    if (invalid !== undefined) return yield* new InvalidOptions(invalid)
    const breaker = yield* CircuitBreaker.CircuitBreaker
    const s = resolve(options)
    const env: Env = {
      client: yield* HttpClient.HttpClient,
      limiter: yield* RateLimiter.RateLimiter,
      breaker,
      s,
      format: yield* Ref.make<Format>(s.responseFormat === "auto" ? "json_schema" : s.responseFormat),
      metrics: {
        requests: Metric.tagged(requestsMetric, "endpoint", s.key),
        promptTokens: Metric.tagged(promptTokensMetric, "endpoint", s.key),
        completionTokens: Metric.tagged(completionTokensMetric, "endpoint", s.key),
        cost: Metric.tagged(costMetric, "endpoint", s.key),
        dropped: Metric.tagged(droppedMetric, "endpoint", s.key)
      },
      preparedFor: preparedCache(),
      publishCircuit: circuitPublisher(breaker, s)
    }
    return {
      name,
      version,
      configHash: configHash(options),
      settings: settingsOf(options),
      extract: extractWith(env),
      estimate: estimateWith(env)
    }
  })

/**
 * The `llm` extractor as a service, for applications that register it by tag.
 *
 * @since 0.1.0
 * @category tags
 */
export class LlmExtractor extends Context.Tag("@quarry/llm/LlmExtractor")<LlmExtractor, Extractor.Extractor>() {}

/**
 * The extractor built from explicit options.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options
): Layer.Layer<
  LlmExtractor,
  InvalidOptions,
  HttpClient.HttpClient | RateLimiter.RateLimiter | CircuitBreaker.CircuitBreaker
> => Layer.effect(LlmExtractor, make(options))

/**
 * The extractor built from `QUARRY_LLM_*` configuration, with `overrides` (e.g. CLI flags) taking precedence.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  overrides: Partial<Options> = {}
): Layer.Layer<
  LlmExtractor,
  ConfigError.ConfigError,
  HttpClient.HttpClient | RateLimiter.RateLimiter | CircuitBreaker.CircuitBreaker
> => Layer.effect(LlmExtractor, makeConfig(overrides))

/**
 * The options from `QUARRY_LLM_*` configuration with `overrides` taking precedence; an overriding `model` makes
 * `QUARRY_LLM_MODEL` optional (and is the model the `QUARRY_LLM_PRICE_*` shortcut prices). An override `make` would
 * refuse is refused here, as invalid data at the option's name.
 *
 * @since 0.1.0
 * @category config
 */
export const configWith = (overrides: Partial<Options> = {}): Config.Config<Options> =>
  Config.mapOrFail(
    overrides.model === undefined ? config : configWithModel(Config.succeed(overrides.model)),
    (configured) => {
      const options = { ...configured, ...definedOnly(overrides) }
      const invalid = OptionRules.problem(options)
      return invalid === undefined ?
        Either.right(options) :
        Either.left(ConfigError.InvalidData([invalid.option], new InvalidOptions(invalid).message))
    }
  )

/**
 * Builds the extractor from `configWith(overrides)`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeConfig = (
  overrides: Partial<Options> = {}
): Effect.Effect<
  Extractor.Extractor,
  ConfigError.ConfigError,
  HttpClient.HttpClient | RateLimiter.RateLimiter | CircuitBreaker.CircuitBreaker
> =>
  // `configWith` refused what `make` would: its options are valid.
  Effect.flatMap(configWith(overrides), (options) => Effect.orDie(make(options)))

const definedOnly = (overrides: Partial<Options>): Partial<Options> =>
  Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined))
