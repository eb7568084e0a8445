/**
 * Readers for the `QUARRY_LLM_*` variables that refuse what they cannot use, each with what it accepts
 * (`expected a whole number of tokens greater than 0, such as 4096`); the caller's config provider names the
 * variable. Numbers are plain decimal: `1e3` and `0x10` are refused as the command line refuses them, and a value
 * that is set but empty is refused rather than read as unset.
 */
import * as DecodeIssues from "@quarry/core/DecodeIssues"
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"

// The provider prefixes the path with the variable's name.
const refuse = (accepts: string) => Either.left(ConfigError.InvalidData([], `expected ${accepts}`))

const read = <A>(key: string, parse: (text: string) => Option.Option<A>, accepts: string): Config.Config<A> =>
  Config.string(key).pipe(
    Config.mapOrFail((raw) => Option.match(parse(raw.trim()), { onNone: () => refuse(accepts), onSome: Either.right }))
  )

/** A whole number in plain decimal, at least `min`. */
export const whole = (key: string, min: number, accepts: string): Config.Config<number> =>
  read(key, (text) => {
    const n = Number(text)
    return /^-?\d+$/.test(text) && Number.isSafeInteger(n) && n >= min ? Option.some(n) : Option.none()
  }, accepts)

/** A number in plain decimal (`0.7`, `.5`, `2`) from `min` to `max`. */
export const decimal = (key: string, min: number, max: number, accepts: string): Config.Config<number> =>
  read(key, (text) => {
    const n = Number(text)
    return /^(\d+\.?\d*|\.\d+)$/.test(text) && n >= min && n <= max ? Option.some(n) : Option.none()
  }, accepts)

/** An Effect duration (`30 seconds`, `5 minutes`, `1500 millis`), not negative; above zero when `positive`. */
export const duration = (key: string, positive: boolean, accepts: string): Config.Config<Duration.Duration> =>
  read(
    key,
    (text) =>
      text.startsWith("-") ?
        Option.none() :
        Option.filter(Duration.decodeUnknown(text), (d) => !positive || Duration.greaterThan(d, Duration.zero)),
    accepts
  )

/** A non-empty string, trimmed. */
export const name = (key: string, accepts: string): Config.Config<string> =>
  read(key, (text) => text === "" ? Option.none() : Option.some(text), accepts)

/** An http(s) URL without credentials (the value is never echoed: the provider hides `_URL` variables). */
export const httpUrl = (key: string, accepts: string): Config.Config<string> =>
  read(key, (text) => {
    const url = URL.canParse(text) ? new URL(text) : undefined
    return url !== undefined && (url.protocol === "http:" || url.protocol === "https:") && url.username === "" &&
        url.password === "" ?
      Option.some(text) :
      Option.none()
  }, accepts)

/** JSON decoded with `schema`; the first problem found is appended to what it accepts. */
export const json = <A, I>(key: string, schema: Schema.Schema<A, I>, accepts: string): Config.Config<A> => {
  const decode = Schema.decodeUnknownEither(Schema.parseJson(schema))
  return Config.string(key).pipe(
    Config.mapOrFail((raw) =>
      Either.mapLeft(
        decode(raw),
        (error) => ConfigError.InvalidData([], `expected ${accepts} (${DecodeIssues.describe(error, { max: 1 })})`)
      )
    )
  )
}

/** A secret that is not blank (a blank one is a variable whose value was lost, e.g. `KEY=$UNSET_VARIABLE`). */
export const secret = (key: string, accepts: string): Config.Config<Redacted.Redacted<string>> =>
  Config.string(key).pipe(
    Config.mapOrFail((value) => value.trim() === "" ? refuse(accepts) : Either.right(Redacted.make(value)))
  )
