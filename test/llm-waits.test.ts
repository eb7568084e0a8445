/**
 * Long waits of the `llm` extractor are announced, not silent: a real `quarry start` against a Chat Completions
 * server on 127.0.0.1 waits for its endpoint's rate limit (`QUARRY_LLM_RPM=1`) or for a pause the server asked for
 * (429 with `Retry-After`), and says so on stderr, or as an `extractor.waiting` event with `--json`, as the wait
 * starts; `quarry serve` logs it. Each test stops the process once the wait is announced: none sits out the wait.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as fs from "node:fs"
import * as path from "node:path"
import * as FakeLlm from "../packages/cli/test/FakeLlm.js"
import * as FakeOpenAi from "../packages/llm/test/FakeOpenAi.js"
import { serve, until } from "./serverProcess.js"
import { jsonLines, makeDir, removeDir, start } from "./support.js"

describe("quarry --extractor llm announces long waits", () => {
  let dir = ""
  const closers: Array<() => Promise<void>> = []

  beforeAll(() => {
    dir = makeDir()
  })
  afterAll(async () => {
    await Promise.all(closers.map((close) => close()))
    removeDir(dir)
  })

  /** `quarry start` of a document of `records` one-record batches against `baseUrl`. */
  const startArgs = (name: string, records: number) => {
    const input = path.join(dir, `${name}.txt`)
    fs.writeFileSync(input, FakeLlm.document(records))
    return [
      "start",
      input,
      "--extractor",
      "llm",
      "--model",
      "test-model",
      ...FakeLlm.chunkingFlags,
      "--db",
      path.join(dir, `${name}.db`),
      "--run-id",
      name,
      "--out",
      path.join(dir, `${name}.ttl`)
    ]
  }

  /**
   * A Chat Completions server refusing record 1's first request (429, `Retry-After: retryAfter`) and answering record 0
   * a second late, so that record 2's request (which waits for record 0's commit: its known entities) comes during the
   * endpoint's pause.
   */
  const refusingRecordOnce = async (message: string, retryAfter: string) => {
    let refused = false
    const scope = Effect.runSync(Scope.make())
    const fake = await Effect.runPromise(
      FakeOpenAi.make({
        fallback: (body) => {
          const record = /Record (\d+)/.exec(body.messages?.at(-1)?.content ?? "")?.[1]
          if (record === "01" && !refused) {
            refused = true
            return FakeOpenAi.error(429, message, { headers: { "retry-after": retryAfter } })
          }
          const reply = FakeOpenAi.completion(JSON.stringify({ entities: [], relations: [] }))
          return record === "00" ? { ...reply, delayMillis: 1000 } : reply
        }
      }).pipe(Scope.extend(scope))
    )
    closers.push(() => Effect.runPromise(Scope.close(scope, Exit.void)))
    return fake
  }

  it("a wait for QUARRY_LLM_RPM is a line on stderr naming the limit and the endpoint", async () => {
    const fake = await FakeLlm.start()
    closers.push(fake.close)
    const child = start(startArgs("rpm", 3), {
      env: { QUARRY_LLM_BASE_URL: fake.baseUrl, QUARRY_LLM_RPM: "1" }
    })
    // One request a minute: batch 0 goes at once, batch 1 waits for the minute to pass.
    await until(() => child.stderr.includes("waiting"), 30_000, `the wait on stderr:\n${child.stderr}`)
    child.child.kill("SIGINT")
    const exit = await child.exited
    assert.strictEqual(exit.code, 130, child.stderr)
    const endpoint = `${fake.baseUrl} test-model`
    const lines = child.stderr.split("\n").filter((line) => line.includes("waiting"))
    assert.strictEqual(lines.length, 1, child.stderr)
    assert.match(
      lines[0]!,
      new RegExp(`^quarry: run rpm: waiting \\d+ s for the rate limit of ${escape(endpoint)} \\(QUARRY_LLM_RPM=1\\)$`)
    )
    assert.deepStrictEqual(fake.log.map((r) => r.batch), [0], "nothing is sent while it waits")
  }, 60_000)

  it("with --json, a pause the server asked for (429 Retry-After) is an extractor.waiting event", async () => {
    // Record 1's first request is refused for 30 s: the endpoint pauses while record 2's request waits.
    const fake = await refusingRecordOnce("Rate limit reached for requests", "30")
    const child = start([...startArgs("pause", 3), "--concurrency", "2", "--json"], {
      env: { QUARRY_LLM_BASE_URL: fake.baseUrl }
    })
    await child.waitFor((stdout) => stdout.includes("\"extractor.waiting\""), 30_000)
    child.child.kill("SIGINT")
    const exit = await child.exited
    assert.strictEqual(exit.code, 130, child.stderr)
    const endpoint = `${fake.baseUrl} test-model`
    const waits = jsonLines(child.stdout).filter((e) => e.event === "extractor.waiting")
    assert.strictEqual(waits.length, 1, child.stdout)
    const wait = waits[0]!
    assert.deepInclude(wait, { runId: "pause", batchIndex: 2, reason: "retry_after", endpoint })
    assert.isAbove(wait.waitMs as number, 5_000, "only waits of several seconds are announced")
    assert.isAtMost(wait.waitMs as number, 30_000, "at most the pause the server asked for")
    assert.match(
      wait.message as string,
      new RegExp(`^waiting \\d+ s for the pause ${escape(endpoint)} asked for \\(HTTP 429 with Retry-After\\)$`)
    )
    assert.notInclude(child.stderr, "waiting", "with --json the wait is an event, not a line")
    assert.strictEqual(jsonLines(child.stdout).at(-1)!.event, "run.interrupted")
  }, 60_000)

  it(
    "an absurd Retry-After: the batch gives up in plain words, and the endpoint pauses for the retry time limit",
    async () => {
      // The server asks for 3 quadrillion years; the run skips that batch and goes on.
      const fake = await refusingRecordOnce("come back later", "99999999999999999999")
      const child = start([...startArgs("absurd", 3), "--concurrency", "2", "--on-batch-error", "skip"], {
        env: { QUARRY_LLM_BASE_URL: fake.baseUrl }
      })
      await until(() => child.stderr.includes("waiting"), 30_000, `the wait on stderr:\n${child.stderr}`)
      child.child.kill("SIGINT")
      const exit = await child.exited
      assert.strictEqual(exit.code, 130, child.stderr)
      assert.include(
        child.stderr,
        "(gave up after 1 attempt; the server asked to wait more than 24h, past the retry time limit " +
          "(QUARRY_LLM_MAX_RETRY_TIME 10m))"
      )
      const endpoint = `${fake.baseUrl} test-model`
      const lines = child.stderr.split("\n").filter((line) => line.includes("waiting"))
      assert.deepStrictEqual(lines, [
        `quarry: run absurd: waiting 10 min for the pause ${endpoint} asked for (HTTP 429 with Retry-After)`
      ])
    },
    60_000
  )

  it("quarry serve logs the wait, with the run and the batch", async () => {
    const fake = await FakeLlm.start()
    closers.push(fake.close)
    const server = await serve(path.join(dir, "serve.db"), [], {
      QUARRY_LLM_MODEL: "test-model",
      QUARRY_LLM_BASE_URL: fake.baseUrl,
      QUARRY_LLM_RPM: "1"
    })
    try {
      const submitted = await fetch(`${server.url}/v1/runs`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          runId: "served",
          input: FakeLlm.document(3),
          extractor: "llm",
          chunking: { strategy: "sentences", windowSize: 300, overlap: 0, batchSize: 1 }
        })
      })
      assert.strictEqual(submitted.status, 202, await submitted.text())
      // Whole lines only: the last piece may still be on its way.
      const waiting = () =>
        server.child.stderr.split("\n").slice(0, -1).filter((line) => line.includes("\"waiting ")).map((line) =>
          JSON.parse(line) as { message: string; logLevel: string; annotations: Record<string, unknown> }
        )
      await until(() => waiting().length > 0, 30_000, "the wait in the server's log")
      const [logged] = waiting()
      const endpoint = `${fake.baseUrl} test-model`
      assert.match(
        logged!.message,
        new RegExp(`^waiting \\d+ s for the rate limit of ${escape(endpoint)} \\(QUARRY_LLM_RPM=1\\)$`)
      )
      assert.strictEqual(logged!.logLevel, "INFO")
      assert.deepInclude(logged!.annotations, { runId: "served", batch: 1, endpoint, reason: "requests_per_minute" })
    } finally {
      server.child.child.kill("SIGKILL")
      await server.child.exited
    }
  }, 60_000)
})

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")
