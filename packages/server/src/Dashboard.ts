/**
 * The web dashboard at `GET /`: static assets built by `scripts/dashboard.mjs` into a `dashboard/` folder beside
 * this module (in the package's `dist/`, or beside the CLI bundle's chunk that holds this module), read once when
 * the server starts and served from memory. No CDN: a Content-Security-Policy allows only this origin. The page
 * itself needs no token; the data it shows comes from the `/v1` routes, which do.
 *
 * @since 0.1.0
 */
import { Router } from "@effect/platform/HttpApiBuilder"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as fs from "node:fs"
import { fileURLToPath } from "node:url"
import * as ApiError from "./ApiError.js"

type Asset = "index.html" | "app.js" | "app.css"

const assets: Record<Asset, string> = {
  "index.html": "text/html; charset=utf-8",
  "app.js": "text/javascript; charset=utf-8",
  "app.css": "text/css; charset=utf-8"
}

const headers = {
  "cache-control": "no-cache",
  "x-content-type-options": "nosniff",
  "content-security-policy":
    "default-src 'self'; img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
}

/**
 * The folder the assets are read from.
 *
 * @since 0.1.0
 * @category constants
 */
export const directory = (): string => fileURLToPath(new URL("./dashboard/", import.meta.url))

type Loaded =
  | { readonly _tag: "Loaded"; readonly files: Readonly<Record<Asset, Uint8Array>> }
  | { readonly _tag: "Missing"; readonly path: string }

/** The assets' bytes, or which one is missing (a build that skipped `scripts/dashboard.mjs`). */
const load = Effect.sync((): Loaded => {
  const dir = directory()
  const read = (name: Asset) => fs.readFileSync(`${dir}${name}`)
  try {
    return {
      _tag: "Loaded",
      files: { "index.html": read("index.html"), "app.js": read("app.js"), "app.css": read("app.css") }
    }
  } catch (error) {
    return { _tag: "Missing", path: error instanceof Error && "path" in error ? String(error.path) : dir }
  }
})

const serve = (content: Loaded, name: Asset) =>
  content._tag === "Missing" ?
    ApiError.response(
      404,
      "DashboardMissing",
      `the dashboard is not built (${content.path} is missing); build it with pnpm build`
    ) :
    HttpServerResponse.uint8Array(content.files[name], { contentType: assets[name], headers })

/**
 * The dashboard's routes: `/` and `/dashboard/{app.js,app.css}`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<never> = Router.use((router) =>
  Effect.gen(function*() {
    const content = yield* load
    if (content._tag === "Missing") yield* Effect.logWarning(`the dashboard is not built: ${content.path} is missing`)
    yield* router.get("/", Effect.succeed(serve(content, "index.html")))
    yield* router.get("/dashboard/app.js", Effect.succeed(serve(content, "app.js")))
    yield* router.get("/dashboard/app.css", Effect.succeed(serve(content, "app.css")))
  })
)
