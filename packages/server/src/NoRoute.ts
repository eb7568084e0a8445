/**
 * The answer to a request that no route takes, in the API's error shape. The platform's router answers it with an
 * empty `404`; a client that sent `PUT /v1/runs` learns more from `405 Method Not Allowed` with the methods the path
 * takes (`Allow`), and one that mistyped a path from a `404` that says where the API is described. The router's own
 * `404` is written before any middleware sees it, hence a route of last resort, which matches only what no other
 * route does.
 *
 * @since 0.1.0
 */
import * as HttpApi from "@effect/platform/HttpApi"
import { Router } from "@effect/platform/HttpApiBuilder"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
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

/**
 * The route of last resort, `*` under every method but `HEAD`: the router answers a `HEAD` with the `GET` route of
 * its path only when no `HEAD` route matches.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<never> = Router.use((router) => {
  const answer = Effect.map(
    HttpServerRequest.HttpServerRequest,
    (request) => response(request.method, request.url.split("?")[0]!)
  )
  return Effect.all(
    [router.get, router.post, router.put, router.patch, router.del, router.options].map((route) => route("*", answer)),
    { discard: true }
  )
})
