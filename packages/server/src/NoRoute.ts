/**
 * The answer to a request that no route takes, in the API's error shape. The platform's router fails it with
 * `RouteNotFound`, which it answers with an empty `404`; a client that sent `PUT /v1/runs` learns more from `405 Method
 * Not Allowed` with the methods the path takes (`Allow`), and one that mistyped a path from a `404` that says where
 * the API is described. The server's error handling writes that `404` before the request middleware sees the
 * failure, so it is answered in an API-level middleware, which wraps the router itself, for any method: the routes
 * of last resort that answered it before could be declared only under the router's own methods, and `PROPFIND` or
 * `MKCOL` still got the empty `404`.
 *
 * @since 0.1.0
 */
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerError from "@effect/platform/HttpServerError"
import type * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import { QuarryApi } from "./Api.js"
import * as ApiError from "./ApiError.js"

interface Route {
  readonly method: string
  readonly pattern: RegExp
}

/** `/v1/runs/:id/cancel` as a pattern that takes any one segment for `:id` (and a trailing slash, as the router). */
const patternOf = (path: string): RegExp =>
  new RegExp(
    `^${
      path.split("/").map((segment) =>
        segment.startsWith(":") ? "[^/]+" : segment.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
      ).join("/")
    }/?$`
  )

const apiRoutes: ReadonlyArray<Route> = (() => {
  const routes: Array<Route> = []
  HttpApi.reflect(QuarryApi, {
    onGroup: () => {},
    onEndpoint: ({ endpoint }) => routes.push({ method: endpoint.method, pattern: patternOf(endpoint.path) })
  })
  return routes
})()

/**
 * The methods an API path takes, in a stable order (`HEAD` with `GET`, which the server answers alike); none for a
 * path that is no route of the API.
 *
 * @since 0.1.0
 * @category routes
 */
export const methodsOf = (path: string): ReadonlyArray<string> => {
  const methods = new Set(apiRoutes.filter((route) => route.pattern.test(path)).map((route) => route.method))
  if (methods.has("GET")) methods.add("HEAD")
  return ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"].filter((method) => methods.has(method))
}

/**
 * `405` with `Allow` when the path is a route under other methods, else `404`.
 *
 * @since 0.1.0
 * @category responses
 */
export const response = (method: string, path: string): HttpServerResponse.HttpServerResponse => {
  const allowed = methodsOf(path)
  return allowed.length > 0 ?
    ApiError.response(405, "MethodNotAllowed", `${path} does not take ${method}; it takes ${allowed.join(", ")}`, {
      allow: allowed.join(", ")
    }) :
    ApiError.response(
      404,
      "RouteNotFound",
      `no route ${method} ${path}; GET /openapi.json describes the API, and /docs shows it`
    )
}

const isRouteNotFound = (error: unknown): error is HttpServerError.RouteNotFound =>
  HttpServerError.isServerError(error) && error._tag === "RouteNotFound"

/** `app`, with the router's `RouteNotFound` answered by `response`. */
const answerUnrouted = <E, R>(
  app: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>
): Effect.Effect<HttpServerResponse.HttpServerResponse, E, R> =>
  Effect.catchAll(app, (error) =>
    isRouteNotFound(error) ?
      Effect.succeed(response(error.request.method, error.request.url.split("?")[0]!)) :
      Effect.fail(error))

/**
 * The router's `RouteNotFound` answered by `response`, whatever the method.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<never> = HttpApiBuilder.middleware(answerUnrouted)
