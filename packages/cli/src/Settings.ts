/**
 * The environment the CLI reads: the default database (`QUARRY_DATABASE_URL`, else `QUARRY_DB`), the lease length (`QUARRY_LEASE_MS`) and the
 * test-only hooks. Read once, through `Config`, so tests can set them with a `ConfigProvider`. An extractor reads its
 * own settings (`QUARRY_OFFLINE_*`, `QUARRY_LLM_*`) when a command builds it.
 *
 * @since 0.1.0
 */
import * as DatabaseUrl from "@quarry/core/DatabaseUrl"
import * as Workflow from "@quarry/core/Workflow"
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as TestHooks from "./TestHooks.js"

/**
 * The database used without `--db` and `QUARRY_DB`.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultDatabase = "./quarry.db"

/**
 * The database variables: `QUARRY_DATABASE_URL`, else `QUARRY_DB`, else the default. One set but empty (or blank) is
 * refused by name rather than read as unset: a deployment whose `QUARRY_DATABASE_URL=$URL` lost its value would
 * otherwise write to another database unnoticed. So is a URL of another database than PostgreSQL (`mysql://...`),
 * which would otherwise be read as a SQLite path, and a near-miss of a URL (`postgres:/x`, see `DatabaseUrl.malformed`).
 */
const database = Config.all([
  Config.option(Config.string("QUARRY_DATABASE_URL")),
  Config.option(Config.string("QUARRY_DB"))
]).pipe(
  Config.mapOrFail(([url, file]) => {
    const variables = [["QUARRY_DATABASE_URL", url] as const, ["QUARRY_DB", file] as const]
    const refused = variables.find(([, value]) =>
      Option.exists(value, (value) => value.trim() === "" || Option.isSome(DatabaseUrl.unsupportedScheme(value)))
    )
    if (refused !== undefined) {
      return Either.left(ConfigError.InvalidData([refused[0]], "empty, or a URL of another database than PostgreSQL"))
    }
    for (const [name, value] of variables) {
      const reason = Option.flatMap(value, DatabaseUrl.malformed)
      if (Option.isSome(reason)) {
        return Either.left(ConfigError.InvalidData([name], `is ${reason.value}; ${malformedAdvice}`))
      }
    }
    return Either.right(Option.getOrElse(Option.orElse(url, () => file), () => defaultDatabase))
  })
)

const malformedAdvice = `set QUARRY_DATABASE_URL to ${DatabaseUrl.postgresForm}, or QUARRY_DB to the path of a ` +
  `SQLite file (start it with ./ to mean a file so named)`

/**
 * What each variable the CLI and its extractors read accepts, for the message that refuses a bad value.
 *
 * @since 0.1.0
 * @category config
 */
export const accepted: Readonly<Record<string, string>> = {
  QUARRY_DATABASE_URL: `a PostgreSQL URL (${DatabaseUrl.postgresForm}), or unset`,
  QUARRY_DB: "a SQLite file path, or unset (./quarry.db)",
  QUARRY_LEASE_MS: `a whole number of milliseconds greater than 0, such as ${Workflow.defaultLeaseMs} (the default)`,
  QUARRY_MAX_INPUT_BYTES:
    `a whole number of bytes greater than 0 and at most ${Number.MAX_SAFE_INTEGER}, such as 536870912 (512 MB, the default)`,
  QUARRY_OFFLINE_UNMAPPED: "drop (the default) or generic",
  QUARRY_OFFLINE_USE_KNOWN_ENTITIES: "true (the default) or false, in any case (also yes or no, on or off, 1 or 0)"
}

/**
 * Variables whose value may hold a secret (a key, a token, a URL with a password): never quoted in a message.
 * `QUARRY_DB` is refused only when it is a URL (or empty).
 */
const secret = /API_KEY|API_TOKEN|SECRET|PASSWORD|HEADERS|_URL$|^QUARRY_DB$/

const describeVariable = (name: string, raw: Option.Option<string>, message: string): string =>
  Option.match(raw, {
    onNone: () => `${name}: ${message}`,
    // A refusal that says what the value is (`is a malformed PostgreSQL URL ...`) is kept as written.
    onSome: (value) => {
      if (message.startsWith("is ")) return `${name} ${message}`
      const must = accepted[name]
      const shown = value.trim() === "" ?
        "set but empty" :
        `${secret.test(name) ? "set to a value (not shown)" : JSON.stringify(value)}, which is not valid`
      // Config's own message repeats the value: "Expected a number value but received "hot"".
      const reason = message.replace(/ but received .*$/s, "").replace(/^Expected/, "expected")
      return must === undefined ? `${name} is ${shown}: ${reason}` : `${name} is ${shown}; it must be ${must}`
    }
  })

/**
 * `provider` with every refused value named: an invalid value's error says which variable holds it, what it
 * holds and what it accepts (`Config`'s own says only "Expected an integer value but received "abc"").
 *
 * @since 0.1.0
 * @category config
 */
export const namingVariables = (provider: ConfigProvider.ConfigProvider): ConfigProvider.ConfigProvider => {
  const rename = (error: ConfigError.ConfigError): Effect.Effect<ConfigError.ConfigError> => {
    if (ConfigError.isAnd(error)) return Effect.zipWith(rename(error.left), rename(error.right), ConfigError.And)
    if (ConfigError.isOr(error)) return Effect.zipWith(rename(error.left), rename(error.right), ConfigError.Or)
    if (!ConfigError.isInvalidData(error)) return Effect.succeed(error)
    const name = error.path.join("_")
    if (name === "") return Effect.succeed(error)
    return provider.load(Config.string(name)).pipe(
      Effect.option,
      Effect.map((raw) => ConfigError.InvalidData(error.path, describeVariable(name, raw, error.message)))
    )
  }
  return ConfigProvider.make({
    load: (config) => Effect.catchAll(provider.load(config), (error) => Effect.flip(rename(error))),
    flattened: provider.flattened
  })
}

/**
 * `self` reading its configuration through `namingVariables` of the current provider.
 *
 * @since 0.1.0
 * @category config
 */
export const withNamedVariables = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.configProviderWith((provider) => Effect.withConfigProvider(self, namingVariables(provider)))

/**
 * The settings read from the environment.
 *
 * @since 0.1.0
 * @category config
 */
export const config = Config.all({
  // A server URL wins over a file: a deployment sets QUARRY_DATABASE_URL and every command follows it.
  database: database.pipe(Config.withDescription("the database used without --db")),
  leaseMs: Config.integer("QUARRY_LEASE_MS").pipe(
    Config.withDescription("how long a run's lease lasts without a heartbeat (milliseconds)"),
    Config.mapOrFail((ms) =>
      ms > 0 ? Either.right(ms) : Either.left(ConfigError.InvalidData(["QUARRY_LEASE_MS"], "out of range"))
    ),
    Config.withDefault(Workflow.defaultLeaseMs)
  ),
  testHooks: TestHooks.config
})

/**
 * The settings of this process.
 *
 * @since 0.1.0
 * @category tags
 */
export class Settings extends Context.Tag("@quarry/cli/Settings")<Settings, Config.Config.Success<typeof config>>() {}
