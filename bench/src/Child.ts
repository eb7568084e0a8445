/**
 * Measurements that need a process of their own (clean peak RSS): the parent spawns `node bench/dist/main.js
 * --child <name> <request JSON>` and decodes the last line the child prints.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import { fileURLToPath } from "node:url"

/**
 * The entry point children run: `main.js` next to this module (only in the built `bench/dist`).
 *
 * @since 0.1.0
 * @category constants
 */
export const entry = fileURLToPath(new URL("./main.js", import.meta.url))

/**
 * Why a child measurement failed.
 *
 * @since 0.1.0
 * @category errors
 */
export class ChildError extends Schema.TaggedError<ChildError>()("ChildError", {
  name: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `child measurement ${this.name} failed: ${this.reason}`
  }
}

/**
 * Runs `--child name` with the request (and extra Node options) and decodes the child's last output line with
 * `schema`.
 *
 * @since 0.1.0
 * @category running
 */
export const run = <A, I>(
  name: string,
  request: unknown,
  schema: Schema.Schema<A, I>,
  nodeArgs: ReadonlyArray<string> = []
) =>
  Effect.gen(function*() {
    if (!fs.existsSync(entry)) {
      return yield* new ChildError({ name, reason: `${entry} does not exist (build the bench package first)` })
    }
    const { code, stderr, stdout } = yield* Effect.async<
      { readonly code: number | null; readonly stdout: string; readonly stderr: string },
      ChildError
    >((resume) => {
      const child = spawn(process.execPath, [
        "--expose-gc",
        ...nodeArgs,
        entry,
        "--child",
        name,
        JSON.stringify(request)
      ], {
        stdio: ["ignore", "pipe", "pipe"]
      })
      let stdout = ""
      let stderr = ""
      child.stdout.on("data", (d: Buffer) => (stdout += d.toString("utf8")))
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString("utf8")))
      child.on("error", (error) => resume(Effect.fail(new ChildError({ name, reason: error.message }))))
      child.on("close", (code) => resume(Effect.succeed({ code, stdout, stderr })))
      return Effect.sync(() => child.kill("SIGKILL"))
    })
    const last = stdout.trim().split("\n").pop() ?? ""
    if (code !== 0) {
      return yield* new ChildError({ name, reason: `exit code ${code}: ${stderr.trim().slice(-2000)}` })
    }
    return yield* Schema.decodeUnknown(Schema.parseJson(schema))(last).pipe(
      Effect.mapError((error) => new ChildError({ name, reason: `unreadable result ${last}: ${error.message}` }))
    )
  })
