/**
 * The V8 settings the `quarry` process gives itself before it loads the program.
 *
 * `--no-allocation-site-pretenuring`: V8 watches object and array literals, and one whose objects are still alive
 * at a young-generation collection is "pretenured": from then on everything it allocates goes straight to the old
 * generation, and whatever those objects point to survives young collections until the next full one. A long merge
 * pretenured a few literals in its first pass; its second pass then promoted about 1.7 MB per young collection
 * (none without the flag), and V8 let the old generation grow to four times the live heap before collecting it: a
 * 100,000-batch merge peaked at 226 MB instead of 157 MB (docs/benchmarks.md, section 2). The flag is read at every
 * collection, so setting it at start-up covers everything the process does; short-lived objects are what Quarry
 * allocates, so nothing here gains from pretenuring.
 *
 * @since 0.1.0
 */
import { setFlagsFromString } from "node:v8"

/**
 * The flags, as `node` would take them on its command line.
 *
 * @since 0.1.0
 * @category constants
 */
export const flags: ReadonlyArray<string> = ["--no-allocation-site-pretenuring"]

/**
 * Sets `flags` in this process (the `quarry` executable calls it first; the benchmark's merge children too, so that
 * they measure what users run).
 *
 * @since 0.1.0
 * @category configuration
 */
export const configure = (): void => {
  for (const flag of flags) setFlagsFromString(flag)
}
