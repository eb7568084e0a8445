/**
 * The dashboard for a keyboard, for long run ids and through a server restart, in Debian's headless Chromium against
 * the real `quarry serve` with a token: Tab reaches the runs and Enter selects one, a 128-character id leaves the
 * status column in view, the token is in no URL, cookie or `localStorage`, and the page says when the server does not
 * answer and stops saying it once a restarted server answers again.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"
import { type Browser, chromium } from "playwright-core"
import { makeDir, removeDir, type Running, start } from "./support.js"

const executablePath = "/usr/bin/chromium"
const token = "access-s3cret-token"
const longId = "r".repeat(128)
const text = "Captain Ahab commanded the Pequod. Ishmael sailed from Nantucket with Queequeg."

const serve = async (db: string, port: number) => {
  const child = start(["serve", "--db", db, "--port", String(port), "--json"], { env: { QUARRY_API_TOKENS: token } })
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

const submit = async (port: number, runId: string) => {
  const response = await fetch(`http://127.0.0.1:${port}/v1/runs`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ runId, input: text })
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
    browser = await chromium.launch({ executablePath, args: ["--headless", "--no-sandbox", "--disable-gpu"] })
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
})
