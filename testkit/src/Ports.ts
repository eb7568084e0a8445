/**
 * Ports for the servers tests and benchmarks start (PostgreSQL, `quarry serve`, cluster runners).
 *
 * @since 0.1.0
 */
import { randomInt } from "node:crypto"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"

// Below Linux's ephemeral range (32768 to 60999): the kernel never gives these ports to an outgoing connection or to
// a `listen(0)`, so a port handed to a child process stays free until the child takes it.
const lowest = 20_000
const highest = 32_000

/** Where processes on this machine reserve ports: a file per port, created exclusively. */
const reservations = path.join(os.tmpdir(), "quarry-test-ports")

/** A reservation older than this belongs to a finished process (no test or benchmark holds a port this long). */
const staleAfterMs = 2 * 60 * 60 * 1000

const reserve = (port: number): boolean => {
  const file = path.join(reservations, String(port))
  try {
    fs.writeFileSync(file, String(process.pid), { flag: "wx" })
    return true
  } catch {
    try {
      if (Date.now() - fs.statSync(file).mtimeMs < staleAfterMs) return false
      fs.rmSync(file, { force: true })
      fs.writeFileSync(file, String(process.pid), { flag: "wx" })
      return true
    } catch {
      return false
    }
  }
}

const listenable = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const server = net.createServer()
    server.once("error", () => resolve(false))
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)))
  })

/**
 * A port nobody listens on right now, reserved for this process: two test processes on one machine (two `vitest`
 * workers, or a test run beside a benchmark) never get the same port, which picking with `listen(0)` and closing
 * did not ensure.
 *
 * @since 0.1.0
 */
export const freePort = async (): Promise<number> => {
  fs.mkdirSync(reservations, { recursive: true })
  for (let attempt = 0; attempt < 1000; attempt++) {
    const port = randomInt(lowest, highest)
    if (reserve(port) && await listenable(port)) return port
  }
  throw new Error(`no free port between ${lowest} and ${highest} (reservations in ${reservations})`)
}
