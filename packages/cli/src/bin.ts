#!/usr/bin/env node
/**
 * The `quarry` executable. `quarry --version` answers before the program loads: starting Effect's runtime and the
 * command parser alone costs about 3x a bare `node -e 0` (docs/benchmarks.md, section 9), and a version check needs
 * neither. Everything else imports `main.ts`, which the bundle keeps in chunks of its own.
 *
 * @since 0.1.0
 */
import { configure } from "./Heap.js"
import { version } from "./Version.js"

const args = process.argv.slice(2)
if (args.length === 1 && args[0] === "--version") {
  // The bytes `@effect/cli` prints for `--version`.
  process.stdout.write(`${version}\n\n`)
} else {
  configure()
  await import("./main.js")
}
