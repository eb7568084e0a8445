/**
 * The Quarry dashboard: runs table with live progress (Server-Sent Events through `fetch`), run detail with
 * cancel/resume/delete and artifact download, and a submit form. Plain TypeScript and the DOM; built by esbuild into
 * `dist/dashboard/app.js` and served by `quarry serve` at `/`.
 */
import * as Api from "./api.js"
import { count, dollars, duration, h, morph, mount, time } from "./dom.js"

type RunView = Api.RunView

const runs = new Map<string, RunView>()
const streams = new Map<string, AbortController>()
/** Browsers open at most six connections per host over HTTP/1.1: leave most of them to requests. */
const maxStreams = 3
let selected: string | null = null
let refreshTimer: ReturnType<typeof setInterval> | undefined
/** The list is read this often (runs submitted elsewhere appear); active runs update through their event streams. */
const listRefreshMs = 10_000
/** While the server does not answer, it is looked for this often: a refused connection costs nothing. */
const lookAgainMs = 2_000
let lookAgainTimer: ReturnType<typeof setTimeout> | undefined

const root = document.getElementById("app")!
const notice = document.getElementById("notice")!

const say = (message: string, kind: "error" | "info" = "info") => {
  notice.textContent = message
  notice.className = message === "" ? "" : kind
}

/** The notice shown while the server does not answer, cleared by the first read that succeeds again. */
let unreachable: string | null = null

/** Set when the server stopped answering; cleared once a server that answers again has resumed what it left. */
let recovering = false

const reachable = () => {
  if (unreachable !== null && notice.textContent === unreachable) say("")
  unreachable = null
}

/**
 * Reads the list again soon, once: after a network error, so that a server back from a restart is found within
 * seconds and its runs followed again at once, not at the next list refresh.
 */
const lookAgain = () => {
  if (lookAgainTimer !== undefined) return
  lookAgainTimer = setTimeout(() => {
    lookAgainTimer = undefined
    void refresh()
  }, lookAgainMs)
}

const failed = (error: unknown) => {
  if (error instanceof Api.ApiFailure && error.status === 401) return showLogin("The token was refused.")
  if (error instanceof TypeError) {
    // fetch's network error: the server is down or restarting.
    unreachable = `The server does not answer (${error.message}); trying again every ${lookAgainMs / 1000} s.`
    recovering = true
    lookAgain()
    return say(unreachable, "error")
  }
  const message = error instanceof Api.ApiFailure ?
    `${error.tag}: ${error.message}` :
    error instanceof Error
    ? error.message
    : String(error)
  say(message, "error")
}

const showLogin = (message = "") => {
  clearInterval(refreshTimer)
  clearTimeout(lookAgainTimer)
  lookAgainTimer = undefined
  for (const controller of streams.values()) controller.abort()
  streams.clear()
  const input = h("input", { type: "password", name: "token", "data-testid": "token", autocomplete: "off" })
  const form = h(
    "form",
    {
      class: "login",
      onsubmit: (event) => {
        event.preventDefault()
        Api.setToken(input.value.trim())
        void start()
      }
    },
    h("label", {}, "API token ", input),
    h("button", { type: "submit", "data-testid": "login" }, "Open the dashboard"),
    h("p", { class: "hint" }, "One of QUARRY_API_TOKENS. Kept in this tab only (sessionStorage).")
  )
  mount(root, form)
  say(message, message === "" ? "info" : "error")
  input.focus()
}

const formats = ["turtle", "ntriples", "jsonl"]

const active = (run: RunView) => run.status === "pending" || run.status === "running"

const progressBar = (run: RunView) => {
  const fill = h("div", { class: `fill ${run.status}` })
  // Through the CSSOM: the Content-Security-Policy refuses inline style attributes.
  fill.style.width = `${run.progress.percent}%`
  return h(
    "div",
    {
      class: "progress",
      title: `${run.progress.committedBatches}/${run.progress.totalBatches} batches`,
      role: "progressbar",
      "aria-label": `progress of run ${run.id}`,
      "aria-valuemin": 0,
      "aria-valuemax": 100,
      "aria-valuenow": run.progress.percent
    },
    h("div", { class: "bar" }, fill),
    h("span", { class: "percent", "data-testid": "percent" }, `${run.progress.percent} %`)
  )
}

/** Rows take the keyboard too: Tab reaches them, Enter or Space selects one, the arrows move between them. */
const rowKey = (event: Event) => {
  if (!(event instanceof KeyboardEvent) || !(event.currentTarget instanceof HTMLTableRowElement)) return
  const next = event.key === "ArrowDown" ?
    event.currentTarget.nextElementSibling :
    event.key === "ArrowUp" ?
    event.currentTarget.previousElementSibling :
    null
  if (next instanceof HTMLTableRowElement) {
    event.preventDefault()
    next.focus()
  } else if (event.key === "Enter" || event.key === " ") {
    event.preventDefault()
    selectRow(event)
  }
}

/** The run of the row an event is on (rows are updated in place, so their listeners read the row). */
const selectRow = (event: Event) => {
  const runId = event.currentTarget instanceof HTMLTableRowElement ? event.currentTarget.dataset["runId"] : undefined
  if (runId !== undefined) select(runId)
}

const row = (run: RunView) =>
  h(
    "tr",
    {
      "data-run-id": run.id,
      class: run.id === selected ? "selected" : "",
      tabindex: 0,
      "aria-selected": run.id === selected ? "true" : "false",
      onclick: selectRow,
      onkeydown: rowKey
    },
    // A long id is cut short with an ellipsis (the whole id in its tooltip and the detail) so the other columns show.
    h("td", { class: "id", title: run.id }, run.id),
    h("td", {}, h("span", { class: `status ${run.status}`, "data-testid": "status" }, run.status)),
    h("td", {}, progressBar(run)),
    h("td", { class: "num" }, `${run.progress.committedBatches}/${run.progress.totalBatches}`),
    h("td", { class: "num" }, count(run.counters.entityMentions)),
    h("td", { class: "num" }, count(run.counters.relations)),
    h("td", { class: "num" }, count(run.counters.skippedBatches)),
    h(
      "td",
      { class: "num" },
      `${count(run.usage.requests)} / ${count(run.usage.promptTokens + run.usage.completionTokens)}`
    ),
    h("td", { class: "num" }, dollars(run.usage.costUsd)),
    h("td", { class: "num" }, run.queuePosition ?? "-"),
    h("td", {}, time(run.timings.updatedAt))
  )

const renderTable = () => {
  const table = document.getElementById("runs")
  if (table === null) return
  const sorted = [...runs.values()].sort((a, b) => b.timings.createdAt.localeCompare(a.timings.createdAt))
  // A row added or removed builds the body again: the row that had the keyboard focus gets it back.
  const focused = document.activeElement instanceof HTMLTableRowElement && table.contains(document.activeElement) ?
    document.activeElement.dataset["runId"] :
    undefined
  morph(
    table,
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        [
          "run",
          "status",
          "progress",
          "batches",
          "entities",
          "relations",
          "skipped",
          "req. / tokens",
          "cost",
          "queue"
        ]
          .map((label) => h("th", { scope: "col" }, label)),
        h("th", { scope: "col" }, "updated")
      )
    ),
    h(
      "tbody",
      {},
      sorted.length === 0 ? h("tr", {}, h("td", { colspan: 11, class: "empty" }, "No runs yet.")) : sorted.map(row)
    )
  )
  if (focused !== undefined) {
    for (const tr of table.querySelectorAll<HTMLTableRowElement>("tr[data-run-id]")) {
      if (tr.dataset["runId"] === focused) tr.focus({ preventScroll: true })
    }
  }
}

const facts = (pairs: ReadonlyArray<readonly [string, Node | string | number]>) =>
  h("dl", {}, pairs.flatMap(([key, value]) => [h("dt", {}, key), h("dd", {}, value)]))

const act = (label: string, testId: string, enabled: boolean, action: () => Promise<unknown>) =>
  h("button", {
    type: "button",
    "data-testid": testId,
    disabled: !enabled,
    onclick: () => {
      say("")
      action().then(() => refresh(), failed)
    }
  }, label)

const runPath = (run: RunView, suffix = "") => `/v1/runs/${encodeURIComponent(run.id)}${suffix}`

/** The budget in force, as a resume without one keeps it. */
const budgetText = (budget: RunView["budget"]) =>
  budget === null ? "none" : [
    ...(budget.maxCostUsd === null ? [] : [`${dollars(budget.maxCostUsd)} at most`]),
    ...(budget.maxTokens === null ? [] : [`${count(budget.maxTokens)} tokens at most`])
  ].join(", ")

/** A button that posts to one of the run's action routes (`/cancel`, `/resume`, ...). */
const post = (run: RunView, label: string, testId: string, enabled: boolean, suffix: string) =>
  act(label, testId, enabled, () => Api.json("POST", runPath(run, suffix)))

/** A drop-down of plain values. */
const choice = (attributes: Record<string, string>, values: ReadonlyArray<string>, selected?: string) =>
  h("select", attributes, values.map((v) => h("option", { value: v, selected: v === selected }, v)))

const numberInput = (name: string, placeholder: string, step: "1" | "any" = "1") =>
  h("input", { type: "number", name, min: 0, step, placeholder, "data-testid": name })

const numberField = (name: string, label: string, placeholder: string, step: "1" | "any" = "1") =>
  h("label", {}, label, numberInput(name, placeholder, step))

/** The query of a resume with a new budget: limits that replace the run's, or `noBudget` that lifts it. */
const budgetQuery = (cost: string, tokens: string, none: boolean) => {
  if (none) return "?noBudget=true"
  const params = new URLSearchParams([
    ...(cost === "" ? [] : [["maxCostUsd", cost]]),
    ...(tokens === "" ? [] : [["maxTokens", tokens]])
  ])
  if (params.size === 0) throw new Error("Give a max cost, max tokens, or tick none; Resume keeps the run's budget.")
  return `?${params}`
}

/** A run its budget stopped: Resume keeps that budget, so it would stop again at once. */
const budgetStopped = (run: RunView) => run.status === "failed" && run.failureReason === "budget" && run.budget !== null

/** Resume with another budget than the run's (which the plain Resume keeps). */
const budgetResume = (run: RunView) => {
  const cost = numberInput("resume-max-cost", "USD", "any")
  const tokens = numberInput("resume-max-tokens", "tokens")
  const none = h("input", { type: "checkbox", "data-testid": "resume-no-budget" })
  return h(
    "div",
    { class: "actions" },
    budgetStopped(run) &&
      h("p", { "data-testid": "budget-stopped" }, "Its budget stopped it: give a higher one, or none, to go on."),
    h("label", {}, "Budget $", cost),
    tokens,
    h("label", {}, none, " none"),
    act(
      "Resume with this budget",
      "resume-budget",
      true,
      async () =>
        Api.json("POST", runPath(run, `/resume${budgetQuery(cost.value.trim(), tokens.value.trim(), none.checked)}`))
    )
  )
}

const actions = (run: RunView) => {
  const format = choice({ "data-testid": "format" }, formats, run.plan.output.format)
  return h(
    "div",
    {},
    h(
      "div",
      { class: "actions" },
      post(run, "Cancel", "cancel", active(run), "/cancel"),
      post(run, "Resume", "resume", run.resumable && !active(run) && !budgetStopped(run), "/resume"),
      post(
        run,
        "Retry skipped",
        "retry-skipped",
        run.counters.skippedBatches > 0 && !active(run),
        "/resume?retrySkipped=true"
      ),
      act("Delete", "delete", !active(run), async () => {
        if (!confirm(`Delete run ${run.id}, its rows and its artifact?`)) return
        await Api.request("DELETE", runPath(run))
        runs.delete(run.id)
        selected = null
      }),
      h(
        "span",
        { class: "download" },
        format,
        act("Download artifact", "download", run.status === "completed", () => Api.download(run, format.value))
      )
    ),
    run.resumable && !active(run) && budgetResume(run)
  )
}

let shownActions: { readonly key: string; readonly element: HTMLElement } | undefined
let actionsBuilt = 0

/**
 * The run's buttons, built again only when what they can do changes: a run's events re-render the detail many times
 * a second, and a button replaced between a press and its release takes no click (the chosen format stays, too).
 */
const actionsOf = (run: RunView) => {
  const key = JSON.stringify([run.id, run.status, run.failureReason, run.resumable, run.counters.skippedBatches > 0])
  if (shownActions?.key !== key) {
    // Its buttons read its own drop-down and fields: `morph` must replace it whole, not patch one into the other.
    const element = actions(run)
    element.dataset["key"] = String(++actionsBuilt)
    shownActions = { key, element }
  }
  return shownActions.element
}

const renderDetail = () => {
  const panel = document.getElementById("detail")
  if (panel === null) return
  const run = selected === null ? undefined : runs.get(selected)
  if (run === undefined) return mount(panel, h("p", { class: "hint" }, "Select a run to see its plan and state."))
  const c = run.plan.chunking
  const breaker = run.extractorStatus["circuit"] ?? run.extractorStatus["breaker"]
  morph(
    panel,
    h(
      "h2",
      {},
      "Run ",
      h("code", { "data-testid": "detail-id" }, run.id),
      " ",
      h("span", { class: `status ${run.status}` }, run.status)
    ),
    actionsOf(run),
    progressBar(run),
    h("h3", {}, "State"),
    facts([
      ["queue position", run.queuePosition ?? "not waiting"],
      ["breaker", breaker ?? "n/a (no breaker reported)"],
      ...Object.entries(run.extractorStatus).map(([k, v]) => [`extractor ${k}`, v] as const),
      ["last error", run.lastError === null ? "none" : `${run.failureReason ?? "error"}: ${run.lastError}`],
      ["cancel requested", run.cancelRequested ? "yes" : "no"],
      ["budget", budgetText(run.budget)],
      ["compensation", `${run.compensation.state} (${run.compensation.steps.length} steps)`],
      ["lease", run.lease === null ? "none" : `${run.lease.owner} until ${time(run.lease.expiresAt)}`],
      [
        "usage",
        `${count(run.usage.requests)} requests, ${count(run.usage.promptTokens)} prompt + ${
          count(run.usage.completionTokens)
        } completion tokens, ${dollars(run.usage.costUsd)}`
      ],
      ["lost usage", `${count(run.lostUsage.requests)} requests, ${dollars(run.lostUsage.costUsd)}`]
    ]),
    h("h3", {}, `Skipped batches (${run.skipped.length})`),
    run.skipped.length === 0 ?
      h("p", { class: "hint" }, "None.") :
      h("ul", { class: "skipped" }, run.skipped.map((s) => h("li", {}, `batch ${s.batchIndex}: ${s.error}`))),
    h("h3", {}, "Timings"),
    facts([
      ["created", time(run.timings.createdAt)],
      ["started", time(run.timings.startedAt)],
      ["finished", time(run.timings.finishedAt)],
      ["duration", duration(run.timings.durationMs)]
    ]),
    h("h3", {}, "Plan"),
    facts([
      ["extractor", `${run.plan.extractor.name} ${run.plan.extractor.version}`],
      ["chunking", `${c.strategy}, window ${c.windowSize}, overlap ${c.overlap}, batch size ${c.batchSize}`],
      ["concurrency", run.plan.concurrency],
      ["on batch error", run.plan.onBatchError],
      ["format", run.plan.output.format],
      ["input", `${count(run.plan.input.characters)} characters, sha256 ${run.plan.input.sha256.slice(0, 16)}…`],
      ["ontology", run.plan.ontologySha256 === null ? "none" : `sha256 ${run.plan.ontologySha256.slice(0, 16)}…`],
      ["artifact", run.artifact === null ? "not yet" : `${run.artifact.format}, ${count(run.artifact.bytes)} bytes`]
    ])
  )
}

const render = () => {
  renderTable()
  renderDetail()
}

const select = (runId: string) => {
  selected = runId
  render()
}

const applyEvent = (runId: string, event: Api.ServerEvent) => {
  const run = runs.get(runId)
  const d = event.data
  if (run === undefined || typeof d["committedBatches"] !== "number") return
  const committed = d["committedBatches"]
  const total = typeof d["totalBatches"] === "number" ? d["totalBatches"] : run.progress.totalBatches
  runs.set(runId, {
    ...run,
    status: event.event === "run.started" || event.event === "batch.committed" ? "running" : run.status,
    queuePosition: null,
    progress: {
      committedBatches: committed,
      totalBatches: total,
      percent: total === 0 ? 100 : Math.floor((committed / total) * 100)
    },
    counters: {
      entityMentions: typeof d["entityMentions"] === "number" ? d["entityMentions"] : run.counters.entityMentions,
      relations: typeof d["relations"] === "number" ? d["relations"] : run.counters.relations,
      skippedBatches: typeof d["skippedBatches"] === "number" ? d["skippedBatches"] : run.counters.skippedBatches
    }
  })
  render()
}

/**
 * Follows the events of a waiting or executing run, within the stream budget. A stream that ends with the run
 * refreshes at once; one that ends otherwise (the server drains, the network fails) waits before looking again, so
 * that a server refusing streams is not asked again in a tight loop (a server that does not answer is then looked
 * for until it does: `lookAgain`).
 */
const follow = (run: RunView) => {
  if (!active(run) || streams.has(run.id) || streams.size >= maxStreams) return
  const controller = new AbortController()
  streams.set(run.id, controller)
  let ended = false
  const onEvent = (event: Api.ServerEvent) => {
    ended = ended || !["run.started", "batch.committed", "message"].includes(event.event)
    applyEvent(run.id, event)
    if (event.event === "run.started") void reload(run.id)
  }
  Api.followEvents(run.id, onEvent, controller.signal)
    .catch(() => undefined)
    .finally(() => {
      if (controller.signal.aborted) return
      setTimeout(() => {
        streams.delete(run.id)
        void refresh()
      }, ended ? 0 : 3000)
    })
}

/** Reads one run again: a start changes what its events do not carry (when it started, its lease). */
const reload = async (runId: string) => {
  try {
    runs.set(runId, await Api.json<RunView>("GET", `/v1/runs/${encodeURIComponent(runId)}`))
    render()
  } catch (error) {
    failed(error)
  }
}

/**
 * A server back from a restart answers before its boot recovery has resumed the runs it left, and resumes them one
 * slot at a time: read the list again every few seconds until boot recovery is done (`/startupz`) and no run waits in
 * the queue without running, so that each is followed as soon as it runs, not at the next list refresh.
 */
const lookWhileRecovering = async (seen: ReadonlyMap<string, RunView>) => {
  const started = await Api.request("GET", "/startupz").then(() => true, () => false)
  const waiting = [...seen.values()].some((run) => run.queuePosition !== null && run.status !== "running")
  if (!started || waiting) lookAgain()
  else recovering = false
}

const refresh = async () => {
  try {
    const seen = new Map<string, RunView>()
    let cursor: string | null = null
    do {
      const query: string = cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`
      const page: { runs: Array<RunView>; nextCursor: string | null } = await Api.json(
        "GET",
        `/v1/runs?limit=200&order=newest${query}`
      )
      for (const run of page.runs) seen.set(run.id, run)
      cursor = page.nextCursor
    } while (cursor !== null && seen.size < 1000)
    reachable()
    runs.clear()
    for (const [id, run] of seen) runs.set(id, run)
    render()
    for (const run of runs.values()) follow(run)
    if (recovering) await lookWhileRecovering(seen)
  } catch (error) {
    failed(error)
  }
}

const optionalNumber = (form: HTMLFormElement, name: string) => {
  const value = (form.elements.namedItem(name) as HTMLInputElement).value.trim()
  return value === "" ? undefined : Number(value)
}

const submitForm = () => {
  let ontology: string | undefined
  const input = h("textarea", {
    name: "input",
    rows: 6,
    placeholder: "Paste text, or choose a file",
    "data-testid": "input"
  })
  const file = h("input", {
    type: "file",
    accept: ".txt,.md,text/*",
    "data-testid": "file",
    onchange: async () => {
      const chosen = file.files?.[0]
      if (chosen !== undefined) input.value = await chosen.text()
    }
  })
  const ontologyFile = h("input", {
    type: "file",
    accept: ".ttl,text/turtle",
    "data-testid": "ontology",
    onchange: async () => {
      const chosen = ontologyFile.files?.[0]
      ontology = chosen === undefined ? undefined : await chosen.text()
      ontologyState.textContent = ontology === undefined ? "built-in" : `${count(ontology.length)} characters loaded`
    }
  })
  const ontologyState = h("span", { class: "hint", "data-testid": "ontology-state" }, "built-in")
  const form: HTMLFormElement = h(
    "form",
    {
      class: "submit",
      "data-testid": "submit-form",
      onsubmit: (event) => void submit(event, form, input, () => ontology)
    },
    h("h2", {}, "Submit a document"),
    input,
    h(
      "div",
      { class: "fields" },
      h("label", {}, "File ", file),
      h("label", {}, "Ontology (Turtle) ", ontologyFile, ontologyState),
      h("label", {}, "Run id ", h("input", { name: "runId", placeholder: "generated", "data-testid": "run-id" })),
      h("label", {}, "Extractor ", h("input", { name: "extractor", value: "offline", "data-testid": "extractor" })),
      h("label", {}, "Chunking ", choice({ name: "strategy" }, ["chars", "sentences"])),
      numberField("windowSize", "Window ", "1000"),
      numberField("overlap", "Overlap ", "auto"),
      numberField("batchSize", "Batch size ", "10"),
      numberField("concurrency", "Concurrency ", "1"),
      h("label", {}, "Format ", choice({ name: "format" }, formats)),
      h("label", {}, "On batch error ", choice({ name: "onBatchError" }, ["fail", "skip"])),
      // Kept with the run: a resume, also the Resume button, keeps it.
      numberField("maxCostUsd", "Max cost (USD) ", "none", "any"),
      numberField("maxTokens", "Max tokens ", "none")
    ),
    h("button", { type: "submit", "data-testid": "submit" }, "Submit")
  )
  return form
}

const submit = async (
  event: Event,
  form: HTMLFormElement,
  input: HTMLTextAreaElement,
  ontology: () => string | undefined
) => {
  event.preventDefault()
  say("")
  const value = (name: string) => (form.elements.namedItem(name) as HTMLInputElement | HTMLSelectElement).value
  const runId = value("runId").trim()
  const budget = { maxCostUsd: optionalNumber(form, "maxCostUsd"), maxTokens: optionalNumber(form, "maxTokens") }
  const body = {
    input: input.value,
    ...(runId === "" ? {} : { runId }),
    extractor: value("extractor").trim() || "offline",
    ...(ontology() === undefined ? {} : { ontology: ontology() }),
    chunking: {
      strategy: value("strategy"),
      windowSize: optionalNumber(form, "windowSize"),
      overlap: optionalNumber(form, "overlap"),
      batchSize: optionalNumber(form, "batchSize")
    },
    concurrency: optionalNumber(form, "concurrency"),
    format: value("format"),
    onBatchError: value("onBatchError"),
    ...(budget.maxCostUsd === undefined && budget.maxTokens === undefined ? {} : { budget })
  }
  try {
    const run = await Api.json<RunView>("POST", "/v1/runs", body)
    runs.set(run.id, run)
    selected = run.id
    say(`Submitted run ${run.id}.`)
    await refresh()
  } catch (error) {
    failed(error)
  }
}

const showDashboard = () => {
  mount(
    root,
    h(
      "div",
      { class: "column" },
      h("section", { class: "runs" }, h("h2", {}, "Runs"), h("table", { id: "runs", "data-testid": "runs" })),
      submitForm()
    ),
    h("section", { id: "detail", class: "detail", "data-testid": "detail" })
  )
  render()
  clearInterval(refreshTimer)
  // Active runs update through their event streams; the list is for runs started elsewhere and costs the server
  // a few queries per run, so it is read less often.
  refreshTimer = setInterval(() => void refresh(), listRefreshMs)
}

/** Opens the dashboard when the API answers with the token of this tab (or without one), else asks for it. */
const start = async () => {
  const hadToken = Api.token() !== null
  try {
    await Api.request("GET", "/v1/runs?limit=1")
  } catch (error) {
    if (error instanceof Api.ApiFailure && error.status === 401) {
      return showLogin(hadToken ? "The token was refused." : "")
    }
    return failed(error)
  }
  showDashboard()
  await refresh()
}

document.getElementById("forget")?.addEventListener("click", () => {
  Api.clearToken()
  showLogin()
})

void start()
