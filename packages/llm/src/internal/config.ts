/**
 * What each `llm` option accepts, checked the same way whether a program gives the option (`LlmExtractor.make`) or
 * the environment does (`QUARRY_LLM_*`): a `Rule` tests a value and says what it accepts (`a whole number of tokens
 * greater than 0, such as 4096`). The readers below parse a variable's text and apply a rule; the caller's config
 * provider names the variable. Numbers are plain decimal: `1e3` and `0x10` are refused as the command line refuses
 * them, and a value that is set but empty is refused rather than read as unset.
 */
import * as DecodeIssues from "@quarry/core/DecodeIssues"
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"

/** A test of an option's value, and what it accepts in words. */
export interface Rule<A> {
  readonly accepts: string
  readonly test: (value: A) => boolean
}

/** A whole number, at least `min`. */
export const wholeRule = (min: number, accepts: string): Rule<number> => ({
  accepts,
  test: (n) => Number.isSafeInteger(n) && n >= min
})

/** A number from `min` to `max` (`NaN` is not). */
export const decimalRule = (min: number, max: number, accepts: string): Rule<number> => ({
  accepts,
  test: (n) => n >= min && n <= max
})

/** A duration, not negative; above zero when `positive`. */
export const durationRule = (positive: boolean, accepts: string): Rule<Duration.Duration> => ({
  accepts,
  test: (d) => !positive || Duration.greaterThan(d, Duration.zero)
})

/** A string that is not blank. */
export const nameRule = (accepts: string): Rule<string> => ({ accepts, test: (text) => text.trim() !== "" })

/** An http(s) URL without credentials. */
export const httpUrlRule = (accepts: string): Rule<string> => ({
  accepts,
  test: (text) => {
    const url = URL.canParse(text) ? new URL(text) : undefined
    return url !== undefined && (url.protocol === "http:" || url.protocol === "https:") && url.username === "" &&
      url.password === ""
  }
})

/** A secret that is not blank (a blank one is a variable whose value was lost, e.g. `KEY=$UNSET_VARIABLE`). */
export const secretRule = (accepts: string): Rule<Redacted.Redacted<string>> => ({
  accepts,
  test: (secret) => Redacted.value(secret).trim() !== ""
})

/**
 * A duration a program gave: `Duration.decode` reads a negative or `NaN` number of milliseconds (or `"-5 seconds"`)
 * as zero, which would pass for a choice; such input is no duration here.
 */
export const decodeDuration = (input: unknown): Option.Option<Duration.Duration> => {
  const negative = typeof input === "number" ?
    !(input >= 0) :
    typeof input === "bigint" ?
    input < 0n :
    typeof input === "string" ?
    input.trim().startsWith("-") :
    Array.isArray(input) && input.some((n) => !(Number(n) >= 0))
  return negative ? Option.none() : Duration.decodeUnknown(typeof input === "string" ? input.trim() : input)
}

// The provider prefixes the path with the variable's name.
const refuse = (accepts: string) => Either.left(ConfigError.InvalidData([], `expected ${accepts}`))

const read = <A>(key: string, parse: (text: string) => Option.Option<A>, rule: Rule<A>): Config.Config<A> =>
  Config.string(key).pipe(
    Config.mapOrFail((raw) =>
      Option.match(Option.filter(parse(raw.trim()), rule.test), {
        onNone: () => refuse(rule.accepts),
        onSome: Either.right
      })
    )
  )

/** A whole number in plain decimal. */
export const whole = (key: string, rule: Rule<number>): Config.Config<number> =>
  read(key, (text) => /^-?\d+$/.test(text) ? Option.some(Number(text)) : Option.none(), rule)

/** A number in plain decimal (`0.7`, `.5`, `2`). */
export const decimal = (key: string, rule: Rule<number>): Config.Config<number> =>
  read(key, (text) => /^(\d+\.?\d*|\.\d+)$/.test(text) ? Option.some(Number(text)) : Option.none(), rule)

/** An Effect duration (`30 seconds`, `5 minutes`, `1500 millis`). */
export const duration = (key: string, rule: Rule<Duration.Duration>): Config.Config<Duration.Duration> =>
  read(key, decodeDuration, rule)

/** A string, trimmed. */
export const name = (key: string, rule: Rule<string>): Config.Config<string> => read(key, Option.some, rule)

/** A URL (the value is never echoed: the provider hides `_URL` variables). */
export const httpUrl = (key: string, rule: Rule<string>): Config.Config<string> => read(key, Option.some, rule)

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

/** A secret, as it is (not trimmed). */
export const secret = (key: string, rule: Rule<Redacted.Redacted<string>>): Config.Config<Redacted.Redacted<string>> =>
  Config.string(key).pipe(
    Config.mapOrFail((value) =>
      rule.test(Redacted.make(value)) ? Either.right(Redacted.make(value)) : refuse(rule.accepts)
    )
  )
