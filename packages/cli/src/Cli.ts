/**
 * The `quarry` program: the command tree, and `run`, which parses the arguments, executes the command and answers
 * with the exit code (printing what went wrong to stderr).
 *
 * @since 0.1.0
 */
import type * as CliApp from "@effect/cli/CliApp"
import * as Command from "@effect/cli/Command"
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as FairScheduler from "@quarry/core/FairScheduler"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Cancel from "./Cancel.js"
import * as Doctor from "./Doctor.js"
import * as Errors from "./Errors.js"
import * as Events from "./Events.js"
import * as ExitCode from "./ExitCode.js"
import * as Export from "./Export.js"
import * as Help from "./Help.js"
import * as Llm from "./Llm.js"
import * as Output from "./Output.js"
import * as Resume from "./Resume.js"
import * as Serve from "./Serve.js"
import * as Settings from "./Settings.js"
import * as Start from "./Start.js"
import * as Status from "./Status.js"
import * as Version from "./Version.js"

/**
 * The version `quarry --version` prints (see `Version.ts`).
 *
 * @since 0.1.0
 * @category constants
 */
export const version = Version.version

const summary = "durable extraction: text in, knowledge graph out, resumable."

/**
 * The root command with every subcommand.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = Command.make("quarry").pipe(
  Command.withDescription(summary),
  Command.withSubcommands([
    Start.command,
    Resume.command,
    Status.status,
    Status.runs,
    Cancel.command,
    Export.command,
    Doctor.command,
    Serve.command
  ])
)

// Built only when help is asked for: every other command starts without rendering it.
const helpEntries = () => [
  Help.entry(Start.command),
  Help.entry(Resume.command),
  Help.entry(Status.status),
  Help.entry(Status.runs),
  Help.entry(Cancel.command),
  Help.entry(Export.command),
  Help.entry(Doctor.command),
  Help.entry(Serve.command)
]

const cli = Command.run(command, { name: "quarry", version })

/**
 * What `run` needs: the platform services of `@effect/cli`, the output streams, and the services the `llm`
 * extractor runs on (one rate limiter and one circuit breaker for the process).
 *
 * @since 0.1.0
 * @category models
 */
export type Environment = CliApp.CliApp.Environment | Output.Output | Llm.Services

/**
 * Runs the program on `argv` (as `process.argv`: runtime and script first) and answers with the exit code. Errors
 * are printed to stderr and become their exit code; an interruption (a signal) stays an interruption, which the
 * entry point turns into 130.
 *
 * @since 0.1.0
 * @category running
 */
export const run = (argv: ReadonlyArray<string>): Effect.Effect<number, never, Environment> =>
  Effect.gen(function*() {
    const settings = yield* Settings.config.pipe(
      Effect.mapError((error) => new Errors.UsageError({ message: `bad environment: ${error.message}` }))
    )
    yield* refuseSecretOptions(argv)
    const help = Help.requested(argv.slice(2), version, summary, helpEntries)
    if (Option.isSome(help)) {
      yield* Effect.flatMap(Output.Output, (output) => output.out(help.value))
      return ExitCode.ok
    }
    yield* cli(argv).pipe(Effect.provideService(Settings.Settings, settings))
    return ExitCode.ok
  }).pipe(
    Effect.catchAllCause((cause) =>
      Effect.gen(function*() {
        if (Cause.isInterruptedOnly(cause)) return yield* Effect.interrupt
        const output = yield* Output.Output
        const failure = Cause.failureOption(cause)
        if (Option.isNone(failure)) {
          yield* output.err(`quarry: internal error (please report it):\n${Cause.pretty(cause)}`)
          return ExitCode.runFailed
        }
        const now = yield* Clock.currentTimeMillis
        const message = Errors.describe(failure.value, now)
        if (Option.isSome(message)) yield* output.err(`quarry: ${message.value}`)
        // A bad option value stops the parse, before `start`/`resume` could report it as their `error` event.
        if (ValidationError.isValidationError(failure.value) && reportsJsonEvents(argv)) {
          yield* output.out(Events.encode("error", now, {
            exitCode: ExitCode.usage,
            error: "UsageError",
            message: Help.plain(failure.value.error).trim().replace(/^quarry: /, "")
          }))
        }
        return ExitCode.fromError(failure.value)
      })
    ),
    // Logs go to stderr (stdout carries only results); `--log-level` lowers the threshold.
    Effect.provide(Logger.replace(Logger.defaultLogger, Logger.withConsoleError(Logger.logfmtLogger))),
    Logger.withMinimumLogLevel(LogLevel.Warning),
    // Heartbeats and signals must get through while a run does synchronous work.
    Effect.withScheduler(FairScheduler.shared)
  )

/**
 * The services `run` needs, on Node with the real process streams.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<Environment> = Layer.mergeAll(NodeContext.layer, Output.layer, Llm.layerServices)

/** `start --json` and `resume --json` end with one terminal event, also when the command line is refused. */
const reportsJsonEvents = (argv: ReadonlyArray<string>) => {
  const args = argv.slice(2)
  return (args[0] === "start" || args[0] === "resume") && args.includes("--json")
}

/**
 * An API key given as an option is refused before the parser sees it: the parser would echo `--api-key=<key>` as
 * an unknown argument, and options end up in shell history and process lists.
 */
const refuseSecretOptions = (argv: ReadonlyArray<string>) => {
  const secret = argv.slice(2).find((arg) => /^--?(api-?key|key|token)(=|$)/i.test(arg))
  return secret === undefined ? Effect.void : Effect.fail(
    new Errors.UsageError({
      message: `quarry takes no ${secret.split("=")[0]} option: the API key is read only from the environment ` +
        `variable QUARRY_LLM_API_KEY (export QUARRY_LLM_API_KEY=...), so that it stays out of shell history, ` +
        `process lists and logs`
    })
  )
}
