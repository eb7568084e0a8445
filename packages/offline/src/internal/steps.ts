/**
 * Work done a step at a time: a generator that yields between steps and returns its result. The offline extractor
 * is written so, so that a big batch does not hold the event loop for the whole extraction (`OfflineExtractor.make`
 * runs the steps with a fiber yield between them; `extractSync` runs them at once).
 */

/** Steps that end with an `A`. */
export type Steps<A> = Generator<void, A, undefined>

/** Runs every step at once. */
export const runSync = <A>(steps: Steps<A>): A => {
  for (;;) {
    const step = steps.next()
    if (step.done === true) return step.value
  }
}
