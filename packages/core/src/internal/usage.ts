import * as Schema from "effect/Schema"

/**
 * What extractor calls cost. Defined here so that `Errors` (`ExtractorError.usage`) and `Extractor` (which imports
 * `Errors`) share it without importing each other; `Extractor.Usage` is the public name.
 */
export const Usage = Schema.Struct({
  requests: Schema.Int,
  promptTokens: Schema.Int,
  completionTokens: Schema.Int,
  costUsd: Schema.optional(Schema.Number)
})

export type Usage = typeof Usage.Type

/**
 * A reported cost in USD: a sum of floating-point costs rounded to a billionth of a dollar, so that it reads as the
 * decimal it is (`0.02412`, not `0.024120000000000003`). Sums are kept unrounded (no error builds up over a run);
 * what is reported (the store's totals, the run view, a budget's stop) goes through here.
 */
export const reportedCost = (usd: number): number => Math.round(usd * 1e9) / 1e9

/** The sum of two usages; absent when both are, and without `costUsd` when neither has one. */
export const add = (a: Usage | undefined, b: Usage | undefined): Usage | undefined => {
  if (a === undefined) return b
  if (b === undefined) return a
  const sum = {
    requests: a.requests + b.requests,
    promptTokens: a.promptTokens + b.promptTokens,
    completionTokens: a.completionTokens + b.completionTokens
  }
  return a.costUsd === undefined && b.costUsd === undefined ?
    sum :
    { ...sum, costUsd: (a.costUsd ?? 0) + (b.costUsd ?? 0) }
}
