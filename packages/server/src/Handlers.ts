/**
 * The handlers of the API: thin translations between HTTP and `Admission`/`RunStore`, with domain errors mapped to
 * their statuses.
 *
 * @since 0.1.0
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpIncomingMessage from "@effect/platform/HttpIncomingMessage"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Chunking from "@quarry/core/Chunking"
import * as Compensation from "@quarry/core/Compensation"
import * as DatabaseUrl from "@quarry/core/DatabaseUrl"
import * as DefaultOntology from "@quarry/core/DefaultOntology"
import * as Durability from "@quarry/core/Durability"
import type { UnknownExtractor } from "@quarry/core/Errors"
import * as Extractor from "@quarry/core/Extractor"
import * as Ontology from "@quarry/core/Ontology"
import * as Run from "@quarry/core/Run"
import { RunStore } from "@quarry/core/RunStore"
import * as CoreRunView from "@quarry/core/RunView"
import * as Workflow from "@quarry/core/Workflow"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { createHash } from "node:crypto"
import * as path from "node:path"
import * as Admission from "./Admission.js"
import { QuarryApi, ResumeParams, SubmitRun } from "./Api.js"
import { ApiError, from, response as errorResponse } from "./ApiError.js"
import * as Artifacts from "./Artifacts.js"
import * as DecodeErrors from "./DecodeErrors.js"
import * as Metrics from "./Metrics.js"
import * as RequestBody from "./RequestBody.js"
import { tooLargeMessage } from "./RequestLog.js"
import * as RunEvents from "./RunEvents.js"
import * as RunView from "./RunView.js"

/**
 * What the handlers need to know about the server.
 *
 * @since 0.1.0
 * @category tags
 */
export class ServerInfo extends Context.Tag("@quarry/server/ServerInfo")<ServerInfo, {
  readonly version: string
  readonly database: string
  /** Where artifacts are written (the database's directory by default). */
  readonly artifacts: string
  readonly startedAt: number
  readonly pollMs: number
  readonly heartbeatMs: number
}>() {}

/** The store's message points at `quarry runs`; an API client lists runs with the API. */
const notFound = (error: { readonly runId: string }) =>
  new ApiError({
    status: 404,
    tag: "RunNotFound",
    message: `run "${error.runId}" does not exist; GET /v1/runs lists the runs`
  })
const conflict = from(409)
const unprocessable = from(422)
/** `llm` is registered only when the server starts with a model: say so, rather than only what is available. */
const unknownExtractor = (error: UnknownExtractor) =>
  error.name !== "llm" ? unprocessable(error) : new ApiError({
    status: 422,
    tag: error._tag,
    message: `${error.message}; the llm extractor runs on a server started with QUARRY_LLM_MODEL set (and the other ` +
      `QUARRY_LLM_* settings it needs)`
  })
const internal = (error: { readonly _tag: string; readonly message: string }) =>
  Effect.zipRight(Effect.logError("request failed", error), Effect.fail(from(500)(error)))

/** A full queue answers with when to come back. */
const queueFull = (e: { readonly _tag: string; readonly message: string }) =>
  Effect.succeed(errorResponse(429, e._tag, e.message, { "retry-after": "5" }))

/** The runs waiting to execute, as read now. */
const waitingRuns = Effect.flatMap(Admission.Admission, (admission) => admission.waitingRuns).pipe(
  Effect.catchTag("PersistenceError", internal)
)

/** Whether the run `runId` waits to execute, as read now. */
const waitingRun = (runId: Run.RunId) =>
  Effect.flatMap(Admission.Admission, (admission) => admission.waitingRun(runId)).pipe(
    Effect.catchTag("PersistenceError", internal)
  )

/**
 * The view of the run `read` gives, read after the waiting runs: a run that a slot or a runner takes in between shows
 * executing, not at the end it had before (what a resumed run read first, then not found waiting any more, showed).
 */
const viewOf = <E, R>(runId: Run.RunId, read: Effect.Effect<Run.Run, E, R>) =>
  Effect.gen(function*() {
    const waiting = yield* waitingRun(runId)
    const run = yield* read
    const now = yield* Clock.currentTimeMillis
    return yield* RunView.make(run, waiting(run), now).pipe(Effect.catchTag("PersistenceError", internal))
  })

const view = (run: Run.Run) => viewOf(run.id, Effect.succeed(run))

const getRun = (runId: Run.RunId) =>
  Effect.flatMap(RunStore, (store) => store.getRun(runId)).pipe(
    Effect.catchTags({ RunNotFound: (e) => Effect.fail(notFound(e)), PersistenceError: internal })
  )

const json = (body: unknown, status: number, headers: Record<string, string> = {}) =>
  HttpServerResponse.json(body, { status, headers }).pipe(Effect.orDie)

const sha256 = (text: string) => createHash("sha256").update(text, "utf8").digest("hex")

const badRequest = (tag: string, message: string) => new ApiError({ status: 400, tag, message })
const invalid = (tag: string, message: string) => new ApiError({ status: 422, tag, message })

/**
 * Reads and decodes the submission: 415 for a body not sent as JSON, 400 for bytes that are not JSON text (or nest too
 * deep to decode), 422 for a body that breaks the schema.
 */
const readSubmission = (request: HttpServerRequest.HttpServerRequest) =>
  Effect.gen(function*() {
    const contentType = request.headers["content-type"]
    if (!RequestBody.isJson(contentType)) {
      return yield* new ApiError({
        status: 415,
        tag: "UnsupportedMediaType",
        message: `the request body must be JSON sent with Content-Type: application/json (got ${
          contentType ?? "no Content-Type"
        }); nothing was stored`
      })
    }
    const maxBodyBytes = Option.getOrElse(yield* HttpIncomingMessage.MaxBodySize, () => Infinity)
    // A chunked body has no Content-Length to refuse it by before it is read (RequestLog): its size shows here.
    const bytes = yield* RequestBody.read(request, Number(maxBodyBytes)).pipe(
      Effect.catchTags({
        BodyTooLarge: (e) =>
          new ApiError({ status: 413, tag: "PayloadTooLarge", message: tooLargeMessage(e.maxBytes) }),
        BodyUnreadable: () => badRequest("RequestError", "the request body could not be read")
      })
    )
    const text = yield* Effect.try({
      try: () => new TextDecoder("utf-8", { fatal: true }).decode(bytes),
      catch: () => badRequest("InvalidUtf8", "the request body is not valid UTF-8; send JSON text")
    })
    const body = yield* Effect.try({
      try: (): unknown => JSON.parse(text),
      catch: (error) => badRequest("InvalidJson", `the request body is not JSON: ${String(error)}`)
    })
    if (RequestBody.nestsDeeperThan(body, RequestBody.maxJsonDepth)) {
      return yield* badRequest(
        "JsonTooDeep",
        `the request body nests arrays and objects deeper than ${RequestBody.maxJsonDepth} levels; a submission ` +
          "needs 2 (the body, then chunking or budget)"
      )
    }
    const submission = yield* Schema.decodeUnknown(SubmitRun, { onExcessProperty: "error", errors: "all" })(body).pipe(
      Effect.mapError((error) =>
        invalid("InvalidRequest", DecodeErrors.describe(ParseResult.ArrayFormatter.formatErrorSync(error), "body"))
      )
    )
    // As `quarry start --run-id` refuses it: every other command would read the run's id as an option.
    if (submission.runId?.startsWith("-") === true) {
      return yield* invalid(
        "InvalidRequest",
        `runId: a run id must not start with '-', which the CLI would read as an option (quarry status ${submission.runId})`
      )
    }
    if (submission.input.trim().length === 0) {
      return yield* invalid("EmptyInput", "input is empty; send the text to extract from")
    }
    if (submission.input.includes("\u0000")) {
      return yield* invalid("BinaryInput", "input contains NUL characters: it looks binary; send UTF-8 text")
    }
    for (const [name, text] of [["input", submission.input], ["ontology", submission.ontology ?? ""]] as const) {
      const at = Workflow.loneSurrogateAt(text)
      if (at !== undefined) {
        return yield* invalid(
          "MalformedText",
          `${name} holds a lone UTF-16 surrogate (\\u${text.charCodeAt(at).toString(16)}) at character ${at}: ` +
            "it is not text UTF-8 can store; send well-formed Unicode"
        )
      }
    }
    return submission
  })

/** Everything a submission stores, validated: what `Workflow.create` gets, and the digests to compare with. */
const plan = (submission: SubmitRun, info: ServerInfo["Type"]) =>
  Effect.gen(function*() {
    const chunking = yield* Either.match(Chunking.validate(submission.chunking ?? {}), {
      onLeft: (e) => Effect.fail(unprocessable(e)),
      onRight: Effect.succeed
    })
    const ontologyText = submission.ontology ?? DefaultOntology.turtle
    const ontology = yield* Ontology.parse(ontologyText, { source: "in the request body", format: "turtle" }).pipe(
      Effect.mapError(unprocessable)
    )
    // Nothing could be typed by it: every mention would be dropped, silently (as `quarry start --ontology` refuses).
    if (ontology.classes.length === 0) {
      return yield* invalid(
        "OntologyError",
        "the ontology declares no classes (no rdfs:Class or owl:Class), so nothing could be extracted with it; " +
          "send an ontology with classes, or leave ontology out for the built-in one"
      )
    }
    const runId = submission.runId ?? (yield* Workflow.makeRunId)
    const format = submission.format ?? "turtle"
    const output = path.join(info.artifacts, `${runId}.${Run.formatExtension[format]}`)
    // Compared with symbolic links resolved, as `quarry start --out` compares them.
    const overwritten = DatabaseUrl.overwrittenBy(output, info.database)
    if (Option.isSome(overwritten)) {
      const file = overwritten.value
      return yield* invalid(
        "ArtifactOverDatabase",
        Option.match(file.companion, {
          onNone: () =>
            `run ${runId}'s artifact ${output} would be the database's own file (${file.path}) and replace it`,
          onSome: (companion) =>
            `run ${runId}'s artifact ${output} would be the database's ${companion.what} (${file.path}) and corrupt it`
        }) + "; choose another runId or format"
      )
    }
    const create: Workflow.CreateOptions = {
      runId,
      input: submission.input,
      chunking,
      extractor: submission.extractor ?? "offline",
      ontology: { text: ontologyText, format: "turtle" },
      concurrency: submission.concurrency,
      output: { path: output, format },
      onBatchError: submission.onBatchError,
      provenance: submission.provenance
    }
    return { runId, create, chunking, ontologySha256: ontology.sha256 }
  })

/** Whether a stored run is what this submission would create (the idempotency check of `runId`). */
const samePlan = (run: Run.Run, submitted: Effect.Effect.Success<ReturnType<typeof plan>>) => {
  const p = run.plan
  const c = submitted.create
  return p.inputSha256 === sha256(c.input) && p.extractor.name === c.extractor &&
    p.outputFormat === c.output.format && p.onBatchError === (c.onBatchError ?? "fail") &&
    p.provenance === (c.provenance ?? false) && p.concurrency === (c.concurrency ?? 1) &&
    p.chunking.strategy === submitted.chunking.strategy && p.chunking.windowSize === submitted.chunking.windowSize &&
    p.chunking.overlap === submitted.chunking.overlap && p.chunking.batchSize === submitted.chunking.batchSize &&
    Option.contains(p.ontologySha256, submitted.ontologySha256)
}

/** A budget for comparing, as the run JSON shows it: without a limit it is no budget. */
const budgetKey = (budget: Run.RunBudget | undefined) => JSON.stringify(CoreRunView.budget(budget ?? {}))

/**
 * Whether a stored run executes with the budget a submission gives: its waiting execution's (queued, or still
 * executing on this server), else the run's own.
 */
const sameBudget = (run: Run.Run, budget: SubmitRun["budget"]) =>
  Effect.gen(function*() {
    const waiting = yield* (yield* RunStore).queuedExecution(run.id).pipe(Effect.catchTag("PersistenceError", internal))
    const recorded = Option.match(waiting, { onNone: () => run.budget, onSome: (execution) => execution.budget })
    return budgetKey(Option.getOrUndefined(recorded)) === budgetKey(budget)
  })

const submit = (request: HttpServerRequest.HttpServerRequest) =>
  Effect.gen(function*() {
    const info = yield* ServerInfo
    const store = yield* RunStore
    const admission = yield* Admission.Admission
    const submission = yield* readSubmission(request)
    const planned = yield* plan(submission, info)
    const runId = planned.runId
    const existing = yield* store.getRun(runId).pipe(Effect.option)
    if (Option.isSome(existing)) {
      if (!samePlan(existing.value, planned) || !(yield* sameBudget(existing.value, submission.budget))) {
        return yield* new ApiError({
          status: 409,
          tag: "RunAlreadyExists",
          message: `run ${runId} already exists with a different input, parameters or budget; choose another runId`
        })
      }
      return yield* json(yield* view(existing.value), 200)
    }
    const run = yield* admission.submit(planned.create, { budget: submission.budget }).pipe(
      Effect.catchTags({
        QueueFull: (e) => Effect.fail(e),
        Draining: (e) => Effect.fail(from(503)(e)),
        ChunkingError: (e) => Effect.fail(unprocessable(e)),
        OntologyError: (e) => Effect.fail(unprocessable(e)),
        UnknownExtractor: (e) => Effect.fail(unknownExtractor(e)),
        RunAlreadyExists: (e) => Effect.fail(conflict(e)),
        PersistenceError: internal
      })
    )
    return yield* json(yield* view(run), 202, { location: `/v1/runs/${run.id}` })
  }).pipe(Effect.catchTag("QueueFull", queueFull))

type Order = "oldest" | "newest"

/** A page's cursor: the key of its last run, and the order it was listed in (cursors of before carry none). */
const cursorOf = (run: Run.Run, order: Order) =>
  Buffer.from(JSON.stringify(order === "oldest" ? [run.createdAt, run.id] : [run.createdAt, run.id, order]))
    .toString("base64url")
const CursorKey = Schema.parseJson(
  Schema.Tuple(Schema.Number, Schema.String, Schema.optionalElement(Schema.Literal("newest")))
)

const list = (
  params: {
    readonly status?: Run.RunStatus | undefined
    readonly limit?: number | undefined
    readonly cursor?: string | undefined
    readonly order?: Order | undefined
  }
) =>
  Effect.gen(function*() {
    const store = yield* RunStore
    const limit = params.limit ?? 100
    const order = params.order ?? "oldest"
    const after = params.cursor === undefined ? Option.none() : Option.some(
      yield* Schema.decodeUnknown(CursorKey)(Buffer.from(params.cursor, "base64url").toString("utf8")).pipe(
        Effect.mapError(() => badRequest("InvalidCursor", "cursor is not one this server handed out; start without it"))
      )
    )
    const listed = Option.isSome(after) ? after.value[2] ?? "oldest" : order
    if (listed !== order) {
      return yield* badRequest(
        "InvalidCursor",
        `cursor continues a list in order=${listed}; ask with that order, or start without the cursor`
      )
    }
    // Keyset in SQL: runs are ordered by (created_at, id), either way; a page starts after the cursor's key. One run
    // more than the page tells whether there is a next one.
    const waiting = yield* waitingRuns
    const rest = yield* store.listRuns({
      status: params.status,
      after: Option.getOrUndefined(Option.map(after, ([createdAt, id]) => ({ createdAt, id }))),
      limit: limit + 1,
      newestFirst: order === "newest"
    }).pipe(Effect.catchTag("PersistenceError", internal))
    const page = rest.slice(0, limit)
    const last = page.at(-1)
    const now = yield* Clock.currentTimeMillis
    return {
      runs: yield* RunView.makePage(page, waiting, now).pipe(
        Effect.catchTag("PersistenceError", internal)
      ),
      nextCursor: rest.length > limit && last !== undefined ? cursorOf(last, order) : null
    }
  })

const events = (runId: Run.RunId, request: HttpServerRequest.HttpServerRequest) =>
  Effect.gen(function*() {
    const admission = yield* Admission.Admission
    const waiting = Effect.map(
      admission.waitingRun(runId),
      (waitingRun) => (run: Run.Run) => Option.isSome(waitingRun(run))
    )
    const waitsNow = yield* Effect.catchTag(waiting, "PersistenceError", internal)
    const run = yield* getRun(runId)
    const info = yield* ServerInfo
    const store = yield* RunStore
    const lastEventId = RunEvents.parseEventId(request.headers["last-event-id"])
    // The client saw the final event of a finished run (not one resumed since): 204 tells an EventSource to stop
    // reconnecting.
    if (!waitsNow(run) && Option.exists(lastEventId, (seen) => RunEvents.sawEnd(run, seen))) {
      return HttpServerResponse.empty({ status: 204 })
    }
    const local = yield* admission.isLocal(runId)
    const body = RunEvents.stream(runId, {
      lastEventId,
      waiting,
      pollMs: info.pollMs,
      local: local ? Option.some(admission.changes) : Option.none(),
      heartbeatMs: info.heartbeatMs,
      until: Deferred.await(admission.drained)
    }).pipe(Stream.provideService(RunStore, store))
    return HttpServerResponse.stream(body, {
      contentType: "text/event-stream",
      headers: { "cache-control": "no-cache", "x-accel-buffering": "no" }
    })
  })

/**
 * Deletes a finished run as `quarry cancel --purge` would undo it: its compensation steps that are not done run
 * first (here, with the handlers this process has), and only when all succeed are its rows, its artifact and its
 * cached exports removed. A failed step keeps everything (409 `CompensationFailed`): fix its cause and delete again.
 */
const remove = (runId: Run.RunId) =>
  Effect.gen(function*() {
    const store = yield* RunStore
    const info = yield* ServerInfo
    const extractors = yield* Extractor.Registry
    const run = yield* getRun(runId)
    if (!Run.isFinished(run.status)) {
      return yield* new ApiError({
        status: 409,
        tag: "InvalidRunState",
        message: `run ${runId} is ${run.status}: only a finished run can be deleted; cancel it first`
      })
    }
    yield* Compensation.run(runId, `${run.status}, deleted through the API`).pipe(
      Effect.provideService(Extractor.Registry, extractors),
      Effect.catchTag("CompensationFailed", (e) => Effect.fail(conflict(e)))
    )
    yield* store.deleteRun(runId).pipe(
      Effect.catchTags({
        RunNotFound: (e) => Effect.fail(notFound(e)),
        InvalidRunState: (e) => Effect.fail(conflict(e)),
        PersistenceError: internal
      })
    )
    yield* Artifacts.removeExports(info.artifacts, runId)
  })

/** The budget a resume gives: none (the run keeps its own), an empty one (it lifts the run's) or new limits. */
const resumeBudget = (params: typeof ResumeParams.Type): Run.RunBudget | undefined =>
  params.noBudget === true ? {} : params.maxCostUsd === undefined && params.maxTokens === undefined ? undefined : {
    maxCostUsd: params.maxCostUsd,
    maxTokens: params.maxTokens
  }

const runsGroup = HttpApiBuilder.group(QuarryApi, "runs", (handlers) =>
  handlers
    .handleRaw("submit", ({ request }) => submit(request))
    .handle("list", ({ urlParams }) => list(urlParams))
    .handle("get", ({ path }) => viewOf(path.id, getRun(path.id)))
    .handle("cancel", ({ path }) =>
      Effect.flatMap(Admission.Admission, (a) => a.cancel(path.id)).pipe(
        Effect.catchTags({
          RunNotFound: (e) => Effect.fail(notFound(e)),
          InvalidRunState: (e) => Effect.fail(conflict(e)),
          PersistenceError: internal
        }),
        Effect.zipRight(viewOf(path.id, getRun(path.id)))
      ))
    .handle("resume", ({ path, urlParams }) =>
      Effect.flatMap(Admission.Admission, (a) =>
        a.resume(path.id, {
          retrySkipped: urlParams.retrySkipped,
          budget: resumeBudget(urlParams)
        })).pipe(
          Effect.catchTags({
            RunNotFound: (e) => Effect.fail(notFound(e)),
            InvalidRunState: (e) => Effect.fail(conflict(e)),
            Draining: (e) => Effect.fail(from(503)(e)),
            PersistenceError: internal
          }),
          // Read again: its slot or its runner may have taken it already.
          Effect.zipRight(viewOf(path.id, getRun(path.id))),
          Effect.catchTag("QueueFull", queueFull)
        ))
    .handle("delete", ({ path }) => remove(path.id))
    .handle("artifact", ({ path, urlParams }) =>
      Effect.gen(function*() {
        const info = yield* ServerInfo
        return yield* Artifacts.respond(yield* getRun(path.id), Option.fromNullable(urlParams.format), info.artifacts)
      }))
    .handle("events", ({ path, request }) => events(path.id, request)))

const probe = (status: string) => ({ status })

const probesGroup = HttpApiBuilder.group(QuarryApi, "probes", (handlers) =>
  handlers
    .handle("livez", () => Effect.succeed(probe("ok")))
    .handle("readyz", () =>
      Effect.gen(function*() {
        const admission = yield* Admission.Admission
        if ((yield* admission.stats).draining) {
          return yield* new ApiError({ status: 503, tag: "Draining", message: "the server is shutting down" })
        }
        const sql = yield* SqlClient.SqlClient
        // Open and migrated: a transaction over the runs table answers (busy or broken databases do not).
        yield* sql.withTransaction(sql`SELECT count(*) FROM runs`).pipe(
          Effect.mapError((e) => new ApiError({ status: 503, tag: "DatabaseUnavailable", message: e.message }))
        )
        return probe("ready")
      }))
    .handle("startupz", () =>
      Effect.gen(function*() {
        const admission = yield* Admission.Admission
        if (!(yield* admission.stats).started) {
          return yield* new ApiError({
            status: 503,
            tag: "Starting",
            message: "boot recovery is still scheduling runs"
          })
        }
        return probe("started")
      }))
    .handle("healthz", () =>
      Effect.gen(function*() {
        const info = yield* ServerInfo
        const stats = yield* (yield* Admission.Admission).stats
        const now = yield* Clock.currentTimeMillis
        // Without quick_check: it reads every page of the file while holding the database's only connection, so a
        // monitor polling /healthz would stall batch commits for seconds on a large database. The server checks the
        // file when it opens it; `quarry doctor` runs quick_check on demand.
        const report = yield* Durability.inspect(info.database, { quickCheck: false }).pipe(Effect.option)
        return {
          version: info.version,
          uptimeMs: now - info.startedAt,
          database: {
            path: info.database,
            durable: Option.exists(report, (r) => r.durable),
            quickCheck: Option.match(report, { onNone: () => "unknown", onSome: (r) => r.quickCheck }),
            problems: Option.match(report, { onNone: () => ["the durability report failed"], onSome: (r) => r.reasons })
          },
          runs: { active: stats.active, queued: stats.queued },
          draining: stats.draining,
          started: stats.started,
          ...(stats.cluster === undefined ? {} : { cluster: stats.cluster })
        }
      }))
    .handle("metrics", () => Effect.flatten(Metrics.Scrape)))

/**
 * Every handler of the API.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = Layer.mergeAll(runsGroup, probesGroup)
