/**
 * Ports for the servers tests and benchmarks start (PostgreSQL, `quarry serve`, cluster runners).
 *
 * @since 0.1.0
 */
import * as net from "node:net"

/**
 * A port nobody listens on right now (the kernel picks it; it is free until someone else takes it).
 *
 * @since 0.1.0
 */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => typeof address === "object" && address !== null ? resolve(address.port) : reject())
    })
  })
