import * as SqlClient from "@effect/sql/SqlClient"
import * as CapitalizedExtractor from "@quarry/core/CapitalizedExtractor"
import * as Database from "@quarry/core/Database"
import { ExtractorError } from "@quarry/core/Errors"
import * as Extractor from "@quarry/core/Extractor"
import type { OutputFormat } from "@quarry/core/Run"
import * as RunStore from "@quarry/core/RunStore"
import * as SqliteRunStore from "@quarry/core/SqliteRunStore"
import * as Workflow from "@quarry/core/Workflow"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Tracer from "effect/Tracer"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

/** A temporary directory removed when the scope closes. */
export const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "quarry-test-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

/** A real SQLite file with the store, plus the given extractors (default: capitalized). */
export const storeLayer = (
  filename: string,
  extractors: ReadonlyArray<Extractor.Extractor> = [CapitalizedExtractor.make()]
) =>
  Layer.mergeAll(SqliteRunStore.layer, Extractor.layerRegistry(...extractors)).pipe(
    Layer.provideMerge(Database.layer(filename))
  )

export const readText = (file: string) => fs.readFileSync(file, "utf8")

export const sharedData = (...parts: ReadonlyArray<string>) =>
  path.resolve(import.meta.dirname, "../../../test/data", ...parts)

/** Like `storeLayer`, with test-only hooks inside the store's commit transaction. */
export const storeLayerWithHooks = (
  filename: string,
  hooks: SqliteRunStore.Hooks,
  extractors: ReadonlyArray<Extractor.Extractor> = [CapitalizedExtractor.make()]
) =>
  Layer.mergeAll(Layer.effect(RunStore.RunStore, SqliteRunStore.make(hooks)), Extractor.layerRegistry(...extractors))
    .pipe(Layer.provideMerge(Database.layer(filename)))

/** The predicate of the relation a contextual extractor emits per batch: how many entities it was shown. */
export const knownCountPredicate = "https://w3id.org/quarry/test#knownCount"

/**
 * Options of `scriptedExtractor`.
 */
export interface ScriptOptions {
  readonly name?: string | undefined
  readonly version?: string | undefined
  /** Runs before each batch is extracted: block, delay, record or fail here. */
  readonly before?: ((input: Extractor.BatchInput) => Effect.Effect<void, ExtractorError>) | undefined
  /** Make the output depend on the known entities (attribute + relation), so that a wrong context shows up. */
  readonly contextual?: boolean | undefined
  /** Receives the labels of the known entities of each batch. */
  readonly onKnown?: ((batchIndex: number, known: ReadonlyArray<Extractor.KnownEntity>) => void) | undefined
}

/**
 * The capitalized extractor (same name, version and config hash by default, so artifacts compare with clean runs),
 * with a script around each batch.
 */
export const scriptedExtractor = (options: ScriptOptions = {}): Extractor.Extractor => {
  const base = CapitalizedExtractor.make()
  return {
    name: options.name ?? base.name,
    version: options.version ?? base.version,
    configHash: base.configHash,
    extract: (input) =>
      Effect.gen(function*() {
        if (options.before !== undefined) yield* options.before(input)
        const output = CapitalizedExtractor.extractMentions(input)
        if (options.contextual !== true && options.onKnown === undefined) return output
        const known = yield* Effect.orDie(input.knownEntities)
        options.onKnown?.(input.batchIndex, known)
        if (options.contextual !== true) return output
        const first = output.entities[0]
        return {
          entities: output.entities.map((e) => ({ ...e, attributes: { known: String(known.length) } })),
          relations: first === undefined ? [] : [{
            subject: { _tag: "Entity" as const, label: first.label, type: first.type },
            predicate: knownCountPredicate,
            object: {
              _tag: "Literal" as const,
              value: `${input.batchIndex}:${known.length}`
            },
            confidence: 1
          }]
        }
      })
  }
}

/** An extractor failing with a (non-retryable) `ExtractorError` on the given batch. */
export const failingAt = (batchIndex: number, options: ScriptOptions = {}) =>
  scriptedExtractor({
    ...options,
    before: (input) =>
      Effect.zipRight(
        options.before?.(input) ?? Effect.void,
        input.batchIndex === batchIndex ?
          new ExtractorError({
            extractor: "capitalized",
            batchIndex,
            reason: `scripted failure on batch ${batchIndex}`,
            retryable: false
          }) :
          Effect.void
      )
  })

/**
 * A gate for one batch: the extractor signals `reached` when it gets there, then waits until `open` is called.
 */
export const makeGate = (batchIndex: number) =>
  Effect.gen(function*() {
    const reached = yield* Deferred.make<void>()
    const opened = yield* Deferred.make<void>()
    const before = (input: Extractor.BatchInput) =>
      input.batchIndex === batchIndex ?
        Deferred.succeed(reached, undefined).pipe(Effect.zipRight(Deferred.await(opened))) :
        Effect.void
    return {
      before,
      reached: Deferred.await(reached),
      open: Deferred.succeed(opened, undefined)
    }
  })

/** Counts rows of a table for one run. */
export const countRows = (table: "batches" | "checkpoints" | "entities" | "run_errors" | "runs", runId: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const column = table === "runs" ? "id" : "run_id"
    const rows = yield* sql<{ n: number }>`SELECT COUNT(*) AS n FROM ${sql(table)} WHERE ${sql(column)} = ${runId}`
    return rows[0]?.n ?? 0
  }).pipe(Effect.orDie)

/** Everything a run has in the database, to compare before and after an operation that must write nothing. */
export const snapshot = (runId: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const dump = (query: Effect.Effect<ReadonlyArray<unknown>, unknown>) => Effect.map(query, (r) => JSON.stringify(r))
    return {
      run: yield* dump(sql`SELECT * FROM runs WHERE id = ${runId}`),
      batches: yield* dump(sql`SELECT batch_index, output_sha256 FROM batches WHERE run_id = ${runId} ORDER BY 1`),
      checkpoints: yield* dump(sql`SELECT * FROM checkpoints WHERE run_id = ${runId} ORDER BY batch_index`),
      entities: yield* dump(sql`SELECT * FROM entities WHERE run_id = ${runId} ORDER BY entity_key`),
      errors: yield* dump(sql`SELECT * FROM run_errors WHERE run_id = ${runId} ORDER BY rowid`)
    }
  }).pipe(Effect.orDie)

/**
 * A tracer that records the name of every span it starts, delegating to the tracer in place.
 */
export const recordingTracer = Effect.map(Effect.tracer, (base) => {
  const names: Array<string> = []
  const tracer = Tracer.make({
    span: (name, parent, context, links, startTime, kind, options) => {
      names.push(name)
      return base.span(name, parent, context, links, startTime, kind, options)
    },
    context: (f, fiber) => base.context(f, fiber)
  })
  return { names, tracer }
})

/**
 * Runs `create` + `execute` alone, in a fresh database of its own, and returns the artifact's bytes: the reference
 * a resumed, interrupted or concurrent run must reproduce.
 */
export const cleanArtifact = (
  dir: string,
  name: string,
  options: Omit<Workflow.CreateOptions, "output"> & { readonly format?: OutputFormat | undefined },
  extractors: ReadonlyArray<Extractor.Extractor> = [CapitalizedExtractor.make()]
) =>
  Effect.gen(function*() {
    const out = path.join(dir, `${name}.clean.${options.format ?? "turtle"}`)
    const run = yield* Workflow.create({ ...options, output: { path: out, format: options.format ?? "turtle" } })
    const done = yield* Workflow.execute(run.id)
    if (done.status !== "completed") return yield* Effect.dieMessage(`clean run ended ${done.status}`)
    return fs.readFileSync(out)
  }).pipe(Effect.provide(storeLayer(path.join(dir, `${name}.clean.db`), extractors)))

/** The file's bytes. */
export const readBytes = (file: string) => fs.readFileSync(file)
