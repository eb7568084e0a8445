/**
 * TEST-ONLY hooks, read from the environment by the CLI, that make runs slow and observable so that end-to-end
 * tests can land kills and signals inside extraction and inside commits, and count extractor calls. Nothing here is
 * active unless its variable is set; none of it is part of the supported interface.
 *
 * - `QUARRY_TEST_EXTRACTOR_DELAY_MS`: registers the extractor `test-slow` (the `capitalized` output, so runs stay
 *   deterministic), which sleeps this long per batch.
 * - `QUARRY_TEST_CALL_LOG`: `test-slow` appends `extract <batch index> <pid>` to this file when a call starts.
 * - `QUARRY_TEST_FAIL_BATCH`: `test-slow` fails (not retryable) on this batch index.
 * - `QUARRY_TEST_COMMIT_DELAY_MS`: every batch commit sleeps this long inside its transaction (between the batch
 *   rows and the checkpoint row).
 * - `QUARRY_TEST_SHUTDOWN_DELAY_MS`: after a signal has interrupted a run (and the run was recorded `interrupted`),
 *   the process waits this long before reporting it, so that a test can send the second signal during shutdown.
 *
 * @since 0.1.0
 */
import * as CapitalizedExtractor from "@quarry/core/CapitalizedExtractor"
import { ExtractorError } from "@quarry/core/Errors"
import type * as Extractor from "@quarry/core/Extractor"
import type * as SqliteRunStore from "@quarry/core/SqliteRunStore"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as fs from "node:fs"

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
  shutdownDelayMs: Config.option(Config.integer("QUARRY_TEST_SHUTDOWN_DELAY_MS"))
})

/**
 * The test-only settings as read.
 *
 * @since 0.1.0
 * @category models
 */
export type TestHooks = Config.Config.Success<typeof config>

/**
 * The name of the test-only extractor.
 *
 * @since 0.1.0
 * @category constants
 */
export const slowExtractorName = "test-slow"

/**
 * TEST-ONLY: the extractors to add to the registry (`test-slow` when `QUARRY_TEST_EXTRACTOR_DELAY_MS` is set).
 *
 * @since 0.1.0
 * @category constructors
 */
export const extractors = (hooks: TestHooks): ReadonlyArray<Extractor.Extractor> => {
  if (Option.isNone(hooks.extractorDelayMs)) return []
  const delayMs = hooks.extractorDelayMs.value
  const log = Option.getOrUndefined(hooks.callLog)
  const failBatch = Option.getOrUndefined(hooks.failBatch)
  return [{
    name: slowExtractorName,
    version: "1",
    configHash: "none",
    extract: (input) =>
      Effect.gen(function*() {
        if (log !== undefined) {
          // Synchronous and before any wait: a kill right after the call started still leaves its line.
          fs.appendFileSync(log, `extract ${input.batchIndex} ${process.pid}\n`)
        }
        if (delayMs > 0) yield* Effect.sleep(delayMs)
        if (input.batchIndex === failBatch) {
          return yield* new ExtractorError({
            extractor: slowExtractorName,
            batchIndex: input.batchIndex,
            reason: "QUARRY_TEST_FAIL_BATCH asked this batch to fail",
            retryable: false
          })
        }
        return CapitalizedExtractor.extractMentions(input)
      })
  }]
}

/**
 * TEST-ONLY: the commit hooks of the store (a sleep inside each commit transaction when
 * `QUARRY_TEST_COMMIT_DELAY_MS` is set).
 *
 * @since 0.1.0
 * @category constructors
 */
export const storeHooks = (hooks: TestHooks): SqliteRunStore.Hooks =>
  Option.match(hooks.commitDelayMs, {
    onNone: () => ({}),
    onSome: (ms) => ({ beforeCheckpoint: () => Effect.sleep(ms) })
  })
