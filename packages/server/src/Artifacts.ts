/**
 * `GET /v1/runs/{id}/artifact?format=`: the run's artifact streamed from its file, never read into memory. The run's
 * own format is its artifact; another format is written by the same streaming merge as `quarry export` into an
 * export cache beside the artifacts (`.quarry-exports/<run>.<artifact sha256>.<ext>`, keyed by the artifact's digest
 * so that a run completed again, e.g. after retrying skipped batches, never serves a stale export) and streamed from
 * there. Each format has its own `ETag`: the SHA-256 of its bytes, checked before a file is served (once per version
 * of the file). A node without the artifact's own file (a cluster node other than the one that finished the run), or
 * whose file was removed or changed, merges it again the same way, and checks its SHA-256.
 *
 * @since 0.1.0
 */
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Merge from "@quarry/core/Merge"
import * as Ontology from "@quarry/core/Ontology"
import * as Run from "@quarry/core/Run"
import { RunStore } from "@quarry/core/RunStore"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { artifactMediaTypes } from "./Api.js"
import { ApiError, response as errorResponse } from "./ApiError.js"
import * as ByteRange from "./ByteRange.js"

/**
 * The export cache's folder under the artifacts folder.
 *
 * @since 0.1.0
 * @category constants
 */
export const exportsFolder = ".quarry-exports"

const exportName = new RegExp(`^[0-9a-f]{64}\\.(?:${Object.values(Run.formatExtension).join("|")})(?:\\.sha256)?$`)

/** `<run>.<artifact sha256>.<ext>` or its `.sha256`: not the export of a run whose id extends this one (`a.b`). */
const isExportOf = (runId: Run.RunId, file: string) =>
  file.startsWith(`${runId}.`) && exportName.test(file.slice(runId.length + 1))

/**
 * Removes a run's cached exports (after the run is deleted).
 *
 * @since 0.1.0
 * @category operations
 */
export const removeExports = (artifacts: string, runId: Run.RunId) =>
  Effect.sync(() => {
    const dir = path.join(artifacts, exportsFolder)
    if (!fs.existsSync(dir)) return
    for (const file of fs.readdirSync(dir)) {
      if (isExportOf(runId, file)) fs.rmSync(path.join(dir, file), { force: true })
    }
  })

/** `If-None-Match` names this ETag: weakly compared (`W/` ignored, RFC 9110 13.1.2), `*` naming any. */
const noneMatch = (header: string | undefined, etag: string) =>
  header !== undefined &&
  header.split(",").some((tag) => {
    const trimmed = tag.trim()
    return trimmed === "*" || trimmed.replace(/^W\//, "") === etag
  })

/** The ontology the run was planned with, from the database (as `quarry export` loads it). */
const ontologyOf = (run: Run.Run) =>
  Effect.gen(function*() {
    const store = yield* RunStore
    if (Option.isNone(run.plan.ontologySha256)) return Option.none<Ontology.Ontology>()
    const source = yield* store.readOntologySource(run.plan.ontologySha256.value)
    if (Option.isNone(source)) return Option.none<Ontology.Ontology>()
    return Option.some(yield* Ontology.parse(source.value).pipe(Effect.orDie))
  })

/** The versions of files whose bytes were found to have their digest, oldest first; bounded. */
const checked = new Map<string, string>()
const checkedMax = 10_000

/**
 * `file` holds the bytes of `sha256` (and `bytes` of them, when given). Read once per version of the file (device,
 * inode, size, modification and change times): a file replaced since, even by one of the same size, is read again.
 */
const holds = (file: string, sha256: string, bytes?: number) =>
  Effect.promise(async () => {
    const stat = await fs.promises.stat(file).catch(() => undefined)
    if (stat === undefined || !stat.isFile() || (bytes !== undefined && stat.size !== bytes)) return false
    const version = `${stat.dev}:${stat.ino}:${stat.size}:${stat.mtimeMs}:${stat.ctimeMs}:${sha256}`
    if (checked.get(file) === version) return true
    const hash = createHash("sha256")
    try {
      for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer)
    } catch {
      return false
    }
    if (hash.digest("hex") !== sha256) return false
    checked.delete(file)
    checked.set(file, version)
    const oldest = checked.keys().next()
    if (checked.size > checkedMax && oldest.done !== true) checked.delete(oldest.value)
    return true
  })

/** The file and digest of the run's output in `format`: its artifact, or a cached (or new) export. */
const fileIn = (run: Run.Run, artifact: Run.Artifact, format: Run.OutputFormat, artifacts: string) =>
  Effect.gen(function*() {
    // The artifact's file as written, else (in a cluster the run may have finished on another node, whose working
    // directory this node does not see; or the file was removed or changed) merged again: the same rows give the same
    // bytes. Never served under its ETag with other bytes.
    if (format === artifact.format && (yield* holds(artifact.path, artifact.sha256, artifact.bytes))) {
      return { file: artifact.path, sha256: artifact.sha256 }
    }
    const base = path.join(artifacts, exportsFolder, `${run.id}.${artifact.sha256}.${Run.formatExtension[format]}`)
    const digestFile = `${base}.sha256`
    const cached = fs.existsSync(digestFile) ? fs.readFileSync(digestFile, "utf8").trim() : undefined
    if (cached !== undefined && (yield* holds(base, cached))) return { file: base, sha256: cached }
    yield* Effect.sync(() => fs.mkdirSync(path.dirname(base), { recursive: true }))
    const written = yield* Merge.merge({
      runId: run.id,
      path: base,
      format,
      ontology: yield* ontologyOf(run),
      provenance: run.plan.provenance ? { extractor: run.plan.extractor } : undefined
    })
    // The artifact merged again here (this node is not the one that finished the run): the same rows give the same
    // bytes, or something is badly wrong.
    if (format === artifact.format && written.sha256 !== artifact.sha256) {
      yield* Effect.sync(() => fs.rmSync(base, { force: true }))
      return yield* Effect.die(
        new Error(`run ${run.id}: merged again, its artifact has sha256 ${written.sha256}, not ${artifact.sha256}`)
      )
    }
    // Written after the export's atomic rename: a digest file always describes a complete export.
    yield* Effect.sync(() => fs.writeFileSync(digestFile, `${written.sha256}\n`))
    return { file: base, sha256: written.sha256 }
  })

const failure = (status: number, tag: string, message: string) => new ApiError({ status, tag, message })

/**
 * Answers an artifact request: 200 with the bytes, 304 when `If-None-Match` has the format's ETag, 206 with the bytes
 * of a `Range` (416 when none of them exists), 409 before the run completes (or when its file is gone).
 *
 * @since 0.1.0
 * @category handlers
 */
export const respond = (run: Run.Run, format: Option.Option<Run.OutputFormat>, artifacts: string) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    if (run.status !== "completed" || Option.isNone(run.artifact)) {
      return yield* failure(
        409,
        "InvalidRunState",
        `run ${run.id} is ${run.status}, not completed: its artifact exists once it completes`
      )
    }
    const artifact = run.artifact.value
    const wanted = Option.getOrElse(format, () => artifact.format)
    const found = yield* fileIn(run, artifact, wanted, artifacts).pipe(
      Effect.catchAll((error) =>
        Effect.zipRight(
          Effect.logError("export failed", error),
          Effect.fail(failure(500, error._tag, `the ${wanted} export of run ${run.id} failed: ${error.message}`))
        )
      )
    )
    const etag = `"${found.sha256}"`
    if (noneMatch(request.headers["if-none-match"], etag)) {
      return HttpServerResponse.empty({ status: 304, headers: { etag } })
    }
    const missing = failure(
      409,
      "ArtifactMissing",
      `the artifact file of run ${run.id} is gone; write it again with quarry export ${run.id}`
    )
    const size = yield* Effect.try({ try: () => fs.statSync(found.file).size, catch: () => missing })
    const headers = { "content-type": artifactMediaTypes[wanted], etag, "accept-ranges": "bytes" }
    const selection = ByteRange.select(request.headers["range"], size, request.headers["if-range"], etag)
    switch (selection._tag) {
      case "Unsatisfiable":
        // The API's error shape, with the size a client needs to ask again (`Content-Range`).
        return errorResponse(
          416,
          "RangeNotSatisfiable",
          `the ${wanted} artifact of run ${run.id} has ${size} bytes; ${request.headers["range"]} selects none of them`,
          { "content-range": `bytes */${size}`, etag }
        )
      case "Part":
        // Not the platform's `file` with `bytesToRead`: it reads one byte more than the length it announces.
        return HttpServerResponse.raw(fs.createReadStream(found.file, { start: selection.start, end: selection.end }), {
          status: 206,
          headers: {
            ...headers,
            "content-range": `bytes ${selection.start}-${selection.end}/${size}`,
            "content-length": String(selection.end - selection.start + 1)
          }
        })
      case "Whole":
        return yield* HttpServerResponse.file(found.file, { headers }).pipe(
          // The ETag is the bytes' SHA-256 (the platform's own is size and mtime).
          Effect.map(HttpServerResponse.setHeader("etag", etag)),
          Effect.mapError(() => missing)
        )
    }
  })
