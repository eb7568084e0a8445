/**
 * The extractors the `quarry` command can run, in one place: adding an extractor is one entry in `builtIn`. An
 * extractor's module is loaded only by a command that runs it: the offline extractor's NLP models (compromise,
 * chrono-node) take several times longer to load than `quarry status` takes to answer. The `llm` extractor is built
 * only by a command that runs it (see `Llm`), and then joins the registry.
 *
 * @since 0.1.0
 */
import * as CapitalizedExtractor from "@quarry/core/CapitalizedExtractor"
import * as Errors from "@quarry/core/Errors"
import * as Extractor from "@quarry/core/Extractor"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { badEnvironment, UsageError } from "./Errors.js"
import * as Llm from "./Llm.js"
import type { Settings } from "./Settings.js"
import * as TestHooks from "./TestHooks.js"

/**
 * The extractor `quarry start` uses without `--extractor` (`OfflineExtractor.name`, repeated here so that naming it
 * does not load the module).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultName = "offline"

/** The settings a resumed run was started with (`Run.plan.extractor.settings`). */
type StoredSettings = Readonly<Record<string, string | number | boolean>>

/**
 * An extractor known by name, built (its module loaded, its environment read) by a command that runs it; for a
 * resumed run with the settings it was started with, when the extractor can read them.
 */
interface Entry {
  readonly name: string
  readonly build: (stored: StoredSettings | undefined) => Effect.Effect<Extractor.Extractor, UsageError>
}

const ready = (extractor: Extractor.Extractor): Entry => ({
  name: extractor.name,
  build: () => Effect.succeed(extractor)
})

/** The extractors every `quarry` process knows, with the test-only ones the hooks enable. */
const builtIn = (settings: Settings["Type"]): ReadonlyArray<Entry> => [
  {
    name: defaultName,
    // The module reads its own `QUARRY_OFFLINE_*` settings, so a command that never loads it never reads them. A
    // bad variable is refused also on resume, where the run's stored settings win (as the llm extractor's do).
    build: (stored) =>
      Effect.promise(() => import("@quarry/offline/OfflineExtractor")).pipe(
        Effect.flatMap((offline) =>
          Effect.map(Effect.mapError(offline.config, badEnvironment), (fromEnvironment) =>
            offline.make(Option.getOrElse(offline.decodeSettings(stored), () => fromEnvironment)))
        )
      )
  },
  ready(CapitalizedExtractor.make()),
  ...TestHooks.extractors(settings.testHooks).map(ready)
]

/**
 * The registry: every built-in extractor, built on first use, and `built` (the extractor a command built up front,
 * `llm` included).
 */
const make = (
  settings: Settings["Type"],
  built: ReadonlyArray<Extractor.Extractor>
): Extractor.Registry["Type"] => {
  const entries = [...built.map(ready), ...builtIn(settings).filter((e) => !built.some((b) => b.name === e.name))]
  const names = entries.map((e) => e.name).sort()
  return {
    names,
    get: (name) => {
      const entry = entries.find((e) => e.name === name)
      // `start` and `resume` build their extractor with `registryFor` first, where bad settings are a usage error.
      return entry === undefined ?
        Effect.fail(new Errors.UnknownExtractor({ name, available: names })) :
        Effect.orDie(entry.build(undefined))
    }
  }
}

/**
 * The registry without `llm`, for the commands that run no extractor: nothing is loaded until one is asked for.
 *
 * @since 0.1.0
 * @category constructors
 */
export const registry = (settings: Settings["Type"]): Extractor.Registry["Type"] => make(settings, [])

/**
 * The registry as a layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (settings: Settings["Type"]): Layer.Layer<Extractor.Registry> =>
  Layer.sync(Extractor.Registry, () => registry(settings))

/**
 * Every name `--extractor` accepts, sorted.
 *
 * @since 0.1.0
 * @category constants
 */
export const names = (settings: Settings["Type"]): ReadonlyArray<string> =>
  [...builtIn(settings).map((e) => e.name), Llm.name].sort()

/**
 * The registry for a run of extractor `name`, with that extractor built: bad settings for it are a `UsageError`
 * before anything is written. A resumed run's stored settings (`options.stored`) decide over the environment.
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
    if (name === Llm.name) return make(settings, [yield* Llm.make(llm, options)])
    const entry = builtIn(settings).find((e) => e.name === name)
    if (entry === undefined) return yield* new Errors.UnknownExtractor({ name, available: names(settings) })
    return make(settings, [yield* entry.build(options.stored)])
  })
