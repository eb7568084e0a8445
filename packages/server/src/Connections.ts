/**
 * The connections of the Node HTTP server, so that a drain ends. Node's `server.close()` waits for every connection,
 * and its `closeIdleConnections()` skips one that has not sent a whole request yet: a client that connected and
 * stayed quiet held `quarry serve` past `--drain-timeout`, until it went away. Also the requests that arrive before
 * the server has a handler for them: `NodeHttpServer` listens as soon as its layer is built, but attaches its handler
 * only once the rest of the server's layers are (0.4 s at start-up here), and Node leaves a request nobody answers
 * hanging for good. Such a request waits for the handler. Kept free of platform code, so the CLI can load it at
 * start-up.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import type * as Http from "node:http"
import type * as Net from "node:net"

/**
 * How long a new connection may take to send its first request once closing starts (counted from when it opened).
 * A request racing the signal follows its connection within milliseconds, and its client would not retry a reset
 * of a new connection as it does one of a kept-alive connection; a connection quiet for longer is not sending one.
 *
 * @since 0.1.0
 * @category constants
 */
export const firstRequestGraceMs = 1_000

/**
 * The server's open connections.
 *
 * @since 0.1.0
 * @category models
 */
export class Connections extends Context.Tag("@quarry/server/Connections")<Connections, {
  /**
   * From now on every response closes its connection (`Connection: close`), while new connections are still taken:
   * a client's next request opens a connection of its own, which a load balancer that has taken this server out
   * sends elsewhere, instead of finding its kept-alive connection gone once closing starts.
   */
  readonly endKeepAlive: Effect.Effect<void>
  /**
   * Stops taking connections and ends the open ones: at once those kept alive between requests, new ones (quiet,
   * or halfway through their first request's headers) once `firstRequestGraceMs` have passed since they opened,
   * the others when their last response ends, and whatever is left once `timeoutMs` have passed. Succeeds with the
   * number of requests so cut short.
   */
  readonly close: (timeoutMs: number) => Effect.Effect<number>
  /**
   * Ends the connections of the requests still waiting for a handler: for a start that failed or was interrupted
   * after listening, before the server's own close, which would wait for them.
   */
  readonly dropWaiting: Effect.Effect<void>
}>() {}

/** An open connection. */
interface Connection {
  readonly openedAt: number
  /** Requests in flight (a client may pipeline several). */
  requests: number
  served: boolean
}

/** A `"request"` listener of a Node HTTP server. */
type RequestListener = (request: Http.IncomingMessage, response: Http.ServerResponse) => void

/**
 * Tracks the connections of `server`, which must not be listening yet. The first `"request"` listener added after
 * this is the server's handler: requests that arrive before it wait for it.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (server: Http.Server): Effect.Effect<Connections["Type"]> =>
  Effect.gen(function*() {
    const clock = yield* Effect.clock
    const open = new Map<Net.Socket, Connection>()
    const onAllClosed = new Set<() => void>()
    let closing = false
    let keepAlive = true
    server.on("connection", (socket: Net.Socket) => {
      open.set(socket, { openedAt: clock.unsafeCurrentTimeMillis(), requests: 0, served: false })
      socket.once("close", () => {
        open.delete(socket)
        if (open.size === 0) { for (const resume of onAllClosed) resume() }
      })
    })
    let handler: RequestListener | undefined
    let waiting: Array<readonly [Http.IncomingMessage, Http.ServerResponse]> = []
    server.on("request", (request: Http.IncomingMessage, response: Http.ServerResponse) => {
      if (handler === undefined) waiting.push([request, response])
      const connection = open.get(request.socket)
      if (connection === undefined) return
      connection.requests += 1
      connection.served = true
      // Read by Node when it writes the response's head: `Connection: close`, and the socket ends after it.
      if (!keepAlive) response.shouldKeepAlive = false
      // Emitted once the response was handed to the system, or when it was cut.
      response.once("close", () => {
        connection.requests -= 1
        // A kept-alive connection is not reused once closing starts.
        if (closing && connection.requests === 0) request.socket.destroy()
      })
    })
    server.on("newListener", (event: string | symbol, listener: RequestListener) => {
      if (event !== "request" || handler !== undefined) return
      handler = listener
      const early = waiting
      waiting = []
      // Once Node has added it, and before any request that comes next.
      process.nextTick(() => {
        for (const [request, response] of early) if (!request.socket.destroyed) listener(request, response)
      })
    })
    server.on("removeListener", (event: string | symbol, listener: RequestListener) => {
      if (event === "request" && listener === handler) handler = undefined
    })
    const dropWaiting = Effect.sync(() => {
      for (const [request] of waiting) request.socket.destroy()
      waiting = []
    })
    const allClosed = Effect.async<void>((resume) => {
      if (open.size === 0) return resume(Effect.void)
      const done = () => {
        onAllClosed.delete(done)
        resume(Effect.void)
      }
      onAllClosed.add(done)
      return Effect.sync(() => onAllClosed.delete(done))
    })
    const closeIdle = Effect.fnUntraced(function*(socket: Net.Socket, connection: Connection) {
      if (!connection.served) {
        const now = yield* clock.currentTimeMillis
        yield* Effect.sleep(Math.max(0, connection.openedAt + firstRequestGraceMs - now))
      }
      if (connection.requests === 0) socket.destroy()
    })
    const close = Effect.fn("Connections.close")(function*(timeoutMs: number) {
      closing = true
      // No callback: NodeHttpServer's finalizer sees a server that no longer listens and does not wait.
      if (server.listening) server.close()
      const idle = [...open].filter(([, connection]) => connection.requests === 0)
      // Interruptible even where the caller is not (a drain runs in a finalizer): a wait that cannot be interrupted
      // outlives its timeout.
      const closingIdle = yield* Effect.forEach(idle, ([socket, connection]) => closeIdle(socket, connection), {
        concurrency: "unbounded",
        discard: true
      }).pipe(Effect.interruptible, Effect.fork)
      yield* allClosed.pipe(Effect.interruptible, Effect.timeout(timeoutMs), Effect.ignore)
      yield* Fiber.interrupt(closingIdle)
      let cut = 0
      for (const [socket, connection] of open) {
        cut += connection.requests
        socket.destroy()
      }
      return cut
    })
    return Connections.of({ endKeepAlive: Effect.sync(() => keepAlive = false), close, dropWaiting })
  })
