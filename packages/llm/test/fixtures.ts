/**
 * Shared test inputs: a small ontology, batch inputs, the services an `llm` extractor needs, and a log collector.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as Chunking from "@quarry/core/Chunking"
import type * as Extractor from "@quarry/core/Extractor"
import * as Ontology from "@quarry/core/Ontology"
import * as Run from "@quarry/core/Run"
import * as CircuitBreaker from "@quarry/llm/CircuitBreaker"
import * as LlmExtractor from "@quarry/llm/LlmExtractor"
import * as RateLimiter from "@quarry/llm/RateLimiter"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"

export const apiKey = "sk-test-SECRET-0123456789abcdef"

export const ontologyTurtle = `
@prefix ex: <http://example.org/> .
@prefix owl: <http://www.w3.org/2002/07/owl#> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .

ex:Person a owl:Class ; rdfs:label "Person"@en ; rdfs:comment "A human being, real or fictional."@en .
ex:Organization a owl:Class ; rdfs:label "Organization" ; rdfs:comment "A company, institution or society." .
ex:worksFor a owl:ObjectProperty ; rdfs:label "works for" ; rdfs:domain ex:Person ; rdfs:range ex:Organization .
ex:birthYear a owl:DatatypeProperty ; rdfs:label "birth year" ; rdfs:domain ex:Person ; rdfs:range xsd:gYear .
`

export const ontology: Ontology.Ontology = Effect.runSync(Ontology.parse(ontologyTurtle, { source: "test.ttl" }))

export const runId = Schema.decodeSync(Run.RunId)("llm-test")

/** A batch over `text` cut into overlapping chunks, placed at `offset` in a larger document. */
export const batch = (
  text: string,
  options: {
    readonly batchIndex?: number
    readonly offset?: number
    readonly windowSize?: number
    readonly known?: ReadonlyArray<Extractor.KnownEntity>
    readonly ontology?: Option.Option<Ontology.Ontology>
  } = {}
): Extractor.BatchInput => {
  const offset = options.offset ?? 0
  const params = new Chunking.ChunkingParams({
    strategy: "chars",
    windowSize: options.windowSize ?? 1000,
    overlap: Math.floor((options.windowSize ?? 1000) / 4),
    batchSize: 100
  })
  const chunks = Chunking.chunk(text, params).map((c) =>
    new Chunking.Chunk({ index: c.index, start: c.start + offset, end: c.end + offset, text: c.text })
  )
  return {
    runId,
    batchIndex: options.batchIndex ?? 0,
    chunks,
    ontology: options.ontology ?? Option.some(ontology),
    knownEntities: Effect.succeed(options.known ?? [])
  }
}

/** Options for an extractor against `baseUrl` with test-sized delays. */
export const options = (baseUrl: string, overrides: Partial<LlmExtractor.Options> = {}): LlmExtractor.Options => ({
  baseUrl,
  apiKey: Redacted.make(apiKey),
  model: "test-model",
  maxTokens: 500,
  retryBaseDelay: "10 millis",
  retryMaxDelay: "100 millis",
  callTimeout: "5 seconds",
  prices: { "test-model": { prompt: 1, completion: 2 } },
  ...overrides
})

/**
 * The process-wide services plus a real HTTP client, fresh for each test. Without the default logger: passing tests
 * stay quiet, and the tests about log lines read them through `collectLogs`.
 */
export const services: Layer.Layer<
  HttpClient.HttpClient | RateLimiter.RateLimiter | CircuitBreaker.CircuitBreaker
> = Layer.mergeAll(
  NodeHttpClient.layerUndici,
  RateLimiter.layer,
  CircuitBreaker.layer,
  Logger.remove(Logger.defaultLogger)
)

/** Collects every log line (message, annotations and cause) at every level. */
export const collectLogs = Effect.gen(function*() {
  const lines: Array<string> = []
  const logger = Logger.make(({ annotations, cause, logLevel, message }) => {
    const annotated = [...annotations].map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
    lines.push(
      [logLevel.label, JSON.stringify(message), ...annotated, Cause.isEmpty(cause) ? "" : Cause.pretty(cause)].join(" ")
    )
  })
  const layer = Layer.merge(Logger.add(logger), Logger.minimumLogLevel(LogLevel.All))
  return { lines, layer }
})

/** Waits in real time (whatever clock the test runs with). */
export const sleepReal = (millis: number) =>
  Effect.async<void>((resume) => {
    const timer = setTimeout(() => resume(Effect.void), millis)
    return Effect.sync(() => clearTimeout(timer))
  })

/** Polls (in real time, up to 10 s) until `condition` holds. */
export const eventually = <E, R>(condition: Effect.Effect<boolean, E, R>): Effect.Effect<void, E, R> =>
  Effect.gen(function*() {
    for (let i = 0; i < 1000; i++) {
      if (yield* condition) return
      yield* sleepReal(10)
    }
    return yield* Effect.dieMessage("condition not reached within 10 seconds")
  })
