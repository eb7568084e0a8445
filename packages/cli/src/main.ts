/**
 * The `quarry` program: what `bin.ts` loads for every command line but `--version`.
 *
 * @since 0.1.0
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Effect from "effect/Effect"
import * as Cli from "./Cli.js"
import * as ExitCode from "./ExitCode.js"
import * as Signals from "./Signals.js"

// The first SIGINT/SIGTERM interrupts the program (runMain's handler): the run stops extracting, an in-flight commit
// finishes or rolls back, the run is recorded `interrupted`. A second one exits at once, unless a command takes it
// (`Signals.takeNext`); SQLite's journal keeps the database consistent whatever was in flight.
let signals = 0
const onSignal = (signal: NodeJS.Signals) => {
  if (Signals.handOver(signal)) return
  signals += 1
  if (signals < 2) return
  process.stderr.write("\nquarry: interrupted again, exiting now; the database stays consistent\n")
  process.exit(ExitCode.interrupted)
}
process.on("SIGINT", onSignal)
process.on("SIGTERM", onSignal)

Cli.run(process.argv).pipe(
  Effect.provide(Cli.layer),
  NodeRuntime.runMain({
    disableErrorReporting: true,
    // runMain would swap the default logger for its pretty one (on stdout), which `Cli.run`'s own logger (logfmt
    // on stderr) could then not replace: warnings would land among the JSON events.
    disablePrettyLogger: true,
    teardown: (exit, onExit) => onExit(ExitCode.fromExit(exit))
  })
)
