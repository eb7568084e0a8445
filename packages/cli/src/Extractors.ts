/**
 * The extractors the `quarry` command can run, in one place: adding an extractor is one line in `builtIn`.
 *
 * @since 0.1.0
 */
import * as CapitalizedExtractor from "@quarry/core/CapitalizedExtractor"
import * as Extractor from "@quarry/core/Extractor"
import * as OfflineExtractor from "@quarry/core/OfflineExtractor"
import type * as Layer from "effect/Layer"
import type { Settings } from "./Settings.js"
import * as TestHooks from "./TestHooks.js"

/**
 * The extractor `quarry start` uses without `--extractor`.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultName = OfflineExtractor.name

/** The extractors every `quarry` process registers, configured from the environment. */
const builtIn = (settings: Settings["Type"]): ReadonlyArray<Extractor.Extractor> => [
  OfflineExtractor.make(settings.offline),
  CapitalizedExtractor.make()
]

/**
 * The registry: the built-in extractors plus the test-only ones the hooks enable.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (settings: Settings["Type"]): Layer.Layer<Extractor.Registry> =>
  Extractor.layerRegistry(...builtIn(settings), ...TestHooks.extractors(settings.testHooks))
