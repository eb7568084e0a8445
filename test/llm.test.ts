/**
 * `quarry --extractor llm` end to end: real `quarry` processes against a scripted Chat Completions server on
 * 127.0.0.1 (started in this process, reached over loopback). Budgets stop and resume; a SIGKILLed run's usage
 * ledger equals what the server reported for the committed batches, with the spend lost to the kill reported apart;
 * the skip policy and `--retry-skipped`; the circuit breaker's state in `status`; the API key stays secret.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as fs from "node:fs"
import * as path from "node:path"
import * as FakeLlm from "../packages/cli/test/FakeLlm.js"
import * as FakeOpenAi from "../packages/llm/test/FakeOpenAi.js"
import { until } from "./serverProcess.js"
import { jsonLines, makeDir, readRun, removeDir, run, sleep, start, withDb } from "./support.js"

const apiKey = "sk-e2e-SECRET-7f3a9c0d1e2b"

/** USD per million tokens, as in the environment below. */
const price = { prompt: 10, completion: 20 }

interface Usage {
  readonly requests: number
  readonly promptTokens: number
  readonly completionTokens: number
  readonly costUsd: number
}

const costOf = (promptTokens: number, completionTokens: number) =>
  (promptTokens * price.prompt + completionTokens * price.completion) / 1e6

/** The usage of the given records, as the server reports it. */
const expectedUsage = (batches: ReadonlyArray<number>): Usage =>
  batches.reduce((sum, b) => {
    const u = FakeLlm.usageOf(b)
    return {
      requests: sum.requests + 1,
      promptTokens: sum.promptTokens + u.promptTokens,
      completionTokens: sum.completionTokens + u.completionTokens,
      costUsd: sum.costUsd + costOf(u.promptTokens, u.completionTokens)
    }
  }, { requests: 0, promptTokens: 0, completionTokens: 0, costUsd: 0 })

const assertUsage = (actual: unknown, expected: Usage, what: string) => {
  const u = actual as Usage
  assert.deepStrictEqual(
    [u.requests, u.promptTokens, u.completionTokens],
    [expected.requests, expected.promptTokens, expected.completionTokens],
    what
  )
  assert.closeTo(u.costUsd, expected.costUsd, 1e-9, what)
}

/** The fields of `status --json` these tests read. */
interface Shown {
  readonly status: string
  readonly failureReason: string | null
  readonly usage: Usage
  readonly attemptUsage: Usage
  readonly lostUsage: Usage
  readonly counters: { readonly skippedBatches: number }
  readonly skipped: ReadonlyArray<{ readonly batchIndex: number; readonly error: string }>
  readonly extractorStatus: Readonly<Record<string, string>>
  readonly plan: { readonly onBatchError: string }
  readonly budget: { readonly maxCostUsd: number | null; readonly maxTokens: number | null } | null
  readonly resume: string | null
}

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i)

describe("quarry --extractor llm", () => {
  let dir = ""
  const servers: Array<{ readonly close: () => Promise<void> }> = []

  beforeAll(() => {
    dir = makeDir()
  })
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.close()))
    removeDir(dir)
  })

  /** A fresh server, a document of `records` records, and the environment that points `quarry` at the server. */
  const setup = async (name: string, records: number, behaviour: FakeLlm.Behaviour = {}) => {
    const fake = await FakeLlm.start(behaviour)
    servers.push(fake)
    const input = path.join(dir, `${name}.txt`)
    fs.writeFileSync(input, FakeLlm.document(records))
    const env: Record<string, string> = {
      QUARRY_LLM_BASE_URL: fake.baseUrl,
      QUARRY_LLM_API_KEY: apiKey,
      QUARRY_LLM_PRICE_PROMPT: String(price.prompt),
      QUARRY_LLM_PRICE_COMPLETION: String(price.completion),
      QUARRY_LEASE_MS: "1000"
    }
    const db = path.join(dir, `${name}.db`)
    const out = path.join(dir, `${name}.ttl`)
    const common = ["--db", db]
    const startArgs = [
      "start",
      input,
      "--extractor",
      "llm",
      "--model",
      "test-model",
      ...FakeLlm.chunkingFlags,
      ...common,
      "--run-id",
      name,
      "--out",
      out
    ]
    return { server: fake, input, env, db, out, common, startArgs }
  }

  /** A server that answers every request with `answer` (closed with the suite); `requests` lists what it got. */
  const scriptedServer = async (answer: FakeOpenAi.Step) => {
    const scope = Effect.runSync(Scope.make())
    const fake = await Effect.runPromise(FakeOpenAi.make({ fallback: () => answer }).pipe(Scope.extend(scope)))
    servers.push({ close: () => Effect.runPromise(Scope.close(scope, Exit.void)) })
    return { baseUrl: fake.baseUrl, requests: () => Effect.runPromise(fake.requests) }
  }

  const status = async (runId: string, db: string, env: Record<string, string>) => {
    const shown = await run(["status", runId, "--db", db, "--json"], { env })
    assert.strictEqual(shown.code, 0, shown.stderr)
    return JSON.parse(shown.stdout) as Shown
  }

  const assertNoSecret = (texts: ReadonlyArray<string>, db: string) => {
    for (const text of texts) assert.notInclude(text, apiKey)
    for (const file of fs.readdirSync(dir).filter((f) => f.startsWith(path.basename(db)))) {
      assert.notInclude(fs.readFileSync(path.join(dir, file)).toString("latin1"), apiKey, file)
    }
  }

  it(
    "--max-cost stops the run before the budget is exceeded (exit 1, reason budget); a resume keeps it, a higher one replaces it, --no-budget lifts it",
    async () => {
      const { db, env, server, startArgs } = await setup("budget", 8)
      // Record b costs 0.012 + 0.00012 b: after 3 records $0.0364, and a 4th (projected from the average) would pass
      // $0.04. The first is estimated at its prompt (about $0.01): within $0.04.
      const stopped = await run([...startArgs, "--max-cost", "0.04", "--json"], { env })
      assert.strictEqual(stopped.code, 1, stopped.stderr)
      const failed = jsonLines(stopped.stdout).at(-1)!
      assert.strictEqual(failed.event, "run.failed")
      assert.strictEqual(failed.reason, "budget")
      assert.strictEqual(failed.committedBatches, 3)
      assert.deepInclude(failed.budget, { limit: "cost", max: 0.04 })
      assertUsage(failed.usage, expectedUsage([0, 1, 2]), "run.failed usage")
      // The model is stored with the run: the resume command does not repeat it.
      const resume = `quarry resume budget --db ${db} --max-cost <USD>`
      assert.strictEqual(failed.resume, resume)
      assert.include(stopped.stderr, `before exceeding its budget: spent $0.0364 of --max-cost $0.04`)
      assert.include(stopped.stderr, `resume it with a higher budget: ${resume}`)
      assert.strictEqual(server.log.length, 3, "no request is sent past the budget")

      const shown = await status("budget", db, env)
      assert.strictEqual(shown.status, "failed")
      assert.strictEqual(shown.failureReason, "budget")
      assert.isAtMost(shown.attemptUsage.costUsd, 0.04)
      assert.deepStrictEqual(shown.budget, { maxCostUsd: 0.04, maxTokens: null })
      // Its resume command raises the budget: a resume without one would stop again at once.
      assert.strictEqual(shown.resume, resume)
      const human = await run(["status", "budget", "--db", db], { env })
      assert.include(human.stdout, `failed (resumable: ${resume})`)
      assert.match(
        human.stdout,
        /budget +--max-cost \$0\.04 \(kept by a resume that gives none; --no-budget lifts it\)/
      )

      // A resume without --max-cost keeps the run's budget: it stops again before any request.
      const kept = await run(["resume", "budget", "--db", db, "--json"], { env })
      assert.strictEqual(kept.code, 1, kept.stderr)
      assert.strictEqual(jsonLines(kept.stdout).at(-1)!.reason, "budget")
      assert.include(kept.stderr, "of --max-cost $0.04")
      assert.strictEqual(server.log.length, 3, "no request is sent past the budget kept by the resume")

      // A higher budget replaces it: one more batch fits $0.05 ($0.04876 spent), a fifth would not.
      const higher = await run(["resume", "budget", "--db", db, "--max-cost", "0.05", "--json"], { env })
      assert.strictEqual(higher.code, 1, higher.stderr)
      assert.strictEqual(jsonLines(higher.stdout).at(-1)!.committedBatches, 4)
      assert.deepStrictEqual((await status("budget", db, env)).budget, { maxCostUsd: 0.05, maxTokens: null })
      assert.strictEqual(server.log.length, 4)

      // --no-budget lifts it (not together with a new limit: exit 2, nothing sent).
      const both = await run(["resume", "budget", "--db", db, "--no-budget", "--max-cost", "1"], { env })
      assert.strictEqual(both.code, 2, both.stderr)
      assert.include(both.stderr, "--no-budget cannot go with --max-cost or --max-tokens")
      assert.strictEqual(server.log.length, 4)
      const resumed = await run(["resume", "budget", "--db", db, "--no-budget", "--json"], { env })
      assert.strictEqual(resumed.code, 0, resumed.stderr)
      const completed = jsonLines(resumed.stdout).at(-1)!
      assert.strictEqual(completed.event, "run.completed")
      assert.strictEqual(completed.committedBatches, 8)
      assertUsage(completed.usage, expectedUsage(range(0, 8)), "usage of the completed run")
      assert.strictEqual((await status("budget", db, env)).budget, null)
      assert.deepStrictEqual(server.log.map((r) => r.model), Array(8).fill("test-model"))
      assertNoSecret([stopped.stdout, stopped.stderr, resumed.stdout, resumed.stderr, JSON.stringify(shown)], db)
    },
    30_000
  )

  it(
    "resume uses the model, temperature and max output tokens the run started with; contradicting options exit 2",
    async () => {
      const { common, db, env, server, startArgs } = await setup("settings", 4, { reject: [2] })
      const started = await run([...startArgs, "--temperature", "0.3", "--max-output-tokens", "2000", "--json"], {
        env
      })
      assert.strictEqual(started.code, 1, started.stderr)
      const failed = jsonLines(started.stdout).at(-1)!
      assert.strictEqual(failed.event, "run.failed")
      assert.strictEqual(failed.committedBatches, 2)
      // Nothing of the extractor's identity in the printed resume commands: it is stored with the run.
      const resume = `quarry resume settings --db ${db}`
      assert.strictEqual(failed.resume, resume)
      assert.include(started.stderr, `resume it with: ${resume}`)

      const settings = { model: "test-model", temperature: 0.3, maxTokens: 2000, responseFormat: "auto" }
      const shown = await run(["status", "settings", ...common, "--json"], { env })
      assert.deepStrictEqual(JSON.parse(shown.stdout).plan.extractor.settings, settings)
      const text = await run(["status", "settings", ...common], { env })
      assert.match(
        text.stdout,
        /extractor\s+llm \(version 1\), model test-model, temperature 0\.3, maxTokens 2000, responseFormat auto\n/
      )

      for (
        const [option, value, stored] of [
          ["--temperature", "0.5", "--temperature 0.3"],
          ["--model", "other-model", "--model test-model"],
          ["--max-output-tokens", "100", "--max-output-tokens 2000"]
        ]
      ) {
        const refused = await run(["resume", "settings", ...common, option, value], { env })
        assert.strictEqual(refused.code, 2, refused.stderr)
        assert.include(refused.stderr, `run settings was started with ${stored}, and a run resumes with the settings`)
      }
      assert.strictEqual(server.log.length, 3, "a refused resume sends nothing")

      server.behave({})
      // The same values again are accepted; the environment's model and temperature do not override the run's.
      const resumed = await run(["resume", "settings", ...common, "--temperature", "0.3", "--json"], {
        env: { ...env, QUARRY_LLM_MODEL: "env-model", QUARRY_LLM_TEMPERATURE: "1.5", QUARRY_LLM_SEED: "9" }
      })
      assert.strictEqual(resumed.code, 0, resumed.stderr)
      assert.strictEqual(jsonLines(resumed.stdout).at(-1)!.event, "run.completed")
      assert.deepStrictEqual(server.log.map((r) => [r.batch, r.status]), [[0, 200], [1, 200], [2, 400], [2, 200], [
        3,
        200
      ]])
      for (const request of server.log) {
        assert.deepStrictEqual([request.model, request.temperature, request.maxTokens], ["test-model", 0.3, 2000])
      }
    },
    // Seven CLI processes in sequence: the suite's default bound, not a tighter one.
    60_000
  )

  it(
    "kill -9 mid-run: the run's usage equals what the server reported for committed batches; lost spend is apart",
    async () => {
      // Record 3's first request is never answered; record 4 is answered meanwhile and waits for 3 to commit.
      const { db, env, server, startArgs } = await setup("killed", 8, { hold: 3 })
      const child = start([...startArgs, "--concurrency", "2", "--json"], { env })
      const recorded = (batch: number) =>
        fs.existsSync(db) && withDb(db, (sqlite) => {
          const table = sqlite.prepare("SELECT name FROM sqlite_master WHERE name = 'usage_attempts'").get()
          return table !== undefined &&
            sqlite.prepare("SELECT 1 FROM usage_attempts WHERE run_id = 'killed' AND batch_index = ?").get(batch) !==
              undefined
        })
      for (let waited = 0; !recorded(4); waited += 25) {
        if (waited > 20_000) assert.fail(`record 4 was never recorded; stderr:\n${child.stderr}`)
        await sleep(25)
      }
      child.child.kill("SIGKILL")
      await child.exited
      const killedAt = Date.now()
      const committedAtKill = readRun(db, "killed")!.committed_batches
      assert.strictEqual(committedAtKill, 3)

      const resumed = await run(["resume", "killed", "--db", db, "--model", "test-model"], { env })
      assert.strictEqual(resumed.code, 0, resumed.stderr)
      const shown = await status("killed", db, env)
      assert.strictEqual(shown.status, "completed")

      // What the server reported for the requests whose results were committed: before the kill, those of the
      // batches committed by then; after it, every one.
      const answered = server.log.filter((r) => r.status === 200 && !r.held)
      const committed = answered.filter((r) => r.at >= killedAt || r.batch < committedAtKill)
      const lost = answered.filter((r) => r.at < killedAt && r.batch >= committedAtKill)
      assert.deepStrictEqual(committed.map((r) => r.batch).sort(), range(0, 8))
      assert.deepStrictEqual(lost.map((r) => r.batch), [4])
      const sum = (rows: ReadonlyArray<FakeLlm.Logged>): Usage => ({
        requests: rows.length,
        promptTokens: rows.reduce((n, r) => n + r.promptTokens, 0),
        completionTokens: rows.reduce((n, r) => n + r.completionTokens, 0),
        costUsd: rows.reduce((n, r) => n + costOf(r.promptTokens, r.completionTokens), 0)
      })
      assertUsage(shown.usage, sum(committed), "run usage = the server's usage of committed batches")
      assertUsage(shown.lostUsage, sum(lost), "lost spend = the answered attempt the kill lost")
      assertUsage(shown.attemptUsage, sum(answered), "every answered attempt is in the ledger")
      assertNoSecret([child.stdout, child.stderr, resumed.stdout, resumed.stderr], db)
    },
    30_000
  )

  it(
    "--on-batch-error skip completes with a partial artifact and a manifest; --retry-skipped completes it",
    async () => {
      const { common, db, env, out, server, startArgs } = await setup("skip", 6, { reject: [1, 4] })
      const started = await run([...startArgs, "--on-batch-error", "skip", "--json"], { env })
      assert.strictEqual(started.code, 0, started.stderr)
      const completed = jsonLines(started.stdout).at(-1)!
      assert.strictEqual(completed.event, "run.completed")
      assert.strictEqual(completed.skippedBatches, 2)
      // The skipped batch is reported once (the engine's warning), not also by the extractor.
      assert.strictEqual(started.stderr.split("record 1 violates").length - 1, 1, started.stderr)
      const manifestPath = `${out}.skipped.json`
      assert.strictEqual(completed.manifest, manifestPath)
      const manifest = JSON.parse(fs.readFileSync(manifestPath, "utf8"))
      assert.deepStrictEqual(manifest.skipped.map((s: { batch: number }) => s.batch), [1, 4])
      assert.include(manifest.skipped[0].error, "content policy")
      const partial = fs.readFileSync(out, "utf8")
      for (const name of FakeLlm.people(1)) assert.notInclude(partial, `"${name}"`)
      for (const name of FakeLlm.people(2)) assert.include(partial, `"${name}"`)

      const shown = await status("skip", db, env)
      assert.strictEqual(shown.plan.onBatchError, "skip")
      assert.deepStrictEqual(shown.skipped.map((s: { batchIndex: number }) => s.batchIndex), [1, 4])
      assert.include(shown.skipped[1].error, "record 4 violates the test server's content policy")
      // The rejected requests are committed with their skipped batches (no tokens: the server answered 400).
      assertUsage(shown.usage, { ...expectedUsage([0, 2, 3, 5]), requests: 6 }, "usage with the skipped batches")
      assert.deepInclude(shown.lostUsage, { requests: 0, promptTokens: 0, completionTokens: 0, costUsd: 0 })
      const text = await run(["status", "skip", ...common], { env })
      assert.include(text.stdout, "2 batches failed and were skipped")
      assert.include(text.stdout, `retry with: quarry resume skip --db ${db} --retry-skipped`)

      server.behave({})
      const retried = await run(["resume", "skip", ...common, "--retry-skipped", "--json"], { env })
      assert.strictEqual(retried.code, 0, retried.stderr)
      const done = jsonLines(retried.stdout).at(-1)!
      assert.strictEqual(done.event, "run.completed")
      assert.strictEqual(done.skippedBatches, 0)
      assert.strictEqual(done.manifest, null)
      assert.isFalse(fs.existsSync(manifestPath))
      const full = fs.readFileSync(out, "utf8")
      for (const b of range(0, 6)) for (const name of FakeLlm.people(b)) assert.include(full, `"${name}"`)
      assert.deepStrictEqual(server.log.slice(6).map((r) => r.batch), [1, 4], "only the skipped batches again")
      const retriedShown = await status("skip", db, env)
      assertUsage(retriedShown.usage, { ...expectedUsage(range(0, 6)), requests: 8 }, "usage after the retry")
      assert.deepInclude(retriedShown.lostUsage, { requests: 0, promptTokens: 0, completionTokens: 0, costUsd: 0 })
    },
    30_000
  )

  it("the circuit breaker's state is in status after the server fails repeatedly", async () => {
    const { common, db, env, server, startArgs } = await setup("breaker", 3, { down: true })
    const breakerEnv = {
      ...env,
      QUARRY_LLM_MAX_ATTEMPTS: "2",
      QUARRY_LLM_BREAKER_THRESHOLD: "2",
      QUARRY_LLM_BREAKER_COOLDOWN: "1 minute"
    }
    const started = await run([...startArgs, "--on-batch-error", "skip"], { env: breakerEnv })
    assert.strictEqual(started.code, 0, started.stderr)
    // Two failures open the circuit; the later batches fail fast without a request.
    assert.strictEqual(server.log.length, 2)
    const shown = await status("breaker", db, env)
    assert.deepStrictEqual(shown.extractorStatus, { circuit: "open", endpoint: `${server.baseUrl} test-model` })
    assert.strictEqual(shown.counters.skippedBatches, 3)
    assert.include(shown.skipped[2]!.error, "suspended after 2 consecutive failures")
    // The two failed requests are committed with the skipped batches: the run's usage, not lost spend.
    assert.deepInclude(shown.usage, { requests: 2, promptTokens: 0, completionTokens: 0 })
    assert.deepInclude(shown.lostUsage, { requests: 0, promptTokens: 0, completionTokens: 0 })
    const text = await run(["status", "breaker", ...common], { env })
    assert.match(text.stdout, /extractor state\s+circuit open, endpoint http:\/\/127\.0\.0\.1:\d+\/v1 test-model/)
  }, 30_000)

  it(
    "a call timeout that strikes while the HTTP client is still loading fails the batch (timeout), not the run as interrupted",
    async () => {
      // The first request of a process loads the HTTP client; a 1 ms timeout interrupts it there. That interruption
      // must stay the first attempt's: the retry gets its own timeout, and the run fails as a timeout (exit 1).
      const { db, env, startArgs } = await setup("loadtimeout", 2)
      const fake = await scriptedServer({ ...FakeOpenAi.completion("{}"), delayMillis: 30_000 })
      const started = await run(startArgs, {
        env: { ...env, QUARRY_LLM_BASE_URL: fake.baseUrl, QUARRY_LLM_TIMEOUT: "1 millis", QUARRY_LLM_MAX_ATTEMPTS: "2" }
      })
      assert.strictEqual(started.code, 1, started.stderr)
      assert.include(started.stderr, "no response within the call timeout")
      assert.include(started.stderr, "(gave up after 2 attempts)")
      const shown = await status("loadtimeout", db, env)
      assert.strictEqual(shown.status, "failed")
      assert.deepInclude(shown.lostUsage, { requests: 2, promptTokens: 0, completionTokens: 0 })
    },
    30_000
  )

  it(
    "a bad QUARRY_LLM_* value exits 2 naming the variable and what it accepts; nothing is written or sent",
    async () => {
      const { db, env, out, server, startArgs } = await setup("badenv", 2)
      // [variable, value, what the message must say after "expected"]
      const cases: ReadonlyArray<readonly [string, string, string]> = [
        ["QUARRY_LLM_TEMPERATURE", "5", "a number from 0 to 2"],
        ["QUARRY_LLM_TEMPERATURE", "", "a number from 0 to 2"],
        ["QUARRY_LLM_API_KEY", "", "the API key; leave it unset for a server that needs none"],
        ["QUARRY_LLM_MAX_TOKENS", "1e3", "a whole number of tokens greater than 0"],
        ["QUARRY_LLM_SEED", "0x10", "a whole number"],
        ["QUARRY_LLM_REPAIR_ATTEMPTS", "-3", "a whole number of repair prompts (0 or more)"],
        ["QUARRY_LLM_RPM", "1.5", "a whole number of requests per minute greater than 0"],
        ["QUARRY_LLM_TIMEOUT", "0 seconds", "a duration greater than 0"],
        ["QUARRY_LLM_MAX_RETRY_TIME", "-5 seconds", "a duration"],
        ["QUARRY_LLM_PRICE_PROMPT", "-10", "a price in USD per million tokens (0 or more)"],
        [
          "QUARRY_LLM_PRICES",
          `{"test-model":{"prompt":1e400,"completion":2}}`,
          "JSON prices in USD per million tokens by model, such as " +
          `{"gpt-4o-mini":{"prompt":0.15,"completion":0.6}} (test-model.prompt: Expected a finite number`
        ],
        ["QUARRY_LLM_BASE_URL", "ftp://127.0.0.1:1/v1", "an http:// or https:// URL"],
        [
          "QUARRY_LLM_BASE_URL",
          `http://user:${apiKey}@127.0.0.1:1/v1`,
          "an http:// or https:// URL including the API version path and no credentials"
        ]
      ]
      const results = await Promise.all(
        cases.map(([name, value]) => run(startArgs, { env: { ...env, [name]: value } }))
      )
      cases.forEach(([name, value, accepts], i) => {
        const refused = results[i]!
        const what = `${name}=${value}`
        assert.strictEqual(refused.code, 2, `${what}: ${refused.stderr}`)
        assert.include(refused.stderr, `quarry: bad llm extractor configuration: ${name} is `, what)
        assert.include(refused.stderr, `: expected ${accepts}`, what)
        assert.notInclude(refused.stderr, apiKey, what)
      })
      assert.isFalse(fs.existsSync(db), "no database is written")
      assert.isFalse(fs.existsSync(out), "no artifact is written")
      assert.strictEqual(server.log.length, 0, "nothing is sent")
    },
    // Thirteen CLI processes at once, each loading the extractor: more than the suite's default bound on a busy machine.
    120_000
  )

  it(
    "a budget below the first batch's estimate sends no request (exit 1, reason budget, the estimate and what it is made of); a budget above it runs",
    async () => {
      const { db, env, server, startArgs } = await setup("tiny-budget", 3)
      // The first batch is estimated at its prompt (about 1,000 tokens) at $10 per million: about $0.01.
      const stopped = await run([...startArgs, "--max-cost", "0.000001", "--json"], { env })
      assert.strictEqual(stopped.code, 1, stopped.stderr)
      const failed = jsonLines(stopped.stdout).at(-1)!
      assert.deepStrictEqual([failed.event, failed.reason, failed.committedBatches], ["run.failed", "budget", 0])
      const { estimate } = failed.budget as { estimate: { tokens: number; costUsd: number; basis: string } }
      const promptTokens = estimate.tokens
      assert.isAbove(promptTokens, 100)
      assert.strictEqual(estimate.costUsd, costOf(promptTokens, 0))
      assert.include(
        stopped.stderr,
        `run tiny-budget stopped before its first batch, which the extractor estimates at $${estimate.costUsd} ` +
          `(its prompt alone: about ${promptTokens} tokens, counted with the bundled tokenizer, at $10 per million ` +
          `prompt tokens), more than --max-cost $0.000001; nothing was spent on it.`
      )
      assert.strictEqual(server.log.length, 0, "no request is sent")
      // --max-tokens counts the same prompt tokens: 100 cannot hold them.
      const tokens = await run(["resume", "tiny-budget", "--db", db, "--max-tokens", "100"], { env })
      assert.strictEqual(tokens.code, 1, tokens.stderr)
      assert.include(
        tokens.stderr,
        `estimates at ${promptTokens} tokens (its prompt alone: about ${promptTokens} tokens`
      )
      assert.include(tokens.stderr, "more than --max-tokens 100 tokens; nothing was spent on it")
      assert.strictEqual(server.log.length, 0, "no request is sent under --max-tokens either")

      // A budget above the estimate runs as before: the measured cost projects the later batches.
      const resumed = await run(["resume", "tiny-budget", "--db", db, "--max-cost", String(estimate.costUsd + 0.03)], {
        env
      })
      assert.strictEqual(resumed.code, 0, resumed.stderr)
      assert.strictEqual(server.log.length, 3)
    }
  )

  it("a first batch that costs more than its estimate is reported as gone over, not as 'before exceeding'", async () => {
    const { env, startArgs } = await setup("costlier", 3)
    // Estimated at about $0.01 (its prompt), but the server reports 5,000 + 100 tokens.
    const fake = await scriptedServer(
      FakeOpenAi.completion(JSON.stringify({ entities: [], relations: [] }), {
        usage: { prompt_tokens: 5000, completion_tokens: 100 }
      })
    )
    const stopped = await run([...startArgs, "--max-cost", "0.04"], {
      env: { ...env, QUARRY_LLM_BASE_URL: fake.baseUrl }
    })
    assert.strictEqual(stopped.code, 1, stopped.stderr)
    assert.include(
      stopped.stderr,
      "stopped after 1/3 batches over its budget: spent $0.0520 of --max-cost $0.04 (a batch's cost is known once " +
        "it is answered, so the first one, or one costlier than those before it, can go over)"
    )
    assert.notInclude(stopped.stderr, "before exceeding")
    assert.strictEqual((await fake.requests()).length, 1)
  })

  it("quarry serve with a bad QUARRY_LLM_* value exits 2 before it opens (or creates) its database", async () => {
    const { db, env, server } = await setup("badserve", 1)
    const refused = await run(["serve", "--db", db, "--port", "0"], {
      env: { ...env, QUARRY_LLM_MODEL: "test-model", QUARRY_LLM_TEMPERATURE: "5" }
    })
    assert.strictEqual(refused.code, 2, refused.stderr)
    assert.include(refused.stderr, "QUARRY_LLM_TEMPERATURE is \"5\"")
    assert.isFalse(fs.existsSync(db), "no database is created")
    assert.strictEqual(server.log.length, 0, "nothing is sent")
  })

  it(
    "a reply that does not match the schema is named by place, to the model in the repair prompt and to the user",
    async () => {
      const { env, startArgs } = await setup("badreply", 1)
      const reply = JSON.stringify({ entities: [{ label: "Ada Lovelace", type: "Animal" }, { type: "Person" }] })
      const fake = await scriptedServer(FakeOpenAi.completion(reply))
      const failed = await run(startArgs, {
        env: { ...env, QUARRY_LLM_BASE_URL: fake.baseUrl, QUARRY_LLM_REPAIR_ATTEMPTS: "1" }
      })
      assert.strictEqual(failed.code, 1, failed.stderr)
      const problem = `the reply does not match the schema: entities[0].type: Expected "AdministrativeArea" | "City"`
      assert.include(failed.stderr, `did not match the extraction schema after 1 repair attempt: ${problem}`)
      assert.include(failed.stderr, `| "Project", actual "Animal"; entities[1].label: is missing`)
      assert.include(failed.stderr, "entities[1].label: is missing")
      assert.notInclude(failed.stderr, "Encoded side", "no schema tree")
      const requests = await fake.requests()
      assert.strictEqual(requests.length, 2)
      const repair = requests[1]!.body.messages!.at(-1)!.content
      assert.include(repair, problem)
      assert.include(repair, "entities[1].label: is missing")
    },
    30_000
  )

  it("a 2xx body that is not a Chat Completions response is named in a line, with the start of the body", async () => {
    const { env, startArgs } = await setup("garbage", 1)
    const html = await scriptedServer({ text: "<html>gateway</html>" })
    const notJson = await run(startArgs, {
      env: { ...env, QUARRY_LLM_BASE_URL: html.baseUrl, QUARRY_LLM_MAX_ATTEMPTS: "1" }
    })
    assert.strictEqual(notJson.code, 1, notJson.stderr)
    assert.include(notJson.stderr, "the response is not a Chat Completions response (HTTP 200): not JSON (")
    assert.include(notJson.stderr, "is not valid JSON); body: <html>gateway</html> (gave up after 1 attempt)")
    const other = await scriptedServer({ json: { object: "list", data: [] } })
    const wrong = await run(startArgs.map((a) => a === "garbage" ? "garbage2" : a), {
      env: { ...env, QUARRY_LLM_BASE_URL: other.baseUrl, QUARRY_LLM_MAX_ATTEMPTS: "1" }
    })
    assert.strictEqual(wrong.code, 1, wrong.stderr)
    assert.include(wrong.stderr, `(HTTP 200): choices: is missing; body: {"object":"list","data":[]} (gave up`)
    assert.notInclude(wrong.stderr, "Encoded side", "no schema tree")
  }, 30_000)

  it("SIGINT during a call: the run is interrupted and the request it sent counts as lost spend", async () => {
    const { db, env, startArgs } = await setup("sigint", 2)
    const slow = await scriptedServer({ ...FakeOpenAi.completion("{}"), delayMillis: 30_000 })
    const child = start([...startArgs, "--json"], { env: { ...env, QUARRY_LLM_BASE_URL: slow.baseUrl } })
    await child.waitFor((stdout) => stdout.includes("\"run.started\""))
    await until(async () => (await slow.requests()).length === 1)
    child.child.kill("SIGINT")
    const exit = await child.exited
    assert.strictEqual(exit.code, 130, child.stderr)
    assert.notInclude(child.stderr, "could not record usage")
    const shown = await status("sigint", db, env)
    assert.strictEqual(shown.status, "interrupted")
    assert.deepInclude(shown.lostUsage, { requests: 1, promptTokens: 0, completionTokens: 0 })
  }, 60_000)

  it("a provider's message that ends its sentence is not followed by a second period", async () => {
    const { env, startArgs } = await setup("refusedkey", 1)
    const refusing = await scriptedServer({
      status: 401,
      json: { error: { message: "Incorrect API key provided.", type: "invalid_request_error" } }
    })
    const failed = await run(startArgs, { env: { ...env, QUARRY_LLM_BASE_URL: refusing.baseUrl } })
    assert.strictEqual(failed.code, 1, failed.stderr)
    assert.include(failed.stderr, "Incorrect API key provided")
    assert.notMatch(failed.stderr, /\.\. Every committed batch is kept/)
    assert.include(failed.stderr, ". Every committed batch is kept; fix the cause, then resume it with:")
  }, 30_000)
})
