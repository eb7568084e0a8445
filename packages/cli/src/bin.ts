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

// A reader that went away (`quarry --version | true`) crashed quarry with an unhandled EPIPE and a stack trace where
// it wrote to the stream itself (the console drops such errors): what is left to write is dropped instead, and the
// command ends as it would have (a run goes on to its end).
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code !== "EPIPE" && error.code !== "ERR_STREAM_DESTROYED") throw error
  })
}

const args = process.argv.slice(2)
if (args.length === 1 && args[0] === "--version") {
  // The bytes `@effect/cli` prints for `--version`.
  process.stdout.write(`${version}\n\n`)
} else {
  configure()
  await import("./main.js")
}
