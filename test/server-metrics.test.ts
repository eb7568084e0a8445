/**
 * `/metrics` of a real `quarry serve` after real runs: every engine, run, HTTP and LLM metric with the value the runs
 * imply, and the whole exposition accepted by `promtool check metrics` (Debian's prometheus; `.ci/run` installs it).
 * The LLM runs go to the project's fake OpenAI-compatible server on loopback.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { parse } from "yaml"
import * as FakeLlm from "../packages/cli/test/FakeLlm.js"
import { call, ended, samples, serve, stop } from "./serverProcess.js"
import { makeDir, removeDir } from "./support.js"

const text = "Captain Ahab commanded the Pequod. Ishmael sailed from Nantucket with Queequeg. Starbuck was the " +
  "first mate of the ship and Stubb the second. Flask was the third mate."
const chunking = { windowSize: 40, overlap: 0, batchSize: 1 }

const promtoolAccepts = (exposition: string) => {
  const promtool = spawnSync("promtool", ["check", "metrics"], { input: exposition, encoding: "utf8" })
  assert.isUndefined(promtool.error, "promtool is missing: apt-get install prometheus")
  assert.strictEqual(promtool.status, 0, `${promtool.stdout}${promtool.stderr}`)
}

describe("quarry serve /metrics", () => {
  let dir = ""
  beforeAll(() => {
    dir = makeDir()
  })
  afterAll(() => removeDir(dir))

  it("counts batches, durations, extractor errors, runs and requests exactly as the runs went", async () => {
    // Batch 2 of every test-slow run fails (not retryable).
    const server = await serve(path.join(dir, "engine.db"), ["--max-active-runs", "1"], {
      // Slow enough that a third run is still waiting when it is cancelled.
      QUARRY_TEST_EXTRACTOR_DELAY_MS: "200",
      QUARRY_TEST_FAIL_BATCH: "2"
    })
    try {
      const body = (runId: string, onBatchError: string) => ({
        runId,
        input: text,
        extractor: "test-slow",
        chunking,
        onBatchError
      })
      for (const [id, policy] of [["skips", "skip"], ["fails", "fail"]] as const) {
        assert.strictEqual((await call(server, "POST", "/v1/runs", body(id, policy))).status, 202)
      }
      assert.strictEqual((await call(server, "POST", "/v1/runs", body("waits", "fail"))).status, 202)
      const cancelled = await call(server, "POST", "/v1/runs/waits/cancel")
      assert.strictEqual((cancelled.json() as { status: string }).status, "cancelled")
      const skips = await ended(server, "skips") as { status: string; progress: { totalBatches: number } }
      const fails = await ended(server, "fails") as { status: string; progress: { committedBatches: number } }
      assert.strictEqual(skips.status, "completed")
      assert.strictEqual(fails.status, "failed")
      const total = skips.progress.totalBatches
      assert.isAtLeast(total, 4)
      assert.strictEqual(fails.progress.committedBatches, 2)

      // Paths that are no route share one label value.
      for (const junk of ["/wp-login.php", "/v1/runs/a/b/c"]) {
        assert.strictEqual((await call(server, "GET", junk)).status, 404)
      }
      const metrics = await call(server, "GET", "/metrics")
      assert.strictEqual(metrics.status, 200)
      const values = samples(metrics.text)
      const committed = total + 2
      const expected: Record<string, number> = {
        "quarry_batches_committed_total": committed,
        "quarry_batches_skipped_total": 1,
        "quarry_batch_commit_seconds_count": committed,
        // Successful extractions only: the skipped batch and the failed one are errors.
        "quarry_batch_extraction_seconds_count{extractor=\"test-slow\"}": committed - 1,
        "quarry_extractor_errors_total{extractor=\"test-slow\",reason=\"permanent\"}": 2,
        "quarry_runs_started_total": 2,
        "quarry_runs_ended_total{status=\"completed\"}": 1,
        "quarry_runs_ended_total{status=\"failed\"}": 1,
        // Cancelled while it waited: it never started, but it ended.
        "quarry_runs_ended_total{status=\"cancelled\"}": 1,
        "quarry_runs{status=\"cancelled\"}": 1,
        "quarry_runs{status=\"completed\"}": 1,
        "quarry_runs{status=\"failed\"}": 1,
        "quarry_runs{status=\"running\"}": 0,
        "quarry_active_runs": 0,
        "quarry_http_requests_total{method=\"GET\",route=\"other\",status=\"404\"}": 2,
        "quarry_queued_runs": 0,
        "quarry_http_requests_total{method=\"POST\",route=\"/v1/runs\",status=\"202\"}": 3
      }
      for (const [sample, value] of Object.entries(expected)) {
        assert.strictEqual(values.get(sample), value, sample)
      }
      assert.isAbove(values.get("quarry_batch_commit_seconds_sum")!, 0)
      assert.strictEqual(values.get("quarry_batch_commit_seconds_bucket{le=\"+Inf\"}"), committed)
      assert.isAbove(
        values.get("quarry_http_requests_total{method=\"GET\",route=\"/v1/runs/{id}\",status=\"200\"}")!,
        0
      )
      assert.isAbove(
        values.get("quarry_http_request_duration_seconds_count{method=\"GET\",route=\"/v1/runs/{id}\"}")!,
        0
      )
      promtoolAccepts(metrics.text)
    } finally {
      await stop(server)
    }
  }, 120_000)

  it(
    "llm runs over the API: requests, tokens, cost by endpoint; the breaker's state once the endpoint is down",
    async () => {
      const fake = await FakeLlm.start()
      const server = await serve(path.join(dir, "llm.db"), ["--max-active-runs", "1"], {
        QUARRY_LLM_MODEL: "test-model",
        QUARRY_LLM_BASE_URL: fake.baseUrl,
        QUARRY_LLM_API_KEY: "sk-test",
        QUARRY_LLM_PRICE_PROMPT: "2",
        QUARRY_LLM_PRICE_COMPLETION: "10",
        QUARRY_LLM_MAX_ATTEMPTS: "1",
        QUARRY_LLM_BREAKER_THRESHOLD: "2",
        QUARRY_LLM_BREAKER_COOLDOWN: "10 minutes"
      })
      try {
        const body = (runId: string) => ({
          runId,
          input: FakeLlm.document(3),
          extractor: "llm",
          chunking: { strategy: "sentences", windowSize: 300, overlap: 0, batchSize: 1 },
          onBatchError: "skip"
        })
        assert.strictEqual((await call(server, "POST", "/v1/runs", body("llm-ok"))).status, 202)
        const ok = await ended(server, "llm-ok") as {
          status: string
          usage: { requests: number; promptTokens: number; completionTokens: number; costUsd: number }
        }
        assert.strictEqual(ok.status, "completed")
        assert.strictEqual(ok.usage.requests, 3)

        fake.behave({ down: true })
        assert.strictEqual((await call(server, "POST", "/v1/runs", body("llm-down"))).status, 202)
        assert.strictEqual((await ended(server, "llm-down")).status, "completed") // every batch skipped

        const metrics = await call(server, "GET", "/metrics")
        const values = samples(metrics.text)
        const endpoint = /quarry_llm_requests_total\{endpoint="([^"]+)"\}/.exec(metrics.text)?.[1]
        assert.isString(endpoint, metrics.text)
        const of = (name: string) => values.get(`${name}{endpoint="${endpoint}"}`)
        // Three answered, then two 500s open the circuit; the third batch is refused without a request.
        assert.strictEqual(of("quarry_llm_requests_total"), 5)
        assert.strictEqual(of("quarry_llm_prompt_tokens_total"), ok.usage.promptTokens)
        assert.strictEqual(of("quarry_llm_completion_tokens_total"), ok.usage.completionTokens)
        assert.isAbove(ok.usage.costUsd, 0)
        assert.closeTo(of("quarry_llm_cost_usd_total")!, ok.usage.costUsd, 1e-12)
        assert.strictEqual(of("quarry_llm_circuit_state"), 2)
        assert.strictEqual(values.get("quarry_extractor_errors_total{extractor=\"llm\",reason=\"server\"}"), 2)
        assert.strictEqual(values.get("quarry_extractor_errors_total{extractor=\"llm\",reason=\"circuit_open\"}"), 1)
        assert.strictEqual(values.get("quarry_batches_skipped_total"), 3)
        promtoolAccepts(metrics.text)

        // Every quarry_* metric the alert rules use is one this real scrape has; the others come from Prometheus
        // itself (`up`) and kube-state-metrics.
        const rules = parse(
          fs.readFileSync(path.resolve(import.meta.dirname, "../deploy/prometheus/alerts.yml"), "utf8")
        ) as { groups: Array<{ rules: Array<{ expr: string }> }> }
        const used = new Set(
          rules.groups.flatMap((g) => g.rules).flatMap((rule) =>
            [...rule.expr.matchAll(/\b(quarry_[a-z0-9_]+|kube_[a-z0-9_]+|up(?=\{))/g)].map((m) => m[1]!)
          )
        )
        const scraped = new Set([...values.keys()].map((sample) => sample.split("{")[0]!))
        const quarry = [...used].filter((name) => name.startsWith("quarry_"))
        assert.isAtLeast(quarry.length, 9, [...used].join(" "))
        for (const name of quarry) assert.isTrue(scraped.has(name), `${name} is not in /metrics`)
        assert.deepStrictEqual(
          [...used].filter((name) => !name.startsWith("quarry_")).sort(),
          ["kube_pod_container_status_restarts_total", "kube_pod_status_ready", "up"]
        )
      } finally {
        await stop(server)
        await fake.close()
      }
    },
    120_000
  )
})
