/**
 * A process-wide rate limiter for LLM endpoints, keyed by endpoint (base URL + model): requests per minute, tokens
 * per minute and concurrent requests. Every run in the process shares it, so five runs against one endpoint together
 * stay within the provider's limits.
 *
 * Windows are sliding: a request is admitted only if, counting it, the last 60 seconds hold at most
 * `requestsPerMinute` requests and `tokensPerMinute` tokens. A request counts with its estimated tokens (prompt +
 * completion budget) until the caller settles it with the tokens the server reported.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"

/**
 * Limits of one endpoint. A missing limit is not enforced.
 *
 * @since 0.1.0
 * @category models
 */
export interface Limits {
  readonly requestsPerMinute?: number | undefined
  readonly tokensPerMinute?: number | undefined
  readonly maxConcurrent?: number | undefined
}

/**
 * An admitted request. `settle` replaces its estimated token count with the real one.
 *
 * @since 0.1.0
 * @category models
 */
export interface Permit {
  readonly key: string
  readonly admittedAt: number
  readonly estimatedTokens: number
  readonly settle: (tokens: number) => Effect.Effect<void>
}

/**
 * What the limiter currently counts for one endpoint.
 *
 * @since 0.1.0
 * @category models
 */
export interface Snapshot {
  readonly key: string
  readonly limits: Limits
  readonly requestsInWindow: number
  readonly tokensInWindow: number
  readonly inFlight: number
  readonly pausedUntil: Option.Option<number>
}

/**
 * What holds a request back: the endpoint's requests-per-minute or tokens-per-minute limit, or a pause the server
 * asked for (a 429's `Retry-After`, see `pause`).
 *
 * @since 0.1.0
 * @category models
 */
export type WaitCause = "requests_per_minute" | "tokens_per_minute" | "retry_after"

/**
 * A wait for admission, as it starts: `millis` from now, for the longest of the causes that hold the request back.
 *
 * @since 0.1.0
 * @category models
 */
export interface Wait {
  readonly key: string
  readonly cause: WaitCause
  readonly millis: number
  /** The endpoint's limit behind the cause (absent for `retry_after`). */
  readonly limit?: number | undefined
}

/**
 * A single request needs more tokens than the endpoint's tokens-per-minute limit: it could never be admitted.
 *
 * @since 0.1.0
 * @category errors
 */
export class RequestTooLarge extends Schema.TaggedError<RequestTooLarge>()("RequestTooLarge", {
  key: Schema.String,
  estimatedTokens: Schema.Number,
  tokensPerMinute: Schema.Number
}) {
  override get message() {
    return `a request to ${this.key} needs about ${this.estimatedTokens} tokens (prompt + max tokens), more than the ` +
      `limit of ${this.tokensPerMinute} tokens per minute; lower the batch size or max tokens, or raise the limit`
  }
}

/**
 * The limiter.
 *
 * @since 0.1.0
 * @category tags
 */
export class RateLimiter extends Context.Tag("@quarry/llm/RateLimiter")<RateLimiter, {
  /**
   * Runs `f` once the endpoint admits a request of `estimatedTokens` tokens. The first caller's `limits` configure
   * the endpoint for the life of the process; a caller with different limits gets a warning. `onWait` hears of each
   * wait for admission as it starts (callers queued behind it wait for its turn to end, and then for their own).
   */
  readonly withPermit: <A, E, R>(
    key: string,
    limits: Limits,
    estimatedTokens: number,
    f: (permit: Permit) => Effect.Effect<A, E, R>,
    onWait?: ((wait: Wait) => Effect.Effect<void>) | undefined
  ) => Effect.Effect<A, E | RequestTooLarge, R>
  /** Admits nothing for this endpoint until the delay has passed (a server's `Retry-After`). */
  readonly pause: (key: string, delay: Duration.DurationInput) => Effect.Effect<void>
  readonly snapshot: (key: string) => Effect.Effect<Option.Option<Snapshot>>
}>() {}

const windowMillis = 60_000

interface Entry {
  readonly at: number
  tokens: number
}

interface Bucket {
  readonly limits: Limits
  readonly concurrency: Effect.Semaphore | undefined
  readonly gate: Effect.Semaphore
  entries: Array<Entry>
  pausedUntil: number
  inFlight: number
}

const sameLimits = (a: Limits, b: Limits) =>
  a.requestsPerMinute === b.requestsPerMinute && a.tokensPerMinute === b.tokensPerMinute &&
  a.maxConcurrent === b.maxConcurrent

const prune = (bucket: Bucket, now: number) => {
  let i = 0
  while (i < bucket.entries.length && bucket.entries[i]!.at <= now - windowMillis) i++
  if (i > 0) bucket.entries = bucket.entries.slice(i)
}

/** How long until a request of `tokens` tokens fits (0 if it fits now), and the cause of the longest wait. */
const waitFor = (bucket: Bucket, now: number, tokens: number): Pick<Wait, "millis" | "cause"> => {
  const { requestsPerMinute: rpm, tokensPerMinute: tpm } = bucket.limits
  let millis = Math.max(0, bucket.pausedUntil - now)
  let cause: WaitCause = "retry_after"
  const atLeast = (ms: number, why: WaitCause) => {
    if (ms > millis) [millis, cause] = [ms, why]
  }
  if (rpm !== undefined && bucket.entries.length + 1 > rpm) {
    const oldest = bucket.entries[bucket.entries.length - rpm]!
    atLeast(oldest.at + windowMillis - now, "requests_per_minute")
  }
  if (tpm !== undefined) {
    let used = bucket.entries.reduce((sum, e) => sum + e.tokens, 0)
    for (const entry of bucket.entries) {
      if (used + tokens <= tpm) break
      used -= entry.tokens
      atLeast(entry.at + windowMillis - now, "tokens_per_minute")
    }
  }
  return { millis, cause }
}

const limitOf = (limits: Limits, cause: WaitCause) =>
  cause === "requests_per_minute" ?
    limits.requestsPerMinute :
    cause === "tokens_per_minute" ?
    limits.tokensPerMinute :
    undefined

/** The endpoint's bucket, made with `limits` on first use (later different limits are logged and ignored). */
const bucketFor = (buckets: Map<string, Bucket>, key: string, limits: Limits) =>
  Effect.suspend(() => {
    const existing = buckets.get(key)
    if (existing !== undefined) {
      return sameLimits(existing.limits, limits) ?
        Effect.succeed(existing) :
        Effect.as(
          Effect.logWarning("rate limits differ from the ones this endpoint was first used with; keeping the first")
            .pipe(Effect.annotateLogs({ endpoint: key })),
          existing
        )
    }
    const max = limits.maxConcurrent
    const bucket: Bucket = {
      limits,
      concurrency: max === undefined ? undefined : Effect.unsafeMakeSemaphore(Math.max(1, max)),
      gate: Effect.unsafeMakeSemaphore(1),
      entries: [],
      pausedUntil: 0,
      inFlight: 0
    }
    buckets.set(key, bucket)
    return Effect.succeed(bucket)
  })

// Admission is serialised per endpoint (the gate), so waiters are admitted in arrival order.
const admit = (
  key: string,
  bucket: Bucket,
  tokens: number,
  onWait: ((wait: Wait) => Effect.Effect<void>) | undefined
): Effect.Effect<Permit> =>
  Effect.gen(function*() {
    while (true) {
      const now = yield* Clock.currentTimeMillis
      prune(bucket, now)
      const wait = waitFor(bucket, now, tokens)
      if (wait.millis <= 0) {
        const entry: Entry = { at: now, tokens }
        bucket.entries.push(entry)
        return {
          key,
          admittedAt: now,
          estimatedTokens: tokens,
          settle: (actual: number) =>
            Effect.sync(() => {
              entry.tokens = Math.max(0, actual)
            })
        }
      }
      if (onWait !== undefined) {
        const limit = limitOf(bucket.limits, wait.cause)
        yield* onWait({ key, cause: wait.cause, millis: wait.millis, ...(limit === undefined ? {} : { limit }) })
      }
      yield* Effect.sleep(Duration.millis(wait.millis))
    }
  }).pipe(bucket.gate.withPermits(1))

/**
 * Builds a limiter with no endpoints yet.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<RateLimiter["Type"]> = Effect.sync(() => {
  const buckets = new Map<string, Bucket>()

  const withPermit = <A, E, R>(
    key: string,
    limits: Limits,
    estimatedTokens: number,
    f: (permit: Permit) => Effect.Effect<A, E, R>,
    onWait?: ((wait: Wait) => Effect.Effect<void>) | undefined
  ): Effect.Effect<A, E | RequestTooLarge, R> =>
    Effect.flatMap(bucketFor(buckets, key, limits), (bucket): Effect.Effect<A, E | RequestTooLarge, R> => {
      const tpm = bucket.limits.tokensPerMinute
      if (tpm !== undefined && estimatedTokens > tpm) {
        return Effect.fail(new RequestTooLarge({ key, estimatedTokens, tokensPerMinute: tpm }))
      }
      const run = Effect.flatMap(admit(key, bucket, estimatedTokens, onWait), (permit) =>
        Effect.acquireUseRelease(
          Effect.sync(() => {
            bucket.inFlight++
          }),
          () => f(permit),
          () =>
            Effect.sync(() => {
              bucket.inFlight--
            })
        ))
      return bucket.concurrency === undefined ? run : bucket.concurrency.withPermits(1)(run)
    })

  const pause = (key: string, delay: Duration.DurationInput) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.sync(() => {
        const bucket = buckets.get(key)
        if (bucket === undefined) return
        bucket.pausedUntil = Math.max(bucket.pausedUntil, now + Duration.toMillis(delay))
      }))

  const snapshot = (key: string) =>
    Effect.map(
      Clock.currentTimeMillis,
      (now) =>
        Option.map(Option.fromNullable(buckets.get(key)), (bucket): Snapshot => {
          prune(bucket, now)
          return {
            key,
            limits: bucket.limits,
            requestsInWindow: bucket.entries.length,
            tokensInWindow: bucket.entries.reduce((sum, e) => sum + e.tokens, 0),
            inFlight: bucket.inFlight,
            pausedUntil: bucket.pausedUntil > now ? Option.some(bucket.pausedUntil) : Option.none()
          }
        })
    )

  return RateLimiter.of({ withPermit, pause, snapshot })
})

/**
 * The process-wide limiter. Provide it once, at the top of the application, so every run shares it.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<RateLimiter> = Layer.effect(RateLimiter, make)
