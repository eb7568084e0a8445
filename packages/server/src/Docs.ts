/**
 * The API reference UI at `/docs`: Scalar's page, its script and the OpenAPI document inline, served by the process
 * itself. Scalar loads its default fonts from fonts.scalar.com, so they are turned off (the page uses the system's),
 * and a Content-Security-Policy allows nothing from another origin: the page asks no other host for anything (what
 * a user opens tells no third party, and a host without Internet access shows it whole).
 *
 * @since 0.1.0
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApiScalar from "@effect/platform/HttpApiScalar"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

/**
 * Where the UI is served.
 *
 * @since 0.1.0
 * @category constants
 */
export const path = "/docs"

/**
 * The page's policy: its own origin only. Scalar's script and its configuration are inline, and it styles its
 * elements inline.
 *
 * @since 0.1.0
 * @category constants
 */
export const contentSecurityPolicy = "default-src 'self'; script-src 'self' 'unsafe-inline' 'wasm-unsafe-eval'; " +
  "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; " +
  "worker-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

/** The page's path, with the trailing slash the router ignores. */
const page = new RegExp(`^${path}/?(\\?|$)`)

/** The policy on the page's answer (the platform's layer takes no headers). */
const withPolicy = HttpApiBuilder.middleware((app) =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
    page.test(request.url) ?
      Effect.map(app, HttpServerResponse.setHeader("content-security-policy", contentSecurityPolicy)) :
      app)
)

/**
 * The UI's route and its policy.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = Layer.merge(HttpApiScalar.layer({ path, scalar: { withDefaultFonts: false } }), withPolicy)
