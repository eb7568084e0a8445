/**
 * OTLP trace export of a real `quarry serve`: a fake OTLP/HTTP collector (a `node:http` server on loopback) receives
 * the real export, in JSON and in protobuf, and the spans of a run arrive carrying its run id.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as path from "node:path"
import { call, ended, serve, stop, until } from "./serverProcess.js"
import { makeDir, removeDir, start } from "./support.js"

interface Span {
  readonly name: string
  readonly traceId: string
  readonly attributes: Record<string, string>
}

/** A collector that keeps every request to `/v1/traces`. */
const collector = async () => {
  const received: Array<{ readonly contentType: string; readonly body: Buffer }> = []
  const server = http.createServer((request, response) => {
    const chunks: Array<Buffer> = []
    request.on("data", (chunk: Buffer) => chunks.push(chunk))
    request.on("end", () => {
      if (request.method === "POST" && request.url === "/v1/traces") {
        received.push({ contentType: request.headers["content-type"] ?? "", body: Buffer.concat(chunks) })
      }
      response.writeHead(200, { "content-type": request.headers["content-type"] ?? "application/json" })
      response.end(request.headers["content-type"]?.includes("json") === true ? "{}" : "")
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received,
    close: () => new Promise<void>((resolve) => server.close(() => resolve()))
  }
}

/** Spans of an OTLP/JSON `ExportTraceServiceRequest`. */
const jsonSpans = (body: Buffer): Array<Span> => {
  const request = JSON.parse(body.toString("utf8")) as {
    resourceSpans: Array<{
      scopeSpans: Array<{
        spans: Array<{
          name: string
          traceId: string
          attributes: Array<{ key: string; value: { stringValue?: string } }>
        }>
      }>
    }>
  }
  return request.resourceSpans.flatMap((r) =>
    r.scopeSpans.flatMap((s) =>
      s.spans.map((span) => ({
        name: span.name,
        traceId: span.traceId,
        attributes: Object.fromEntries(span.attributes.map((a) => [a.key, a.value.stringValue ?? ""]))
      }))
    )
  )
}

/** The fields of one protobuf message: field number to its length-delimited values (varints and fixed skipped). */
const fields = (buffer: Buffer): Map<number, Array<Buffer>> => {
  const out = new Map<number, Array<Buffer>>()
  let at = 0
  const varint = () => {
    let value = 0
    let shift = 0
    for (;;) {
      const byte = buffer[at++]!
      value += (byte & 0x7f) * 2 ** shift
      if ((byte & 0x80) === 0) return value
      shift += 7
    }
  }
  while (at < buffer.length) {
    const key = varint()
    const wire = key % 8
    const field = Math.floor(key / 8)
    if (wire === 0) varint()
    else if (wire === 1) at += 8
    else if (wire === 5) at += 4
    else if (wire === 2) {
      const length = varint()
      out.set(field, [...(out.get(field) ?? []), buffer.subarray(at, at + length)])
      at += length
    } else throw new Error(`unexpected wire type ${wire}`)
  }
  return out
}

/** Spans of an OTLP/protobuf `ExportTraceServiceRequest` (opentelemetry-proto trace/v1 field numbers). */
const protobufSpans = (body: Buffer): Array<Span> =>
  (fields(body).get(1) ?? []).flatMap((resourceSpans) =>
    (fields(resourceSpans).get(2) ?? []).flatMap((scopeSpans) =>
      (fields(scopeSpans).get(2) ?? []).map((bytes) => {
        const span = fields(bytes)
        const attributes = (span.get(9) ?? []).map((kv) => {
          const pair = fields(kv)
          const value = pair.get(2)?.[0]
          return [
            pair.get(1)![0]!.toString("utf8"),
            value === undefined ? "" : fields(value).get(1)?.[0]?.toString("utf8") ?? ""
          ]
        })
        return {
          name: span.get(5)![0]!.toString("utf8"),
          traceId: span.get(1)![0]!.toString("hex"),
          attributes: Object.fromEntries(attributes)
        }
      })
    )
  )

describe("quarry serve OTLP traces", () => {
  let dir = ""
  beforeAll(() => {
    dir = makeDir()
  })
  afterAll(() => removeDir(dir))

  for (const protocol of ["http/json", "http/protobuf"] as const) {
    it(`${protocol}: a run's spans reach the collector with its run id, in the run's trace`, async () => {
      const otlp = await collector()
      const server = await serve(path.join(dir, `${protocol.replace("/", "-")}.db`), [], {
        OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
        OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
        OTEL_BSP_SCHEDULE_DELAY: "200",
        OTEL_SERVICE_NAME: "quarry-test"
      })
      try {
        const submitted = await call(server, "POST", "/v1/runs", {
          runId: "traced",
          input: "Captain Ahab commanded the Pequod. Ishmael sailed from Nantucket with Queequeg."
        })
        assert.strictEqual(submitted.status, 202)
        assert.strictEqual((await ended(server, "traced")).status, "completed")
        const spans = () =>
          otlp.received.flatMap((r) => protocol === "http/json" ? jsonSpans(r.body) : protobufSpans(r.body))
        await until(() => spans().some((s) => s.name === "Workflow.execute"), 30_000, "the Workflow.execute span")
        const contentType = protocol === "http/json" ? "application/json" : "application/x-protobuf"
        for (const r of otlp.received) assert.include(r.contentType, contentType)
        const execute = spans().find((s) => s.name === "Workflow.execute")!
        assert.strictEqual(execute.attributes["quarry.run_id"], "traced")
        // The spans under it carry the run id too, in the same trace.
        const commit = spans().find((s) => s.name === "SqlRunStore.commitBatch")
        assert.isDefined(commit)
        assert.strictEqual(commit!.attributes["quarry.run_id"], "traced")
        assert.strictEqual(commit!.traceId, execute.traceId)
        assert.isTrue(spans().some((s) => s.name === "Workflow.create" && s.attributes["quarry.run_id"] === "traced"))
        assert.isTrue(spans().some((s) => s.name === "http.server POST"))
        // Probes and scrapes make no spans; the status reads do.
        assert.strictEqual((await call(server, "GET", "/livez")).status, 200)
        assert.strictEqual((await call(server, "GET", "/metrics")).status, 200)
        const paths = () => spans().map((s) => s.attributes["url.path"]).filter((p) => p !== undefined)
        await until(() => paths().includes("/v1/runs/traced"), 30_000, "a span of GET /v1/runs/traced")
        for (const probe of ["/livez", "/readyz", "/startupz", "/healthz", "/metrics"]) {
          assert.notInclude(paths(), probe)
        }
        if (protocol === "http/protobuf") assert.include(otlp.received[0]!.body.toString("latin1"), "quarry-test")
      } finally {
        await stop(server)
        await otlp.close()
      }
    }, 120_000)
  }

  it("a bad OTLP setting is refused at start (exit 2), naming the variable, before anything is written", async () => {
    const db = path.join(dir, "bad.db")
    const refused = start(["serve", "--db", db, "--port", "0"], {
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4318", OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" }
    })
    const exit = await refused.exited
    assert.strictEqual(exit.code, 2, refused.stderr)
    assert.include(refused.stderr, "OTEL_EXPORTER_OTLP_PROTOCOL")
    assert.isFalse(fs.existsSync(db))
  }, 60_000)
})
