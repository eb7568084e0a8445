/**
 * The dashboard's access to the API: the bearer token (asked once, kept in `sessionStorage`, so it dies with the
 * tab), JSON requests, and Server-Sent Events read through `fetch` (EventSource cannot send an Authorization header,
 * and a token in a URL ends up in proxy logs and browser history).
 */
import type { RunView } from "@quarry/core/RunView"

export type { RunView }

const tokenKey = "quarry.token"

/** The token of this tab, if one was given. */
export const token = (): string | null => sessionStorage.getItem(tokenKey)

/** Keeps the token for this tab. */
export const setToken = (value: string) => sessionStorage.setItem(tokenKey, value)

/** Forgets the token (a 401, or the user asked). */
export const clearToken = () => sessionStorage.removeItem(tokenKey)

/** A request the server refused, with the API's error tag and message. */
export class ApiFailure extends Error {
  constructor(readonly status: number, readonly tag: string, message: string) {
    super(message)
  }
}

const headers = (extra: Record<string, string> = {}): Record<string, string> => {
  const given = token()
  return given === null || given === "" ? extra : { ...extra, authorization: `Bearer ${given}` }
}

/** Sends a request; a non-2xx answer becomes an `ApiFailure` (a 401 also forgets the token). */
export const request = async (method: string, path: string, body?: unknown): Promise<Response> => {
  const response = await fetch(path, {
    method,
    headers: headers(body === undefined ? {} : { "content-type": "application/json" }),
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  if (response.ok) return response
  if (response.status === 401) clearToken()
  const text = await response.text()
  let tag = `HTTP ${response.status}`
  let message = text
  try {
    const parsed = JSON.parse(text) as { error?: { tag?: string; message?: string } }
    tag = parsed.error?.tag ?? tag
    message = parsed.error?.message ?? message
  } catch {
    // Not the API's JSON error: show the text as it came.
  }
  throw new ApiFailure(response.status, tag, message)
}

/** Sends a request and reads its JSON answer. */
export const json = async <A>(method: string, path: string, body?: unknown): Promise<A> =>
  (await request(method, path, body)).json() as Promise<A>

/** One Server-Sent Event. */
export interface ServerEvent {
  readonly event: string
  readonly data: Record<string, unknown>
}

const parseBlock = (block: string): ServerEvent | undefined => {
  let event = "message"
  const data: Array<string> = []
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue
    const colon = line.indexOf(":")
    const field = colon < 0 ? line : line.slice(0, colon)
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "")
    if (field === "event") event = value
    if (field === "data") data.push(value)
  }
  return data.length === 0 ? undefined : { event, data: JSON.parse(data.join("\n")) as Record<string, unknown> }
}

/** Reads a run's event stream until it ends or `signal` aborts, calling `onEvent` per event. */
export const followEvents = async (
  runId: string,
  onEvent: (event: ServerEvent) => void,
  signal: AbortSignal
): Promise<void> => {
  const response = await fetch(`/v1/runs/${encodeURIComponent(runId)}/events`, { headers: headers(), signal })
  if (!response.ok || response.body === null) throw new ApiFailure(response.status, "EventsFailed", "no event stream")
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader()
  let buffer = ""
  while (true) {
    const { done, value } = await reader.read()
    if (done) return
    buffer += value
    let end = buffer.indexOf("\n\n")
    while (end >= 0) {
      const parsed = parseBlock(buffer.slice(0, end))
      buffer = buffer.slice(end + 2)
      if (parsed !== undefined) onEvent(parsed)
      end = buffer.indexOf("\n\n")
    }
  }
}

/** Downloads a completed run's artifact in `format` through `fetch` (a link could not carry the token). */
export const download = async (run: RunView, format: string) => {
  const response = await request("GET", `/v1/runs/${encodeURIComponent(run.id)}/artifact?format=${format}`)
  const blob = await response.blob()
  const extension: Record<string, string> = { turtle: "ttl", ntriples: "nt", jsonl: "jsonl" }
  const link = document.createElement("a")
  link.href = URL.createObjectURL(blob)
  link.download = `${run.id}.${extension[format] ?? format}`
  document.body.append(link)
  link.click()
  link.remove()
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000)
}
