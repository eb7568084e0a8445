/**
 * The HTTP API, declared once: endpoints with their payload, parameter, success and error schemas. The handlers
 * (`Handlers`), the OpenAPI document (`/openapi.json`) and any client come from this declaration.
 *
 * @since 0.1.0
 */
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiMiddleware from "@effect/platform/HttpApiMiddleware"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as HttpApiSecurity from "@effect/platform/HttpApiSecurity"
import * as OpenApi from "@effect/platform/OpenApi"
import * as Run from "@quarry/core/Run"
import * as Record from "effect/Record"
import * as Schema from "effect/Schema"
import * as ApiError from "./ApiError.js"
import * as RunView from "./RunView.js"

/** A cost limit, as `--max-cost` takes it: US dollars, finite and greater than 0. */
const MaxCostUsd = <E>(number: Schema.Schema<number, E>) =>
  Schema.optional(number.pipe(Schema.finite(), Schema.positive())).annotations({
    description: "Stop before the run's spend would exceed this many US dollars (greater than 0)."
  })

/** A token limit, as `--max-tokens` takes it: a whole number greater than 0. */
const MaxTokens = <E>(number: Schema.Schema<number, E>) =>
  Schema.optional(number.pipe(Schema.int(), Schema.positive())).annotations({
    description: "Stop before the run's prompt + completion tokens would exceed this (a whole number above 0)."
  })

/**
 * The body of `POST /v1/runs`. Everything the output depends on is stored with the run.
 *
 * @since 0.1.0
 * @category schemas
 */
export const SubmitRun = Schema.Struct({
  input: Schema.String.annotations({ description: "The UTF-8 text to extract from." }),
  runId: Schema.optional(Run.RunId).annotations({ description: "Makes the submission idempotent." }),
  extractor: Schema.optional(Schema.String).annotations({ description: "The extractor (default offline)." }),
  ontology: Schema.optional(Schema.String).annotations({
    description: "An ontology in Turtle (default: the built-in FOAF + schema.org subset)."
  }),
  chunking: Schema.optional(Schema.Struct({
    strategy: Schema.optional(Schema.String),
    windowSize: Schema.optional(Schema.Number),
    overlap: Schema.optional(Schema.Number),
    batchSize: Schema.optional(Schema.Number)
  })),
  concurrency: Schema.optional(Schema.Number),
  format: Schema.optional(Run.OutputFormat),
  onBatchError: Schema.optional(Run.BatchErrorPolicy),
  provenance: Schema.optional(Schema.Boolean),
  budget: Schema.optional(
    Schema.Struct({
      maxCostUsd: MaxCostUsd(Schema.Number),
      maxTokens: MaxTokens(Schema.Number)
    }).annotations({ identifier: "Budget" })
  ).annotations({ description: "Spend limits, kept with the run: a resume without a budget keeps them." })
}).annotations({ identifier: "SubmitRun" })

/**
 * @since 0.1.0
 * @category models
 */
export type SubmitRun = typeof SubmitRun.Type

/**
 * The query of `POST /v1/runs/{id}/resume`. Its budget (stored with its queued execution) replaces the run's, as
 * `budget` of a submission; `noBudget=true` lifts it; neither keeps it.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ResumeParams = Schema.Struct({
  retrySkipped: Schema.optional(Schema.BooleanFromString),
  maxCostUsd: MaxCostUsd(Schema.NumberFromString),
  maxTokens: MaxTokens(Schema.NumberFromString),
  noBudget: Schema.optional(Schema.BooleanFromString).annotations({
    description: "true: go on without the run's budget, and keep none."
  })
}).pipe(
  Schema.filter((params) =>
    params.noBudget !== true || (params.maxCostUsd === undefined && params.maxTokens === undefined) ||
    "noBudget=true cannot go with maxCostUsd or maxTokens: it lifts the run's budget, they set a new one"
  )
)

/**
 * Bearer-token authorization of the `/v1` routes.
 *
 * @since 0.1.0
 * @category middleware
 */
export class Authorization extends HttpApiMiddleware.Tag<Authorization>()("@quarry/server/Authorization", {
  failure: ApiError.Unauthorized,
  security: { bearer: HttpApiSecurity.bearer }
}) {}

const RunPath = Schema.Struct({ id: Run.RunId })

/**
 * The media type of each artifact format, as `GET /v1/runs/{id}/artifact` sends it.
 *
 * @since 0.1.0
 * @category constants
 */
export const artifactMediaTypes: Readonly<Record<Run.OutputFormat, string>> = {
  turtle: "text/turtle; charset=utf-8",
  ntriples: "application/n-triples; charset=utf-8",
  jsonl: "application/x-ndjson; charset=utf-8"
}

/** What the OpenAPI transforms below rewrite of a response, an operation and the document (typed loosely there). */
type Response = Readonly<Record<string, unknown>>
type Operation = { readonly responses?: Readonly<Record<string, Response>> | undefined }
type Document = {
  readonly info?: Readonly<Record<string, unknown>> | undefined
  readonly paths?: Readonly<Record<string, Readonly<Record<string, Operation>>>> | undefined
  readonly components?: Readonly<Record<string, unknown>> | undefined
}

const withResponses = (operation: Operation, rewrite: (response: Response, status: string) => Response): Operation => ({
  ...operation,
  responses: Record.map(operation.responses ?? {}, rewrite)
})

/** An artifact's answer (200, 206) in each format's media type: a declared success has only one. */
const artifactContent = (operation: Operation): Operation =>
  withResponses(operation, (response, status) =>
    status === "200" || status === "206" ?
      {
        ...response,
        content: Record.fromEntries(
          Object.values(artifactMediaTypes).map((type) => [type, { schema: { type: "string" } }])
        )
      } :
      response)

const errorContent = { "application/json": { schema: { $ref: "#/components/schemas/Error" } } }

/**
 * What no operation declares: a 401's challenge (RFC 9110 requires it), and the answers of requests that reach no
 * operation (`NoRoute`).
 */
const undeclared = (document: Document): Document => ({
  ...document,
  info: {
    ...document.info,
    description: "Errors are `{ \"error\": { \"tag\", \"message\" } }`. Besides each operation's answers: a path the " +
      "API takes under other methods answers `405` (`#/components/responses/MethodNotAllowed`, with `Allow`), a " +
      "path that is no route `404` (`#/components/responses/RouteNotFound`), and a request a browser sends for " +
      "another site's page `403`."
  },
  paths: Record.map(
    document.paths ?? {},
    (operations) =>
      Record.map(operations, (operation) =>
        withResponses(operation, (response, status) =>
          status === "401" ?
            {
              ...response,
              headers: {
                "WWW-Authenticate": { description: "The scheme to send: `Bearer`", schema: { type: "string" } }
              }
            } :
            response))
  ),
  components: {
    ...document.components,
    responses: {
      MethodNotAllowed: {
        description: "`MethodNotAllowed`: the path is a route under other methods, those of `Allow`",
        headers: { Allow: { description: "The methods the path takes", schema: { type: "string" } } },
        content: errorContent
      },
      RouteNotFound: { description: "`RouteNotFound`: the path is no route of the API", content: errorContent }
    }
  }
})

/**
 * The run endpoints under `/v1`.
 *
 * @since 0.1.0
 * @category groups
 */
export class Runs extends HttpApiGroup.make("runs")
  .add(
    HttpApiEndpoint.post("submit", "/runs")
      .setPayload(SubmitRun)
      .addSuccess(RunView.RunView, { status: 202 })
      // The same body again (idempotent on runId): the stored run.
      .addSuccess(RunView.RunView.annotations({ description: "The run this same body created before" }), {
        status: 200
      })
      .addError(ApiError.BadRequest)
      .addError(ApiError.Conflict)
      .addError(ApiError.PayloadTooLarge)
      .addError(ApiError.UnsupportedMediaType)
      .addError(ApiError.Unprocessable)
      .addError(ApiError.TooManyRequests)
      .addError(ApiError.Unavailable)
  )
  .add(
    HttpApiEndpoint.get("list", "/runs")
      .setUrlParams(Schema.Struct({
        status: Schema.optional(Run.RunStatus),
        limit: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 1000))),
        cursor: Schema.optional(Schema.String),
        order: Schema.optional(
          Schema.Literal("oldest", "newest").annotations({
            description: "oldest (the default) or newest first; a cursor continues the order it was handed out in"
          })
        )
      }))
      .addSuccess(RunView.RunPage)
      .addError(ApiError.BadRequest)
  )
  .add(HttpApiEndpoint.get("get", "/runs/:id").setPath(RunPath).addSuccess(RunView.RunView).addError(ApiError.NotFound))
  .add(
    HttpApiEndpoint.post("cancel", "/runs/:id/cancel")
      .setPath(RunPath)
      .addSuccess(RunView.RunView)
      .addError(ApiError.NotFound)
      .addError(ApiError.Conflict)
  )
  .add(
    HttpApiEndpoint.post("resume", "/runs/:id/resume")
      .setPath(RunPath)
      .setUrlParams(ResumeParams)
      .addSuccess(RunView.RunView, { status: 202 })
      .addError(ApiError.NotFound)
      .addError(ApiError.Conflict)
      .addError(ApiError.TooManyRequests)
      .addError(ApiError.Unavailable)
  )
  .add(
    HttpApiEndpoint.del("delete", "/runs/:id")
      .setPath(RunPath)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(ApiError.NotFound)
      .addError(ApiError.Conflict)
  )
  .add(
    HttpApiEndpoint.get("artifact", "/runs/:id/artifact")
      .setPath(RunPath)
      .setUrlParams(Schema.Struct({
        format: Schema.optional(Run.OutputFormat).annotations({
          description: "turtle, ntriples or jsonl (default: the run's own format, its stored artifact)"
        })
      }))
      .addSuccess(
        HttpApiSchema.Text({ contentType: "application/octet-stream" }).annotations({
          description: "the artifact, in its format's media type"
        })
      )
      .addSuccess(
        HttpApiSchema.Text({ contentType: "application/octet-stream" }).annotations(
          HttpApiSchema.annotations({
            status: 206,
            description: "the bytes of a `Range` (one range; `If-Range` honoured)"
          })
        )
      )
      .addSuccess(HttpApiSchema.Empty(304))
      .addError(ApiError.NotFound)
      .addError(ApiError.Conflict)
      .addError(ApiError.RangeNotSatisfiable)
      .annotate(OpenApi.Transform, artifactContent)
  )
  .add(
    HttpApiEndpoint.get("events", "/runs/:id/events")
      .setPath(RunPath)
      .addSuccess(HttpApiSchema.Text({ contentType: "text/event-stream" }))
      .addSuccess(
        HttpApiSchema.Empty(204).annotations({
          description: "the run finished and `Last-Event-ID` names its final event: an EventSource stops reconnecting"
        })
      )
      .addError(ApiError.NotFound)
  )
  .middleware(Authorization)
  .addError(ApiError.BadRequest)
  .addError(ApiError.Internal)
  .prefix("/v1")
{}

const Health = Schema.Struct({
  version: Schema.String,
  uptimeMs: Schema.Number,
  database: Schema.Struct({
    path: Schema.String,
    durable: Schema.Boolean,
    /** `skipped`: /healthz never runs quick_check (it reads the whole file); `quarry doctor` does. */
    quickCheck: Schema.String,
    problems: Schema.Array(Schema.String)
  }),
  runs: Schema.Struct({ active: Schema.Int, queued: Schema.Int }),
  draining: Schema.Boolean,
  started: Schema.Boolean,
  /**
   * With `--cluster`: this runner's id (host:port), how many shards it owns, the runs executing here, its
   * `--max-active-runs` and the runs of its shards waiting for one of those slots.
   */
  cluster: Schema.optional(Schema.Struct({
    runnerId: Schema.String,
    ownedShards: Schema.Int,
    executing: Schema.Array(Schema.String),
    maxActiveRuns: Schema.Int,
    waiting: Schema.Array(Schema.String)
  }))
}).annotations({ identifier: "Health" })

const Probe = Schema.Struct({ status: Schema.String }).annotations({ identifier: "Probe" })

/**
 * Probes for orchestrators and the Prometheus scrape endpoint; no token needed.
 *
 * @since 0.1.0
 * @category groups
 */
export class Probes extends HttpApiGroup.make("probes")
  .add(HttpApiEndpoint.get("livez", "/livez").addSuccess(Probe))
  .add(HttpApiEndpoint.get("readyz", "/readyz").addSuccess(Probe).addError(ApiError.Unavailable))
  .add(HttpApiEndpoint.get("startupz", "/startupz").addSuccess(Probe).addError(ApiError.Unavailable))
  .add(HttpApiEndpoint.get("healthz", "/healthz").addSuccess(Health))
  .add(
    HttpApiEndpoint.get("metrics", "/metrics").addSuccess(
      HttpApiSchema.Text({ contentType: "text/plain; version=0.0.4; charset=utf-8" })
    )
  )
{}

/**
 * The Quarry API.
 *
 * @since 0.1.0
 * @category api
 */
export class QuarryApi extends HttpApi.make("quarry")
  .add(Runs)
  .add(Probes)
  // Any route, for a page of another site (`CrossSite`).
  .addError(ApiError.Forbidden)
  .annotate(OpenApi.Title, "Quarry")
  .annotate(OpenApi.Transform, undeclared)
{}
