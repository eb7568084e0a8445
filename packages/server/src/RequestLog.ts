/**
 * The middleware around every request: a request id (from `X-Request-Id`, else generated, echoed back), the body
 * size limit (413 before the body is read when `Content-Length` says it is too big), the API's error shape for the
 * platform's decode errors (`DecodeErrors`), and one structured log line with method, path, status, duration and
 * request id. Never the body, never the token.
 *
 * @since 0.1.0
 */
import * as HttpApp from "@effect/platform/HttpApp"
import * as HttpIncomingMessage from "@effect/platform/HttpIncomingMessage"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpServerError from "@effect/platform/HttpServerError"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as MetricLabel from "effect/MetricLabel"
import * as Option from "effect/Option"
import { randomUUID } from "node:crypto"
import * as Admission from "./Admission.js"
import * as ApiError from "./ApiError.js"
import * as DecodeErrors from "./DecodeErrors.js"
import * as Metrics from "./Metrics.js"

const labels = (tags: Record<string, string>) =>
  Object.entries(tags).map(([key, value]) => MetricLabel.make(key, value))

const validId = /^[A-Za-z0-9._:-]{1,128}$/

/**
 * What a body over the limit is told, whether its `Content-Length` said so or its chunks did while it was read.
 *
 * @since 0.1.0
 * @category errors
 */
export const tooLargeMessage = (maxBodyBytes: number) =>
  `the request body is larger than ${maxBodyBytes} bytes (--max-body); nothing was stored`

const tooLarge = (maxBodyBytes: number, headers: Record<string, string>) =>
  ApiError.response(413, "PayloadTooLarge", tooLargeMessage(maxBodyBytes), headers)

const handle = <E, R>(
  app: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>,
  request: HttpServerRequest.HttpServerRequest,
  maxBodyBytes: number,
  headers: Record<string, string>
) =>
  Effect.gen(function*() {
    const startedAt = yield* Clock.currentTimeMillis
    const length = Number(request.headers["content-length"] ?? "0")
    // Answered without `app`, so its pre-response handler does not run: its headers are set here.
    const response = length > maxBodyBytes ? tooLarge(maxBodyBytes, headers) : yield* app.pipe(
      HttpIncomingMessage.withMaxBodySize(Option.some(maxBodyBytes)),
      Effect.catchAllCause((cause) =>
        Effect.flatMap(HttpServerError.causeResponse(cause), ([response, cause]) =>
          Cause.isInterruptedOnly(cause) ?
            Effect.succeed(response) :
            Effect.as(Effect.logError("request failed", cause), response))
      )
    )
    const endedAt = yield* Clock.currentTimeMillis
    const route = Metrics.routeOf(request.url.split("?")[0]!)
    const tags = { method: request.method, route }
    yield* Metric.increment(
      Metric.taggedWithLabels(Metrics.httpRequests, labels({ ...tags, status: String(response.status) }))
    )
    yield* Metric.update(Metric.taggedWithLabels(Metrics.httpDuration, labels(tags)), (endedAt - startedAt) / 1000)
    yield* Effect.logInfo("request").pipe(Effect.annotateLogs({
      method: request.method,
      path: request.url.split("?")[0],
      status: response.status,
      durationMs: endedAt - startedAt
    }))
    return response
  })

/**
 * The request middleware, with the largest body accepted.
 *
 * @since 0.1.0
 * @category middleware
 */
export const middleware = (maxBodyBytes: number) =>
  HttpMiddleware.make((app) =>
    Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      const given = request.headers["x-request-id"]
      const requestId = given !== undefined && validId.test(given) ? given : randomUUID()
      // While draining, connections are not kept alive: a request on a reused connection must not arrive after the
      // server stopped handling requests. The response is written inside `app`, hence a pre-response handler.
      const draining = yield* Effect.flatMap(Admission.Admission, (admission) => Deferred.isDone(admission.draining))
      const headers = { "x-request-id": requestId, ...(draining ? { connection: "close" } : {}) }
      yield* HttpApp.appendPreResponseHandler((_, response) =>
        Effect.succeed(HttpServerResponse.setHeaders(DecodeErrors.normalize(response), headers))
      )
      return yield* Effect.annotateLogs(handle(app, request, maxBodyBytes, headers), { requestId })
    })
  )
