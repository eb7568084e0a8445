import { assert, describe, it } from "@effect/vitest"
import type * as Errors from "@quarry/core/Errors"
import type * as Extractor from "@quarry/core/Extractor"
import * as ExtractorModule from "@quarry/core/Extractor"
import * as CircuitBreaker from "@quarry/llm/CircuitBreaker"
import * as LlmExtractor from "@quarry/llm/LlmExtractor"
import * as Prompt from "@quarry/llm/Prompt"
import * as RateLimiter from "@quarry/llm/RateLimiter"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as TestClock from "effect/TestClock"
import * as FakeOpenAi from "./FakeOpenAi.js"
import { apiKey, batch, collectLogs, eventually, options, services, sleepReal } from "./fixtures.js"

const ex = (name: string) => `http://example.org/${name}`

const text = "Ada Lovelace worked for the Analytical Society in London.\n" +
  "Later, Ada Lovelace wrote notes on the engine, and the Society printed them."

const goodReply = JSON.stringify({
  entities: [
    { label: "Ada Lovelace", type: "Person", confidence: 0.9 },
    { label: "Analytical Society", type: "Organization", confidence: 0.8 },
    { label: "Charles Babbage", type: "Person", confidence: 0.7 }
  ],
  relations: [
    {
      subject: "Ada Lovelace",
      subjectType: "Person",
      predicate: "worksFor",
      object: "Analytical Society",
      objectType: "Organization",
      evidence: "worked for the Analytical Society",
      confidence: 0.8
    },
    {
      subject: "Ada Lovelace",
      subjectType: "Person",
      predicate: "birthYear",
      object: "1815",
      objectType: "literal",
      evidence: "",
      confidence: 0.6
    },
    {
      subject: "Charles Babbage",
      subjectType: "Person",
      predicate: "worksFor",
      object: "Analytical Society",
      objectType: "Organization",
      evidence: "",
      confidence: 0.5
    }
  ]
})

const expectFailure = <A>(exit: Exit.Exit<A, Errors.ExtractorError>): Errors.ExtractorError => {
  if (Exit.isSuccess(exit)) return assert.fail("expected the extraction to fail")
  const failure = Cause.failureOption(exit.cause)
  if (Option.isNone(failure)) return assert.fail(`expected a typed failure, got ${Cause.pretty(exit.cause)}`)
  return failure.value
}

/** Moves the test clock a second at a time until `fiber` is done (a retry's waits are on that clock). */
const runClockUntilDone = <A, E>(fiber: Fiber.Fiber<A, E>) =>
  Effect.gen(function*() {
    while (Option.isNone(yield* Fiber.poll(fiber))) {
      yield* TestClock.adjust("1 second")
      yield* sleepReal(1)
    }
  })

describe("LlmExtractor", () => {
  it.scopedLive("extracts entities and relations with document spans, and reports usage", () =>
    Effect.gen(function*() {
      const fake = yield* FakeOpenAi.make()
      yield* fake.enqueue(FakeOpenAi.completion(goodReply))
      const extractor = yield* LlmExtractor.make(options(fake.baseUrl))
      const offset = 5000
      const input = batch(text, {
        offset,
        windowSize: 40,
        known: [
          { label: "Analytical Society", type: ex("Organization"), iri: ex("e/analytical-society") },
          { label: "Mary Shelley", type: ex("Person"), iri: ex("e/mary-shelley") }
        ]
      })
      assert.isAbove(input.chunks.length, 2, "the batch has several overlapping chunks")
      const output = yield* extractor.extract(input)

      assert.strictEqual(extractor.name, "llm")
      for (const e of output.entities) {
        assert.strictEqual(text.slice(e.span.start - offset, e.span.end - offset), e.label)
      }
      assert.deepStrictEqual(
        output.entities.map((e) => [e.label, e.type, e.span.start - offset]),
        [
          ["Ada Lovelace", ex("Person"), 0],
          ["Analytical Society", ex("Organization"), 28],
          ["Ada Lovelace", ex("Person"), text.lastIndexOf("Ada Lovelace")]
        ]
      )
      assert.strictEqual(output.entities[0]!.confidence, 0.9)
      assert.deepStrictEqual(output.relations.map((r) => [r.subject.label, r.predicate, r.object]), [
        ["Ada Lovelace", ex("worksFor"), { _tag: "Entity", label: "Analytical Society", type: ex("Organization") }],
        ["Ada Lovelace", ex("birthYear"), {
          _tag: "Literal",
          value: "1815",
          datatype: "http://www.w3.org/2001/XMLSchema#gYear"
        }]
      ])
      const span = output.relations[0]!.span!
      assert.strictEqual(text.slice(span.start - offset, span.end - offset), "worked for the Analytical Society")

      const [request] = yield* fake.requests
      assert.strictEqual(request!.authorization, `Bearer ${apiKey}`)
      assert.strictEqual(request!.body.model, "test-model")
      assert.strictEqual(request!.body.temperature, 0)
      assert.strictEqual(request!.body.max_tokens, 500)
      assert.strictEqual(request!.body.response_format?.type, "json_schema")
      assert.include(JSON.stringify(request!.body.response_format), `"enum":["Organization","Person"]`)
      const [system, user] = request!.body.messages!
      assert.include(system!.content, "Person: Person - A human being, real or fictional.")
      assert.include(system!.content, "worksFor: works for; Person -> Organization")
      assert.include(user!.content, `<<<\n${text}\n>>>`)
      assert.include(user!.content, "- Analytical Society (Organization)")
      assert.notInclude(user!.content, "Mary Shelley")

      assert.deepStrictEqual(output.usage, {
        requests: 1,
        promptTokens: request!.promptTokens,
        completionTokens: request!.completionTokens,
        costUsd: (request!.promptTokens * 1 + request!.completionTokens * 2) / 1_000_000
      })
      assert.isAbove(request!.promptTokens, 100)
    }).pipe(Effect.provide(services)))

  it.effect("configHash covers model, temperature and the prompt template, never the key or the URL", () =>
    Effect.sync(() => {
      const base = options("http://localhost:1/v1")
      const hash = LlmExtractor.configHash(base)
      assert.match(hash, /^[0-9a-f]{64}$/)
      assert.strictEqual(
        LlmExtractor.configHash({
          ...base,
          apiKey: Redacted.make("another-key"),
          baseUrl: "http://elsewhere/v1",
          callTimeout: "1 second",
          limits: { requestsPerMinute: 1 }
        }),
        hash
      )
      assert.notStrictEqual(LlmExtractor.configHash({ ...base, model: "other-model" }), hash)
      assert.notStrictEqual(LlmExtractor.configHash({ ...base, temperature: 0.7 }), hash)
      assert.notInclude(hash, apiKey)
      assert.match(Prompt.templateHash, /^[0-9a-f]{64}$/)
    }))

  it.scoped("publishes the settings its configHash covers; withSettings rebuilds the same identity from them", () =>
    Effect.gen(function*() {
      const started = options("http://localhost:1/v1", { temperature: 0.3, seed: 11, responseFormat: "json_object" })
      const extractor = yield* LlmExtractor.make(started)
      const expected = {
        model: "test-model",
        temperature: 0.3,
        maxTokens: 500,
        seed: 11,
        responseFormat: "json_object"
      }
      assert.deepStrictEqual(extractor.settings, expected)
      assert.notInclude(JSON.stringify(extractor.settings), apiKey)
      const stored = LlmExtractor.decodeSettings(JSON.parse(JSON.stringify(extractor.settings)))
      assert.isTrue(Either.isRight(stored))
      if (Either.isLeft(stored)) return
      // Other options (as a resume's environment might give them): the stored settings win, also over a seed.
      const elsewhere = options("http://elsewhere/v1", { model: "other", temperature: 1, maxTokens: 9, seed: 5 })
      assert.strictEqual(
        LlmExtractor.configHash(LlmExtractor.withSettings(elsewhere, stored.right)),
        extractor.configHash
      )
      const unseeded = LlmExtractor.settingsOf(options("http://localhost:1/v1"))
      assert.isFalse("seed" in unseeded)
      const rebuilt = LlmExtractor.withSettings(elsewhere, unseeded)
      assert.strictEqual(rebuilt.seed, undefined)
      assert.strictEqual(LlmExtractor.configHash(rebuilt), LlmExtractor.configHash(options("http://localhost:1/v1")))
      assert.isTrue(Either.isLeft(LlmExtractor.decodeSettings({ ...expected, responseFormat: "yaml" })))
    }).pipe(Effect.provide(services)))

  it.scoped("waits for Retry-After after a 429, rather than its own short backoff", () =>
    Effect.gen(function*() {
      const fake = yield* FakeOpenAi.make()
      yield* fake.enqueue(
        FakeOpenAi.error(429, "Rate limit reached for requests", { headers: { "retry-after": "20" } }),
        FakeOpenAi.completion(goodReply)
      )
      const extractor = yield* LlmExtractor.make(options(fake.baseUrl, { callTimeout: "1 hour" }))
      const fiber = yield* Effect.fork(extractor.extract(batch(text)))
      yield* eventually(Effect.map(fake.requests, (r) => r.length === 1))
      yield* TestClock.adjust("19 seconds")
      yield* sleepReal(200)
      assert.strictEqual((yield* fake.requests).length, 1, "no retry before Retry-After has passed")
      yield* TestClock.adjust("2 seconds")
      const output = yield* Fiber.join(fiber)
      const requests = yield* fake.requests
      assert.strictEqual(requests.length, 2)
      assert.isAtLeast(requests[1]!.receivedAt - requests[0]!.receivedAt, 20_000)
      assert.strictEqual(output.usage?.requests, 2)
      assert.strictEqual(output.entities.length, 3)
    }).pipe(Effect.provide(services)))

  it.scopedLive("retries a 500 and succeeds; usage counts both requests", () =>
    Effect.gen(function*() {
      const fake = yield* FakeOpenAi.make()
      yield* fake.enqueue(FakeOpenAi.error(500, "The server had an error"), FakeOpenAi.completion(goodReply))
      const extractor = yield* LlmExtractor.make(options(fake.baseUrl))
      const recorded: Array<Extractor.Usage> = []
      const output = yield* extractor.extract({
        ...batch(text),
        recordUsage: (usage) => Effect.sync(() => void recorded.push(usage))
      })
      const requests = yield* fake.requests
      assert.strictEqual(requests.length, 2)
      assert.strictEqual(output.usage?.requests, 2)
      assert.strictEqual(output.usage?.promptTokens, requests[1]!.promptTokens)
      assert.strictEqual(output.entities.length, 3)
      // Each attempt is reported to the run's ledger as it happens; together they are the batch's usage.
      const { completionTokens, promptTokens } = requests[1]!
      assert.deepStrictEqual(recorded, [
        { requests: 1, promptTokens: 0, completionTokens: 0, costUsd: 0 },
        { requests: 1, promptTokens, completionTokens, costUsd: (promptTokens + 2 * completionTokens) / 1e6 }
      ])
      assert.deepStrictEqual(output.usage, {
        requests: 2,
        promptTokens,
        completionTokens,
        costUsd: (promptTokens + 2 * completionTokens) / 1e6
      })
    }).pipe(Effect.provide(services)))

  it.scopedLive("gives up after maxAttempts transient failures, retryable, with the usage spent", () =>
    Effect.gen(function*() {
      const fake = yield* FakeOpenAi.make()
      yield* fake.enqueue(FakeOpenAi.error(503, "overloaded"), FakeOpenAi.error(502, "bad gateway"), {
        status: 500,
        text: "<html>oops</html>"
      })
      const extractor = yield* LlmExtractor.make(options(fake.baseUrl, { maxAttempts: 3 }))
      const error = expectFailure(yield* Effect.exit(extractor.extract(batch(text, { batchIndex: 7 }))))
      assert.strictEqual((yield* fake.requests).length, 3)
      assert.isTrue(error.retryable)
      assert.strictEqual(error.batchIndex, 7)
      assert.include(error.message, "gave up after 3 attempts")
      assert.deepStrictEqual(
        Option.map(LlmExtractor.usageOfError(error), (u) => u.requests),
        Option.some(3)
      )
      // On the error itself too, where a workflow that skips the batch finds it.
      assert.strictEqual(error.usage?.requests, 3)
      assert.deepStrictEqual(Option.some(error.usage), LlmExtractor.usageOfError(error))
    }).pipe(Effect.provide(services)))

  it.scopedLive("does not wait for a Retry-After beyond the total retry time", () =>
    Effect.gen(function*() {
      const fake = yield* FakeOpenAi.make()
      yield* fake.enqueue(FakeOpenAi.error(429, "slow down", { headers: { "retry-after": "3600" } }))
      const extractor = yield* LlmExtractor.make(options(fake.baseUrl, { maxRetryTime: "30 seconds" }))
      const started = Date.now()
      const error = expectFailure(yield* Effect.exit(extractor.extract(batch(text))))
      assert.isBelow(Date.now() - started, 5_000)
      assert.strictEqual((yield* fake.requests).length, 1)
      assert.isTrue(error.retryable)
      assert.include(error.message, "retry time limit")
    }).pipe(Effect.provide(services)))

  it.scoped("an absurd Retry-After fails the call at once in plain words, and pauses the endpoint only for the retry time limit", () =>
    Effect.gen(function*() {
      const fake = yield* FakeOpenAi.make()
      const limiter = yield* RateLimiter.RateLimiter
      yield* fake.enqueue(
        FakeOpenAi.error(429, "slow down", { headers: { "retry-after": "99999999999999999999" } }),
        FakeOpenAi.completion(goodReply)
      )
      const extractor = yield* LlmExtractor.make(options(fake.baseUrl, { callTimeout: "1 hour" }))
      const error = expectFailure(yield* Effect.exit(extractor.extract(batch(text))))
      assert.strictEqual(
        error.message,
        `extractor llm failed on batch 0: ${fake.baseUrl}: rate limited by the server (HTTP 429): slow down (gave up ` +
          `after 1 attempt; the server asked to wait more than 24h, past the retry time limit ` +
          `(QUARRY_LLM_MAX_RETRY_TIME 10m))`
      )
      const key = LlmExtractor.endpointKey(fake.baseUrl, "test-model")
      const paused = Option.flatMap(yield* limiter.snapshot(key), (s) => s.pausedUntil)
      assert.deepStrictEqual(paused, Option.some((yield* Clock.currentTimeMillis) + 10 * 60_000))
      // The next batch is sent once the endpoint's pause is over, not in 3 quadrillion years.
      const next = yield* Effect.fork(extractor.extract(batch(text, { batchIndex: 1 })))
      yield* TestClock.adjust("10 minutes")
      const output = yield* Fiber.join(next)
      assert.strictEqual(output.entities.length, 3)
      assert.strictEqual((yield* fake.requests).length, 2)
    }).pipe(Effect.provide(services)))

  it.scopedLive("times out a slow call and retries it", () =>
    Effect.gen(function*() {
      const fake = yield* FakeOpenAi.make()
      // The first reply comes long after the timeout, so that waiting for it shows even on a loaded machine.
      yield* fake.enqueue(
        { ...FakeOpenAi.completion(goodReply), delayMillis: 20_000 },
        FakeOpenAi.completion(goodReply)
      )
      const extractor = yield* LlmExtractor.make(options(fake.baseUrl, { callTimeout: "300 millis" }))
      const started = Date.now()
      const output = yield* extractor.extract(batch(text))
      assert.isBelow(Date.now() - started, 10_000, "the first call was abandoned at its timeout")
      assert.strictEqual((yield* fake.requests).length, 2)
      assert.strictEqual(output.usage?.requests, 2)
      assert.strictEqual(output.entities.length, 3)
    }).pipe(Effect.provide(services)))

  it.scopedLive("fails with reason timeout when every attempt times out", () =>
    Effect.gen(function*() {
      const fake = yield* FakeOpenAi.make()
      const slow = { ...FakeOpenAi.completion(goodReply), delayMillis: 1_000 }
      yield* fake.enqueue(slow, slow)
      const extractor = yield* LlmExtractor.make(
        options(fake.baseUrl, { callTimeout: "200 millis", maxAttempts: 2 })
      )
      const error = expectFailure(yield* Effect.exit(extractor.extract(batch(text))))
      assert.include(error.message, "no response within the call timeout")
      assert.isTrue(error.retryable)
      assert.strictEqual((yield* fake.requests).length, 2)
    }).pipe(Effect.provide(services)))

  it.scopedLive("repairs malformed JSON with the parse error in a follow-up prompt", () =>
    Effect.gen(function*() {
      const fake = yield* FakeOpenAi.make()
      const malformed = `{"entities": [{"label": "Ada Lovelace", "type": "Person"`
      yield* fake.enqueue(FakeOpenAi.completion(malformed), FakeOpenAi.completion(goodReply))
      const extractor = yield* LlmExtractor.make(options(fake.baseUrl))
      const output = yield* extractor.extract(batch(text))
      const requests = yield* fake.requests
      assert.strictEqual(requests.length, 2)
      const messages = requests[1]!.body.messages!
      assert.deepStrictEqual(messages.map((m) => m.role), ["system", "user", "assistant", "user"])
      assert.strictEqual(messages[2]!.content, malformed)
      assert.include(messages[3]!.content, "could not be used")
      assert.include(messages[3]!.content, "JSON")
      assert.strictEqual(output.entities.length, 3)
      assert.strictEqual(output.usage?.requests, 2)
      assert.strictEqual(output.usage?.promptTokens, requests[0]!.promptTokens + requests[1]!.promptTokens)
    }).pipe(Effect.provide(services)))

  it.scopedLive("accepts a reply wrapped in a Markdown fence without a repair", () =>
    Effect.gen(function*() {
      const fake = yield* FakeOpenAi.make()
      yield* fake.enqueue(FakeOpenAi.completion("```json\n" + goodReply + "\n```"))
      const extractor = yield* LlmExtractor.make(options(fake.baseUrl))
      const output = yield* extractor.extract(batch(text))
      assert.strictEqual((yield* fake.requests).length, 1)
      assert.strictEqual(output.entities.length, 3)
    }).pipe(Effect.provide(services)))

  it.scopedLive("fails after the repair budget when the output never matches the schema", () =>
    Effect.gen(function*() {
      const fake = yield* FakeOpenAi.make()
      const invalid = FakeOpenAi.completion(JSON.stringify({ entities: [{ label: "Ada", type: "Dragon" }] }))
      yield* fake.enqueue(invalid, invalid, invalid, FakeOpenAi.completion(goodReply))
      const extractor = yield* LlmExtractor.make(options(fake.baseUrl, { repairAttempts: 2 }))
      const error = expectFailure(yield* Effect.exit(extractor.extract(batch(text))))
      const requests = yield* fake.requests
      assert.strictEqual(requests.length, 3, "one call and two repairs, no more")
      assert.include(error.message, "did not match the extraction schema after 2 repair attempts")
      assert.include(error.message, "Dragon")
      assert.include(requests[1]!.body.messages![3]!.content, "Dragon")
      assert.isTrue(error.retryable)
      assert.deepStrictEqual(Option.map(LlmExtractor.usageOfError(error), (u) => u.requests), Option.some(3))
    }).pipe(Effect.provide(services)))

  it.scopedLive("asks for a shorter reply when the output was cut off at max tokens", () =>
    Effect.gen(function*() {
      const fake = yield* FakeOpenAi.make()
      yield* fake.enqueue(
        FakeOpenAi.completion(`{"entities": [`, { finishReason: "length" }),
        FakeOpenAi.completion(goodReply)
      )
      const extractor = yield* LlmExtractor.make(options(fake.baseUrl))
      const output = yield* extractor.extract(batch(text))
      const messages = (yield* fake.requests)[1]!.body.messages!
      assert.deepStrictEqual(messages.map((m) => m.role), ["system", "user", "user"])
      assert.include(messages[2]!.content, "cut off")
      assert.strictEqual(output.entities.length, 3)
    }).pipe(Effect.provide(services)))

  it.scopedLive("fails at once on an auth error, with a clear message and without the key", () =>
    Effect.gen(function*() {
      const logs = yield* collectLogs
      const fake = yield* FakeOpenAi.make()
      yield* fake.enqueue(
        FakeOpenAi.error(401, `Incorrect API key provided: ${apiKey}. You can find your API key at ...`, {
          code: "invalid_api_key"
        }),
        FakeOpenAi.completion(goodReply)
      )
      const extractor = yield* LlmExtractor.make(options(fake.baseUrl))
      const exit = yield* Effect.exit(extractor.extract(batch(text)).pipe(Effect.provide(logs.layer)))
      const error = expectFailure(exit)
      assert.strictEqual((yield* fake.requests).length, 1, "no retry")
      assert.isFalse(error.retryable)
      assert.include(error.message, "HTTP 401")
      assert.include(error.message, "QUARRY_LLM_API_KEY")
      assert.include(error.message, "Incorrect API key provided: [redacted]")
      for (const rendered of [error.message, JSON.stringify(error), Cause.pretty(Cause.fail(error)), ...logs.lines]) {
        assert.notInclude(rendered, apiKey)
      }
      assert.isAbove(logs.lines.length, 0)
    }).pipe(Effect.provide(services)))

  it.scopedLive("never puts the API key in logs or errors, whatever the server echoes", () =>
    Effect.gen(function*() {
      const logs = yield* collectLogs
      const fake = yield* FakeOpenAi.make()
      yield* fake.enqueue(
        FakeOpenAi.error(500, `upstream failed for key ${apiKey}`),
        FakeOpenAi.error(429, `slow down ${apiKey}`, { headers: { "retry-after-ms": "5" } }),
        { status: 200, text: `not json ${apiKey}` },
        FakeOpenAi.completion(`{"oops": "${apiKey}"`),
        FakeOpenAi.error(400, `invalid request from ${apiKey}`)
      )
      const extractor = yield* LlmExtractor.make(options(fake.baseUrl, { responseFormat: "json_schema" }))
      const error = expectFailure(
        yield* Effect.exit(extractor.extract(batch(text)).pipe(Effect.provide(logs.layer)))
      )
      assert.strictEqual((yield* fake.requests).length, 5)
      assert.include(error.message, "invalid request from [redacted]")
      const rendered = [error.message, JSON.stringify(error), Cause.pretty(Cause.fail(error)), ...logs.lines]
      assert.isTrue(logs.lines.some((l) => l.includes("[redacted]")), "the echoed text was logged, scrubbed")
      for (const line of rendered) assert.notInclude(line, apiKey)
      assert.notInclude(extractor.configHash, apiKey)
    }).pipe(Effect.provide(services)))

  it.scopedLive("reports a 404 as a configuration problem, without retrying", () =>
    Effect.gen(function*() {
      const fake = yield* FakeOpenAi.make()
      yield* fake.enqueue(FakeOpenAi.error(404, "The model `test-model` does not exist"))
      const extractor = yield* LlmExtractor.make(options(fake.baseUrl))
      const error = expectFailure(yield* Effect.exit(extractor.extract(batch(text))))
      assert.strictEqual((yield* fake.requests).length, 1)
      assert.isFalse(error.retryable)
      assert.include(error.message, "QUARRY_LLM_BASE_URL")
    }).pipe(Effect.provide(services)))

  it.scopedLive("falls back from json_schema to json_object when the server rejects response_format", () =>
    Effect.gen(function*() {
      const fake = yield* FakeOpenAi.make()
      yield* fake.enqueue(
        FakeOpenAi.error(400, "response_format type 'json_schema' is not supported"),
        FakeOpenAi.completion(goodReply),
        FakeOpenAi.completion(goodReply)
      )
      const extractor = yield* LlmExtractor.make(options(fake.baseUrl))
      const first = yield* extractor.extract(batch(text))
      yield* extractor.extract(batch(text, { batchIndex: 1 }))
      const requests = yield* fake.requests
      assert.deepStrictEqual(requests.map((r) => r.body.response_format?.type), [
        "json_schema",
        "json_object",
        "json_object"
      ])
      assert.strictEqual(first.usage?.requests, 2)
    }).pipe(Effect.provide(services)))

  it.scopedLive("with responseFormat none sends no response_format and relies on the prompt", () =>
    Effect.gen(function*() {
      const fake = yield* FakeOpenAi.make()
      yield* fake.enqueue(FakeOpenAi.completion(goodReply, { usage: null }))
      const extractor = yield* LlmExtractor.make(options(fake.baseUrl, { responseFormat: "none" }))
      const output = yield* extractor.extract(batch(text))
      const [request] = yield* fake.requests
      assert.isUndefined(request!.body.response_format)
      assert.include(request!.body.messages![0]!.content, "matching this JSON schema")
      // The server reported no usage: the bundled tokenizer's estimate stands in.
      assert.strictEqual(output.usage?.requests, 1)
      assert.isAbove(output.usage?.promptTokens ?? 0, 100)
      assert.isAbove(output.usage?.completionTokens ?? 0, 10)
    }).pipe(Effect.provide(services)))

  it.scoped("opens the breaker after consecutive failures, fails fast, then closes after a good trial", () =>
    Effect.gen(function*() {
      const logs = yield* collectLogs
      const fake = yield* FakeOpenAi.make()
      const breaker = yield* CircuitBreaker.CircuitBreaker
      const opts = options(fake.baseUrl, {
        maxAttempts: 1,
        callTimeout: "1 hour",
        breaker: { failureThreshold: 2, cooldown: "30 seconds" }
      })
      const key = LlmExtractor.endpointKey(opts.baseUrl, opts.model)
      const extractor = yield* LlmExtractor.make(opts)
      const extract = Effect.exit(extractor.extract(batch(text)).pipe(Effect.provide(logs.layer)))
      yield* fake.enqueue(FakeOpenAi.error(500, "down"), FakeOpenAi.error(500, "down"))

      yield* extract
      assert.strictEqual((yield* breaker.state(key))._tag, "Closed")
      yield* extract
      assert.strictEqual((yield* breaker.state(key))._tag, "Open")

      const fast = expectFailure(yield* extract)
      assert.strictEqual((yield* fake.requests).length, 2, "an open circuit sends nothing")
      assert.include(fast.message, "suspended after 2 consecutive failures")
      assert.isTrue(fast.retryable)

      yield* TestClock.adjust("31 seconds")
      yield* fake.enqueue(FakeOpenAi.error(500, "still down"))
      yield* extract
      assert.strictEqual((yield* fake.requests).length, 3, "one trial call after the cool-down")
      assert.strictEqual((yield* breaker.state(key))._tag, "Open", "a failed trial opens the circuit again")

      yield* TestClock.adjust("31 seconds")
      yield* fake.enqueue(FakeOpenAi.completion(goodReply))
      const exit = yield* extract
      assert.isTrue(Exit.isSuccess(exit))
      assert.deepStrictEqual(yield* breaker.state(key), { _tag: "Closed", consecutiveFailures: 0 })
      const transitions = logs.lines.filter((l) => l.includes(`"circuit breaker `)).map((l) => /"(.*)"/.exec(l)![1])
      assert.deepStrictEqual(transitions, [
        "circuit breaker Closed -> Open",
        "circuit breaker Open -> HalfOpen",
        "circuit breaker HalfOpen -> Open",
        "circuit breaker Open -> HalfOpen",
        "circuit breaker HalfOpen -> Closed"
      ])
      assert.notInclude(logs.lines.join("\n"), apiKey)
    }).pipe(Effect.provide(services)))

  it.scoped("a retry that would meet the open circuit waits for its trial call, which is sent and can succeed", () =>
    Effect.gen(function*() {
      const fake = yield* FakeOpenAi.make()
      // The defaults: six attempts; the fifth consecutive failure opens the circuit for 30 seconds.
      yield* fake.enqueue(
        ...Array.from({ length: 5 }, () => FakeOpenAi.error(500, "down")),
        FakeOpenAi.completion(goodReply)
      )
      const extractor = yield* LlmExtractor.make(options(fake.baseUrl, { callTimeout: "1 hour" }))
      const fiber = yield* Effect.fork(Effect.exit(extractor.extract(batch(text))))
      yield* runClockUntilDone(fiber)
      const exit = yield* Fiber.join(fiber)
      assert.isTrue(Exit.isSuccess(exit), "the sixth attempt was the trial call, not a refusal")
      const requests = yield* fake.requests
      assert.strictEqual(requests.length, 6)
      assert.isAtLeast(requests[5]!.receivedAt - requests[4]!.receivedAt, 30_000, "sent when the cooldown ended")
    }).pipe(Effect.provide(services)))

  it.scoped("a retry refused by a circuit another batch opened is not spent: it waits for the trial call", () =>
    Effect.gen(function*() {
      const fake = yield* FakeOpenAi.make()
      const breaker = yield* CircuitBreaker.CircuitBreaker
      const settings = { callTimeout: "1 hour", breaker: { failureThreshold: 2, cooldown: "30 seconds" } } as const
      const retrying = yield* LlmExtractor.make(options(fake.baseUrl, { ...settings, maxAttempts: 2 }))
      const other = yield* LlmExtractor.make(options(fake.baseUrl, { ...settings, maxAttempts: 1 }))
      const key = LlmExtractor.endpointKey(fake.baseUrl, "test-model")
      yield* fake.enqueue(
        FakeOpenAi.error(500, "down"),
        FakeOpenAi.error(500, "down"),
        FakeOpenAi.completion(goodReply)
      )
      const fiber = yield* Effect.fork(Effect.exit(retrying.extract(batch(text))))
      yield* eventually(Effect.map(breaker.state(key), (state) => state.consecutiveFailures === 1))
      // While the first batch waits for its retry, another batch's failure opens the circuit.
      yield* Effect.exit(other.extract(batch(text, { batchIndex: 1 })))
      assert.strictEqual((yield* breaker.state(key))._tag, "Open")
      yield* runClockUntilDone(fiber)
      const exit = yield* Fiber.join(fiber)
      assert.isTrue(Exit.isSuccess(exit), "the refused attempt did not fail the batch nor use its second attempt")
      const requests = yield* fake.requests
      assert.strictEqual(requests.length, 3)
      assert.isAtLeast(requests[2]!.receivedAt - requests[1]!.receivedAt, 30_000, "sent when the cooldown ended")
    }).pipe(Effect.provide(services)))

  /**
   * A batch whose retry comes while another batch's trial call is in flight (its reply takes a real second): the
   * breaker refuses the retry, which is tried again after its backoff and answered `retried`. `whileRefused` runs once
   * the trial is done and before the retry is tried again. The batch's exit and the fake server.
   */
  const refusedDuringTrial = (
    retried: FakeOpenAi.Step,
    whileRefused: (
      fake: FakeOpenAi.FakeOpenAi,
      key: string
    ) => Effect.Effect<void, never, CircuitBreaker.CircuitBreaker>
  ) =>
    Effect.gen(function*() {
      const fake = yield* FakeOpenAi.make()
      const breaker = yield* CircuitBreaker.CircuitBreaker
      const settings = { callTimeout: "1 hour", breaker: { failureThreshold: 2, cooldown: "10 seconds" } } as const
      // Backoffs of 20 to 40 seconds: longer than the cooldown, so that the other batch's trial goes first.
      const retrying = yield* LlmExtractor.make(options(fake.baseUrl, {
        ...settings,
        maxAttempts: 2,
        retryBaseDelay: "40 seconds",
        retryMaxDelay: "40 seconds"
      }))
      const other = yield* LlmExtractor.make(options(fake.baseUrl, { ...settings, maxAttempts: 1 }))
      const key = LlmExtractor.endpointKey(fake.baseUrl, "test-model")
      yield* fake.enqueue(
        FakeOpenAi.error(500, "down"),
        FakeOpenAi.error(500, "down"),
        { ...FakeOpenAi.completion(goodReply), delayMillis: 1000 },
        retried
      )
      const fiber = yield* Effect.fork(Effect.exit(retrying.extract(batch(text))))
      yield* eventually(Effect.map(breaker.state(key), (state) => state.consecutiveFailures === 1))
      yield* Effect.exit(other.extract(batch(text, { batchIndex: 1 })))
      yield* TestClock.adjust("10 seconds")
      const trial = yield* Effect.fork(other.extract(batch(text, { batchIndex: 2 })))
      yield* eventually(Effect.map(fake.requests, (r) => r.length === 3))
      yield* TestClock.adjust("30 seconds")
      yield* eventually(Effect.map(Fiber.poll(trial), Option.isSome))
      yield* whileRefused(fake, key)
      yield* runClockUntilDone(fiber)
      return { exit: yield* Fiber.join(fiber), fake }
    })

  it.scoped("a retry refused while another batch's trial call is in flight is not spent: it tries again after its backoff", () =>
    Effect.gen(function*() {
      const { exit, fake } = yield* refusedDuringTrial(
        FakeOpenAi.completion(goodReply),
        (fake, key) =>
          Effect.gen(function*() {
            const breaker = yield* CircuitBreaker.CircuitBreaker
            assert.deepStrictEqual(yield* breaker.state(key), { _tag: "Closed", consecutiveFailures: 0 })
            assert.strictEqual((yield* fake.requests).length, 3, "the refused retry sent nothing")
          })
      )
      assert.isTrue(Exit.isSuccess(exit), "the refusal did not fail the batch nor use its second attempt")
      assert.strictEqual((yield* fake.requests).length, 4)
    }).pipe(Effect.provide(services)))

  it.scoped("a batch that gives up after a refused retry counts only the attempts it sent", () =>
    Effect.gen(function*() {
      const { exit, fake } = yield* refusedDuringTrial(FakeOpenAi.error(500, "down again"), () => Effect.void)
      const error = expectFailure(exit)
      assert.strictEqual((yield* fake.requests).length, 4)
      assert.include(error.message, "gave up after 2 attempts")
      assert.instanceOf(error.cause, LlmExtractor.LlmBatchFailure)
      assert.strictEqual((error.cause as LlmExtractor.LlmBatchFailure).attempts, 2)
    }).pipe(Effect.provide(services)))

  it.scopedLive("a batch whose own failures opened the circuit gives up at once when its trial is past the retry time, naming the last failure", () =>
    Effect.gen(function*() {
      const fake = yield* FakeOpenAi.make()
      const opts = options(fake.baseUrl, {
        maxAttempts: 3,
        maxRetryTime: "10 seconds",
        breaker: { failureThreshold: 2, cooldown: "30 seconds" }
      })
      const extractor = yield* LlmExtractor.make(opts)
      yield* fake.enqueue(FakeOpenAi.error(500, "the GPU is on fire"), FakeOpenAi.error(502, "bad gateway"))
      const error = expectFailure(yield* Effect.exit(extractor.extract(batch(text))))
      assert.strictEqual((yield* fake.requests).length, 2, "no third attempt: it would only meet the open circuit")
      assert.strictEqual(
        error.message,
        `extractor llm failed on batch 0: ${fake.baseUrl}: server error (HTTP 502): bad gateway (gave up after 2 ` +
          `attempts; the circuit breaker is open and its next trial call is in 30s, past the retry time limit ` +
          `(QUARRY_LLM_MAX_RETRY_TIME 10s))`
      )
      assert.isTrue(error.retryable)
    }).pipe(Effect.provide(services)))

  it.scopedLive("a literal the model wrote with a NUL or half a surrogate pair is kept with U+FFFD, which the store can keep", () =>
    Effect.gen(function*() {
      const fake = yield* FakeOpenAi.make()
      const literal = (object: string) => ({
        subject: "Ada Lovelace",
        subjectType: "Person",
        predicate: "birthYear",
        object,
        objectType: "literal",
        evidence: "",
        confidence: 0.6
      })
      // JSON.stringify writes both as the escapes a model would write (\u0000, \ud83d); JSON.parse makes them again.
      const reply = JSON.stringify({
        entities: [{ label: "Ada Lovelace", type: "Person", confidence: 0.9 }],
        relations: [literal("18\u000015"), literal("1815 \ud83d")]
      })
      yield* fake.enqueue(FakeOpenAi.completion(reply))
      const extractor = yield* LlmExtractor.make(options(fake.baseUrl))
      const output = yield* extractor.extract(batch(text))
      assert.deepStrictEqual(output.relations.map((r) => r.object._tag === "Literal" ? r.object.value : ""), [
        "18\ufffd15",
        "1815 \ufffd"
      ])
      const checked = yield* Effect.either(ExtractorModule.checkOutput("llm", 0)(output))
      assert.isTrue(Either.isRight(checked))
    }).pipe(Effect.provide(services)))

  it.scoped("publishes the circuit state with the run when it changes, once per change", () =>
    Effect.gen(function*() {
      const fake = yield* FakeOpenAi.make()
      const opts = options(fake.baseUrl, {
        maxAttempts: 1,
        callTimeout: "1 hour",
        breaker: { failureThreshold: 2, cooldown: "30 seconds" }
      })
      const key = LlmExtractor.endpointKey(opts.baseUrl, opts.model)
      const extractor = yield* LlmExtractor.make(opts)
      const reported: Array<Readonly<Record<string, string>>> = []
      const input: Extractor.BatchInput = {
        ...batch(text),
        reportStatus: (status) => Effect.sync(() => void reported.push(status))
      }
      yield* fake.enqueue(FakeOpenAi.error(500, "down"), FakeOpenAi.error(500, "down"))
      yield* Effect.exit(extractor.extract(input))
      yield* Effect.exit(extractor.extract(input))
      yield* Effect.exit(extractor.extract(input))
      yield* TestClock.adjust("31 seconds")
      yield* fake.enqueue(FakeOpenAi.completion(goodReply))
      yield* extractor.extract(input)
      assert.deepStrictEqual(reported, [
        { circuit: "closed", endpoint: key },
        { circuit: "open", endpoint: key },
        { circuit: "closed", endpoint: key }
      ])
      assert.notInclude(JSON.stringify(reported), apiKey)
    }).pipe(Effect.provide(services)))

  it.scopedLive("a batch without an ontology extracts owl:Thing mentions", () =>
    Effect.gen(function*() {
      const fake = yield* FakeOpenAi.make()
      yield* fake.enqueue(FakeOpenAi.completion(JSON.stringify({
        entities: [{ label: "London", type: "Thing", confidence: 1 }]
      })))
      const extractor = yield* LlmExtractor.make(options(fake.baseUrl))
      const output = yield* extractor.extract(batch(text, { ontology: Option.none() }))
      assert.deepStrictEqual(output.entities.map((e) => [e.label, e.type]), [
        ["London", "http://www.w3.org/2002/07/owl#Thing"]
      ])
      const [request] = yield* fake.requests
      assert.notInclude(JSON.stringify(request!.body.response_format), "relations")
    }).pipe(Effect.provide(services)))

  it.effect("reads its options from QUARRY_LLM_* configuration", () =>
    Effect.gen(function*() {
      const provider = ConfigProvider.fromMap(
        new Map([
          ["QUARRY_LLM_BASE_URL", "http://127.0.0.1:8080/v1"],
          ["QUARRY_LLM_API_KEY", apiKey],
          ["QUARRY_LLM_MODEL", "llama-3.1-8b"],
          ["QUARRY_LLM_TEMPERATURE", "0.2"],
          ["QUARRY_LLM_RPM", "60"],
          ["QUARRY_LLM_TIMEOUT", "30 seconds"],
          ["QUARRY_LLM_PRICE_PROMPT", "0.5"],
          ["QUARRY_LLM_PRICE_COMPLETION", "1.5"]
        ])
      )
      const loaded = yield* Effect.withConfigProvider(LlmExtractor.config, provider)
      assert.strictEqual(loaded.baseUrl, "http://127.0.0.1:8080/v1")
      assert.strictEqual(loaded.model, "llama-3.1-8b")
      assert.strictEqual(loaded.temperature, 0.2)
      assert.strictEqual(loaded.limits?.requestsPerMinute, 60)
      assert.strictEqual(loaded.limits?.maxConcurrent, 4)
      assert.deepStrictEqual(loaded.prices, { "llama-3.1-8b": { prompt: 0.5, completion: 1.5 } })
      assert.isTrue(loaded.apiKey !== undefined && Redacted.value(loaded.apiKey) === apiKey)
      assert.notInclude(String(loaded.apiKey), apiKey)
      assert.notInclude(JSON.stringify(loaded), apiKey)

      const missing = yield* Effect.flip(
        Effect.withConfigProvider(LlmExtractor.config, ConfigProvider.fromMap(new Map()))
      )
      assert.include(String(missing), "QUARRY_LLM_MODEL")
    }))

  it.scopedLive("estimates a batch before sending it at what it will spend at least: the prompt it will send, at its prompt price", () =>
    Effect.gen(function*() {
      const fake = yield* FakeOpenAi.make()
      // No usage in the reply: the extractor counts the prompt it sent with the same tokenizer.
      yield* fake.enqueue(FakeOpenAi.completion(goodReply, { usage: null }))
      const extractor = yield* LlmExtractor.make(options(fake.baseUrl))
      const input = batch(text)
      const estimate = yield* extractor.estimate!(input)
      assert.strictEqual((yield* fake.requests).length, 0, "estimating sends nothing")
      // The reply is not counted: its length is known only once it arrives.
      assert.strictEqual(estimate.completionTokens, 0)
      // $1 per million prompt tokens.
      assert.strictEqual(estimate.costUsd, estimate.promptTokens / 1e6)
      assert.strictEqual(
        estimate.basis,
        `its prompt alone: about ${estimate.promptTokens} tokens, counted with the bundled tokenizer, at $1 per ` +
          "million prompt tokens"
      )
      const output = yield* extractor.extract(input)
      assert.strictEqual(output.usage?.promptTokens, estimate.promptTokens, "the prompt estimated is the one sent")
      const unpriced = yield* LlmExtractor.make(options(fake.baseUrl, { prices: {} }))
      const free = yield* unpriced.estimate!(input)
      assert.isUndefined(free.costUsd)
      assert.include(free.basis, "; model test-model has no price")
    }).pipe(Effect.provide(services)))

  it.effect("make refuses bad options by name, in the words the QUARRY_LLM_* readers use", () =>
    Effect.gen(function*() {
      const base = options("http://127.0.0.1:9/v1")
      const refused = (patch: Partial<LlmExtractor.Options>) =>
        Effect.flip(LlmExtractor.make({ ...base, ...patch })).pipe(Effect.map((error) => error.message))
      const cases: ReadonlyArray<readonly [Partial<LlmExtractor.Options>, string]> = [
        [{ temperature: Infinity }, "temperature: expected a number from 0 to 2, such as 0.7, got Infinity"],
        [{ temperature: Number.NaN }, "temperature: expected a number from 0 to 2, such as 0.7, got NaN"],
        [{ maxTokens: -1 }, "maxTokens: expected a whole number of tokens greater than 0, such as 4096, got -1"],
        [{ maxTokens: 1.5 }, "maxTokens: expected a whole number of tokens greater than 0, such as 4096, got 1.5"],
        [{ repairAttempts: -1 }, "repairAttempts: expected a whole number of repair prompts (0 or more)"],
        [{ baseUrl: "ftp://example.org/v1" }, "baseUrl: expected an http:// or https:// URL"],
        [{ model: " " }, "model: expected a model name, such as gpt-4o-mini, got \" \""],
        [{ callTimeout: 0 }, "callTimeout: expected a duration greater than 0, such as \"120 seconds\""],
        [{ maxRetryTime: "-5 seconds" }, "maxRetryTime: expected a duration, such as \"10 minutes\""],
        [{ limits: { maxConcurrent: 0 } }, "limits.maxConcurrent: expected a whole number of requests greater than 0"],
        [{ breaker: { cooldown: -1 } }, "breaker.cooldown: expected a duration, such as \"30 seconds\""],
        [{ prices: { "test-model": { prompt: -1, completion: 0 } } }, "prices: expected prices in USD per million"],
        [{ responseFormat: JSON.parse("\"xml\"") }, "responseFormat: expected one of \"auto\", \"json_schema\""]
      ]
      for (const [patch, expected] of cases) {
        assert.include(yield* refused(patch), `LlmExtractor option ${expected}`, JSON.stringify(patch))
      }
      // Neither the key nor a URL (which may hold credentials) is echoed.
      const url = yield* refused({ baseUrl: "https://user:hunter2@example.org/v1" })
      assert.notInclude(url, "hunter2")
      assert.strictEqual(
        yield* refused({ apiKey: Redacted.make(" ") }),
        "LlmExtractor option apiKey: expected the API key; leave it unset for a server that needs none"
      )
      // The environment's refusal of the same value says the same.
      const fromEnv = yield* Effect.flip(
        Effect.withConfigProvider(
          LlmExtractor.config,
          ConfigProvider.fromMap(new Map([["QUARRY_LLM_MODEL", "m"], ["QUARRY_LLM_TEMPERATURE", "5"]]))
        )
      )
      assert.include(String(fromEnv), "expected a number from 0 to 2, such as 0.7")
      // Good options still build.
      assert.strictEqual((yield* LlmExtractor.make({ ...base, temperature: 2, maxTokens: 1 })).name, "llm")
    }).pipe(Effect.provide(services)))

  it.effect("configWith refuses an override that make would refuse, by the option's name", () =>
    Effect.gen(function*() {
      const provider = ConfigProvider.fromMap(new Map([["QUARRY_LLM_BASE_URL", "http://127.0.0.1:9/v1"]]))
      const refused = yield* Effect.flip(
        Effect.withConfigProvider(LlmExtractor.configWith({ model: "m", maxTokens: 0 }), provider)
      )
      assert.include(String(refused), "maxTokens")
      assert.include(String(refused), "expected a whole number of tokens greater than 0, such as 4096, got 0")
    }))

  it.scopedLive("makeConfig with an explicit model needs no QUARRY_LLM_MODEL, and prices that model", () =>
    Effect.gen(function*() {
      const fake = yield* FakeOpenAi.make()
      yield* fake.enqueue(FakeOpenAi.completion(goodReply, { usage: { prompt_tokens: 1000, completion_tokens: 100 } }))
      const provider = ConfigProvider.fromMap(
        new Map([
          ["QUARRY_LLM_BASE_URL", fake.baseUrl],
          ["QUARRY_LLM_PRICE_PROMPT", "10"],
          ["QUARRY_LLM_PRICE_COMPLETION", "20"]
        ])
      )
      const extractor = yield* LlmExtractor.makeConfig({ model: "flag-model" }).pipe(
        Effect.withConfigProvider(provider)
      )
      const output = yield* extractor.extract(batch(text))
      const [request] = yield* fake.requests
      assert.strictEqual(request!.body.model, "flag-model")
      assert.closeTo(output.usage?.costUsd ?? 0, 0.012, 1e-12)
      const missing = yield* Effect.flip(LlmExtractor.makeConfig().pipe(Effect.withConfigProvider(provider)))
      assert.include(String(missing), "QUARRY_LLM_MODEL")
    }).pipe(Effect.provide(services)))

  it.scopedLive("layerConfig builds the extractor from configuration, explicit overrides winning", () =>
    Effect.gen(function*() {
      const fake = yield* FakeOpenAi.make()
      yield* fake.enqueue(FakeOpenAi.completion(goodReply))
      const provider = ConfigProvider.fromMap(
        new Map([
          ["QUARRY_LLM_BASE_URL", fake.baseUrl],
          ["QUARRY_LLM_API_KEY", apiKey],
          ["QUARRY_LLM_MODEL", "env-model"],
          ["QUARRY_LLM_TEMPERATURE", "0.9"]
        ])
      )
      // As in docs/llm.md: the extractor in core's registry, built from configuration plus overrides.
      const registry = Layer.effect(
        ExtractorModule.Registry,
        Effect.map(LlmExtractor.LlmExtractor, (llm) => ExtractorModule.makeRegistry([llm]))
      ).pipe(Layer.provide(LlmExtractor.layerConfig({ temperature: 0.1, seed: undefined })), Layer.provide(services))
      const extractor = yield* Effect.gen(function*() {
        const llm = yield* Effect.flatMap(ExtractorModule.Registry, (r) => r.get("llm"))
        yield* llm.extract(batch(text))
        return llm
      }).pipe(Effect.provide(registry), Effect.withConfigProvider(provider))
      const [request] = yield* fake.requests
      assert.strictEqual(request!.body.model, "env-model")
      assert.strictEqual(request!.body.temperature, 0.1)
      assert.strictEqual(request!.authorization, `Bearer ${apiKey}`)
      assert.strictEqual(
        extractor.configHash,
        LlmExtractor.configHash({ ...options(fake.baseUrl), model: "env-model", temperature: 0.1, maxTokens: 4096 })
      )
    }))
})
