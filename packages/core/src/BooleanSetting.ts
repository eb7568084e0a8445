/**
 * The spellings of a yes-or-no setting read from the environment (`QUARRY_CLUSTER`,
 * `QUARRY_OFFLINE_USE_KNOWN_ENTITIES`): one table, so that every such variable takes the same values.
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Either from "effect/Either"
import * as Option from "effect/Option"

const spellings: Readonly<Record<string, boolean>> = {
  true: true,
  false: false,
  yes: true,
  no: false,
  on: true,
  off: false,
  "1": true,
  "0": false
}

/**
 * What a yes-or-no setting accepts, for messages that refuse another value.
 *
 * @since 0.1.0
 * @category parsing
 */
export const accepted = "true or false, in any case (also yes or no, on or off, 1 or 0)"

/**
 * The value `text` spells (`TRUE`, `no`, `1`; surrounding spaces ignored), or none.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parse = (text: string): Option.Option<boolean> => {
  const key = text.trim().toLowerCase()
  return Object.hasOwn(spellings, key) ? Option.some(spellings[key]!) : Option.none()
}

/**
 * The yes-or-no variable `name`, refused unless `parse` reads it.
 *
 * @since 0.1.0
 * @category config
 */
export const config = (name: string): Config.Config<boolean> =>
  Config.string(name).pipe(Config.mapOrFail((text) =>
    Option.match(parse(text), {
      onNone: () =>
        Either.left(ConfigError.InvalidData([], `Expected ${accepted} but received ${JSON.stringify(text)}`)),
      onSome: Either.right
    })
  ))
