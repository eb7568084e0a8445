/**
 * `quarry serve`: Quarry as a long-running HTTP service (see `@quarry/server`). Every option can also come from a
 * `QUARRY_*` environment variable; tokens come only from the environment (`QUARRY_API_TOKENS`,
 * `QUARRY_API_TOKEN_FILE`). The first SIGTERM/SIGINT drains (readiness off, new work refused, runs recorded
 * `interrupted`, event streams ended after their runs' last events, connections closed) and exits 0 within
 * `--drain-timeout`, 1 past it; a second one exits at once (130, see `main.ts`). With `--drain-delay`, the drain waits that long first, not ready but still
 * serving, unless a second signal ends the wait (`Signals.takeNext`; the one after that exits at once).
 *
 * @since 0.1.0
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as HttpServer from "@effect/platform/HttpServer"
// Types only: the server package itself loads when `serve` runs (see below).
import * as DatabaseUrl from "@quarry/core/DatabaseUrl"
import * as Extractor from "@quarry/core/Extractor"
import type * as QuarryServer from "@quarry/server"
import type { Admission as AdmissionService } from "@quarry/server/Admission"
// No platform code in it: small enough to load with every command.
import * as Connections from "@quarry/server/Connections"
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as HashSet from "effect/HashSet"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as buffer from "node:buffer"
import * as fs from "node:fs"
import { UsageError } from "./Errors.js"
import * as Extractors from "./Extractors.js"
import * as Flags from "./Flags.js"
import * as Inputs from "./Inputs.js"
import * as Llm from "./Llm.js"
import { Output } from "./Output.js"
import { Settings } from "./Settings.js"
import * as Signals from "./Signals.js"
import * as Store from "./Store.js"

const tokensConfig = Config.all({
  list: Config.option(Config.redacted("QUARRY_API_TOKENS")),
  file: Config.option(Config.string("QUARRY_API_TOKEN_FILE"))
})

const splitTokens = (text: string) =>
  text.split(/[,\n]/).map((t) => t.trim()).filter((t) => t.length > 0).map((t) => Redacted.make(t))

/** The API tokens from `QUARRY_API_TOKENS` (comma-separated) and the lines of `QUARRY_API_TOKEN_FILE`. */
const readTokens = Effect.gen(function*() {
  const given = yield* tokensConfig.pipe(
    Effect.mapError((e) => new UsageError({ message: `bad token configuration: ${e.message}` }))
  )
  const listed = Option.match(given.list, { onNone: () => [], onSome: (list) => splitTokens(Redacted.value(list)) })
  const file = Option.getOrUndefined(given.file)
  const filed = file === undefined ? [] : splitTokens(
    yield* Effect.try({
      try: () => fs.readFileSync(file, "utf8"),
      catch: (error) =>
        new UsageError({
          message: `cannot read QUARRY_API_TOKEN_FILE ${file}: ${
            error instanceof Error ? error.message : String(error)
          }`
        })
    })
  )
  return [...listed, ...filed]
})

const loopback = (host: string) => host === "127.0.0.1" || host === "::1" || host === "localhost"

/** The smallest body a submission can have, `{"input":"x"}`: a smaller `--max-body` refuses every one (413). */
const smallestSubmission = JSON.stringify({ input: "x" }).length

/** The largest body the server can decode: its JSON text is one JavaScript string (V8 caps their length). */
const largestBody = buffer.constants.MAX_STRING_LENGTH

/** Checks `--max-body`: a size, from the smallest submission's to the largest body the server can decode. */
const bodyLimit = (raw: string) =>
  Effect.flatMap(Inputs.parseSize("max-body", raw), (bytes) =>
    bytes < smallestSubmission ?
      Effect.fail(
        new UsageError({
          message: `max-body ${JSON.stringify(raw)} is ${bytes} bytes, less than the smallest submission ` +
            `({"input":"x"}, ${smallestSubmission} bytes): every POST /v1/runs would be 413; use e.g. 50MB`
        })
      ) :
      bytes > largestBody ?
      Effect.fail(
        new UsageError({
          message: `max-body ${JSON.stringify(raw)} is ${bytes} bytes, more than the largest body the server can ` +
            `decode (${largestBody} bytes, the longest string Node holds); use e.g. 500MB`
        })
      ) :
      Effect.succeed(bytes))

/** Checks a whole number of `min` or more (of `unit`, when given, e.g. seconds). */
const wholeNumber = (name: string, raw: string, min: number, unit?: string) => {
  const requirement = unit === undefined
    ? `a whole number of ${min} or more`
    : `a whole number of ${unit}, ${min} or more`
  return Effect.flatMap(
    Flags.parseWhole(name, raw, requirement),
    (n) =>
      Number.isSafeInteger(n) && n >= min ?
        Effect.succeed(n) :
        Effect.fail(new UsageError({ message: `${name} (${raw}) must be ${requirement}` }))
  )
}

/**
 * Checks `--max-queued-runs`: 1 or more. Every submission and resume waits in the queue, if only until a free slot
 * takes it (on a cluster it is `pending` until its runner claims it), so 0 refuses them all.
 */
const queueLimit = (raw: string) =>
  Effect.filterOrFail(
    wholeNumber("max-queued-runs", raw, 0),
    (n) => n >= 1,
    () =>
      new UsageError({
        message: `max-queued-runs (${raw}) must be 1 or more: every submission waits in the queue, if only until a ` +
          `free slot takes it, so 0 would refuse them all (429)`
      })
  )

/** An option that falls back to an environment variable, then to a default; `check` types and checks all three. */
const fromEnv = <A>(
  name: string,
  pseudo: string,
  description: string,
  fallback: string,
  check: (raw: string) => Effect.Effect<A, UsageError>
) =>
  Options.text(name).pipe(
    Options.withPseudoName(pseudo),
    // @effect/cli's help shows no default that is not an `Option`: the description says it.
    Options.withDescription(`${description} Default: ${fallback}.`),
    Options.withFallbackConfig(Config.string(`QUARRY_${name.toUpperCase().replace(/-/g, "_")}`)),
    Options.withDefault(fallback),
    Options.mapEffect(Flags.validated(check))
  )

/** A boolean option that falls back to `QUARRY_<NAME>`, then to false. */
const envFlag = (name: string, description: string) =>
  Flags.switchWithVariable(name, `QUARRY_${name.toUpperCase().replace(/-/g, "_")}`, description)

/** Checks a duration option (`25s`, `2m`) into milliseconds; `example` goes into the error. */
const duration = (name: string, example: string) => (raw: string) =>
  Option.match(Inputs.parseDuration(raw), {
    onNone: () =>
      Effect.fail(new UsageError({ message: `${name} ${JSON.stringify(raw)} is not a duration; e.g. ${example}` })),
    onSome: Effect.succeed
  })

/** Checks a number of whole seconds, 0 or more, into milliseconds. */
const seconds = (name: string) => (raw: string) => Effect.map(wholeNumber(name, raw, 0, "seconds"), (s) => s * 1000)

/** Checks a TCP port option: a whole number from `min` to 65535. */
const portNumber = (name: string, min: number) => (raw: string) =>
  Effect.filterOrFail(
    wholeNumber(name, raw, min),
    (port) => port <= 65535,
    (port) => new UsageError({ message: `${name} (${port}) must be at most 65535` })
  )

/** A blank address (a `QUARRY_RUNNER_HOST` that lost its value) names no runner: `@effect/cluster` dies on it. */
const runnerHost = (raw: string) =>
  raw.trim() === "" ?
    Effect.fail(
      new UsageError({
        message: "runner-host is empty; pass the address other runners reach this one at (in Kubernetes, the pod IP)"
      })
    ) :
    Effect.succeed(raw)

/**
 * The extractors the server runs: the built-in ones, plus `llm` when `QUARRY_LLM_MODEL` is set, built once from the
 * `QUARRY_LLM_*` environment (bad settings exit 2 before the server listens).
 */
const registryLayer = (settings: Settings["Type"]) =>
  Layer.effect(
    Extractor.Registry,
    Effect.flatMap(
      Config.option(Config.nonEmptyString("QUARRY_LLM_MODEL")).pipe(Effect.orElseSucceed(() => Option.none<string>())),
      Option.match({
        onNone: () => Effect.succeed(Extractors.registry(settings)),
        onSome: () => Extractors.registryFor(settings, Llm.name, { given: [], args: [] })
      })
    )
  ).pipe(Layer.provide(Llm.layerServices))

const hostName = /^(\*|[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?)$/i

/** Checks `--allowed-hosts`: host names (or `*`), comma-separated, without scheme or port. */
const hostNames = (raw: string) => {
  const names = raw.split(",").map((name) => name.trim()).filter((name) => name.length > 0)
  const bad = names.find((name) => !hostName.test(name))
  return bad === undefined ? Effect.succeed(names) : Effect.fail(
    new UsageError({
      message: `allowed-hosts: ${JSON.stringify(bad)} is not a host name; give names alone, without scheme or port ` +
        `(e.g. quarry.internal,quarry.example.com)`
    })
  )
}

const options = {
  db: Flags.db,
  host: fromEnv("host", "HOST", "The interface to listen on (or QUARRY_HOST).", "127.0.0.1", Effect.succeed),
  port: fromEnv("port", "PORT", "The port; 0 picks a free one (or QUARRY_PORT).", "7340", portNumber("port", 0)),
  maxActiveRuns: fromEnv(
    "max-active-runs",
    "N",
    "Runs executing at once; the others wait (or QUARRY_MAX_ACTIVE_RUNS).",
    "4",
    (raw) => wholeNumber("max-active-runs", raw, 1)
  ),
  maxQueuedRuns: fromEnv(
    "max-queued-runs",
    "N",
    "Runs waiting at most, 1 or more; beyond, submissions get 429 (or QUARRY_MAX_QUEUED_RUNS).",
    "1000",
    queueLimit
  ),
  maxBody: fromEnv(
    "max-body",
    "SIZE",
    "The largest request body, e.g. 50MB, 512KB (or QUARRY_MAX_BODY).",
    "50MB",
    bodyLimit
  ),
  drainTimeout: fromEnv(
    "drain-timeout",
    "DURATION",
    "How long a shutdown may take, --drain-delay included, e.g. 25s, 2m (or QUARRY_DRAIN_TIMEOUT).",
    "25s",
    duration("drain-timeout", "25s")
  ),
  drainDelay: fromEnv(
    "drain-delay",
    "SECONDS",
    "Seconds a shutdown waits before draining, not ready (/readyz 503) and taking no new runs but still serving, " +
      "so that load balancers stop sending requests before the port closes; a second signal ends the wait; part " +
      "of --drain-timeout (or QUARRY_DRAIN_DELAY).",
    "0",
    seconds("drain-delay")
  ),
  noRecover: envFlag("no-recover", "Do not resume the runs earlier processes left behind (or QUARRY_NO_RECOVER)."),
  cluster: envFlag(
    "cluster",
    "Serve as one runner of a cluster sharing a PostgreSQL --db: each run executes on the runner owning it, and " +
      "moves to a survivor when its runner dies (or QUARRY_CLUSTER)."
  ),
  distribute: envFlag(
    "distribute",
    "With --cluster: spread each run's batch extractions over all runners; commits stay in order on the run's " +
      "runner (or QUARRY_DISTRIBUTE)."
  ),
  distributeTimeout: fromEnv(
    "distribute-timeout",
    "DURATION",
    "With --distribute: how long a run's runner waits for a batch extracted elsewhere before extracting it itself, " +
      "e.g. 2m (or QUARRY_DISTRIBUTE_TIMEOUT).",
    "10m",
    duration("distribute-timeout", "2m")
  ),
  runnerHost: fromEnv(
    "runner-host",
    "HOST",
    "With --cluster: the address other runners reach this one at (or QUARRY_RUNNER_HOST).",
    "127.0.0.1",
    runnerHost
  ),
  runnerPort: fromEnv(
    "runner-port",
    "PORT",
    "With --cluster: the port of the runner protocol (or QUARRY_RUNNER_PORT).",
    "34431",
    portNumber("runner-port", 1)
  ),
  allowedHosts: Options.text("allowed-hosts").pipe(
    Options.withPseudoName("NAMES"),
    Options.withDescription(
      "Host names this server is reached by besides IP addresses, localhost and --host, comma-separated (* for " +
        "any): without API tokens, a request naming another Host is refused, so that no web page reaches the " +
        "server through a DNS name pointed at it; with tokens, Host is checked only when this is set (or " +
        "QUARRY_ALLOWED_HOSTS). Default: none."
    ),
    Options.withFallbackConfig(Config.string("QUARRY_ALLOWED_HOSTS")),
    Options.withDefault(""),
    Options.mapEffect(Flags.validated(hostNames))
  ),
  insecureNoAuth: Options.boolean("insecure-no-auth").pipe(
    Options.withDescription("Serve a non-loopback host without API tokens (anyone who reaches it can submit).")
  ),
  json: Flags.json
}

/**
 * A cluster's lease is short unless `QUARRY_LEASE_MS` says otherwise: a dead runner's runs continue elsewhere once
 * it expires (see `Cluster.defaults`).
 */
const clusterLeaseMs = Config.option(Config.integer("QUARRY_LEASE_MS")).pipe(
  Effect.map(Option.getOrElse(() => 8_000)),
  Effect.orElseSucceed(() => 8_000)
)

/** The one line (or `--json` event) saying where the server listens. */
const announce = (
  json: boolean,
  where: { readonly url: string; readonly host: string; readonly port: number; readonly db: string }
) =>
  Effect.gen(function*() {
    const output = yield* Output
    const now = yield* Clock.currentTimeMillis
    yield* output.out(
      json ?
        JSON.stringify({ event: "server.listening", time: new Date(now).toISOString(), ...where }) :
        `quarry serve: listening on ${where.url} (database ${where.db})`
    )
  })

/** Exits 1: the drain did not finish in time. */
const giveUp = (drainTimeoutMs: number, why: string) =>
  Effect.logError(`drain did not finish within ${drainTimeoutMs}ms${why}; exiting anyway`).pipe(
    // The runs' leases expire and the next start recovers them; nothing committed is lost.
    Effect.andThen(Effect.sync(() => process.exit(1)))
  )

/**
 * The drain delay: not ready (`/readyz` 503), taking no new runs and starting no queued one, but still taking
 * connections and serving, for `delayMs` or until the next signal. Responses close their connections meanwhile, so
 * that clients come back on new ones, which a load balancer that has taken this server out sends elsewhere.
 */
const drainDelay = (
  admission: AdmissionService["Type"],
  connections: Connections.Connections["Type"],
  delayMs: number
) =>
  Effect.scoped(Effect.gen(function*() {
    // Before readiness turns off: a client that saw it off may send the second signal.
    const signal = yield* Signals.takeNext
    yield* admission.stopAdmitting
    yield* connections.endKeepAlive
    yield* Effect.logInfo("drain delay: not ready, still serving").pipe(Effect.annotateLogs({ drainDelayMs: delayMs }))
    const endedBy = yield* Deferred.await(signal).pipe(
      // Interruptible although the drain is not (it runs in a finalizer): once the timer wins, the wait is stopped,
      // not waited for. Around the timeout instead, the interruption that started the drain would end it at once.
      Effect.interruptible,
      Effect.timeoutTo({ duration: delayMs, onSuccess: (name): string => name, onTimeout: () => "timer" })
    )
    yield* Effect.logInfo("drain delay over").pipe(Effect.annotateLogs({ endedBy }))
  }))

/**
 * Drains within the timeout: the admission first, while the HTTP server still answers (readyz and submissions 503,
 * with `Connection: close`), then the connections, with what is left of the timeout for the responses in flight.
 * The drain delay, when there is one, comes first and counts within the timeout. Past the timeout, exits 1.
 */
const drain = (
  admission: AdmissionService["Type"],
  connections: Connections.Connections["Type"],
  timing: { readonly drainDelayMs: number; readonly drainTimeoutMs: number },
  settings: Settings["Type"]
) =>
  Effect.gen(function*() {
    const { drainDelayMs, drainTimeoutMs } = timing
    const deadline = (yield* Clock.currentTimeMillis) + drainTimeoutMs
    // The one bound on the whole shutdown, the layer's finalizers included. A timeout on a step would not do: this
    // runs in a finalizer, where a step cannot be interrupted, so its timeout waits for it.
    yield* Effect.forkDaemon(Effect.andThen(Effect.sleep(drainTimeoutMs), giveUp(drainTimeoutMs, "")))
    if (drainDelayMs > 0) yield* drainDelay(admission, connections, drainDelayMs)
    yield* Effect.logInfo("draining")
    yield* admission.drain
    // TEST-ONLY (QUARRY_TEST_SHUTDOWN_DELAY_MS): keep answering while drained, so tests can probe it.
    const delay = Option.getOrUndefined(settings.testHooks.shutdownDelayMs)
    if (delay !== undefined) yield* Effect.sleep(delay)
    const leftMs = Math.max(0, deadline - (yield* Clock.currentTimeMillis))
    yield* Effect.logInfo("closing connections").pipe(Effect.annotateLogs({ leftMs }))
    const cut = yield* connections.close(leftMs)
    if (cut > 0) yield* giveUp(drainTimeoutMs, `: ${cut} request(s) in flight were cut`)
  })

/** The parsed flags of `serve`. */
type ServeFlags = Command.Command.ParseConfig<typeof options>

/** Refuses what cannot be served safely or at all, before anything is opened. */
const refuseBadFlags = (flags: ServeFlags, db: string, tokens: ReadonlyArray<Redacted.Redacted>) =>
  Effect.gen(function*() {
    if (tokens.length === 0 && !loopback(flags.host) && !flags.insecureNoAuth) {
      return yield* new UsageError({
        message: `refusing to serve ${flags.host} without API tokens: set QUARRY_API_TOKENS (or ` +
          `QUARRY_API_TOKEN_FILE), listen on 127.0.0.1, or pass --insecure-no-auth if the network is trusted`
      })
    }
    if (flags.drainDelay > 0 && flags.drainDelay >= flags.drainTimeout) {
      const [delay, timeout] = [flags.drainDelay / 1000, flags.drainTimeout / 1000]
      return yield* new UsageError({
        message: `--drain-delay (${delay} s) must be shorter than --drain-timeout (${timeout} s), which bounds the ` +
          `whole shutdown, the delay included: raise --drain-timeout (or QUARRY_DRAIN_TIMEOUT) by the delay to ` +
          `leave the runs the time they had`
      })
    }
    if (flags.cluster && !DatabaseUrl.isPostgres(db)) {
      return yield* new UsageError({
        message: `--cluster needs a PostgreSQL database shared by every runner (--db postgres://... or ` +
          `QUARRY_DATABASE_URL); ${db} is a SQLite file, which only one process may write`
      })
    }
    if (flags.distribute && !flags.cluster) {
      return yield* new UsageError({
        message: `--distribute spreads a run's batches over the runners of a cluster: add --cluster (or ` +
          `QUARRY_CLUSTER=true)`
      })
    }
  })

/** The server over the store of `db`, with the extractors and tracing of this process's settings. */
const serverLayer = (
  server: typeof QuarryServer,
  flags: ServeFlags,
  db: string,
  tokens: ReadonlyArray<Redacted.Redacted>,
  registry: Layer.Layer<Extractor.Registry>
) =>
  Effect.gen(function*() {
    const settings = yield* Settings
    const startedAt = yield* Clock.currentTimeMillis
    const tracing = yield* server.Tracing.config.pipe(
      Effect.mapError((error) => new UsageError({ message: `bad OpenTelemetry setting: ${String(error)}` }))
    )
    return server.Server.layer({
      host: flags.host,
      port: flags.port,
      maxActiveRuns: flags.maxActiveRuns,
      maxQueuedRuns: flags.maxQueuedRuns,
      maxBodyBytes: flags.maxBody,
      tokens,
      allowedHosts: flags.allowedHosts,
      recover: !flags.noRecover,
      leaseMs: settings.leaseMs,
      settleDelayMs: Option.getOrUndefined(settings.testHooks.settleDelayMs),
      // Shown on /healthz and in the log: a server URL without its password.
      database: DatabaseUrl.redact(db),
      version: "0.1.0",
      startedAt,
      tracing: Option.getOrUndefined(tracing),
      cluster: flags.cluster ?
        {
          runnerHost: flags.runnerHost,
          runnerPort: flags.runnerPort,
          leaseMs: yield* clusterLeaseMs,
          distribute: flags.distribute,
          distributeTimeoutMs: flags.distributeTimeout,
          stopGraceMs: Option.getOrUndefined(settings.testHooks.stopGraceMs)
        } :
        undefined
    }).pipe(
      // Provided before the store, whose own registry (for the CLI's commands) has no llm.
      Layer.provide(registry),
      Layer.provideMerge(Store.layer(db, settings, {
        // `pg_stat_activity` tells the runners' sessions apart.
        applicationName: flags.cluster ? `quarry ${flags.runnerHost}:${flags.runnerPort}` : undefined
      }))
    )
  })

/** Builds the server, says where it listens, and serves until interrupted; then drains. */
const serve = (
  server: typeof QuarryServer,
  flags: ServeFlags,
  db: string,
  tokens: ReadonlyArray<Redacted.Redacted>
) =>
  Effect.scoped(Effect.gen(function*() {
    const settings = yield* Settings
    // The extractors first: bad `QUARRY_LLM_*` settings exit 2 before the database is opened (or created).
    const registry = yield* Layer.build(registryLayer(settings))
    const layer = yield* serverLayer(server, flags, db, tokens, Layer.succeedContext(registry))
    const context = yield* Layer.build(layer).pipe(
      Effect.catchTag("ServeError", (error) =>
        Effect.fail(
          new UsageError({ message: `cannot listen on ${flags.host}:${flags.port}: ${String(error.cause)}` })
        )),
      Effect.catchTag("SocketServerError", (error) =>
        Effect.fail(
          new UsageError({
            message: `cannot listen for runners on ${flags.runnerHost}:${flags.runnerPort}: ${String(error.cause)}`
          })
        ))
    )
    // Drain before the layer closes (a finalizer added after it runs first): the HTTP server still answers (readyz
    // 503, submissions 503) meanwhile, the drain delay included. Added before anything is announced, so that a signal
    // right after the server listens drains too: without the drain, closing the server waits for every connection, a
    // quiet one forever.
    const admission = Context.get(context, server.Admission.Admission)
    const connections = Context.get(context, Connections.Connections)
    const timing = { drainDelayMs: flags.drainDelay, drainTimeoutMs: flags.drainTimeout }
    yield* Effect.addFinalizer(() => drain(admission, connections, timing, settings))
    const address = Context.get(context, HttpServer.HttpServer).address
    const port = address._tag === "TcpAddress" ? address.port : flags.port
    const url = `http://${flags.host.includes(":") ? `[${flags.host}]` : flags.host}:${port}`
    yield* announce(flags.json, { url, host: flags.host, port, db: DatabaseUrl.redact(db) })
    // The default extractor's modules (NLP models) load in the background now, not in the first submission (which
    // took 4 s under load in the service benchmark).
    yield* Effect.forkScoped(Effect.ignore(Context.get(context, Extractor.Registry).get(Extractors.defaultName)))
    return yield* Effect.never
  }))

/**
 * The `serve` command.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = Command.make("serve", options, (flags) =>
  Effect.gen(function*() {
    const db = yield* Flags.resolveDb(flags.db)
    const tokens = yield* readTokens
    yield* refuseBadFlags(flags, db, tokens)
    yield* Inputs.checkDatabase(db)
    // Loaded here, not at the top: the server (its API reference UI, OpenTelemetry) would slow every other command.
    const server = yield* Effect.promise(() => import("@quarry/server"))
    yield* serve(server, flags, db, tokens)
  }).pipe(
    // A drained server exits 0: the interruption by the signal was the request to stop, and it was honoured.
    Effect.onInterrupt(() => Effect.sync(() => process.exit(0))),
    Logger.withMinimumLogLevel(LogLevel.Info),
    Effect.locally(FiberRef.currentLoggers, HashSet.make(Logger.withConsoleError(Logger.jsonLogger)))
  )).pipe(Command.withDescription("Serve the HTTP API: submit, watch and fetch runs; drain on SIGTERM."))
