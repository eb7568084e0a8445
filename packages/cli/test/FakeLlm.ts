/**
 * A scripted OpenAI-compatible Chat Completions server on 127.0.0.1 for the CLI's tests: `@quarry/llm`'s
 * `FakeOpenAi` (the real protocol over loopback), driven through Promises so that the end-to-end tests in the root
 * `test/`, which spawn `quarry` processes, can start it, change its behaviour and read its log.
 *
 * It answers from the batch text in each request. The test documents (`document`) are `Record NN` sentences naming
 * two people each; the server finds the batch's record number and names, replies with those names as `Person`
 * entities, and reports known token counts for the batch (`usageOf`), which it logs with every request.
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as FakeOpenAi from "../../llm/test/FakeOpenAi.js"

const firsts = ["Ada", "Charles", "Mary", "Alan", "Grace", "John", "Emmy", "Carl", "Sofia", "Niels", "Lise", "Paul"]
const lasts = ["Lovelace", "Babbage", "Somerville", "Turing", "Hopper", "Herschel", "Noether", "Gauss", "Kovalevskaya"]

/** The two people of record `i`. */
export const people = (i: number): readonly [string, string] => [
  `${firsts[i % firsts.length]} ${lasts[i % lasts.length]}`,
  `${firsts[(i + 5) % firsts.length]} ${lasts[(i + 4) % lasts.length]}`
]

/**
 * A document of `count` records, one sentence (180 to 200 characters) per paragraph. Cut with
 * `chunkingFlags` every batch is one record.
 */
export const document = (count: number): string =>
  Array.from({ length: count }, (_, i) => {
    const [a, b] = people(i)
    return `Record ${String(i).padStart(2, "0")} tells how ${a} met ${b} in the old archive, and how together ` +
      `they copied the ledgers page by page until the lamps burned low.`
  }).join("\n\n") + "\n"

/** The options of `quarry start` that make every batch of a `document` one record. */
export const chunkingFlags: ReadonlyArray<string> = [
  "--chunking",
  "sentences",
  "--window",
  "300",
  "--overlap",
  "0",
  "--batch-size",
  "1"
]

/** The usage the server reports for a request of batch (record) `batch`. */
export const usageOf = (batch: number) => ({ promptTokens: 1000 + 10 * batch, completionTokens: 100 + batch })

/** How the server behaves; it can be changed while it runs. */
export interface Behaviour {
  /** Records answered with HTTP 400 (a permanent failure, not retried, not the endpoint's fault). */
  readonly reject?: ReadonlyArray<number> | undefined
  /** Every request answered with HTTP 500 (the endpoint is down). */
  readonly down?: boolean | undefined
  /** The first request for this record gets no answer: it is held open for a minute. */
  readonly hold?: number | undefined
}

/** One request as the server saw and answered it. */
export interface Logged {
  readonly batch: number
  readonly model: string | undefined
  /** The sampling settings the request asked for. */
  readonly temperature: number | undefined
  readonly maxTokens: number | undefined
  readonly status: number
  /** Tokens the reply reported (0 for an error reply). */
  readonly promptTokens: number
  readonly completionTokens: number
  /** The request that was held and never answered. */
  readonly held: boolean
  /** `Date.now()` when it arrived. */
  readonly at: number
}

/** The running server. */
export interface FakeLlm {
  /** `http://127.0.0.1:PORT/v1` */
  readonly baseUrl: string
  readonly log: ReadonlyArray<Logged>
  readonly behave: (behaviour: Behaviour) => void
  readonly close: () => Promise<void>
}

const batchText = (body: typeof FakeOpenAi.RequestBody.Type): string => {
  const user = (body.messages ?? []).filter((m) => m.role === "user").at(0)?.content ?? ""
  const match = /<<<\n([\s\S]*)\n>>>/.exec(user)
  return match === null ? "" : match[1]!
}

/** Starts a server; `close` stops it. */
export const start = async (initial: Behaviour = {}): Promise<FakeLlm> => {
  let behaviour = initial
  const log: Array<Logged> = []
  const held = new Set<number>()
  const answer = (body: typeof FakeOpenAi.RequestBody.Type): FakeOpenAi.Step => {
    const text = batchText(body)
    const batch = Number(/Record (\d+)/.exec(text)?.[1] ?? -1)
    const entry = {
      batch,
      model: body.model,
      temperature: body.temperature,
      maxTokens: body.max_tokens,
      at: Date.now(),
      promptTokens: 0,
      completionTokens: 0,
      held: false
    }
    if (behaviour.down === true) {
      log.push({ ...entry, status: 500 })
      return FakeOpenAi.error(500, "the test server is down")
    }
    if (behaviour.reject?.includes(batch) === true) {
      log.push({ ...entry, status: 400 })
      return FakeOpenAi.error(400, `record ${batch} violates the test server's content policy`)
    }
    const usage = usageOf(batch)
    const names = [...new Set(text.match(/\b[A-Z][a-z]+ [A-Z][a-z]+\b/g) ?? [])]
    const reply = JSON.stringify({
      entities: names.map((label) => ({ label, type: "Person", confidence: 0.9 })),
      relations: []
    })
    const step = FakeOpenAi.completion(reply, {
      usage: { prompt_tokens: usage.promptTokens, completion_tokens: usage.completionTokens }
    })
    if (behaviour.hold === batch && !held.has(batch)) {
      held.add(batch)
      log.push({ ...entry, status: 200, ...usage, held: true })
      return { ...step, delayMillis: 60_000 }
    }
    log.push({ ...entry, status: 200, ...usage })
    return step
  }
  const scope = Effect.runSync(Scope.make())
  const fake = await Effect.runPromise(FakeOpenAi.make({ fallback: answer }).pipe(Scope.extend(scope)))
  return {
    baseUrl: fake.baseUrl,
    log,
    behave: (next) => {
      behaviour = next
    },
    close: () => Effect.runPromise(Scope.close(scope, Exit.void))
  }
}
