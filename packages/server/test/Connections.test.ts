import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { assert, describe, it } from "@effect/vitest"
import * as Connections from "@quarry/server/Connections"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import { createServer } from "node:http"

/**
 * A Node HTTP server tracked by `Connections` and listening on loopback, as `NodeHttpServer` leaves it until the app
 * is served: no handler yet. `arrived` completes when a request has reached the server.
 */
const listening = Effect.gen(function*() {
  const server = createServer()
  const arrived = yield* Deferred.make<void>()
  // Added before `Connections`, so not taken for the handler.
  server.on("request", () => Deferred.unsafeDone(arrived, Exit.void))
  const connections = yield* Connections.make(server)
  const http = yield* NodeHttpServer.make(() => server, { host: "127.0.0.1", port: 0 })
  const port = http.address._tag === "TcpAddress" ? http.address.port : 0
  return { http, connections, arrived, url: `http://127.0.0.1:${port}/early` }
})

/** A GET as a fiber: its body, or the error of a connection the server ended. */
const get = (url: string) =>
  Effect.fork(Effect.tryPromise(() => fetch(url).then((response) => response.text())).pipe(Effect.either))

describe("Connections", () => {
  it.scoped("a request that arrives before the server's handler waits for it and gets its answer", () =>
    Effect.gen(function*() {
      const { arrived, http, url } = yield* listening
      const answer = yield* get(url)
      yield* Deferred.await(arrived)
      yield* http.serve(HttpServerResponse.text("served"))
      const body = yield* Fiber.join(answer)
      assert.deepStrictEqual(Either.getRight(body), Option.some("served"))
    }))

  it.effect("a request still waiting for a handler that never comes is dropped, so the server can close", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const { arrived, connections, url } = yield* Scope.extend(listening, scope)
      const answer = yield* get(url)
      yield* Deferred.await(arrived)
      yield* connections.dropWaiting
      // NodeHttpServer's close waits for every connection: it ends only once the waiting one is gone.
      yield* Scope.close(scope, Exit.void)
      const body = yield* Fiber.join(answer)
      assert.isTrue(Either.isLeft(body), "the request was answered")
    }))
})
