import * as Extractor from "@quarry/core/Extractor"
import * as Effect from "effect/Effect"
import type * as RateLimiter from "../RateLimiter.js"

/**
 * Shorter waits are not announced: under a few seconds a pause does not look like a hang, and a busy endpoint's
 * sub-second gaps between requests would flood the output.
 */
export const announcedFrom = 5_000

const settingOf: Record<RateLimiter.WaitCause, string | undefined> = {
  requests_per_minute: "QUARRY_LLM_RPM",
  tokens_per_minute: "QUARRY_LLM_TPM",
  retry_after: undefined
}

/** The limiter's wait as the extractor contract announces it, with the setting behind it. */
export const toWait = (wait: RateLimiter.Wait): Extractor.Wait => {
  const setting = settingOf[wait.cause]
  return {
    reason: wait.cause,
    endpoint: wait.key,
    millis: wait.millis,
    description: setting === undefined ?
      `the pause ${wait.key} asked for (HTTP 429 with Retry-After)` :
      `the rate limit of ${wait.key} (${setting}=${wait.limit})`
  }
}

/**
 * Announces a wait of the limiter that is long enough: an Info log line (the server's log; the CLI shows Info only
 * with `--log-level info`), and the batch's `reportWait` when it has one (the CLI's line and event).
 */
export const announcer = (input: Extractor.BatchInput) => (wait: RateLimiter.Wait): Effect.Effect<void> => {
  if (wait.millis < announcedFrom) return Effect.void
  const announced = toWait(wait)
  return Effect.zipRight(
    Effect.logInfo(Extractor.waitMessage(announced)).pipe(
      Effect.annotateLogs({ reason: announced.reason, waitMs: Math.round(announced.millis) })
    ),
    input.reportWait === undefined ? Effect.void : input.reportWait(announced)
  )
}
