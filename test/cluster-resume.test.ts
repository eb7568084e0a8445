/**
 * `quarry serve --cluster`: resume and cancel of a run whose execution waits for its runner (real `quarry serve`
 * processes of the bundle on one real PostgreSQL). Each runner has one slot (`--max-active-runs 1`) and a run holds
 * it, so a submitted or resumed run waits, its `Execute` message stored and not yet claimed. And a cancel of a run
 * whose runner stopped answering (SIGSTOP), which the runner that takes it over must honour.
 */
import { assert, describe, it } from "@effect/vitest"
import { usePostgres } from "../packages/core/test/postgres.js"
import * as Nodes from "./clusterNodes.js"
import { allExecutesAnswered, type Node, query, runRows, submitMobyDick } from "./clusterNodes.js"
import { call, readEvents, until } from "./serverProcess.js"

const adminUrl = usePostgres()

describe("quarry serve --cluster: a run waiting for its runner", () => {
  const suite = Nodes.useClusterSuite(adminUrl)

  /**
   * Two runners of one slot each; `ids` are run ids placed on the first (`held`, started with `heldArgs` too), the
   * second node is `other`.
   */
  const twoRunners = async (name: string, count: number, heldArgs: ReadonlyArray<string> = []) => {
    const { db, work } = await suite.workspace(name)
    // Slow batches: the run that holds the slot executes for about 20 s unless cancelled.
    const env = { QUARRY_TEST_EXTRACTOR_DELAY_MS: "300" }
    const nodes = [await Nodes.startNode(db, work, env, ["--max-active-runs", "1", ...heldArgs])]
    nodes.push(await Nodes.startNode(db, work, env, ["--max-active-runs", "1"]))
    suite.nodes.push(...nodes)
    const held = nodes[0]!
    const ids = (await Nodes.placeRunIds(nodes, "w", count)).get(held)!
    return { db, held, other: nodes[1]!, ids }
  }

  const row = async (db: string, runId: string) => (await runRows(db)).find((r) => r.id === runId)
  const waitFor = (db: string, runId: string, check: (r: Nodes.RunRow) => boolean, what: string) =>
    until(
      async () => {
        const found = await row(db, runId)
        return found !== undefined && check(found)
      },
      120_000,
      what
    )
  /** A resume through `node` is accepted and executes the run to the end, with the reference's output. */
  const resumesToTheEnd = async (db: string, node: Node, runId: string) => {
    const resumed = await call(node, "POST", `/v1/runs/${runId}/resume`)
    assert.strictEqual(resumed.status, 202, resumed.text)
    await waitFor(db, runId, (r) => r.status === "completed", `the resumed run ${runId} to complete`)
    assert.strictEqual((await row(db, runId))!.digest, suite.reference.digest)
  }
  const budgets = async (db: string, runId: string) => ({
    run: (await query<{ budget: string | null }>(db, "SELECT budget FROM runs WHERE id = $1", [runId]))[0]?.budget,
    queued: (await query<{ budget: string | null }>(db, "SELECT budget FROM queued_executions WHERE run_id = $1", [
      runId
    ]))[0]?.budget
  })
  const waiting = async (node: Node, runId: string) =>
    ((await call(node, "GET", "/healthz")).json() as { cluster: { waiting: Array<string> } }).cluster.waiting
      .includes(runId)

  it(
    "of two resumes with other budgets at two nodes at once, or one after the other before the claim, the second is 409 and the same one 202: the run executes with the first's budget, which its queued execution keeps until the claim",
    async () => {
      const { db, held, ids, other } = await twoRunners("budget", 2)
      const [runId, holder] = [ids[0]!, ids[1]!]
      await submitMobyDick(held, runId)
      await waitFor(db, runId, (r) => r.committed_batches >= 1, "the run to commit a batch")
      assert.strictEqual((await call(other, "POST", `/v1/runs/${runId}/cancel`)).status, 200)
      await waitFor(db, runId, (r) => r.status === "cancelled", "the run to be cancelled")
      await submitMobyDick(held, holder)
      await waitFor(db, holder, (r) => r.status === "running", "another run to hold the slot")

      // Two resumes with different budgets at two nodes at once: the first to queue wins, the other is refused.
      const raced = await Promise.all([
        call(other, "POST", `/v1/runs/${runId}/resume?maxCostUsd=1`),
        call(held, "POST", `/v1/runs/${runId}/resume?maxCostUsd=2`)
      ])
      assert.deepStrictEqual(raced.map((r) => r.status).sort(), [202, 409], raced.map((r) => r.text).join("\n"))
      const [won, lost] = raced[0]!.status === 202 ? [1, 2] : [2, 1]
      await until(() => waiting(held, runId), 60_000, "the resumed run to wait for the slot")
      // Every node shows it pending, with the budget it waits with, though it is stored cancelled until its runner
      // claims it; and its event stream waits for this execution (it ended at once with the cancel before).
      for (const node of [held, other]) {
        const shown = (await call(node, "GET", `/v1/runs/${runId}`)).json() as {
          status: string
          queuePosition: number | null
          budget: { maxCostUsd: number | null } | null
        }
        assert.deepStrictEqual([shown.status, shown.queuePosition, shown.budget?.maxCostUsd], ["pending", null, won])
      }
      assert.strictEqual((await row(db, runId))!.status, "cancelled")
      const events = readEvents(other, runId)
      // The same request again (a client's retry) is granted; another budget is refused, saying what waits.
      const again = await call(held, "POST", `/v1/runs/${runId}/resume?maxCostUsd=${won}`)
      assert.strictEqual(again.status, 202, again.text)
      const second = await call(other, "POST", `/v1/runs/${runId}/resume?maxCostUsd=${lost}`)
      assert.strictEqual(second.status, 409, second.text)
      const error = (second.json() as { error: { tag: string; message: string } }).error
      assert.strictEqual(error.tag, "InvalidRunState")
      assert.include(error.message, `with an execution waiting for its runner (budget maxCostUsd ${won})`)
      assert.include(error.message, "cancel it, then resume it with the new options")
      assert.deepStrictEqual(await budgets(db, runId), { run: null, queued: `{"maxCostUsd":${won}}` })

      assert.strictEqual((await call(other, "POST", `/v1/runs/${holder}/cancel`)).status, 200)
      await waitFor(db, runId, (r) => r.status === "completed", "the resumed run to complete")
      const names = (await events).map((e) => e.event)
      assert.deepStrictEqual([names[0], names.at(-1)], ["run.started", "run.completed"], names.join(", "))
      const ended = await budgets(db, runId)
      assert.strictEqual(ended.run, `{"maxCostUsd":${won}}`)
      // The claim took its queued execution off the queue: the stored message was the request from then on.
      assert.isUndefined(ended.queued)
      assert.strictEqual((await row(db, runId))!.digest, suite.reference.digest)
      await allExecutesAnswered(db)
    },
    300_000
  )

  it(
    "a cancel of a submitted or resumed run that waits for its runner's slot stops it: neither executes, and a resume afterwards completes",
    async () => {
      const { db, held, ids, other } = await twoRunners("cancel", 3)
      const [submitted, resumed, holder] = [ids[0]!, ids[1]!, ids[2]!]
      await submitMobyDick(held, holder)
      await waitFor(db, holder, (r) => r.status === "running", "a run to hold the slot")
      // A submission waiting for the slot, cancelled through the other node.
      await submitMobyDick(held, submitted)
      await until(() => waiting(held, submitted), 60_000, "the submission to wait for the slot")
      assert.strictEqual((await call(other, "POST", `/v1/runs/${submitted}/cancel`)).status, 200)
      // A cancelled run resumed, then cancelled again while its resume waits.
      await submitMobyDick(held, resumed)
      assert.strictEqual((await call(other, "POST", `/v1/runs/${resumed}/cancel`)).status, 200)
      assert.strictEqual((await call(other, "POST", `/v1/runs/${resumed}/resume`)).status, 202)
      await until(() => waiting(held, resumed), 60_000, "the resume to wait for the slot")
      assert.strictEqual((await call(other, "POST", `/v1/runs/${resumed}/cancel`)).status, 200)

      // The slot frees: each waiting message is answered without executing its run.
      assert.strictEqual((await call(other, "POST", `/v1/runs/${holder}/cancel`)).status, 200)
      await allExecutesAnswered(db)
      for (const runId of [submitted, resumed]) {
        const found = (await row(db, runId))!
        assert.strictEqual(found.status, "cancelled", runId)
        assert.strictEqual(found.committed_batches, 0, runId)
        assert.isNull(found.lease_owner, runId)
      }
      assert.match(held.child.stderr, /the run was cancelled before this runner claimed it: not executed here/)

      // Still resumable: a resume now executes it to the end.
      await resumesToTheEnd(db, other, resumed)
      await allExecutesAnswered(db)
    },
    300_000
  )

  it(
    "a run deleted while its submission waited for the slot, and submitted again under its id, executes with the new submission's budget: the deleted run's message is answered without executing",
    async () => {
      const { db, held, ids, other } = await twoRunners("deleted", 2)
      const [runId, holder] = [ids[0]!, ids[1]!]
      await submitMobyDick(held, holder)
      await waitFor(db, holder, (r) => r.status === "running", "a run to hold the slot")
      const submit = (input: string, maxTokens: number) =>
        call(other, "POST", "/v1/runs", { runId, input, extractor: "test-slow", budget: { maxTokens } })
      assert.strictEqual((await submit("Captain Ahab commanded the Pequod.", 111)).status, 202)
      await until(() => waiting(held, runId), 60_000, "the submission to wait for the slot")
      assert.strictEqual((await call(other, "POST", `/v1/runs/${runId}/cancel`)).status, 200)
      const deleted = await call(other, "DELETE", `/v1/runs/${runId}`)
      assert.strictEqual(deleted.status, 204, deleted.text)
      const again = await submit("Starbuck was the chief mate of the Pequod.", 999)
      assert.strictEqual(again.status, 202, again.text)

      // The slot frees: the deleted run's message comes first, then the new run's.
      assert.strictEqual((await call(other, "POST", `/v1/runs/${holder}/cancel`)).status, 200)
      await waitFor(db, runId, (r) => r.status === "completed", "the new run to complete")
      const ended = await budgets(db, runId)
      assert.strictEqual(ended.run, `{"maxTokens":999}`)
      assert.isUndefined(ended.queued)
      assert.match(held.child.stderr, /the run of this message was deleted since/)
      await allExecutesAnswered(db)
    },
    300_000
  )

  it(
    "a run cancelled while its runner is paused (SIGSTOP) is answered at once and recorded cancelled by the runner that takes it over, with no batch committed after the cancel; resumed, it completes",
    async () => {
      const { db, held, ids, other } = await twoRunners("paused", 1)
      const runId = ids[0]!
      await submitMobyDick(other, runId)
      await waitFor(db, runId, (r) => r.committed_batches >= 2 && r.lease_owner?.startsWith(held.owner) === true, "r")
      held.child.child.kill("SIGSTOP")
      try {
        // Its commits stop here (one frozen inside its transaction is rolled back by the server, never committed).
        const committed = (await row(db, runId))!.committed_batches
        const cancelled = await call(other, "POST", `/v1/runs/${runId}/cancel`)
        assert.strictEqual(cancelled.status, 200, cancelled.text)
        // The lease of the paused runner is live: the request is a flag, which the runner taking the run over sees.
        // Answered at once, not once the shard has moved (19 s): the run is still running under that lease.
        assert.deepInclude(cancelled.json(), { cancelRequested: true, status: "running" })
        await waitFor(db, runId, (r) => r.status !== "running", "the run to end")
        const ended = (await row(db, runId))!
        assert.strictEqual(ended.status, "cancelled", JSON.stringify(ended))
        assert.strictEqual(ended.committed_batches, committed)
        assert.isNull(ended.lease_owner)
        await until(
          () => /cancelled before this runner claimed it/.test(other.child.stderr),
          30_000,
          "the other runner to log it"
        )
      } finally {
        held.child.child.kill("SIGCONT")
      }
      // Resumed, it executes to the end: the `Cancel` sent to the paused runner names the execution it cancelled.
      await resumesToTheEnd(db, other, runId)
      await allExecutesAnswered(db)
    },
    300_000
  )

  it(
    "a run waiting for its runner's slot does not start there during the runner's drain delay, even when the slot frees: the shard's next owner executes it",
    async () => {
      const { db, held, ids, other } = await twoRunners("delay", 2, ["--drain-delay", "12", "--drain-timeout", "40s"])
      const [holder, queued] = [ids[0]!, ids[1]!]
      await submitMobyDick(held, holder)
      await waitFor(db, holder, (r) => r.status === "running", "a run to hold the slot")
      await submitMobyDick(held, queued)
      await until(() => waiting(held, queued), 60_000, "the submission to wait for the slot")

      held.child.child.kill("SIGTERM")
      await until(async () => (await call(held, "GET", "/readyz")).status === 503, 30_000, "the drain delay")
      // The slot frees during the delay; the waiting run must not take it.
      assert.strictEqual((await call(other, "POST", `/v1/runs/${holder}/cancel`)).status, 200)
      await waitFor(db, holder, (r) => r.status === "cancelled", "the run holding the slot to end")
      while (held.child.child.exitCode === null) {
        const found = (await row(db, queued))!
        assert.isFalse(found.lease_owner?.startsWith(held.owner) === true, JSON.stringify(found))
        assert.strictEqual(found.status, "pending")
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
      assert.strictEqual((await held.child.exited).code, 0, held.child.stderr)

      await waitFor(db, queued, (r) => r.status === "completed", "the shard's next owner to execute it")
      assert.strictEqual((await row(db, queued))!.digest, suite.reference.digest)
      await allExecutesAnswered(db)
    },
    300_000
  )
})
