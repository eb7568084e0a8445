/**
 * Where the CLI writes: results to stdout, diagnostics to stderr, and a live status line on stderr when it is a
 * terminal.
 *
 * @since 0.1.0
 */
import * as Console from "effect/Console"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"

/**
 * The output capability.
 *
 * @since 0.1.0
 * @category tags
 */
export class Output extends Context.Tag("@quarry/cli/Output")<Output, {
  /** Writes one line of results to stdout. */
  readonly out: (line: string) => Effect.Effect<void>
  /** Writes one line of diagnostics to stderr (clearing the status line first). */
  readonly err: (line: string) => Effect.Effect<void>
  /** Replaces the live status line on stderr (`""` clears it); `None` when stderr is not a terminal. */
  readonly status: Option.Option<(line: string) => Effect.Effect<void>>
}>() {}

const plain = Output.of({
  out: (line) => Console.log(line),
  err: (line) => Console.error(line),
  status: Option.none()
})

/**
 * Lines through the `Console` service (so tests can capture them), without a status line.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerPlain: Layer.Layer<Output> = Layer.sync(Output, () => plain)

/**
 * The process's streams: lines through the `Console` service, plus a status line when stderr is a terminal.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<Output> = Layer.sync(Output, () => {
  if (process.stderr.isTTY !== true) return plain
  let shown = false
  const clear = Effect.sync(() => {
    if (shown) process.stderr.write("\r\u001b[2K")
    shown = false
  })
  return Output.of({
    out: (line) => Effect.zipRight(clear, Console.log(line)),
    err: (line) => Effect.zipRight(clear, Console.error(line)),
    status: Option.some((line) =>
      Effect.sync(() => {
        const width = process.stderr.columns ?? 80
        process.stderr.write(`\r\u001b[2K${line.length >= width ? line.slice(0, width - 1) : line}`)
        shown = line !== ""
      })
    )
  })
})
