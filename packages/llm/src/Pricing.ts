/**
 * Prices to turn token counts into an estimated cost. There are no built-in prices (they change too often to ship):
 * configure the models you use.
 *
 * @since 0.1.0
 */
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"

/**
 * USD per one million tokens.
 *
 * @since 0.1.0
 * @category models
 */
export const Price = Schema.Struct({
  prompt: Schema.Finite.pipe(Schema.nonNegative()),
  completion: Schema.Finite.pipe(Schema.nonNegative())
})

/**
 * @since 0.1.0
 * @category models
 */
export type Price = typeof Price.Type

/**
 * Prices by model name, e.g. `{"gpt-4o-mini": {"prompt": 0.15, "completion": 0.6}}`.
 *
 * @since 0.1.0
 * @category models
 */
export const PriceTable = Schema.Record({ key: Schema.String, value: Price })

/**
 * @since 0.1.0
 * @category models
 */
export type PriceTable = typeof PriceTable.Type

/**
 * The cost of a call in USD, if the model has a price.
 *
 * @since 0.1.0
 * @category pricing
 */
export const cost = (
  table: PriceTable,
  model: string,
  promptTokens: number,
  completionTokens: number
): Option.Option<number> =>
  Option.map(
    Option.fromNullable(Object.hasOwn(table, model) ? table[model] : undefined),
    (price) => (promptTokens * price.prompt + completionTokens * price.completion) / 1_000_000
  )
