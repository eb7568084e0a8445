/**
 * The contract every `RunStore` implementation must pass. Call `runStoreSuite` from the implementation's test file
 * with a layer that builds a fresh, empty store in the given directory.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Chunking from "@quarry/core/Chunking"
import * as Extractor from "@quarry/core/Extractor"
import { Artifact, ExtractorIdentity, type Run, RunId } from "@quarry/core/Run"
import * as RunStore from "@quarry/core/RunStore"
import * as RunView from "@quarry/core/RunView"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { tempDir } from "./fixtures.js"

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex")

const thing = "http://www.w3.org/2002/07/owl#Thing"
const person = "http://xmlns.com/foaf/0.1/Person"

/** A synthetic batch output: one entity of its own, plus the given extra mentions. */
export const syntheticOutput = (
  batchIndex: number,
  extra: ReadonlyArray<Extractor.EntityMention> = []
): Extractor.BatchOutput => ({
  entities: [
    {
      label: `Entity ${batchIndex}`,
      type: thing,
      span: { start: batchIndex * 10, end: batchIndex * 10 + 8 },
      confidence: 0.9,
      attributes: {}
    },
    ...extra
  ],
  relations: [],
  usage: { requests: 1, promptTokens: batchIndex, completionTokens: 2, costUsd: 0.5 }
})

const input = "Ahab met Starbuck. 田中優子 and Ελένη wrote 😀 notes.\n"

/** A run to create, with every plan field set to something other than a default. */
export const newRun = (id: string, overrides: Partial<RunStore.NewRun> = {}): RunStore.NewRun => ({
  id: RunId.make(id),
  input,
  inputSha256: sha256(input),
  chunking: new Chunking.ChunkingParams({ strategy: "sentences", windowSize: 321, overlap: 17, batchSize: 3 }),
  chunkerVersion: "test-chunker",
  extractor: new ExtractorIdentity({
    name: "test-extractor",
    version: "7",
    configHash: "cfg-hash",
    settings: { model: "m-1", temperature: 0.3, seed: 42, strict: true }
  }),
  ontology: Option.some({ sha256: "onto-sha", source: "@prefix ex: <http://example.org/> ." }),
  concurrency: 4,
  totalBatches: 12,
  outputPath: "/nowhere/out.nt",
  outputFormat: "ntriples",
  onBatchError: "fail",
  provenance: true,
  ...overrides
})

const leaseMs = 10_000
const start = Date.UTC(2025, 0, 1)

/** Fails the test with the value when an effect that must fail succeeded. */
const flipOrFail = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.flatMap(
    Effect.either(effect),
    Either.match({
      onLeft: Effect.succeed,
      onRight: (a) => Effect.dieMessage(`expected a failure, got ${JSON.stringify(a)}`)
    })
  )

/**
 * Registers the contract tests for one implementation. `makeLayer` builds a fresh, empty store in `dir`.
 */
export const runStoreSuite = (
  name: string,
  makeLayer: (dir: string) => Layer.Layer<RunStore.RunStore, unknown>
) =>
  describe(`RunStore contract (${name})`, () => {
    const withStore = <A, E, R>(f: (store: RunStore.RunStore["Type"]) => Effect.Effect<A, E, R>) =>
      Effect.gen(function*() {
        yield* TestClock.setTime(start)
        const dir = yield* tempDir
        const context = yield* Layer.build(makeLayer(dir))
        return yield* f(Context.get(context, RunStore.RunStore))
      })

    /** Claims a run's lease; the holder that every later write presents. */
    const take = (store: RunStore.RunStore["Type"], runId: RunId, owner: string) =>
      Effect.map(store.claim(runId, owner, leaseMs), (claimed) => Option.getOrThrow(claimed.holder))

    /** Commits `count` synthetic batches; returns their checkpoints. */
    const commitMany = (
      store: RunStore.RunStore["Type"],
      runId: RunId,
      holder: RunStore.LeaseHolder,
      count: number
    ) =>
      Effect.forEach(Array.from({ length: count }, (_, i) => i), (batchIndex) =>
        store.commitBatch({
          runId,
          holder,
          batchIndex,
          output: syntheticOutput(batchIndex),
          attempts: 1,
          durationMs: 5
        }))

    it.scoped("createRun stores the input and the whole plan; getRun and readInput read them back", () =>
      withStore((store) =>
        Effect.gen(function*() {
          const created = yield* store.createRun(newRun("r1"))
          const run = yield* store.getRun(RunId.make("r1"))
          assert.deepStrictEqual(run, created)
          assert.strictEqual(run.status, "pending")
          assert.strictEqual(run.committedBatches, 0)
          assert.isTrue(Option.isNone(run.lease))
          assert.isTrue(Option.isNone(run.artifact))
          const expected = newRun("r1")
          assert.deepStrictEqual(run.plan.chunking, expected.chunking)
          assert.strictEqual(run.plan.chunkerVersion, "test-chunker")
          assert.deepStrictEqual(run.plan.extractor, expected.extractor)
          assert.deepStrictEqual(run.plan.extractor.settings, {
            model: "m-1",
            temperature: 0.3,
            seed: 42,
            strict: true
          })
          assert.deepStrictEqual(run.plan.ontologySha256, Option.some("onto-sha"))
          assert.strictEqual(run.plan.concurrency, 4)
          assert.strictEqual(run.plan.totalBatches, 12)
          assert.strictEqual(run.plan.inputSha256, sha256(input))
          assert.strictEqual(run.plan.inputLength, input.length)
          assert.strictEqual(run.plan.outputPath, "/nowhere/out.nt")
          assert.strictEqual(run.plan.outputFormat, "ntriples")
          assert.strictEqual(yield* store.readInput(run.id), input)
          assert.deepStrictEqual(
            yield* store.readOntologySource("onto-sha"),
            Option.some("@prefix ex: <http://example.org/> .")
          )
          assert.deepStrictEqual(yield* store.readOntologySource("unknown"), Option.none())
        })
      ))

    it.scoped("createRun refuses a taken id and leaves the first run untouched", () =>
      withStore((store) =>
        Effect.gen(function*() {
          const first = yield* store.createRun(newRun("dup"))
          const error = yield* flipOrFail(store.createRun(newRun("dup", { input: "other", totalBatches: 1 })))
          assert.strictEqual(error._tag, "RunAlreadyExists")
          assert.deepStrictEqual(yield* store.getRun(first.id), first)
          assert.strictEqual(yield* store.readInput(first.id), input)
        })
      ))

    it.scoped("unknown runs are RunNotFound", () =>
      withStore((store) =>
        Effect.gen(function*() {
          const missing = RunId.make("missing")
          assert.strictEqual((yield* flipOrFail(store.getRun(missing)))._tag, "RunNotFound")
          assert.strictEqual((yield* flipOrFail(store.readInput(missing)))._tag, "RunNotFound")
          assert.strictEqual((yield* flipOrFail(store.claim(missing, "me", leaseMs)))._tag, "RunNotFound")
          assert.strictEqual((yield* flipOrFail(store.requestCancel(missing)))._tag, "RunNotFound")
        })
      ))

    it.scoped("claim takes the lease; a live lease is RunLocked with owner and expiry; an expired one is taken over", () =>
      withStore((store) =>
        Effect.gen(function*() {
          const created = yield* store.createRun(newRun("lease"))
          const { holder: holderA, run: claimed } = yield* store.claim(created.id, "owner-a", leaseMs)
          const a = Option.getOrThrow(holderA)
          assert.strictEqual(claimed.status, "running")
          assert.isTrue(claimed.statusVersion > created.statusVersion)
          assert.deepStrictEqual(
            Option.map(claimed.lease, (l) => [l.owner, l.expiresAt]),
            Option.some(["owner-a", start + leaseMs])
          )

          yield* TestClock.adjust(leaseMs - 1)
          const locked = yield* flipOrFail(store.claim(created.id, "owner-b", leaseMs))
          assert.strictEqual(locked._tag, "RunLocked")
          if (locked._tag === "RunLocked") {
            assert.strictEqual(locked.owner, "owner-a")
            assert.strictEqual(locked.expiresAt, start + leaseMs)
          }
          // The same owner name is no claim: a second execution named "owner-a" is refused while the lease is live.
          assert.strictEqual((yield* flipOrFail(store.claim(created.id, "owner-a", leaseMs)))._tag, "RunLocked")
          // Only the claim's token renews the lease: the name alone does not.
          const impostor = { owner: "owner-a", token: "guessed" }
          assert.strictEqual((yield* flipOrFail(store.heartbeat(created.id, impostor, leaseMs)))._tag, "RunLocked")
          assert.strictEqual((yield* flipOrFail(commitMany(store, created.id, impostor, 1)))._tag, "RunLocked")
          const heartbeat = yield* store.heartbeat(created.id, a, leaseMs)
          assert.isFalse(heartbeat.cancelRequested)
          const renewedUntil = start + leaseMs - 1 + leaseMs
          yield* TestClock.adjust(leaseMs - 1)
          const stillLocked = yield* flipOrFail(store.claim(created.id, "owner-b", leaseMs))
          assert.strictEqual(stillLocked._tag, "RunLocked")
          if (stillLocked._tag === "RunLocked") assert.strictEqual(stillLocked.expiresAt, renewedUntil)

          yield* TestClock.adjust(2)
          const taken = yield* store.claim(created.id, "owner-a", leaseMs)
          assert.strictEqual(taken.run.status, "running")
          assert.deepStrictEqual(Option.map(taken.run.lease, (l) => l.owner), Option.some("owner-a"))
          assert.notStrictEqual(Option.getOrThrow(taken.holder).token, a.token)
          // The old claim lost it, even under the same owner name: no heartbeat, no commit, no completion, no end.
          assert.strictEqual((yield* flipOrFail(store.heartbeat(created.id, a, leaseMs)))._tag, "RunLocked")
          const commit = yield* flipOrFail(commitMany(store, created.id, a, 1))
          assert.strictEqual(commit._tag, "RunLocked")
          const artifact = new Artifact({ path: "/x", sha256: "s", bytes: 1, format: "turtle" })
          assert.strictEqual((yield* flipOrFail(store.complete(created.id, a, artifact)))._tag, "RunLocked")
          yield* store.finish(created.id, a, { status: "failed", reason: "x", error: "stale" })
          assert.strictEqual((yield* store.getRun(created.id)).status, "running")
          assert.strictEqual((yield* store.getRun(created.id)).committedBatches, 0)
        })
      ))

    it.scoped("commitBatch writes checkpoints with cumulative counters and the chained digest", () =>
      withStore((store) =>
        Effect.gen(function*() {
          const created = yield* store.createRun(newRun("chain"))
          const me = yield* take(store, created.id, "me")
          const checkpoints = yield* commitMany(store, created.id, me, 5)
          let digest = created.digest
          checkpoints.forEach((checkpoint, i) => {
            digest = sha256(digest + sha256(Extractor.encodeOutput(syntheticOutput(i))))
            assert.strictEqual(checkpoint.digest, digest, `digest of batch ${i}`)
            assert.strictEqual(checkpoint.batchIndex, i)
            assert.strictEqual(checkpoint.committedBatches, i + 1)
            assert.strictEqual(checkpoint.entityMentions, i + 1)
            assert.strictEqual(checkpoint.relations, 0)
            assert.isFalse(checkpoint.cancelRequested)
          })
          const run = yield* store.getRun(created.id)
          assert.strictEqual(run.committedBatches, 5)
          assert.strictEqual(run.entityMentions, 5)
          assert.strictEqual(run.digest, digest)
          assert.deepStrictEqual(
            [run.usage.requests, run.usage.promptTokens, run.usage.completionTokens, run.usage.costUsd],
            [5, 0 + 1 + 2 + 3 + 4, 10, 2.5]
          )
        })
      ))

    it.scoped("committing an already-committed batch returns the stored checkpoint and writes nothing", () =>
      withStore((store) =>
        Effect.gen(function*() {
          const created = yield* store.createRun(newRun("again"))
          const me = yield* take(store, created.id, "me")
          const [first, second] = yield* commitMany(store, created.id, me, 3)
          const before = yield* store.getRun(created.id)
          const pageBefore = yield* store.batchPage(created.id, -1, 100)
          // A retry with a different output (e.g. a re-extraction after a crash) must not replace the stored one.
          const retried = yield* store.commitBatch({
            runId: created.id,
            holder: me,
            batchIndex: 1,
            output: syntheticOutput(99),
            attempts: 2,
            durationMs: 1
          })
          assert.strictEqual(retried.digest, second!.digest)
          assert.strictEqual(retried.batchIndex, 1)
          assert.strictEqual(retried.entityMentions, second!.entityMentions)
          assert.strictEqual(retried.relations, second!.relations)
          const again = yield* store.commitBatch({
            runId: created.id,
            holder: me,
            batchIndex: 0,
            output: syntheticOutput(0),
            attempts: 1,
            durationMs: 5
          })
          assert.strictEqual(again.digest, first!.digest)
          assert.deepStrictEqual(yield* store.getRun(created.id), before)
          assert.deepStrictEqual(yield* store.batchPage(created.id, -1, 100), pageBefore)
          assert.deepStrictEqual(yield* store.knownEntities(created.id, 100), [
            ...(yield* store.knownEntities(created.id, 3))
          ])
          assert.notInclude(
            (yield* store.knownEntities(created.id, 100)).map((e) => e.label),
            "Entity 99"
          )
        })
      ))

    const batchCommit = (runId: RunId, holder: RunStore.LeaseHolder, batchIndex: number): RunStore.BatchCommit => ({
      runId,
      holder,
      batchIndex,
      // Batch i re-mentions batch i - 1's entity: the group's entity rows keep each key's first batch.
      output: syntheticOutput(batchIndex, batchIndex > 0 ? syntheticOutput(batchIndex - 1).entities : []),
      attempts: 1,
      durationMs: 5
    })

    it.scoped("commitBatches writes a group exactly as commitBatch one by one: rows, checkpoints, digest, entities", () =>
      withStore((store) =>
        Effect.gen(function*() {
          const single = yield* store.createRun(newRun("one-by-one"))
          const grouped = yield* store.createRun(newRun("grouped"))
          const a = yield* take(store, single.id, "me")
          const b = yield* take(store, grouped.id, "me")
          const expected = yield* Effect.forEach([0, 1, 2, 3, 4, 5], (i) =>
            store.commitBatch(batchCommit(single.id, a, i)))
          const first = yield* store.commitBatches([0, 1].map((i) =>
            batchCommit(grouped.id, b, i)
          ))
          const rest = yield* store.commitBatches([2, 3, 4, 5].map((i) => batchCommit(grouped.id, b, i)))
          const strip = (c: RunStore.Checkpoint) => ({ ...c, runId: "x" })
          assert.deepStrictEqual([...first, ...rest].map(strip), expected.map(strip))
          const [x, y] = [yield* store.getRun(single.id), yield* store.getRun(grouped.id)]
          assert.deepStrictEqual(
            [y.committedBatches, y.entityMentions, y.relations, y.digest, y.usage],
            [x.committedBatches, x.entityMentions, x.relations, x.digest, x.usage]
          )
          assert.deepStrictEqual(
            yield* store.batchPage(grouped.id, -1, 100),
            yield* store.batchPage(single.id, -1, 100)
          )
          assert.deepStrictEqual(
            yield* store.knownEntities(grouped.id, 100),
            yield* store.knownEntities(single.id, 100)
          )
          assert.deepStrictEqual((yield* store.knownEntities(grouped.id, 100)).map((e) => e.firstBatch), [
            0,
            1,
            2,
            3,
            4,
            5
          ])
        })
      ))

    it.scoped("commitBatches: a stale holder writes nothing of the group; a retried group writes only what is new", () =>
      withStore((store) =>
        Effect.gen(function*() {
          const created = yield* store.createRun(newRun("fenced-group"))
          const current = yield* take(store, created.id, "me")
          const error = yield* flipOrFail(
            store.commitBatches([0, 1, 2].map((i) => batchCommit(created.id, { ...current, token: "stale" }, i)))
          )
          assert.strictEqual(error._tag, "RunLocked")
          assert.strictEqual((yield* store.getRun(created.id)).committedBatches, 0)
          assert.deepStrictEqual(yield* store.batchPage(created.id, -1, 100), [])
          assert.deepStrictEqual(yield* store.knownEntities(created.id, 100), [])
          const firstTwo = yield* store.commitBatches([0, 1].map((i) => batchCommit(created.id, current, i)))
          // The retry of a group that partly landed answers the stored checkpoints and writes the rest.
          const again = yield* store.commitBatches([0, 1, 2, 3].map((i) => batchCommit(created.id, current, i)))
          assert.deepStrictEqual(again.slice(0, 2).map((c) => c.digest), firstTwo.map((c) => c.digest))
          assert.deepStrictEqual(again.map((c) => c.batchIndex), [0, 1, 2, 3])
          assert.strictEqual(again[3]!.committedBatches, 4)
          assert.strictEqual((yield* store.getRun(created.id)).committedBatches, 4)
          assert.deepStrictEqual((yield* store.batchPage(created.id, -1, 100)).map((b) => b.batchIndex), [0, 1, 2, 3])
        })
      ))

    it.scoped("batchPage reads committed outputs in batch order, page by page", () =>
      withStore((store) =>
        Effect.gen(function*() {
          const created = yield* store.createRun(newRun("pages", { totalBatches: 10 }))
          yield* commitMany(store, created.id, yield* take(store, created.id, "me"), 10)
          const seen: Array<number> = []
          let after = -1
          for (;;) {
            const page = yield* store.batchPage(created.id, after, 3)
            if (page.length === 0) break
            assert.isAtMost(page.length, 3)
            for (const batch of page) {
              seen.push(batch.batchIndex)
              assert.deepStrictEqual(batch.output, syntheticOutput(batch.batchIndex))
            }
            after = page[page.length - 1]!.batchIndex
          }
          assert.deepStrictEqual(seen, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
          assert.deepStrictEqual(yield* store.batchPage(RunId.make("nobody"), -1, 3), [])
        })
      ))

    it.scoped("knownEntities gives entities first seen before a batch, once each, in order of first appearance", () =>
      withStore((store) =>
        Effect.gen(function*() {
          const created = yield* store.createRun(newRun("known"))
          const me = yield* take(store, created.id, "me")
          const mention = (label: string, type = person) => ({
            label,
            type,
            span: { start: 0, end: label.length },
            confidence: 1,
            attributes: {}
          })
          const outputs = [
            { entities: [mention("Ahab"), mention("田中優子")], relations: [] },
            { entities: [mention("AHAB"), mention("Ελένη"), mention("Ahab", thing)], relations: [] },
            { entities: [mention("Starbuck")], relations: [] }
          ]
          for (const [batchIndex, output] of outputs.entries()) {
            yield* store.commitBatch({ runId: created.id, holder: me, batchIndex, output, attempts: 1, durationMs: 1 })
          }
          const view = (before: number) =>
            Effect.map(store.knownEntities(created.id, before), (rows) => rows.map((e) => `${e.label}|${e.type}`))
          assert.deepStrictEqual(yield* view(0), [])
          assert.sameMembers(yield* view(1), [`Ahab|${person}`, `田中優子|${person}`])
          const two = yield* view(2)
          // "AHAB" is the same person as "Ahab"; the Thing "Ahab" is another entity; Greek stays intact.
          assert.sameMembers(two, [`Ahab|${person}`, `田中優子|${person}`, `Ελένη|${person}`, `Ahab|${thing}`])
          assert.deepStrictEqual(two.slice(0, 2).sort(), (yield* view(1)).sort())
          assert.sameMembers(yield* view(3), [...two, `Starbuck|${person}`])
          assert.strictEqual((yield* store.knownEntities(created.id, 3)).length, 5)
          // A range reads only the entities first seen in it, with their first batch.
          const range = yield* store.knownEntities(created.id, 3, 1)
          assert.sameMembers(range.map((e) => `${e.label}|${e.firstBatch}`), ["Ελένη|1", "Ahab|1", "Starbuck|2"])
          assert.deepStrictEqual((yield* store.knownEntities(created.id, 3)).slice(2), range)
        })
      ))

    it.scoped("concurrent commits from two runs lose nothing", () =>
      withStore((store) =>
        Effect.gen(function*() {
          const count = 40
          const a = yield* store.createRun(newRun("run-a", { totalBatches: count }))
          const b = yield* store.createRun(newRun("run-b", { totalBatches: count }))
          const holderA = yield* take(store, a.id, "owner-a")
          const holderB = yield* take(store, b.id, "owner-b")
          yield* Effect.all([
            commitMany(store, a.id, holderA, count),
            commitMany(store, b.id, holderB, count),
            // Reads interleaved with the writes.
            Effect.forEach(Array.from({ length: count }), () => store.knownEntities(a.id, count), { discard: true })
          ], { concurrency: "unbounded" })
          for (const run of [a, b]) {
            const stored = yield* store.getRun(run.id)
            assert.strictEqual(stored.committedBatches, count)
            assert.strictEqual(stored.entityMentions, count)
            let digest = run.digest
            for (let i = 0; i < count; i++) digest = sha256(digest + sha256(Extractor.encodeOutput(syntheticOutput(i))))
            assert.strictEqual(stored.digest, digest)
            const page = yield* store.batchPage(run.id, -1, 1000)
            assert.deepStrictEqual(page.map((p) => p.batchIndex), Array.from({ length: count }, (_, i) => i))
            assert.strictEqual((yield* store.knownEntities(run.id, count)).length, count)
          }
        })
      ))

    it.scoped("complete records the artifact, releases the lease, and is terminal", () =>
      withStore((store) =>
        Effect.gen(function*() {
          const created = yield* store.createRun(newRun("done", { totalBatches: 1 }))
          const me = yield* take(store, created.id, "me")
          yield* commitMany(store, created.id, me, 1)
          const artifact = new Artifact({ path: "/out.nt", sha256: "abc", bytes: 42, format: "ntriples" })
          const completed = yield* store.complete(created.id, me, artifact)
          assert.strictEqual(completed.status, "completed")
          assert.deepStrictEqual(completed.artifact, Option.some(artifact))
          assert.isTrue(Option.isNone(completed.lease))
          // Claiming a completed run returns it unchanged (resume is a no-op).
          const claimed = yield* store.claim(created.id, "other", leaseMs)
          assert.strictEqual(claimed.run.status, "completed")
          assert.strictEqual(claimed.run.statusVersion, completed.statusVersion)
          assert.isTrue(Option.isNone(claimed.holder))
          assert.strictEqual((yield* flipOrFail(store.requestCancel(created.id)))._tag, "InvalidRunState")
          assert.deepStrictEqual((yield* store.listRuns({ status: "completed" })).map((r) => r.id), [created.id])
        })
      ))

    it.scoped("a submission's or a claim's budget becomes the run's; a claim without one keeps it; {} lifts it", () =>
      withStore((store) =>
        Effect.gen(function*() {
          const created = yield* store.createRun(newRun("budgeted"))
          assert.isTrue(Option.isNone(created.budget))
          const first = yield* store.claim(created.id, "a", leaseMs, { budget: { maxCostUsd: 2.5 } })
          assert.deepStrictEqual(first.run.budget, Option.some({ maxCostUsd: 2.5 }))
          yield* store.finish(created.id, Option.getOrThrow(first.holder), { status: "interrupted" })
          // No budget given: the run keeps its own.
          const again = yield* store.claim(created.id, "b", leaseMs)
          assert.deepStrictEqual(again.run.budget, Option.some({ maxCostUsd: 2.5 }))
          yield* store.finish(created.id, Option.getOrThrow(again.holder), { status: "interrupted" })
          // A budget given replaces the whole; one with no finite limit (unset, or infinite, which JSON cannot hold)
          // lifts it, and the run stays readable.
          for (const budget of [{}, { maxCostUsd: Infinity }]) {
            const replaced = yield* store.claim(created.id, "c", leaseMs, { budget: { maxTokens: 900 } })
            assert.deepStrictEqual(replaced.run.budget, Option.some({ maxTokens: 900 }))
            yield* store.finish(created.id, Option.getOrThrow(replaced.holder), { status: "interrupted" })
            const lifted = yield* store.claim(created.id, "d", leaseMs, { budget })
            assert.isTrue(Option.isNone(lifted.run.budget))
            assert.isTrue(Option.isNone((yield* store.getRun(created.id)).budget))
            yield* store.finish(created.id, Option.getOrThrow(lifted.holder), { status: "interrupted" })
          }
          // A submission's budget is the run's from the start.
          const submitted = yield* store.createRun({
            ...newRun("budget-submitted"),
            queued: { retrySkipped: false, budget: { maxTokens: 10 } }
          })
          assert.deepStrictEqual(submitted.budget, Option.some({ maxTokens: 10 }))
        })
      ))

    it.scoped("failUnstarted records failed with its reason for the version read, never over a claim or an end", () =>
      withStore((store) =>
        Effect.gen(function*() {
          const unstarted = { reason: "UnknownExtractor", error: "unknown extractor \"gone\"" }
          const created = yield* store.createRun(newRun("unstarted"))
          // A version that moved on (read before a cancel, say) records nothing.
          assert.isFalse(yield* store.failUnstarted(created.id, created.statusVersion + 1, unstarted))
          assert.isTrue(yield* store.failUnstarted(created.id, created.statusVersion, unstarted))
          const failed = yield* store.getRun(created.id)
          assert.strictEqual(failed.status, "failed")
          assert.isTrue(failed.statusVersion > created.statusVersion)
          assert.deepStrictEqual([failed.failureReason, failed.lastError], [
            Option.some("UnknownExtractor"),
            Option.some(unstarted.error)
          ])
          assert.deepStrictEqual((yield* store.errors(created.id)).map((e) => [e.reason, e.message]), [
            ["UnknownExtractor", unstarted.error]
          ])
          // A failed run resumed and failing again before its claim: recorded again. Its queued execution stays
          // (a single server's next start tries it again), unless the request ends there (`dequeue`).
          yield* store.queueExecution({ runId: created.id })
          assert.isTrue(yield* store.failUnstarted(created.id, failed.statusVersion, unstarted))
          assert.strictEqual((yield* store.errors(created.id)).length, 2)
          assert.strictEqual((yield* store.queuedExecutions).length, 1)
          const again = yield* store.getRun(created.id)
          assert.isTrue(yield* store.failUnstarted(created.id, again.statusVersion, { ...unstarted, dequeue: true }))
          assert.deepStrictEqual(yield* store.queuedExecutions, [])

          // Executing elsewhere, or ended for good: left alone.
          const running = (yield* store.claim(created.id, "elsewhere", leaseMs)).run
          assert.isFalse(yield* store.failUnstarted(created.id, running.statusVersion, unstarted))
          const cancelled = yield* store.requestCancel((yield* store.createRun(newRun("unstarted-cancelled"))).id)
          assert.isFalse(yield* store.failUnstarted(cancelled.id, cancelled.statusVersion, unstarted))
          assert.strictEqual((yield* store.getRun(created.id)).status, "running")
          assert.strictEqual((yield* store.getRun(cancelled.id)).status, "cancelled")
        })
      ))

    it.scoped("recordAttempt counts an attempt recorded twice (a retried write) once; other attempts add up", () =>
      withStore((store) =>
        Effect.gen(function*() {
          const run = yield* store.createRun(newRun("attempts"))
          const other = yield* store.createRun(newRun("attempts-other"))
          const usage = { requests: 1, promptTokens: 30, completionTokens: 7, costUsd: 0.125 }
          yield* store.recordAttempt(run.id, 0, usage, "attempt-a")
          yield* store.recordAttempt(run.id, 0, usage, "attempt-a")
          const once = yield* store.attemptTotals(run.id)
          assert.deepStrictEqual(
            [once.requests, once.promptTokens, once.completionTokens, once.costUsd],
            [1, 30, 7, 0.125]
          )
          // Same usage, another attempt: it counts. Keys are per run.
          yield* store.recordAttempt(run.id, 0, usage, "attempt-b")
          yield* store.recordAttempt(other.id, 0, usage, "attempt-a")
          const twice = yield* store.attemptTotals(run.id)
          assert.deepStrictEqual([twice.requests, twice.promptTokens, twice.costUsd], [2, 60, 0.25])
          assert.strictEqual((yield* store.attemptTotals(other.id)).requests, 1)
        })
      ))

    it.scoped("reported costs are clean decimals: sums of float costs are rounded to a billionth of a dollar", () =>
      withStore((store) =>
        Effect.gen(function*() {
          const created = yield* store.createRun(newRun("cents"))
          const me = yield* take(store, created.id, "me")
          // 0.012 + 0.01212 is 0.024120000000000003 in floating point; a lost attempt of 0.1 makes 0.12412000000000001.
          const paid = (costUsd: number) => ({ requests: 1, promptTokens: 10, completionTokens: 2, costUsd })
          yield* Effect.forEach([0.012, 0.01212], (costUsd, batchIndex) =>
            Effect.zipRight(
              store.recordAttempt(created.id, batchIndex, paid(costUsd), `attempt-${batchIndex}`),
              store.commitBatch({
                runId: created.id,
                holder: me,
                batchIndex,
                output: { ...syntheticOutput(batchIndex), usage: paid(costUsd) },
                attempts: 1,
                durationMs: 5
              })
            ))
          yield* store.recordAttempt(created.id, 2, paid(0.1), "lost")
          const run = yield* store.getRun(created.id)
          const details = (yield* store.runDetails([run])).get(run.id)
          const ledger = { attempts: yield* store.attemptTotals(run.id), skipped: [], compensation: [] }
          const view = RunView.make(run, ledger, {
            now: start,
            queuePosition: Option.none(),
            paths: true,
            resume: String
          })
          assert.deepStrictEqual(
            [
              run.usage.costUsd,
              details?.attempts.costUsd,
              view.usage.costUsd,
              view.attemptUsage.costUsd,
              view.lostUsage.costUsd
            ],
            [0.02412, 0.12412, 0.02412, 0.12412, 0.1]
          )
          assert.include(JSON.stringify(view.usage), `"costUsd":0.02412}`)
        })
      ))

    it.scoped("deleteRun removes a finished run's rows and artifact files; pending and running runs are refused", () =>
      withStore((store) =>
        Effect.gen(function*() {
          const dir = yield* tempDir
          const file = path.join(dir, "gone.nt")
          fs.writeFileSync(file, "<a> <b> <c> .\n")
          fs.writeFileSync(`${file}.skipped.json`, "[]")
          const created = yield* store.createRun(newRun("gone", { totalBatches: 1 }))
          assert.strictEqual((yield* flipOrFail(store.deleteRun(created.id)))._tag, "InvalidRunState")
          const holder = yield* take(store, created.id, "me")
          assert.strictEqual((yield* flipOrFail(store.deleteRun(created.id)))._tag, "InvalidRunState")
          yield* commitMany(store, created.id, holder, 1)
          yield* store.complete(
            created.id,
            holder,
            new Artifact({ path: file, sha256: "x", bytes: 14, format: "ntriples" })
          )
          const kept = yield* store.createRun(newRun("kept"))
          const deleted = yield* store.deleteRun(created.id)
          assert.strictEqual(deleted.status, "completed")
          assert.isFalse(fs.existsSync(file))
          assert.isFalse(fs.existsSync(`${file}.skipped.json`))
          assert.strictEqual((yield* flipOrFail(store.getRun(created.id)))._tag, "RunNotFound")
          assert.deepStrictEqual(yield* store.batchPage(created.id, -1, 10), [])
          assert.deepStrictEqual((yield* store.listRuns()).map((r) => r.id), [kept.id])
          assert.strictEqual((yield* flipOrFail(store.deleteRun(created.id)))._tag, "RunNotFound")
        })
      ))

    it.scoped("queued executions keep FIFO order and their budget; cancel, delete and dequeue remove them", () =>
      withStore((store) =>
        Effect.gen(function*() {
          const view = Effect.map(store.queuedExecutions, (rows) =>
            rows.map((row) => ({
              runId: row.runId,
              retrySkipped: row.retrySkipped,
              budget: Option.getOrNull(row.budget),
              requestId: Option.getOrNull(row.requestId)
            })))
          // Queued with the run, in its transaction; a second create of the same id changes nothing.
          const first = yield* store.createRun(
            newRun("first", { queued: { budget: { maxCostUsd: 0.25 }, requestId: "req-1" } })
          )
          const taken = yield* flipOrFail(store.createRun(newRun("first", { queued: { budget: { maxTokens: 1 } } })))
          assert.strictEqual(taken._tag, "RunAlreadyExists")
          const second = yield* store.createRun(newRun("second"))
          const third = yield* store.createRun(newRun("third", { queued: {} }))
          yield* store.queueExecution({ runId: second.id, retrySkipped: true, budget: { maxTokens: 900 } })
          assert.deepStrictEqual(yield* view, [
            { runId: first.id, retrySkipped: false, budget: { maxCostUsd: 0.25 }, requestId: "req-1" },
            { runId: third.id, retrySkipped: false, budget: null, requestId: null },
            { runId: second.id, retrySkipped: true, budget: { maxTokens: 900 }, requestId: null }
          ])
          const queuedAt = (yield* store.queuedExecutions)[0]!.queuedAt
          assert.strictEqual(queuedAt, start)
          // Queued again: same place, new options.
          yield* store.queueExecution({ runId: first.id, budget: { maxCostUsd: 1, maxTokens: 5 }, requestId: "req-2" })
          assert.deepStrictEqual((yield* view)[0], {
            runId: first.id,
            retrySkipped: false,
            budget: { maxCostUsd: 1, maxTokens: 5 },
            requestId: "req-2"
          })
          const missing = yield* flipOrFail(store.queueExecution({ runId: RunId.make("missing") }))
          assert.strictEqual(missing._tag, "RunNotFound")
          // A limit JSON cannot hold is refused, and the stored row keeps its options.
          const infinite = yield* flipOrFail(
            store.queueExecution({ runId: first.id, budget: { maxCostUsd: Infinity } })
          )
          assert.strictEqual(infinite._tag, "PersistenceError")
          assert.deepStrictEqual(Option.getOrNull((yield* store.queuedExecutions)[0]!.budget), {
            maxCostUsd: 1,
            maxTokens: 5
          })

          yield* store.requestCancel(third.id)
          assert.deepStrictEqual((yield* view).map((r) => r.runId), [first.id, second.id])
          yield* store.dequeueExecution(second.id)
          yield* store.dequeueExecution(second.id)
          assert.deepStrictEqual((yield* view).map((r) => r.runId), [first.id])
          // Deleting a finished run deletes its queued execution (the failed run was queued to resume).
          const holder = yield* take(store, first.id, "me")
          yield* store.finish(first.id, holder, { status: "failed", reason: "extractor", error: "boom" })
          yield* store.deleteRun(first.id)
          assert.deepStrictEqual(yield* view, [])
        })
      ))

    it.scoped("finish records a failure with its error history; the run can be claimed again", () =>
      withStore((store) =>
        Effect.gen(function*() {
          const created = yield* store.createRun(newRun("fails"))
          const first = yield* take(store, created.id, "me")
          yield* commitMany(store, created.id, first, 2)
          yield* store.finish(created.id, first, { status: "failed", reason: "ExtractorError", error: "boom 1" })
          const failed = yield* store.getRun(created.id)
          assert.strictEqual(failed.status, "failed")
          assert.deepStrictEqual(failed.lastError, Option.some("boom 1"))
          assert.deepStrictEqual(failed.failureReason, Option.some("ExtractorError"))
          assert.isTrue(Option.isNone(failed.lease))
          assert.strictEqual(failed.committedBatches, 2)
          // Someone who does not hold the lease cannot record an end.
          const second = yield* take(store, created.id, "me")
          yield* store.finish(created.id, { owner: "intruder", token: "x" }, {
            status: "failed",
            reason: "x",
            error: "no"
          })
          yield* store.finish(created.id, first, { status: "failed", reason: "x", error: "an earlier claim" })
          assert.strictEqual((yield* store.getRun(created.id)).status, "running")
          yield* TestClock.adjust(1)
          yield* store.finish(created.id, second, { status: "failed", reason: "PersistenceError", error: "boom 2" })
          const errors = yield* store.errors(created.id)
          assert.deepStrictEqual(errors.map((e) => [e.reason, e.message]), [
            ["ExtractorError", "boom 1"],
            ["PersistenceError", "boom 2"]
          ])
          const resumed = yield* store.claim(created.id, "me", leaseMs)
          assert.strictEqual(resumed.run.status, "running")
          assert.strictEqual(resumed.run.committedBatches, 2)
          yield* store.finish(created.id, Option.getOrThrow(resumed.holder), { status: "interrupted" })
          assert.strictEqual((yield* store.getRun(created.id)).status, "interrupted")
          assert.strictEqual((yield* store.errors(created.id)).length, 2)
        })
      ))

    it.scoped("requestCancel cancels an idle run at once and flags a running one for its holder", () =>
      withStore((store) =>
        Effect.gen(function*() {
          const idle = yield* store.createRun(newRun("idle"))
          const cancelled = yield* store.requestCancel(idle.id)
          assert.strictEqual(cancelled.status, "cancelled")
          assert.isTrue(cancelled.statusVersion > idle.statusVersion)

          const busy = yield* store.createRun(newRun("busy"))
          const me = yield* take(store, busy.id, "me")
          const flagged = yield* store.requestCancel(busy.id)
          assert.strictEqual(flagged.status, "running")
          assert.isTrue(flagged.cancelRequested)
          assert.isTrue((yield* store.heartbeat(busy.id, me, leaseMs)).cancelRequested)
          const [checkpoint] = yield* commitMany(store, busy.id, me, 1)
          assert.isTrue(checkpoint!.cancelRequested)
          yield* store.finish(busy.id, me, { status: "cancelled" })
          const stopped = yield* store.getRun(busy.id)
          assert.strictEqual(stopped.status, "cancelled")
          // A cancelled run is resumable, and the request does not stick to the next execution.
          const resumed = yield* store.claim(busy.id, "me", leaseMs, { expectedVersion: stopped.statusVersion })
          assert.isFalse(resumed.run.cancelRequested)
          // A cancel that lands after the caller read the run (expectedVersion) sticks: the claim is refused.
          const resumedHolder = Option.getOrThrow(resumed.holder)
          yield* store.finish(busy.id, resumedHolder, { status: "interrupted" })
          const read = yield* store.getRun(busy.id)
          yield* store.requestCancel(busy.id)
          const raced = yield* flipOrFail(store.claim(busy.id, "me", leaseMs, { expectedVersion: read.statusVersion }))
          assert.strictEqual(raced._tag, "RunCancelled")
          assert.strictEqual((yield* store.getRun(busy.id)).status, "cancelled")

          // A running run whose holder died (lease expired) is cancelled at once.
          const orphan = yield* store.createRun(newRun("orphan"))
          yield* store.claim(orphan.id, "dead", leaseMs)
          yield* TestClock.adjust(leaseMs + 1)
          assert.strictEqual((yield* store.requestCancel(orphan.id)).status, "cancelled")

          assert.sameMembers(
            (yield* store.listRuns({ status: "cancelled" })).map((r) => r.id),
            [idle.id, busy.id, orphan.id]
          )
          assert.strictEqual((yield* store.listRuns()).length, 3)
          assert.deepStrictEqual(yield* store.countRuns, {
            pending: 0,
            running: 0,
            completed: 0,
            failed: 0,
            cancelled: 3,
            interrupted: 0
          })
        })
      ))

    it.scoped("requestCancel of a cancelled run withdraws its waiting resume: a claim expecting the resume's version is refused", () =>
      withStore((store) =>
        Effect.gen(function*() {
          const created = yield* store.createRun(newRun("withdrawn"))
          const cancelled = yield* store.requestCancel(created.id)
          // Without a queued execution a second cancel changes nothing.
          assert.strictEqual((yield* store.requestCancel(created.id)).statusVersion, cancelled.statusVersion)
          // A resume queued at this version, then withdrawn by a cancel before its claim.
          yield* store.queueExecution({ runId: created.id, budget: { maxCostUsd: 1 } })
          const withdrawn = yield* store.requestCancel(created.id)
          assert.strictEqual(withdrawn.status, "cancelled")
          assert.isTrue(withdrawn.statusVersion > cancelled.statusVersion)
          assert.deepStrictEqual(yield* store.queuedExecutions, [])
          const refused = yield* flipOrFail(
            store.claim(created.id, "me", leaseMs, { expectedVersion: cancelled.statusVersion })
          )
          assert.strictEqual(refused._tag, "RunCancelled")
          // A resume requested after the cancel executes.
          const resumed = yield* store.claim(created.id, "me", leaseMs, { expectedVersion: withdrawn.statusVersion })
          assert.strictEqual(resumed.run.status, "running")
        })
      ))

    it.scoped("queueExecutionOnce queues when nothing waits, else answers the waiting one unchanged; a row older than the run's end is replaced", () =>
      withStore((store) =>
        Effect.gen(function*() {
          const created = yield* store.createRun(newRun("once"))
          const first = { runId: created.id, budget: { maxCostUsd: 1 } }
          assert.isTrue(Option.isNone(yield* store.queueExecutionOnce(first)))
          const waiting = yield* store.queueExecutionOnce({ runId: created.id, budget: { maxCostUsd: 2 } })
          const waitingBudget: unknown = Option.getOrNull(Option.flatMap(waiting, (row) => row.budget))
          assert.deepStrictEqual(waitingBudget, { maxCostUsd: 1 })
          assert.deepStrictEqual((yield* store.queuedExecutions).map((row) => Option.getOrNull(row.budget)), [{
            maxCostUsd: 1
          }])
          // The run executes and ends (a claim without dequeue leaves the row, as a single server's does until the
          // execution ends): the row no longer waits, and the next request replaces it.
          const claimed = yield* store.claim(created.id, "me", leaseMs)
          yield* TestClock.adjust(1)
          yield* store.finish(created.id, Option.getOrThrow(claimed.holder), { status: "failed", error: "boom" })
          yield* TestClock.adjust(1)
          assert.isTrue(Option.isNone(yield* store.queueExecutionOnce({ runId: created.id, budget: { maxTokens: 5 } })))
          assert.deepStrictEqual((yield* store.queuedExecutions).map((row) => Option.getOrNull(row.budget)), [{
            maxTokens: 5
          }])
          const missing = yield* flipOrFail(store.queueExecutionOnce({ runId: RunId.make("missing") }))
          assert.strictEqual(missing._tag, "RunNotFound")
        })
      ))

    it.scoped("queuedExecution reads one run's queued execution, the same as in the whole queue, or none", () =>
      withStore((store) =>
        Effect.gen(function*() {
          const [first, second, idle] = [
            yield* store.createRun(newRun("one-first")),
            yield* store.createRun(newRun("one-second")),
            yield* store.createRun(newRun("one-idle"))
          ]
          yield* store.queueExecution({ runId: first.id })
          yield* store.queueExecution({ runId: second.id, retrySkipped: true, budget: { maxCostUsd: 2 } })
          const queue = yield* store.queuedExecutions
          assert.deepStrictEqual(yield* store.queuedExecution(second.id), Option.fromNullable(queue[1]))
          assert.strictEqual(Option.getOrThrow(yield* store.queuedExecution(second.id)).runId, second.id)
          assert.isTrue(Option.isNone(yield* store.queuedExecution(idle.id)))
          yield* store.dequeueExecution(second.id)
          assert.isTrue(Option.isNone(yield* store.queuedExecution(second.id)))
          assert.isTrue(Option.isSome(yield* store.queuedExecution(first.id)))
        })
      ))

    it.scoped("a claim with dequeue takes the run's queued execution off the queue; one without keeps it", () =>
      withStore((store) =>
        Effect.gen(function*() {
          const [kept, taken] = [yield* store.createRun(newRun("kept")), yield* store.createRun(newRun("taken"))]
          for (const run of [kept, taken]) yield* store.queueExecution({ runId: run.id, budget: { maxTokens: 9 } })
          yield* store.claim(kept.id, "me", leaseMs)
          // A refused claim (a live lease) leaves it.
          yield* store.claim(taken.id, "other", leaseMs)
          assert.strictEqual(
            (yield* flipOrFail(store.claim(taken.id, "me", leaseMs, { dequeue: true })))._tag,
            "RunLocked"
          )
          assert.deepStrictEqual((yield* store.queuedExecutions).map((row) => row.runId), [kept.id, taken.id])
          yield* TestClock.adjust(leaseMs + 1)
          const claimed = yield* store.claim(taken.id, "me", leaseMs, { dequeue: true })
          assert.strictEqual(claimed.run.status, "running")
          assert.deepStrictEqual((yield* store.queuedExecutions).map((row) => row.runId), [kept.id])
        })
      ))

    it.scoped("a claim taking over a run whose cancel was requested records it cancelled (RunCancelled)", () =>
      withStore((store) =>
        Effect.gen(function*() {
          const created = yield* store.createRun(newRun("cancel-then-stall"))
          yield* take(store, created.id, "stalled")
          assert.isTrue((yield* store.requestCancel(created.id)).cancelRequested)
          // Its holder never sees the request (paused, cut off); its lease expires and another process claims.
          yield* TestClock.adjust(leaseMs + 1)
          const refused = yield* flipOrFail(store.claim(created.id, "next", leaseMs))
          assert.strictEqual(refused._tag, "RunCancelled")
          // The claimer owes the stopped execution's undo steps.
          assert.isTrue(refused._tag === "RunCancelled" && refused.tookOver === true)
          const ended = yield* store.getRun(created.id)
          assert.strictEqual(ended.status, "cancelled")
          assert.isTrue(Option.isNone(ended.lease))
          // Resumable as any cancelled run: the next claim executes it.
          const resumed = yield* store.claim(created.id, "next", leaseMs)
          assert.strictEqual(resumed.run.status, "running")
          assert.isFalse(resumed.run.cancelRequested)
        })
      ))

    it.scoped("countStatus counts the runs of one status, as countRuns does", () =>
      withStore((store) =>
        Effect.gen(function*() {
          for (const id of ["p-1", "p-2", "p-3"]) yield* store.createRun(newRun(id))
          yield* take(store, RunId.make("p-2"), "me")
          const counts = yield* store.countRuns
          assert.deepStrictEqual(
            [yield* store.countStatus("pending"), yield* store.countStatus("running")],
            [2, 1]
          )
          assert.strictEqual(yield* store.countStatus("completed"), 0)
          assert.deepStrictEqual([counts.pending, counts.running, counts.completed], [2, 1, 0])
        })
      ))

    it.scoped("listRuns pages by keyset over (createdAt, id), filtered by status, with no gap or repeat", () =>
      withStore((store) =>
        Effect.gen(function*() {
          // Three runs per millisecond, so pages must break ties by id; ids sort differently by case and digits.
          const ids = ["b-2", "B-1", "a-10", "a-9", "c", "Z", "run.1", "run_2"]
          for (const [i, id] of ids.entries()) {
            if (i % 3 === 0) yield* TestClock.adjust(1)
            yield* store.createRun(newRun(id))
          }
          const expected = (yield* store.listRuns()).map((r) => r.id)
          assert.strictEqual(expected.length, ids.length)
          const paged: Array<string> = []
          let after: RunStore.RunFilter["after"] = undefined
          for (;;) {
            const page: ReadonlyArray<RunStore.RunFilter["after"] & {}> = (yield* store.listRuns({ after, limit: 3 }))
              .map((r) => ({ createdAt: r.createdAt, id: r.id }))
            assert.isAtMost(page.length, 3)
            if (page.length === 0) break
            paged.push(...page.map((r) => r.id))
            after = page[page.length - 1]
          }
          assert.deepStrictEqual(paged, expected)
          // Order: created first, then id in byte order (upper case before lower case), the same on every dialect.
          assert.deepStrictEqual(expected.slice(0, 3), ["B-1", "a-10", "b-2"])
          yield* store.requestCancel(RunId.make("c"))
          yield* store.requestCancel(RunId.make("Z"))
          const cancelled = yield* store.listRuns({ status: "cancelled", limit: 1 })
          assert.deepStrictEqual(cancelled.map((r) => r.id), ["Z"])
          const next = yield* store.listRuns({
            status: "cancelled",
            after: { createdAt: cancelled[0]!.createdAt, id: cancelled[0]!.id }
          })
          assert.deepStrictEqual(next.map((r) => r.id), ["c"])

          // Newest first: the same runs in the reverse order, paged the same way.
          const newest: Array<string> = []
          after = undefined
          for (;;) {
            const page: ReadonlyArray<Run> = yield* store.listRuns({ after, limit: 3, newestFirst: true })
            if (page.length === 0) break
            newest.push(...page.map((r) => r.id))
            after = { createdAt: page.at(-1)!.createdAt, id: page.at(-1)!.id }
          }
          assert.deepStrictEqual(newest, [...expected].reverse())
          assert.deepStrictEqual(
            (yield* store.listRuns({ status: "cancelled", newestFirst: true })).map((r) => r.id),
            ["c", "Z"]
          )
        })
      ))

    it.scoped("runDetails reads a page of runs' details at once; their JSON is what per-run reads gave", () =>
      withStore((store) =>
        Effect.gen(function*() {
          const busy = yield* store.createRun(newRun("details-busy", { onBatchError: "skip" }))
          const idle = yield* store.createRun(newRun("details-idle"))
          const spent = yield* store.createRun(newRun("details-spent"))
          const me = yield* take(store, busy.id, "me")
          yield* commitMany(store, busy.id, me, 2)
          yield* store.commitBatch({
            runId: busy.id,
            holder: me,
            batchIndex: 2,
            output: { entities: [], relations: [] },
            attempts: 3,
            durationMs: 5,
            skipped: { error: "the extractor failed 3 times" }
          })
          const paid = { requests: 2, promptTokens: 10, completionTokens: 3, costUsd: 0.25 }
          yield* store.recordAttempt(busy.id, 0, paid, "details-1")
          yield* store.recordAttempt(busy.id, 3, { requests: 1, promptTokens: 4, completionTokens: 1 }, "details-2")
          yield* store.recordAttempt(
            spent.id,
            0,
            { requests: 5, promptTokens: 50, completionTokens: 7, costUsd: 1 },
            "x"
          )
          yield* store.addCompensation(busy.id, { handler: "files", name: "delete upload 1", payload: "{}" })
          yield* store.addCompensation(busy.id, { handler: "files", name: "delete upload 2", payload: "[]" })
          const runs = yield* store.listRuns({ limit: 10 })
          assert.deepStrictEqual(runs.map((run) => run.id), [busy.id, idle.id, spent.id])
          // What the views read before: two or three queries per run.
          const perRun = yield* Effect.forEach(runs, (run) =>
            Effect.all({
              attempts: store.attemptTotals(run.id),
              skipped: store.skippedBatches(run.id),
              compensation: store.compensationSteps(run.id)
            }).pipe(Effect.map((ledger) => ({ run, ledger }))))
          const options = { now: start, queuePosition: Option.none(), paths: true, resume: () => "resume" }
          const json = (rows: ReadonlyArray<{ run: Run; ledger: RunView.Ledger }>) =>
            JSON.stringify(rows.map(({ ledger, run }) => RunView.make(run, ledger, options)))
          const paged = yield* RunView.ledgers(runs).pipe(Effect.provideService(RunStore.RunStore, store))
          assert.strictEqual(json(paged), json(perRun))
          const [first, second, third] = paged
          assert.deepStrictEqual(first?.ledger.skipped, [{ batchIndex: 2, error: "the extractor failed 3 times" }])
          assert.deepStrictEqual(first?.ledger.compensation.map((step) => step.name), [
            "delete upload 1",
            "delete upload 2"
          ])
          assert.deepStrictEqual(
            [first?.ledger.attempts.requests, first?.ledger.attempts.promptTokens, first?.ledger.attempts.costUsd],
            [3, 14, 0.25]
          )
          assert.deepStrictEqual([second?.ledger.attempts.requests, second?.ledger.skipped], [0, []])
          assert.strictEqual(third?.ledger.attempts.costUsd, 1)
          assert.strictEqual((yield* store.runDetails([])).size, 0)
        })
      ))

    it.scoped("a merge workspace keeps the first row of each key, reads back by keyset pages, and is dropped", () =>
      withStore((store) =>
        Effect.gen(function*() {
          const key = (label: string) => `${person}\u0000${label}`
          const entity = (ord: number, label: string) => ({
            ord,
            entity_key: key(label.toLowerCase()),
            label,
            type: person,
            attributes: JSON.stringify({ n: String(ord) })
          })
          const pages = yield* Effect.scoped(Effect.gen(function*() {
            const ws = yield* store.mergeWorkspace
            yield* ws.add({
              entities: [entity(0, "Ahab"), entity(1, "田中優子"), entity(2, "AHAB")],
              mentions: [
                { entity_key: key("ahab"), start: 9, end: 13 },
                { entity_key: key("ahab"), start: 0, end: 4 },
                { entity_key: key("ahab"), start: 0, end: 4 }
              ],
              relations: [
                {
                  ord: 0,
                  subject_key: key("ahab"),
                  predicate: "http://xmlns.com/foaf/0.1/knows",
                  object_key: key("田中優子"),
                  object_value: null,
                  object_datatype: null,
                  object_language: null,
                  identity: "knows"
                }
              ]
            })
            yield* ws.add({
              entities: [entity(3, "Ελένη"), entity(4, "ahab")],
              mentions: [{ entity_key: key("ελένη"), start: 20, end: 25 }, {
                entity_key: key("ahab"),
                start: 9,
                end: 13
              }],
              relations: [
                {
                  ord: 1,
                  subject_key: key("ελένη"),
                  predicate: "http://xmlns.com/foaf/0.1/name",
                  object_key: null,
                  object_value: "Ελένη 😀",
                  object_datatype: null,
                  object_language: "el",
                  identity: "name"
                },
                {
                  ord: 2,
                  subject_key: key("ahab"),
                  predicate: "http://xmlns.com/foaf/0.1/knows",
                  object_key: key("田中優子"),
                  object_value: null,
                  object_datatype: null,
                  object_language: null,
                  identity: "knows"
                }
              ]
            })
            const first = yield* ws.entities(-1, 2)
            const second = yield* ws.entities(first[first.length - 1]!.ord, 2)
            const rest = yield* ws.entities(second[second.length - 1]!.ord, 2)
            const mentions = yield* ws.mentions([key("ahab"), key("ελένη")])
            const relations = yield* ws.relations(-1, 10)
            // Pages added after the first read still count, each mention once.
            yield* ws.add({
              entities: [],
              mentions: [{ entity_key: key("ahab"), start: 2, end: 3 }, { entity_key: key("ahab"), start: 0, end: 4 }],
              relations: []
            })
            const later = yield* ws.mentions([key("ahab")])
            return { entities: [...first, ...second, ...rest], mentions, later, relations }
          }))
          assert.deepStrictEqual(pages.entities.map((e) => [e.ord, e.label, e.attributes]), [
            [0, "Ahab", "{\"n\":\"0\"}"],
            [1, "田中優子", "{\"n\":\"1\"}"],
            [3, "Ελένη", "{\"n\":\"3\"}"]
          ])
          assert.strictEqual(pages.entities[0]!.entity_key, key("ahab"))
          assert.deepStrictEqual(
            pages.mentions.filter((m) => m.entity_key === key("ahab")).map((m) => [m.start, m.end]),
            [[0, 4], [9, 13]]
          )
          assert.deepStrictEqual(pages.mentions.filter((m) => m.entity_key === key("ελένη")).length, 1)
          assert.deepStrictEqual(pages.later.map((m) => [m.start, m.end]), [[0, 4], [2, 3], [9, 13]])
          assert.deepStrictEqual(pages.relations.map((r) => [r.ord, r.subject_key, r.object_key, r.object_value]), [
            [0, key("ahab"), key("田中優子"), null],
            [1, key("ελένη"), null, "Ελένη 😀"]
          ])
          // Closed with its scope: a second workspace starts empty.
          const again = yield* Effect.scoped(Effect.flatMap(store.mergeWorkspace, (ws) => ws.entities(-1, 10)))
          assert.deepStrictEqual(again, [])
        })
      ))
  })
