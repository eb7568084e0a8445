/**
 * The dashboard for a keyboard, for long run ids and through a server restart, in Debian's headless Chromium against
 * the real `quarry serve` with a token: Tab reaches the runs and Enter selects one, a 128-character id leaves the
 * status column in view, the token is in no URL, cookie or `localStorage`, and the page says when the server does not
 * answer and stops saying it once a restarted server answers again. A page of another site can neither change the runs
 * of a server without tokens nor read them through a DNS name pointed at it. The API reference at `/docs` asks no other
 * host for anything.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as path from "node:path"
import { type Browser, chromium } from "playwright-core"
import { until } from "./serverProcess.js"
import { makeDir, mobyDick, removeDir, type Running, start } from "./support.js"

const executablePath = "/usr/bin/chromium"
const token = "access-s3cret-token"
const longId = "r".repeat(128)
const text = "Captain Ahab commanded the Pequod. Ishmael sailed from Nantucket with Queequeg."

const serve = async (db: string, port: number, env: Record<string, string> = { QUARRY_API_TOKENS: token }) => {
  const child = start(["serve", "--db", db, "--port", String(port), "--json"], { env })
  await child.waitFor((stdout) => stdout.includes("server.listening")).catch((error) => {
    child.child.kill("SIGKILL")
    throw error
  })
  return { child, port: (JSON.parse(child.stdout.split("\n")[0]!) as { port: number }).port }
}

const kill = async (child: Running) => {
  if (child.child.exitCode === null) child.child.kill("SIGKILL")
  await child.exited
}

const submit = async (port: number, runId: string, input = text) => {
  const response = await fetch(`http://127.0.0.1:${port}/v1/runs`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ runId, input })
  })
  assert.strictEqual(response.status, 202, await response.text())
}

describe("web dashboard: keyboard, long ids, restarts (headless Chromium)", () => {
  let dir = ""
  let browser: Browser | undefined
  const servers: Array<Running> = []

  beforeAll(async () => {
    assert.isTrue(fs.existsSync(executablePath), `${executablePath} is missing: apt-get install chromium`)
    dir = makeDir()
    browser = await chromium.launch({
      executablePath,
      // rebound.test: a DNS name an attacker points at the user's loopback.
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--host-resolver-rules=MAP rebound.test 127.0.0.1"]
    })
  }, 60_000)

  afterAll(async () => {
    await browser?.close()
    for (const child of servers) await kill(child)
    removeDir(dir)
  })

  it("selects runs from the keyboard, keeps columns in view, leaks no token and recovers from a restart", async () => {
    const db = path.join(dir, "q.db")
    const first = await serve(db, 0)
    servers.push(first.child)
    const { port } = first
    for (const runId of ["alpha", longId, "omega"]) await submit(port, runId)

    const page = await browser!.newPage()
    const urls: Array<string> = []
    page.on("request", (request) => urls.push(request.url()))
    await page.goto(`http://127.0.0.1:${port}/`)
    await page.fill("[data-testid=token]", token)
    await page.click("[data-testid=login]")
    const statuses = page.locator("tr[data-run-id] [data-testid=status]", { hasText: /^completed$/ })
    await statuses.nth(2).waitFor({ timeout: 60_000 })

    // Tab leaves the header's controls and reaches the first row; the arrows move, Enter selects.
    const rows = page.locator("tr[data-run-id]")
    for (let i = 0; i < 10; i++) {
      await page.keyboard.press("Tab")
      if (await page.evaluate("document.activeElement instanceof HTMLTableRowElement")) break
    }
    assert.strictEqual(await page.evaluate("document.activeElement.getAttribute('data-run-id')"), "omega")
    await page.keyboard.press("ArrowDown")
    await page.keyboard.press("Enter")
    await page.locator("[data-testid=detail-id]", { hasText: longId }).waitFor()
    assert.strictEqual(await rows.nth(1).getAttribute("aria-selected"), "true")

    // The long id is cut short: its status is inside the visible part of the runs panel.
    const panel = await page.locator("section.runs").boundingBox()
    const status = await rows.nth(1).locator("[data-testid=status]").boundingBox()
    assert.isTrue(panel !== null && status !== null && status.x + status.width <= panel.x + panel.width)

    assert.deepStrictEqual(urls.filter((url) => url.includes(token)), [])
    assert.deepStrictEqual(await page.context().cookies(), [])
    assert.strictEqual(await page.evaluate("localStorage.length"), 0)

    // The server goes away: the page says so; a server on the same port answers again: the notice goes.
    await kill(first.child)
    const notice = page.locator("[data-testid=notice]")
    await notice.filter({ hasText: "The server does not answer" }).waitFor({ timeout: 60_000 })
    const second = await serve(db, port)
    servers.push(second.child)
    await submit(port, "after-restart")
    await page.locator("tr[data-run-id=after-restart]").waitFor({ timeout: 60_000 })
    await page.waitForFunction("document.querySelector('[data-testid=notice]').textContent === ''", null, {
      timeout: 60_000
    })
    await page.close()
  }, 180_000)

  it(
    "a page of another site cannot submit or cancel runs of a server without tokens, nor read it through a DNS name pointed at it",
    async () => {
      const db = path.join(dir, "cross-site.db")
      const quarry = await serve(db, 0, { QUARRY_TEST_EXTRACTOR_DELAY_MS: "100" })
      servers.push(quarry.child)
      const target = `http://127.0.0.1:${quarry.port}`
      await submit(quarry.port, "kept", fs.readFileSync(mobyDick.input, "utf8"))
      // The other site: no-cors requests and a form, none of which needs a CORS preflight.
      const attacker = http.createServer((_, response) => {
        response.setHeader("content-type", "text/html")
        response.end(`<!doctype html><form id="form" method="POST" action="${target}/v1/runs" enctype="text/plain">
<input name='{"runId":"by-form","input":"planted' value='"}'></form><script>
Promise.all([
  fetch("${target}/v1/runs", { method: "POST", mode: "no-cors", body: '{"runId":"by-fetch","input":"planted"}' }),
  fetch("${target}/v1/runs/kept/cancel", { method: "POST", mode: "no-cors" })
]).then(() => document.getElementById("form").submit())
</script>`)
      })
      await new Promise<void>((resolve) => attacker.listen(0, "127.0.0.1", resolve))
      try {
        const page = await browser!.newPage()
        const formAnswer = page.waitForResponse((response) =>
          response.request().method() === "POST" &&
          response.request().resourceType() === "document"
        )
        await page.goto(`http://localhost:${(attacker.address() as AddressInfo).port}/`)
        assert.strictEqual((await formAnswer).status(), 403)
        await page.waitForURL(`${target}/v1/runs`)
        // DNS rebinding: the page's own origin, answered by the server.
        const rebound = await page.goto(`http://rebound.test:${quarry.port}/v1/runs`)
        assert.strictEqual(rebound?.status(), 403)
        assert.include(await rebound!.text(), "HostNotAllowed")
        await page.close()
        // The browser may also ask the rebound name for /favicon.ico (refused too): the API's refusals are counted.
        // A request's log line follows its answer, so the last one may come a moment after the page saw it.
        const refused = () =>
          quarry.child.stderr.split("\n")
            .filter((line) => line.includes("\"status\":403") && line.includes("\"path\":\"/v1/"))
        await until(() => refused().length >= 4, 30_000, "the four refusals in the server's log").catch(() => {})
        assert.strictEqual(refused().length, 4, quarry.child.stderr)
        const runs = await (await fetch(`${target}/v1/runs`)).json() as { runs: Array<{ id: string; status: string }> }
        assert.deepStrictEqual(runs.runs.map((run) => run.id), ["kept"])
        assert.notStrictEqual(runs.runs[0]!.status, "cancelled")
      } finally {
        attacker.close()
        await kill(quarry.child)
      }
    },
    120_000
  )

  it(
    "/docs, the API reference, shows every route and asks no other host for anything (no font from fonts.scalar.com)",
    async () => {
      const quarry = await serve(path.join(dir, "docs.db"), 0)
      servers.push(quarry.child)
      try {
        const page = await browser!.newPage()
        const origin = `http://127.0.0.1:${quarry.port}`
        // Another host's requests are noted and cut at once: none leaves the test, none keeps the page loading.
        const elsewhere: Array<string> = []
        await page.route((url) => url.origin !== origin, (route) => {
          elsewhere.push(route.request().url())
          return route.abort()
        })
        const refusedByPolicy: Array<string> = []
        page.on("console", (message) => {
          if (message.text().includes("Content Security Policy")) refusedByPolicy.push(message.text())
        })
        await page.goto(`${origin}/docs`)
        // Scalar writes paths with zero-width spaces between their segments.
        await page.waitForFunction(
          "document.body.innerText.replaceAll('\\u200b', '').includes('/v1/runs/{id}/artifact')",
          null,
          { timeout: 30_000 }
        )
        await page.waitForLoadState("networkidle")
        await page.close()
        assert.deepStrictEqual(elsewhere, [])
        assert.deepStrictEqual(refusedByPolicy, [])
        // The router also serves the page with a trailing slash and a query: with the same policy.
        for (const route of ["/docs", "/docs/", "/docs?theme=moon"]) {
          const policy = (await fetch(`${origin}${route}`)).headers.get("content-security-policy")
          assert.match(policy ?? "", /^default-src 'self'; /, route)
        }
      } finally {
        await kill(quarry.child)
      }
    },
    60_000
  )
})
