/**
 * What a web page of another site may not do with this server. A browser sends what any page asks to any address,
 * the user's own `quarry serve` on loopback included, and two ways let a page act on it:
 *
 * - Cross-site writes: a form, or a `fetch` that needs no CORS preflight, reaches the server from any page. A request
 *   that changes state (any method but `GET`, `HEAD` and `OPTIONS`) that the browser marks as sent by another origin
 *   is refused (`403` `CrossOriginRequest`): by `Sec-Fetch-Site` when it is sent (every current browser does), else by
 *   an `Origin` whose host and port are not the request's `Host`. A request with neither comes from outside a browser
 *   (curl, a script) and passes. This is the rule of Go's `net/http.CrossOriginProtection`.
 * - DNS rebinding: a page whose host name its author points at 127.0.0.1 is same-origin with the server, and reads
 *   what it answers. Its requests name that host in `Host`. Without API tokens, a `Host` that is not an IP address,
 *   `localhost` (or a name under it), the `--host` listened on or one of `--allowed-hosts` is refused (`403`
 *   `HostNotAllowed`). With tokens a rebinding page has no token to send (the dashboard keeps it in its own origin's
 *   `sessionStorage`, never in a cookie), and a Service, an ingress or a proxy may use any name: `Host` is checked
 *   only when `--allowed-hosts` lists the server's names.
 *
 * @since 0.1.0
 */
import type * as Headers from "@effect/platform/Headers"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import type * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as net from "node:net"
import * as ApiError from "./ApiError.js"

/**
 * How the server is reached.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The interface listened on (`--host`): one of the server's names. */
  readonly host: string
  /** The server's other names (`--allowed-hosts`); `*` takes any. */
  readonly allowedHosts: ReadonlyArray<string>
  /** Whether the `/v1` routes need a token. */
  readonly withTokens: boolean
}

/** `Example.COM.` and `[::1]` as `example.com` and `::1`: a name as `Host` and URLs may spell it. */
const normalize = (name: string) => name.toLowerCase().replace(/\.$/, "").replace(/^\[(.*)\]$/, "$1")

/** The host name of a `Host` header, without its port; none for what is not an authority. */
const hostnameOf = (authority: string): Option.Option<string> =>
  /[/?#@\\\s]/.test(authority) ?
    Option.none() :
    Option.map(Option.liftThrowable(() => new URL(`http://${authority}`))(), (url) => normalize(url.hostname))

/** Names no DNS answer can give a page of another site: addresses, and `localhost`, which browsers resolve. */
const isLocalOrAddress = (hostname: string) =>
  net.isIP(hostname) !== 0 || hostname === "localhost" || hostname.endsWith(".localhost")

/**
 * Whether a request's `Host` names this server (no `Host`, as in HTTP/1.0, is no browser's request).
 *
 * @since 0.1.0
 * @category predicates
 */
export const hostAllowed = (host: string | undefined, names: ReadonlyArray<string>): boolean =>
  host === undefined || names.includes("*") ||
  Option.exists(hostnameOf(host), (hostname) => isLocalOrAddress(hostname) || names.includes(hostname))

/**
 * Whether a browser sent this state-changing request for a page of another origin.
 *
 * @since 0.1.0
 * @category predicates
 */
export const isCrossOrigin = (method: string, headers: Headers.Headers): boolean => {
  if (method === "GET" || method === "HEAD" || method === "OPTIONS") return false
  const site = headers["sec-fetch-site"]
  if (site !== undefined) return site !== "same-origin" && site !== "none"
  const origin = headers["origin"]
  if (origin === undefined) return false
  // `null` (a sandboxed or file page) is no URL: cross-origin.
  const originHost = Option.liftThrowable(() => new URL(origin).host)()
  return !Option.contains(originHost, (headers["host"] ?? "").toLowerCase())
}

const refusal = (
  request: HttpServerRequest.HttpServerRequest,
  names: Option.Option<ReadonlyArray<string>>
): Option.Option<HttpServerResponse.HttpServerResponse> => {
  const host = request.headers["host"]
  if (Option.isSome(names) && !hostAllowed(host, names.value)) {
    return Option.some(ApiError.response(
      403,
      "HostNotAllowed",
      `Host ${host} is not a name of this server: without API tokens it answers to IP addresses, localhost and its ` +
        `--host only, so that no web page reaches it through a DNS name pointed at it (DNS rebinding); if the name ` +
        `is this server's, add it to --allowed-hosts (QUARRY_ALLOWED_HOSTS)`
    ))
  }
  if (isCrossOrigin(request.method, request.headers)) {
    const origin = request.headers["origin"]
    const sender = origin === undefined ? `Sec-Fetch-Site: ${request.headers["sec-fetch-site"]}` : `Origin: ${origin}`
    return Option.some(ApiError.response(
      403,
      "CrossOriginRequest",
      `${request.method} refused: a browser sent it for a page of another site (${sender}), and only this server's ` +
        `own pages may change runs; use the dashboard at this server's address, or a client that is not a browser ` +
        `(curl, a script)`
    ))
  }
  return Option.none()
}

/**
 * The check of every request, before any route: `403` for another site's page.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<never> => {
  const names = [options.host, ...options.allowedHosts].map(normalize)
  // With tokens, Host is checked only against names the operator gave.
  const checked = options.withTokens && options.allowedHosts.length === 0 ? Option.none() : Option.some(names)
  return HttpApiBuilder.middleware((app) =>
    Effect.flatMap(
      HttpServerRequest.HttpServerRequest,
      (request) => Option.match(refusal(request, checked), { onNone: () => app, onSome: Effect.succeed })
    )
  )
}
