/**
 * A scripted OpenAI-compatible Chat Completions server on 127.0.0.1 for tests. It speaks the real protocol over
 * loopback: `POST /v1/chat/completions` with a JSON body, replies with scripted steps (a completion, an error status
 * with headers, a malformed body, a delay), records every request, and reports prompt/completion tokens counted with
 * the same tokenizer family a real server would use.
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { countTokens } from "gpt-tokenizer"
import * as Http from "node:http"

/** The parts of a Chat Completions request body the tests look at; other fields are kept as they are. */
export const RequestBody = Schema.Struct(
  {
    model: Schema.optional(Schema.String),
    messages: Schema.optional(Schema.Array(Schema.Struct({ role: Schema.String, content: Schema.String }))),
    temperature: Schema.optional(Schema.Number),
    max_tokens: Schema.optional(Schema.Number),
    response_format: Schema.optional(Schema.Struct({
      type: Schema.String,
      json_schema: Schema.optional(
        Schema.Struct({ name: Schema.String, strict: Schema.Boolean, schema: Schema.Unknown })
      )
    }))
  },
  Schema.Record({ key: Schema.String, value: Schema.Unknown })
)

/** What the server does with one request. */
export interface Step {
  readonly status?: number
  readonly headers?: Record<string, string>
  /** A JSON body; `usage: "count"` in a completion is replaced by counted tokens. */
  readonly json?: unknown
  /** A raw body, sent as is. */
  readonly text?: string
  /** Real-time delay before replying. */
  readonly delayMillis?: number
}

/** A request as the server saw it. */
export interface Recorded {
  readonly path: string
  readonly authorization: string | undefined
  readonly headers: Readonly<Record<string, string>>
  readonly body: typeof RequestBody.Type
  /** `Clock` time when the request arrived (the test clock under `it.effect`). */
  readonly receivedAt: number
  /** Tokens reported back for this request (0 when the step was not a counted completion). */
  readonly promptTokens: number
  readonly completionTokens: number
}

/** The running server. */
export interface FakeOpenAi {
  /** `http://127.0.0.1:PORT/v1` */
  readonly baseUrl: string
  readonly enqueue: (...steps: ReadonlyArray<Step>) => Effect.Effect<void>
  readonly requests: Effect.Effect<ReadonlyArray<Recorded>>
  /** The most requests in flight at once so far. */
  readonly maxInFlight: Effect.Effect<number>
}

const plain = { disallowedSpecial: new Set<string>() }

/** A successful completion whose message content is `content`. Tokens are counted unless given. */
export const completion = (
  content: string,
  options: {
    readonly usage?: { readonly prompt_tokens: number; readonly completion_tokens: number } | null
    readonly finishReason?: string
  } = {}
): Step => ({
  json: {
    id: "chatcmpl-test",
    object: "chat.completion",
    created: 1700000000,
    model: "test-model",
    choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: options.finishReason ?? "stop" }],
    usage: options.usage === undefined ? "count" : options.usage
  }
})

/** An OpenAI-style error reply. */
export const error = (
  status: number,
  message: string,
  options: { readonly headers?: Record<string, string>; readonly code?: string } = {}
): Step => ({
  status,
  ...(options.headers === undefined ? {} : { headers: options.headers }),
  json: { error: { message, type: "test_error", code: options.code ?? null } }
})

const sleepReal = (ms: number) =>
  Effect.async<void>((resume) => {
    const timer = setTimeout(() => resume(Effect.void), ms)
    return Effect.sync(() => clearTimeout(timer))
  })

/**
 * Starts the server for the enclosing scope. `fallback` answers when no scripted step is left (default: HTTP 500
 * "no scripted response").
 */
export const make = (
  options: { readonly fallback?: (request: Recorded["body"]) => Step } = {}
): Effect.Effect<FakeOpenAi, never, Scope.Scope> =>
  Effect.gen(function*() {
    const steps: Array<Step> = []
    const recorded: Array<Recorded> = []
    let inFlight = 0
    let maxInFlight = 0
    const node = Http.createServer()
    const server = yield* NodeHttpServer.make(() => node, { port: 0, host: "127.0.0.1" }).pipe(Effect.orDie)
    // Finalizers run in reverse: drop open keep-alive connections before the server waits for them to close.
    yield* Effect.addFinalizer(() => Effect.sync(() => node.closeAllConnections()))

    const handle = Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      const receivedAt = yield* Clock.currentTimeMillis
      if (request.method !== "POST" || !request.url.startsWith("/v1/chat/completions")) {
        return HttpServerResponse.unsafeJson({ error: { message: `no route ${request.method} ${request.url}` } }, {
          status: 404
        })
      }
      const body = yield* Effect.flatMap(request.json, Schema.decodeUnknown(RequestBody))
      inFlight++
      maxInFlight = Math.max(maxInFlight, inFlight)
      const step = steps.shift() ?? options.fallback?.(body) ?? error(500, "no scripted response")
      let promptTokens = 0
      let completionTokens = 0
      let json = step.json
      if (isCountedCompletion(json)) {
        promptTokens = (body.messages ?? []).reduce((n, m) => n + countTokens(m.content, plain), 0)
        completionTokens = countTokens(json.choices[0]!.message.content, plain)
        json = {
          ...json,
          usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: 0 }
        }
      } else if (hasUsage(json)) {
        promptTokens = json.usage.prompt_tokens
        completionTokens = json.usage.completion_tokens
      }
      recorded.push({
        path: request.url,
        authorization: request.headers["authorization"],
        headers: request.headers,
        body,
        receivedAt,
        promptTokens,
        completionTokens
      })
      yield* Effect.ensuring(
        step.delayMillis === undefined ? Effect.void : sleepReal(step.delayMillis),
        Effect.sync(() => inFlight--)
      )
      const init = { status: step.status ?? 200, headers: step.headers ?? {} }
      return step.text !== undefined ?
        HttpServerResponse.text(step.text, { ...init, contentType: "application/json" }) :
        HttpServerResponse.unsafeJson(json ?? {}, init)
    }).pipe(Effect.orDie)

    yield* server.serve(handle)
    const port = server.address._tag === "TcpAddress" ? server.address.port : 0
    return {
      baseUrl: `http://127.0.0.1:${port}/v1`,
      enqueue: (...more) => Effect.sync(() => void steps.push(...more)),
      requests: Effect.sync(() => [...recorded]),
      maxInFlight: Effect.sync(() => maxInFlight)
    }
  })

interface CountedCompletion {
  readonly usage: "count"
  readonly choices: ReadonlyArray<{ readonly message: { readonly content: string } }>
}

const isCountedCompletion = (json: unknown): json is CountedCompletion =>
  typeof json === "object" && json !== null && "usage" in json && json.usage === "count"

const hasUsage = (
  json: unknown
): json is { readonly usage: { readonly prompt_tokens: number; readonly completion_tokens: number } } =>
  typeof json === "object" && json !== null && "usage" in json && typeof json.usage === "object" &&
  json.usage !== null
