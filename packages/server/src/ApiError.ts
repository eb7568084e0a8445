/**
 * The one error of the HTTP API: a status, the tag of the domain error behind it and its message. On the wire it is
 * `{ "error": { "tag", "message" } }` with the status as the HTTP status.
 *
 * @since 0.1.0
 */
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Schema from "effect/Schema"

/**
 * An API error: what went wrong (`tag`, `message`) and the HTTP status that says so.
 *
 * @since 0.1.0
 * @category errors
 */
export class ApiError extends Schema.TaggedError<ApiError>()("ApiError", {
  status: Schema.Int,
  tag: Schema.String,
  message: Schema.String
}) {}

/**
 * The body of every error response.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ErrorBody = Schema.Struct({
  error: Schema.Struct({ tag: Schema.String, message: Schema.String })
}).annotations({ identifier: "Error" })

/**
 * The schema of the API errors with one status, for `HttpApiEndpoint.addError`: encodes an `ApiError` with that
 * status as `ErrorBody`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const withStatus = (status: number) =>
  Schema.transform(
    ErrorBody,
    Schema.declare((u): u is ApiError => u instanceof ApiError && u.status === status),
    {
      strict: true,
      decode: (body) => new ApiError({ status, tag: body.error.tag, message: body.error.message }),
      encode: (error) => ({ error: { tag: error.tag, message: error.message } })
    }
  ).annotations(HttpApiSchema.annotations({ status }))

/**
 * An `ApiError` from a domain error (its `_tag` and `message`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const from = (status: number) => (error: { readonly _tag: string; readonly message: string }): ApiError =>
  new ApiError({ status, tag: error._tag, message: error.message })

/** @since 0.1.0 */
export const BadRequest = withStatus(400)
/** @since 0.1.0 */
export const Unauthorized = withStatus(401)
/** @since 0.1.0 */
export const Forbidden = withStatus(403)
/** @since 0.1.0 */
export const NotFound = withStatus(404)
/** @since 0.1.0 */
export const Conflict = withStatus(409)
/** @since 0.1.0 */
export const PayloadTooLarge = withStatus(413)
/** @since 0.1.0 */
export const UnsupportedMediaType = withStatus(415)
/** @since 0.1.0 */
export const RangeNotSatisfiable = withStatus(416)
/** @since 0.1.0 */
export const Unprocessable = withStatus(422)
/** @since 0.1.0 */
export const TooManyRequests = withStatus(429)
/** @since 0.1.0 */
export const Internal = withStatus(500)
/** @since 0.1.0 */
export const Unavailable = withStatus(503)

/**
 * An error response in the API's wire shape, for the answers built outside the endpoints' error schemas: before any
 * handler (a body too large, no route, a decode error), with headers of their own (`Retry-After`, `Content-Range`),
 * or outside the API (the dashboard's assets).
 *
 * @since 0.1.0
 * @category responses
 */
export const response = (
  status: number,
  tag: string,
  message: string,
  headers: HttpServerResponse.Options["headers"] = {}
): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.unsafeJson({ error: { tag, message } }, { status, headers })
