/**
 * The web dashboard in a real browser: Debian's headless Chromium driven by `playwright-core` (never a downloaded
 * browser) against the real `quarry serve` child process on `--port 0` with a temporary database and a token. The
 * test enters the token, submits a document from a file with an ontology file, watches progress reach 100 % through
 * the live updates, downloads the artifact (the same bytes as the API's, in two formats), submits a run with a budget
 * (a refused one first), cancels it and resumes it with another budget, then with its own, deletes one, and saves
 * screenshots under its temporary folder. A run its budget stopped (an `llm` run against the fake Chat Completions
 * server) offers no plain Resume, only a higher budget or none. When the server restarts under the page, live progress
 * comes back as soon as the new server answers, not with the next list refresh. A missing browser fails the test:
 * `.ci/run` installs `chromium`.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"
import { type Browser, chromium, type Page } from "playwright-core"
import * as FakeLlm from "../packages/cli/test/FakeLlm.js"
import { makeDir, mobyDick, removeDir, type Running, start } from "./support.js"

const executablePath = "/usr/bin/chromium"
const ontologyFile = path.resolve(import.meta.dirname, "data/ontologies/foaf.ttl")
/** The SHA-256 of the built-in ontology (docs/server.md shows it in every run planned without one). */
const defaultOntologySha256 = "cc19f384d88c0b6cd42ea0f81b4c20ed464ddfbfaae75b25b62b924a313d7518"
const token = "dash-s3cret-token"

interface Server {
  readonly child: Running
  readonly url: string
}

const serve = async (
  db: string,
  tokens: string | null = token,
  env: Record<string, string> = {},
  port = 0
): Promise<Server> => {
  const child = start(["serve", "--db", db, "--port", String(port), "--max-active-runs", "1", "--json"], {
    env: { ...(tokens === null ? {} : { QUARRY_API_TOKENS: tokens }), QUARRY_TEST_EXTRACTOR_DELAY_MS: "60", ...env }
  })
  await child.waitFor((stdout) => stdout.includes("server.listening")).catch((error) => {
    child.child.kill("SIGKILL")
    throw error
  })
  const listening = JSON.parse(child.stdout.split("\n")[0]!) as { port: number }
  return { child, url: `http://127.0.0.1:${listening.port}` }
}

const api = async (server: Server, route: string) => {
  const response = await fetch(`${server.url}${route}`, { headers: { authorization: `Bearer ${token}` } })
  assert.strictEqual(response.status, 200, route)
  return response
}

const row = (page: Page, runId: string) => page.locator(`tr[data-run-id="${runId}"]`)

/** Waits until the run's row shows `status` (the page updates itself: no reload). */
const waitForStatus = (page: Page, runId: string, status: string, timeout = 90_000) =>
  row(page, runId).locator("[data-testid=status]", { hasText: new RegExp(`^${status}$`) }).waitFor({ timeout })

describe("web dashboard (headless Chromium)", () => {
  let dir = ""
  let server: Server | undefined
  let browser: Browser | undefined

  beforeAll(async () => {
    assert.isTrue(
      fs.existsSync(executablePath),
      `${executablePath} is missing: apt-get install chromium (.ci/run does); this test never downloads a browser`
    )
    dir = makeDir()
    server = await serve(path.join(dir, "dash.db"))
    browser = await chromium.launch({
      executablePath,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update"
      ]
    })
  }, 60_000)

  afterAll(async () => {
    await browser?.close()
    if (server !== undefined && server.child.child.exitCode === null) server.child.child.kill("SIGKILL")
    await server?.child.exited
    // The screenshots stay in the temp folder for a look when QUARRY_KEEP_SCREENSHOTS is set.
    if (process.env.QUARRY_KEEP_SCREENSHOTS === undefined) removeDir(dir)
  })

  it(
    "token once, submit a file, progress to 100 %, download the artifact, cancel and resume a run, delete",
    async () => {
      const srv = server!
      const shots = path.join(dir, "screenshots")
      fs.mkdirSync(shots)
      const page = await browser!.newPage({ viewport: { width: 1400, height: 900 }, acceptDownloads: true })
      const errors: Array<string> = []
      page.on("pageerror", (error) => errors.push(error.message))
      // No CDN: every request the page makes goes to the server itself (downloads are blob: URLs of fetched bytes).
      const elsewhere: Array<string> = []
      page.on("request", (request) => {
        const url = request.url()
        if (!url.startsWith(`${srv.url}/`) && !url.startsWith("blob:") && !url.startsWith("data:")) elsewhere.push(url)
      })

      // A wrong token is refused and asked for again; the right one opens the dashboard.
      // The page's clock can be paused, so that a check does not pass by its timers (see the second run).
      await page.clock.install()
      await page.goto(srv.url)
      await page.fill("[data-testid=token]", "wrong-token")
      await page.click("[data-testid=login]")
      await page.locator("[data-testid=notice]", { hasText: "The token was refused." }).waitFor()
      await page.screenshot({ path: path.join(shots, "login.png") })
      await page.fill("[data-testid=token]", token)
      await page.click("[data-testid=login]")
      await page.locator("[data-testid=runs]").waitFor()
      assert.strictEqual(await page.evaluate("sessionStorage.getItem('quarry.token')"), token)

      // Submit from a file; progress arrives live and reaches 100 %.
      const excerpt = path.join(dir, "excerpt.txt")
      fs.writeFileSync(excerpt, fs.readFileSync(mobyDick.input, "utf8").slice(0, 30_000))
      await page.setInputFiles("[data-testid=file]", excerpt)
      while ((await page.inputValue("[data-testid=input]")).length !== 30_000) await page.waitForTimeout(20)
      await page.setInputFiles("[data-testid=ontology]", ontologyFile)
      await page.locator("[data-testid=ontology-state]", { hasText: "characters loaded" }).waitFor()
      await page.fill("[data-testid=run-id]", "first")
      await page.fill("[data-testid=extractor]", "test-slow")
      await page.fill("[data-testid=windowSize]", "1000")
      await page.fill("[data-testid=batchSize]", "1")
      await page.click("[data-testid=submit]")
      await waitForStatus(page, "first", "running")
      const seen = new Set<string>()
      while (!seen.has("100 %")) {
        seen.add(await row(page, "first").locator("[data-testid=percent]").innerText())
        await page.waitForTimeout(50)
      }
      await waitForStatus(page, "first", "completed")
      assert.isTrue([...seen].some((p) => p !== "0 %" && p !== "100 %"), `live progress: ${[...seen].join(", ")}`)
      await page.screenshot({ path: path.join(shots, "completed.png") })

      // The chosen ontology was sent: it is the run's, not the built-in one.
      const first = await (await api(srv, "/v1/runs/first")).json() as { plan: { ontologySha256: string } }
      assert.notStrictEqual(first.plan.ontologySha256, defaultOntologySha256)

      // The download is the API's artifact, byte for byte, in the run's format and in another.
      await row(page, "first").click()
      await page.locator("[data-testid=detail-id]", { hasText: "first" }).waitFor()
      for (const format of ["turtle", "ntriples"]) {
        await page.selectOption("[data-testid=format]", format)
        const [download] = await Promise.all([page.waitForEvent("download"), page.click("[data-testid=download]")])
        const saved = path.join(dir, `first-${format}.download`)
        await download.saveAs(saved)
        const expected = Buffer.from(await (await api(srv, `/v1/runs/first/artifact?format=${format}`)).arrayBuffer())
        assert.isAbove(expected.length, 0)
        assert.isTrue(fs.readFileSync(saved).equals(expected), format)
      }

      // A budget of 0 is refused with the API's message, and nothing is stored.
      // Long enough (the whole book: about 1,490 batches of 60 ms, 2 at a time) to be cancelled twice while it
      // executes, also on a busy CI machine (450 batches were not, once, and 900 once more on 2026-12-07).
      // Set directly: typing a million characters (page.fill) takes longer than the test's step timeout.
      await page.locator("[data-testid=input]").evaluate((element, text) => {
        ;(element as unknown as { value: string }).value = text
      }, fs.readFileSync(mobyDick.input, "utf8"))
      await page.fill("[data-testid=run-id]", "second")
      await page.fill("[data-testid=maxCostUsd]", "0")
      await page.click("[data-testid=submit]")
      await page.locator("[data-testid=notice]", { hasText: "budget.maxCostUsd: Expected a positive number, actual 0" })
        .waitFor()
      const stored = await (await api(srv, "/v1/runs")).json() as { runs: ReadonlyArray<{ id: string }> }
      assert.deepStrictEqual(stored.runs.map((r) => r.id), ["first"])
      // A second run submitted from the form with a budget and a concurrency (the page shows the budget): cancelled
      // while it executes, then resumed to completion by the Resume button, which gives no budget, so the run keeps
      // its own.
      await page.fill("[data-testid=maxCostUsd]", "4.5")
      await page.fill("[data-testid=maxTokens]", "900000")
      await page.fill("[data-testid=concurrency]", "2")
      // A run holds the only slot (--max-active-runs 1), so the page first reads the second one waiting. With the
      // page's timers stopped (no list refresh every 10 s) the detail still shows when it started: the run.started
      // event reads the run again.
      const blocker = await fetch(`${srv.url}/v1/runs`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify({
          runId: "blocker",
          input: fs.readFileSync(mobyDick.input, "utf8").slice(0, 50_000),
          extractor: "test-slow",
          chunking: { windowSize: 1000, batchSize: 1 }
        })
      })
      assert.strictEqual(blocker.status, 202)
      await page.clock.pauseAt(Date.now() + 1000)
      await page.click("[data-testid=submit]")
      await waitForStatus(page, "second", "pending")
      await waitForStatus(page, "second", "running")
      await page.locator("[data-testid=detail-id]", { hasText: "second" }).waitFor()
      await page.locator("xpath=//dt[.='started']/following-sibling::dd[1][. != '-']").waitFor()
      await page.clock.resume()
      const planned = await (await api(srv, "/v1/runs/second")).json() as { plan: { concurrency: number } }
      assert.strictEqual(planned.plan.concurrency, 2)
      // Its row is updated in place as its batches commit (many a second): a row built again between a press and its
      // release would take no click.
      const shown = await row(page, "second").elementHandle()
      const batches = row(page, "second").locator("td.num").first()
      await batches.filter({ hasNotText: await batches.innerText() }).waitFor()
      assert.isTrue(await shown!.evaluate((tr) => tr.isConnected), "the row was replaced")
      await row(page, "second").click()
      await page.locator("[data-testid=detail-id]", { hasText: "second" }).waitFor()
      await page.locator("dd", { hasText: /^\$4\.50 at most, 900,000 tokens at most$/ }).waitFor()
      // So is the detail (its text can be selected and copied while the run progresses).
      const detailPercent = page.locator("#detail [data-testid=percent]")
      const shownPercent = await detailPercent.elementHandle()
      await detailPercent.filter({ hasNotText: await detailPercent.innerText() }).waitFor()
      assert.isTrue(await shownPercent!.evaluate((span) => span.isConnected), "the detail was replaced")
      await page.click("[data-testid=cancel]")
      await waitForStatus(page, "second", "cancelled")
      await page.screenshot({ path: path.join(shots, "cancelled.png") })
      const cancelled = await (await api(srv, "/v1/runs/second")).json() as { progress: { percent: number } }
      assert.isBelow(cancelled.progress.percent, 100)
      // Resumed with another budget, which replaces the run's whole (asking for none of it is refused first), and
      // cancelled again; then resumed by Resume, which keeps that budget, to completion.
      await page.click("[data-testid=resume-budget]")
      await page.locator("[data-testid=notice]", { hasText: "Give a max cost, max tokens, or tick none" }).waitFor()
      await page.fill("[data-testid=resume-max-cost]", "6")
      await page.click("[data-testid=resume-budget]")
      await waitForStatus(page, "second", "running")
      await page.locator("dd", { hasText: /^\$6\.00 at most$/ }).waitFor()
      await page.click("[data-testid=cancel]")
      await waitForStatus(page, "second", "cancelled")
      await page.click("[data-testid=resume]")
      await waitForStatus(page, "second", "completed")
      assert.strictEqual(await row(page, "second").locator("[data-testid=percent]").innerText(), "100 %")
      const resumed = await (await api(srv, "/v1/runs/second")).json() as { budget: unknown }
      assert.deepStrictEqual(resumed.budget, { maxCostUsd: 6, maxTokens: null })
      await page.screenshot({ path: path.join(shots, "resumed.png") })

      // Delete asks first, then the run is gone from the page and from the API.
      page.once("dialog", (dialog) => void dialog.accept())
      await row(page, "first").click()
      await page.locator("[data-testid=detail-id]", { hasText: "first" }).waitFor()
      await page.click("[data-testid=delete]")
      await row(page, "first").waitFor({ state: "detached" })
      const gone = await fetch(`${srv.url}/v1/runs/first`, { headers: { authorization: `Bearer ${token}` } })
      assert.strictEqual(gone.status, 404)

      assert.deepStrictEqual(errors, [])
      assert.deepStrictEqual(elsewhere, [])
      assert.notInclude(srv.child.stderr, token)
      for (const shot of ["login.png", "completed.png", "cancelled.png", "resumed.png"]) {
        assert.isAbove(fs.statSync(path.join(shots, shot)).size, 1000, shot)
      }
    },
    240_000
  )

  it("a server without tokens (loopback only) opens the dashboard without asking for one", async () => {
    const open = await serve(path.join(dir, "open.db"), null)
    try {
      const page = await browser!.newPage()
      await page.goto(open.url)
      await page.locator("[data-testid=runs]").waitFor()
      assert.strictEqual(await page.locator("[data-testid=token]").count(), 0)
      assert.include(await page.locator("[data-testid=runs]").innerText(), "No runs yet.")
      await page.close()
    } finally {
      open.child.child.kill("SIGKILL")
      await open.child.exited
    }
  }, 60_000)

  it(
    "a run its budget stopped offers no plain Resume (it would stop again at once), only a higher budget",
    async () => {
      const fake = await FakeLlm.start()
      const llm = await serve(path.join(dir, "llm.db"), null, {
        QUARRY_LLM_MODEL: "test-model",
        QUARRY_LLM_BASE_URL: fake.baseUrl,
        QUARRY_LLM_API_KEY: "sk-test",
        // USD per million tokens: $0.04 buys three records (as in llm.test.ts).
        QUARRY_LLM_PRICE_PROMPT: "10",
        QUARRY_LLM_PRICE_COMPLETION: "20"
      })
      try {
        const submitted = await fetch(`${llm.url}/v1/runs`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({
            runId: "capped",
            input: FakeLlm.document(8),
            extractor: "llm",
            chunking: { strategy: "sentences", windowSize: 300, overlap: 0, batchSize: 1 },
            budget: { maxCostUsd: 0.04 }
          })
        })
        assert.strictEqual(submitted.status, 202, await submitted.text())
        const page = await browser!.newPage()
        await page.goto(llm.url)
        await waitForStatus(page, "capped", "failed")
        await row(page, "capped").click()
        await page.locator("[data-testid=budget-stopped]").waitFor()
        assert.isTrue(await page.locator("[data-testid=resume]").isDisabled())
        assert.strictEqual(fake.log.length, 3)
        await page.check("[data-testid=resume-no-budget]")
        await page.click("[data-testid=resume-budget]")
        await waitForStatus(page, "capped", "completed")
        assert.strictEqual(fake.log.length, 8)
        await page.close()
      } finally {
        llm.child.child.kill("SIGKILL")
        await llm.child.exited
        await fake.close()
      }
    },
    120_000
  )

  it(
    "live progress comes back as soon as a restarted server answers, not with the next list refresh",
    async () => {
      const db = path.join(dir, "restart.db")
      const first = await serve(db, null)
      const port = new URL(first.url).port
      let second: Server | undefined
      try {
        // The whole book, 60 ms a batch: it is still executing after the restart.
        const submitted = await fetch(`${first.url}/v1/runs`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({
            runId: "long",
            input: fs.readFileSync(mobyDick.input, "utf8"),
            extractor: "test-slow",
            chunking: { windowSize: 1000, batchSize: 1 }
          })
        })
        assert.strictEqual(submitted.status, 202, await submitted.text())
        const page = await browser!.newPage()
        // The page's periodic list refresh never comes in this test: only finding the server again can bring the
        // progress back. (Its only interval is that refresh; its other timers are timeouts.)
        await page.addInitScript({
          content: "const every = window.setInterval.bind(window);" +
            "window.setInterval = (handler, _ms, ...args) => every(handler, 3600000, ...args)"
        })
        await page.goto(first.url)
        // The committed batches the page shows, from the progress bar's tooltip ("12/1490 batches"), until more
        // than `floor` (read from here: the page's policy allows no script from a test).
        const committed = async () =>
          Number.parseInt((await row(page, "long").locator("[role=progressbar]").getAttribute("title")) ?? "", 10)
        const moreThan = async (floor: number) => {
          const deadline = Date.now() + 60_000
          while (!((await committed()) > floor)) {
            assert.isBelow(Date.now(), deadline, `no progress past ${floor} batches shown`)
            await page.waitForTimeout(100)
          }
        }
        await waitForStatus(page, "long", "running")
        await moreThan(0)

        // SIGTERM: the run is interrupted, the event stream ends, the page finds no server.
        first.child.child.kill("SIGTERM")
        assert.strictEqual((await first.child.exited).code, 0, first.child.stderr)
        await page.locator("[data-testid=notice]", { hasText: "The server does not answer" }).waitFor({
          timeout: 60_000
        })
        const before = await committed()

        // The next server on the same port resumes the run; the page follows it again, and the notice goes.
        second = await serve(db, null, {}, Number(port))
        await moreThan(before)
        await page.locator("[data-testid=notice]", { hasText: "does not answer" }).waitFor({ state: "detached" })
        await page.close()
      } finally {
        for (const server of [first, second]) {
          if (server !== undefined && server.child.child.exitCode === null) server.child.child.kill("SIGKILL")
          await server?.child.exited
        }
      }
    },
    180_000
  )
})
