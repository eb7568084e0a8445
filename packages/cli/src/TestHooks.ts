/**
 * TEST-ONLY hooks, read from the environment by the CLI, that make runs slow and observable so that end-to-end
 * tests can land kills and signals inside extraction and inside commits, and count extractor calls. Nothing here is
 * active unless its variable is set; none of it is part of the supported interface.
 *
 * - `QUARRY_TEST_EXTRACTOR_DELAY_MS`: registers the extractors `test-slow` (the `capitalized` output, so runs stay
 *   deterministic) and `test-contextual` (the same mentions, retyped and counted by the entities the run already
 *   knows: its output depends on `knownEntities`), which sleep this long per batch.
 * - `QUARRY_TEST_CALL_LOG`: the test extractors append `extract <batch index> <pid>` to this file when a call
 *   starts.
 * - `QUARRY_TEST_CRASH_LOG`: every crash point reached appends `hit <point> <batch index or -> <pid>` to this file.
 * - `QUARRY_TEST_FAIL_BATCH`: the test extractors fail (not retryable) on this batch index.
 * - `QUARRY_TEST_CRASH_AT`: `<point>` or `<point>:<n>` (a `CrashPoint.Point`): the process kills itself with SIGKILL
 *   the n-th time (default 1) it reaches that crash point, after appending `crash <point> <batch index or -> <pid>`
 *   to the crash log.
 * - `QUARRY_TEST_COMMIT_DELAY_MS`: every batch commit sleeps this long inside its transaction (between the batch
 *   rows and the checkpoint row).
 * - `QUARRY_TEST_COMPENSATION_DIR`: the test extractors record a compensation step (handler `test-remove-file`,
 *   which they contribute) and then write the file `batch-<index>.upload` in this directory, per batch. The handler
 *   removes that file and appends `undo <batch index> <pid>` to `undo.log` there; it fails while a file
 *   `batch-<index>.upload.locked` exists (a failure a test can cause and remove).
 * - `QUARRY_TEST_SHUTDOWN_DELAY_MS`: after a signal has interrupted a run (and the run was recorded `interrupted`),
 *   the process waits this long before reporting it, so that a test can send the second signal during shutdown.
 * - `QUARRY_TEST_SETTLE_DELAY_MS`: `serve` keeps a run's execution this long after its end is stored, before its
 *   slot frees, so that a test can send a request in that moment.
 * - `QUARRY_TEST_STOP_GRACE_MS`: `serve --cluster` gives a run whose shard moves this long (instead of 30 s) to reach
 *   its next commit before interrupting it, so that a test can see the bound without waiting for it.
 *
 * @since 0.1.0
 */
import * as CapitalizedExtractor from "@quarry/core/CapitalizedExtractor"
import type * as Compensation from "@quarry/core/Compensation"
import * as CrashPoint from "@quarry/core/CrashPoint"
import { ExtractorError } from "@quarry/core/Errors"
import type * as Extractor from "@quarry/core/Extractor"
import type * as SqlRunStore from "@quarry/core/SqlRunStore"
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as fs from "node:fs"
import * as path from "node:path"

/**
 * Where a test process kills itself: the n-th time it reaches a crash point.
 *
 * @since 0.1.0
 * @category models
 */
export interface CrashAt {
  readonly point: CrashPoint.Point
  readonly occurrence: number
}

const isPoint = Schema.is(CrashPoint.Point)

/** `<point>` or `<point>:<n>`. */
const crashAt: Config.Config<CrashAt> = Config.string("QUARRY_TEST_CRASH_AT").pipe(
  Config.mapOrFail((raw) => {
    const [point = "", occurrence = "1", ...rest] = raw.split(":")
    const n = Number(occurrence)
    return isPoint(point) && rest.length === 0 && Number.isSafeInteger(n) && n > 0 ?
      Either.right({ point, occurrence: n }) :
      Either.left(
        ConfigError.InvalidData(
          [],
          `QUARRY_TEST_CRASH_AT must be <point> or <point>:<n> (n > 0), with a point among ${
            CrashPoint.points.join(", ")
          }; got "${raw}"`
        )
      )
  })
)

/**
 * The test-only settings.
 *
 * @since 0.1.0
 * @category config
 */
export const config = Config.all({
  extractorDelayMs: Config.option(Config.integer("QUARRY_TEST_EXTRACTOR_DELAY_MS")),
  callLog: Config.option(Config.string("QUARRY_TEST_CALL_LOG")),
  failBatch: Config.option(Config.integer("QUARRY_TEST_FAIL_BATCH")),
  commitDelayMs: Config.option(Config.integer("QUARRY_TEST_COMMIT_DELAY_MS")),
  shutdownDelayMs: Config.option(Config.integer("QUARRY_TEST_SHUTDOWN_DELAY_MS")),
  settleDelayMs: Config.option(Config.integer("QUARRY_TEST_SETTLE_DELAY_MS")),
  stopGraceMs: Config.option(Config.integer("QUARRY_TEST_STOP_GRACE_MS")),
  crashAt: Config.option(crashAt),
  crashLog: Config.option(Config.string("QUARRY_TEST_CRASH_LOG")),
  compensationDir: Config.option(Config.string("QUARRY_TEST_COMPENSATION_DIR"))
})

/**
 * The test-only settings as read.
 *
 * @since 0.1.0
 * @category models
 */
export type TestHooks = Config.Config.Success<typeof config>

/**
 * The name of the test-only extractor with the `capitalized` output.
 *
 * @since 0.1.0
 * @category constants
 */
export const slowExtractorName = "test-slow"

/**
 * The name of the test-only extractor whose output depends on the entities the run already knows.
 *
 * @since 0.1.0
 * @category constants
 */
export const contextualExtractorName = "test-contextual"

const testNs = "https://w3id.org/quarry/test#"
const XSD_INTEGER = "http://www.w3.org/2001/XMLSchema#integer"

/**
 * The `test-contextual` output: the `capitalized` mentions, a mention whose label the run already knows typed
 * `test:Recurring`, and one `test:knownBefore` relation giving how many entities the batch was shown. Any change
 * in the context a batch sees (one entity more or less) changes its output.
 *
 * @since 0.1.0
 * @category extraction
 */
export const contextualOutput = (
  input: Extractor.BatchInput,
  known: ReadonlyArray<Extractor.KnownEntity>
): Extractor.BatchOutput => {
  const labels = new Set(known.map((entity) => entity.label))
  const entities = CapitalizedExtractor.extractMentions(input).entities.map((mention) =>
    labels.has(mention.label) ? { ...mention, type: `${testNs}Recurring` } : mention
  )
  const first = entities[0]
  return {
    entities,
    relations: first === undefined ? [] : [{
      subject: { _tag: "Entity", label: first.label, type: first.type },
      predicate: `${testNs}knownBefore`,
      object: { _tag: "Literal", value: String(known.length), datatype: XSD_INTEGER },
      span: first.span,
      confidence: 1
    }]
  }
}

/**
 * TEST-ONLY: the extractors to add to the registry (`test-slow` and `test-contextual` when
 * `QUARRY_TEST_EXTRACTOR_DELAY_MS` is set).
 *
 * @since 0.1.0
 * @category constructors
 */
export const extractors = (hooks: TestHooks): ReadonlyArray<Extractor.Extractor> => {
  if (Option.isNone(hooks.extractorDelayMs)) return []
  const delayMs = hooks.extractorDelayMs.value
  const log = Option.getOrUndefined(hooks.callLog)
  const failBatch = Option.getOrUndefined(hooks.failBatch)
  const compensationDir = Option.getOrUndefined(hooks.compensationDir)
  const make = (
    name: string,
    output: (input: Extractor.BatchInput) => Effect.Effect<Extractor.BatchOutput, ExtractorError>
  ): Extractor.Extractor => ({
    name,
    version: "1",
    configHash: "none",
    compensationHandlers: compensationDir === undefined ? [] : [removeFileHandler],
    extract: (input) =>
      Effect.gen(function*() {
        if (log !== undefined) {
          // Synchronous and before any wait: a kill right after the call started still leaves its line.
          fs.appendFileSync(log, `extract ${input.batchIndex} ${process.pid}\n`)
        }
        if (compensationDir !== undefined) yield* upload(name, input, compensationDir)
        if (delayMs > 0) yield* Effect.sleep(delayMs)
        if (input.batchIndex === failBatch) {
          return yield* new ExtractorError({
            extractor: name,
            batchIndex: input.batchIndex,
            reason: "QUARRY_TEST_FAIL_BATCH asked this batch to fail",
            retryable: false
          })
        }
        return yield* output(input)
      })
  })
  return [
    make(slowExtractorName, (input) => Effect.succeed(CapitalizedExtractor.extractMentions(input))),
    make(contextualExtractorName, (input) =>
      input.knownEntities.pipe(
        Effect.map((known) => contextualOutput(input, known)),
        Effect.mapError((cause) =>
          new ExtractorError({
            extractor: contextualExtractorName,
            batchIndex: input.batchIndex,
            reason: `could not read the entities known to the run: ${cause.message}`,
            retryable: true,
            cause
          })
        )
      ))
  ]
}

/**
 * TEST-ONLY: the name of the compensation handler the test extractors contribute.
 *
 * @since 0.1.0
 * @category constants
 */
export const removeFileHandlerName = "test-remove-file"

const UploadPayload = Schema.Struct({ path: Schema.String, batchIndex: Schema.Int })

/** Removes an "uploaded" file (idempotent), unless a `.locked` file beside it says it cannot be removed yet. */
const removeFileHandler: Compensation.Handler = {
  name: removeFileHandlerName,
  undo: (payload) =>
    Effect.flatMap(Schema.decodeUnknown(UploadPayload)(payload), ({ batchIndex, path: file }) =>
      Effect.try(() => {
        if (fs.existsSync(`${file}.locked`)) throw new Error(`${file} is locked (remove ${file}.locked)`)
        fs.rmSync(file, { force: true })
        fs.appendFileSync(path.join(path.dirname(file), "undo.log"), `undo ${batchIndex} ${process.pid}\n`)
      }))
}

/** Records the step that undoes the upload, durably, and only then "uploads" (writes the file). */
const upload = (extractor: string, input: Extractor.BatchInput, dir: string) =>
  Effect.gen(function*() {
    const file = path.join(dir, `batch-${input.batchIndex}.upload`)
    const compensate = input.compensate
    if (compensate === undefined) return
    yield* compensate({
      handler: removeFileHandlerName,
      name: `remove upload of batch ${input.batchIndex}`,
      payload: { path: file, batchIndex: input.batchIndex }
    }).pipe(
      Effect.mapError((cause) =>
        new ExtractorError({
          extractor,
          batchIndex: input.batchIndex,
          reason: `could not record the compensation step: ${cause.message}`,
          retryable: true,
          cause
        })
      )
    )
    fs.writeFileSync(file, `batch ${input.batchIndex}\n`)
  })

/**
 * TEST-ONLY: the commit hooks of the store (a sleep inside each commit transaction when
 * `QUARRY_TEST_COMMIT_DELAY_MS` is set).
 *
 * @since 0.1.0
 * @category constructors
 */
export const storeHooks = (hooks: TestHooks): SqlRunStore.Hooks =>
  Option.match(hooks.commitDelayMs, {
    onNone: () => ({}),
    onSome: (ms) => ({ beforeCheckpoint: () => Effect.sleep(ms) })
  })

/**
 * TEST-ONLY: the crash points of this process: with `QUARRY_TEST_CRASH_LOG` every point reached is logged; with
 * `QUARRY_TEST_CRASH_AT` the process SIGKILLs itself at the chosen one. Without either, the engine's default (nothing).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (hooks: TestHooks): Layer.Layer<CrashPoint.CrashPoint> => {
  const log = Option.getOrUndefined(hooks.crashLog)
  const target = Option.getOrUndefined(hooks.crashAt)
  if (log === undefined && target === undefined) {
    return Layer.succeed(CrashPoint.CrashPoint, CrashPoint.CrashPoint.defaultValue())
  }
  let reached = 0
  const line = (event: string, point: CrashPoint.Point, batchIndex: number | undefined) => {
    if (log !== undefined) fs.appendFileSync(log, `${event} ${point} ${batchIndex ?? "-"} ${process.pid}\n`)
  }
  return Layer.succeed(CrashPoint.CrashPoint, {
    hit: (point, batchIndex) =>
      Effect.suspend(() => {
        line("hit", point, batchIndex)
        if (point !== target?.point || ++reached !== target.occurrence) return Effect.void
        line("crash", point, batchIndex)
        // SIGKILL: no finalizer, no rollback, no WAL checkpoint; what a crash or the OOM killer leaves.
        process.kill(process.pid, "SIGKILL")
        return Effect.never
      })
  })
}
