/**
 * The extractors the `quarry` command can run, in one place: adding an extractor is one line in `builtIn`. The `llm`
 * extractor is built only by a command that runs it (see `Llm`), and then joins the registry.
 *
 * @since 0.1.0
 */
import * as CapitalizedExtractor from "@quarry/core/CapitalizedExtractor"
import * as Errors from "@quarry/core/Errors"
import * as Extractor from "@quarry/core/Extractor"
import * as OfflineExtractor from "@quarry/offline/OfflineExtractor"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type { UsageError } from "./Errors.js"
import * as Llm from "./Llm.js"
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
  CapitalizedExtractor.make(),
  ...TestHooks.extractors(settings.testHooks)
]

/**
 * The registry: the built-in extractors, the test-only ones the hooks enable, and `llm` when it was built.
 *
 * @since 0.1.0
 * @category constructors
 */
export const registry = (
  settings: Settings["Type"],
  llm: Option.Option<Extractor.Extractor> = Option.none()
): Extractor.Registry["Type"] => Extractor.makeRegistry([...builtIn(settings), ...Option.toArray(llm)])

/**
 * The registry without `llm`, for the commands that run no extractor or not that one.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (settings: Settings["Type"]): Layer.Layer<Extractor.Registry> =>
  Extractor.layerRegistry(...builtIn(settings))

/**
 * Every name `--extractor` accepts, sorted.
 *
 * @since 0.1.0
 * @category constants
 */
export const names = (settings: Settings["Type"]): ReadonlyArray<string> =>
  [...registry(settings).names, Llm.name].sort()

/**
 * The registry for a run of extractor `name`: with `llm` built when that is the one, else after checking that
 * `name` exists.
 *
 * @since 0.1.0
 * @category constructors
 */
export const registryFor = (
  settings: Settings["Type"],
  name: string,
  llm: Llm.Overrides,
  options: Llm.MakeOptions = {}
): Effect.Effect<Extractor.Registry["Type"], Errors.UnknownExtractor | UsageError, Llm.Services> =>
  Effect.gen(function*() {
    if (name === Llm.name) return registry(settings, Option.some(yield* Llm.make(llm, options)))
    const withoutLlm = registry(settings)
    if (!withoutLlm.names.includes(name)) {
      return yield* new Errors.UnknownExtractor({ name, available: names(settings) })
    }
    return withoutLlm
  })
