/**
 * The extractors the `quarry` command can run, in one place: adding an extractor is one line in `builtIn`.
 *
 * @since 0.1.0
 */
import * as CapitalizedExtractor from "@quarry/core/CapitalizedExtractor"
import * as Extractor from "@quarry/core/Extractor"
import type * as Layer from "effect/Layer"
import * as TestHooks from "./TestHooks.js"

/**
 * The extractor `quarry start` uses without `--extractor`.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultName = "capitalized"

/** The extractors every `quarry` process registers. */
const builtIn = (): ReadonlyArray<Extractor.Extractor> => [
  CapitalizedExtractor.make()
]

/**
 * The registry: the built-in extractors plus the test-only ones the hooks enable.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (hooks: TestHooks.TestHooks): Layer.Layer<Extractor.Registry> =>
  Extractor.layerRegistry(...builtIn(), ...TestHooks.extractors(hooks))
