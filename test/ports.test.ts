/**
 * The test kit's free ports: processes started at the same moment on one machine (vitest's workers, a test run beside
 * a benchmark) never get the same port, and never one the kernel may hand to an outgoing connection meanwhile.
 */
import { assert, describe, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import * as path from "node:path"
import { pathToFileURL } from "node:url"

const ports = pathToFileURL(path.resolve(import.meta.dirname, "../testkit/dist/Ports.js")).href
const perProcess = 200

/** A real child process taking `perProcess` ports one after another, as a test file's set-up does. */
const take = (): Promise<Array<number>> =>
  new Promise((resolve, reject) => {
    const script = `import { freePort } from ${JSON.stringify(ports)}
      const taken = []
      for (let i = 0; i < ${perProcess}; i++) taken.push(await freePort())
      console.log(JSON.stringify(taken))`
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "pipe"] })
    let out = ""
    let err = ""
    child.stdout.on("data", (chunk) => out += chunk)
    child.stderr.on("data", (chunk) => err += chunk)
    child.on("error", reject)
    child.on("close", (code) => code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`exit ${code}: ${err}`)))
  })

describe("freePort", () => {
  it("gives processes running at once distinct ports, outside the kernel's ephemeral range", async () => {
    const [first, second] = await Promise.all([take(), take()])
    const all = [...first!, ...second!]
    assert.strictEqual(new Set(all).size, all.length, "a port was handed out twice")
    for (const port of all) assert.isTrue(port >= 20_000 && port < 32_000, `port ${port} is in the ephemeral range`)
  })
})
