/**
 * The `quarry` program: the command tree, and `run`, which parses the arguments, executes the command and answers
 * with the exit code (printing what went wrong to stderr).
 *
 * @since 0.1.0
 */
import type * as CliApp from "@effect/cli/CliApp"
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as FairScheduler from "@quarry/core/FairScheduler"
import * as Run from "@quarry/core/Run"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import type * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as BuiltIns from "./BuiltIns.js"
import * as Cancel from "./Cancel.js"
import * as Doctor from "./Doctor.js"
import * as Errors from "./Errors.js"
import * as Events from "./Events.js"
import * as ExitCode from "./ExitCode.js"
import * as Export from "./Export.js"
import * as Flags from "./Flags.js"
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

/** A run id given to a command, when it is one (`start` parses it into an `Option`, the others take the text). */
const runIdOf = (flags: object): Option.Option<string> => {
  const value: unknown = "runId" in flags ? flags.runId : undefined
  const raw = Option.isOption(value) ? Option.getOrUndefined(value) : value
  return Schema.is(Run.RunId)(raw) ? Option.some(raw) : Option.none()
}

/**
 * The command, recording its database and run before its handler runs (`Errors.currentInvocation`): an error it
 * raises is then reported with them, wherever it was raised.
 */
const remembered = <Name extends string, R, E, A extends { readonly db: Option.Option<string> }>(
  self: Command.Command<Name, R, E, A>
) =>
  Command.transformHandler(self, (effect, flags: A) =>
    Flags.resolveDb(flags.db).pipe(
      Effect.flatMap((db) => FiberRef.set(Errors.currentInvocation, Option.some({ db, runId: runIdOf(flags) }))),
      Effect.zipRight(effect),
      (handler) =>
        Effect.flatMap(FiberRef.get(handlerConsole), (console) =>
          Option.match(console, {
            onNone: () => handler,
            onSome: (console) => Effect.withConsole(handler, console)
          }))
    ))

/**
 * `start` refusing a new run id that starts with `-`: every other command would read it as an option
 * (`quarry status -x`), so the run could not be addressed. Runs stored with one stay readable.
 */
const refusingOptionLikeRunIds = <Name extends string, R, E, A extends { readonly runId: Option.Option<string> }>(
  self: Command.Command<Name, R, E, A>
) =>
  Command.transformHandler(
    self,
    (effect, flags: A): Effect.Effect<void, E | ValidationError.ValidationError, R> =>
      Option.match(Option.filter(flags.runId, (id) => id.startsWith("-")), {
        onNone: () => effect,
        onSome: (id) =>
          Effect.fail(ValidationError.invalidValue(HelpDoc.p(
            `quarry: run id ${JSON.stringify(id)} is not valid: a run id must not start with '-', which every ` +
              `command would read as an option (quarry status ${id})`
          )))
      })
  )

/**
 * The root command with every subcommand.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = Command.make("quarry").pipe(
  Command.withDescription(summary),
  Command.withSubcommands([
    remembered(refusingOptionLikeRunIds(Start.command)),
    remembered(Resume.command),
    remembered(Status.status),
    remembered(Status.runs),
    remembered(Cancel.command),
    remembered(Export.command),
    remembered(Doctor.command),
    remembered(Serve.command)
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
export const run = (argv: ReadonlyArray<string>): Effect.Effect<number, never, Environment> => {
  const line = BuiltIns.split(argv.slice(2))
  return Effect.gen(function*() {
    const settings = yield* Effect.mapError(Settings.config, Errors.badEnvironment)
    yield* refuseSecretOptions(argv)
    yield* BuiltIns.refuseWizard(line)
    const logLevel = yield* BuiltIns.logLevel(line)
    const completions = yield* BuiltIns.completions(line, command)
    const answer = Option.orElse(completions, () => Help.requested(line.args, version, summary, helpEntries))
    if (Option.isSome(answer)) {
      yield* Effect.flatMap(Output.Output, (output) => output.out(answer.value))
      return ExitCode.ok
    }
    // @effect/cli prints its parse errors itself, without the `quarry: ` prefix; they are reported below instead.
    yield* cli([...argv.slice(0, 2), ...line.args]).pipe(
      Effect.provideService(Settings.Settings, settings),
      withoutParserErrors,
      Logger.withMinimumLogLevel(logLevel)
    )
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
        const error = failure.value
        const invocation = yield* FiberRef.get(Errors.currentInvocation)
        const message = ValidationError.isValidationError(error) ?
          Errors.describeParseError(error, line.args) :
          Errors.describe(error, now, Option.match(invocation, { onNone: () => undefined, onSome: (i) => i.db }))
        yield* output.err(`quarry: ${message}`)
        // A bad option value stops the parse, before `start`/`resume` could report it as their `error` event.
        if (ValidationError.isValidationError(error) && reportsJsonEvents(line.args)) {
          yield* output.out(Events.encode("error", now, { exitCode: ExitCode.usage, error: "UsageError", message }))
        }
        return ExitCode.fromError(error)
      })
    ),
    // Logs go to stderr (stdout carries only results); `--log-level` sets the threshold of the command.
    Effect.provide(Logger.replace(Logger.defaultLogger, Logger.withConsoleError(Logger.logfmtLogger))),
    Logger.withMinimumLogLevel(LogLevel.Warning),
    // A bad environment variable is named with what it accepts, wherever it is read (extractors included).
    Settings.withNamedVariables,
    // Heartbeats and signals must get through while a run does synchronous work.
    Effect.withScheduler(FairScheduler.shared)
  )
}

/**
 * The services `run` needs, on Node with the real process streams.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<Environment> = Layer.mergeAll(NodeContext.layer, Output.layer, Llm.layerServices)

/** The console a command's handler writes to (`Output` writes through it), while the parser's is muted. */
const handlerConsole = FiberRef.unsafeMake(Option.none<Console.Console>())

/**
 * `self` with the `error` of its console muted, except in the commands' handlers: what @effect/cli prints there
 * itself are its parse errors, without the `quarry: ` prefix and misleading in places (see `describeParseError`).
 */
const withoutParserErrors = <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.consoleWith((console) =>
    self.pipe(
      Effect.withConsole({ ...console, error: () => Effect.void }),
      Effect.locally(handlerConsole, Option.some(console))
    )
  )

/** `start --json` and `resume --json` end with one terminal event, also when the command line is refused. */
const reportsJsonEvents = (args: ReadonlyArray<string>) =>
  (args[0] === "start" || args[0] === "resume") && args.includes("--json")

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
