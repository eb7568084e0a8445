/**
 * The `ts` code blocks of docs/llm.md, verbatim and in order, as one module: `DocsExample.test.ts` checks that the
 * documentation still holds exactly this code, compiles with it (tsc) and runs it against a loopback server.
 */

import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { Database, Extractor, SqliteRunStore, WorkflowManager } from "@quarry/core"
import { CircuitBreaker, LlmExtractor, RateLimiter } from "@quarry/llm"
import { Effect, Layer } from "effect"

// Once per process: the HTTP client, and the rate limiter and circuit breaker that every run shares.
export const LlmServices = Layer.mergeAll(NodeHttpClient.layerUndici, RateLimiter.layer, CircuitBreaker.layer)

// QUARRY_LLM_* from the environment, overridden by explicit options (e.g. command-line flags).
const Llm = LlmExtractor.layerConfig({ temperature: 0 }).pipe(Layer.provide(LlmServices))

// The registry the workflow engine takes a run's extractor from (add your other extractors to it).
const Registry = Layer.effect(
  Extractor.Registry,
  Effect.map(LlmExtractor.LlmExtractor, (llm) => Extractor.makeRegistry([llm]))
).pipe(Layer.provide(Llm))

// The engine over a SQLite file.
export const QuarryLive = (database: string) =>
  WorkflowManager.layer().pipe(
    Layer.provideMerge(SqliteRunStore.layer),
    Layer.provideMerge(Registry),
    Layer.provideMerge(Database.layer(database))
  )

// A run of the llm extractor over `text` to its end, its graph written to `artifact`:
// `await Effect.runPromise(extractGraph(text, "graph.ttl", "quarry.db"))`
export const extractGraph = (text: string, artifact: string, database: string) =>
  Effect.gen(function*() {
    const manager = yield* WorkflowManager.WorkflowManager
    const handle = yield* manager.start({ input: text, extractor: "llm", output: { path: artifact, format: "turtle" } })
    return yield* manager.await(handle.runId)
  }).pipe(Effect.provide(QuarryLive(database)), Effect.scoped)

// `make` needs what the layers above need: an HTTP client, the rate limiter and the circuit breaker (LlmServices).
export const refusal = Effect.gen(function*() {
  const refused = yield* Effect.flip(
    LlmExtractor.make({ baseUrl: "http://127.0.0.1:8080/v1", model: "m", temperature: Infinity })
  )
  return refused.message // "LlmExtractor option temperature: expected a number from 0 to 2, such as 0.7, got Infinity"
}).pipe(Effect.provide(LlmServices))
