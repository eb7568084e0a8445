/**
 * Stream-merges a run's committed batch outputs into one artifact (Turtle, N-Triples or JSON Lines).
 *
 * Entities are resolved across batches and overlapping chunks in the store's merge workspace (scratch tables in its
 * database: SQLite temp tables, PostgreSQL unlogged tables), read back page by page, and written through a temp file that is fsynced and renamed into place. Memory does not grow with the
 * number of batches; the bytes depend only on the committed outputs.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { createHash, randomBytes } from "node:crypto"
import { writeSync } from "node:fs"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import type * as Chunking from "./Chunking.js"
import * as CrashPoint from "./CrashPoint.js"
import { MergeError, type PersistenceError, type RunLocked } from "./Errors.js"
import * as Extractor from "./Extractor.js"
import { type ClassSegments, classSegments, entityKey, splitKey } from "./internal/entities.js"
import * as Rdf from "./internal/rdf.js"
import type { Ontology } from "./Ontology.js"
import { Artifact, type ExtractorIdentity, type OutputFormat, type RunId } from "./Run.js"
import {
  RunStore,
  type SkippedBatch,
  type WorkspaceEntity,
  type WorkspaceMention,
  type WorkspaceRelation
} from "./RunStore.js"

/**
 * Options of a merge.
 *
 * @since 0.1.0
 * @category models
 */
export interface MergeOptions {
  readonly runId: RunId
  readonly path: string
  readonly format: OutputFormat
  readonly ontology: Option.Option<Ontology>
  /** Batches read per page (default 32). */
  readonly pageSize?: number | undefined
  /**
   * Add PROV-O provenance: the run as a `prov:Activity` associated with the extractor, and each entity derived from
   * its mentions (document offsets). JSON Lines always carries mentions; this adds a `run` line.
   */
  readonly provenance?: { readonly extractor: ExtractorIdentity } | undefined
  /**
   * Checked right before the artifact replaces the previous one (the workflow confirms its lease): a process that
   * lost its lease never replaces a newer artifact.
   */
  readonly fence?: Effect.Effect<void, RunLocked | PersistenceError> | undefined
  /** Temp files of earlier merges are swept once older than this (default 30 s, the default lease). */
  readonly staleAfterMs?: number | undefined
}

type EntityRow = WorkspaceEntity
type MentionRow = WorkspaceMention
type RelationRow = WorkspaceRelation

/** The default lease (`Workflow.defaultLeaseMs`): a temp file younger than that may belong to a live merge. */
const defaultStaleAfterMs = 30_000
const rowsPerRead = 1000
/**
 * Batches read per page. A page's outputs live until its last batch is collected; at 256 V8 promoted them to its
 * old generation, which then grew with the run (docs/benchmarks.md, section 2).
 */
const defaultPageSize = 32
/** Workspace rows per insert: a few hundred KB of short-lived objects. */
const rowsPerAdd = 2000

/** Options of the artifact's atomic write. */
type AtomicOptions = Pick<MergeOptions, "fence" | "staleAfterMs">

/** Temp files of merges killed mid-write; the artifact itself is never half-written. */
const sweepStaleTemps = async (target: string, staleAfterMs: number) => {
  const directory = path.dirname(target)
  const prefix = `.${path.basename(target)}.`
  const now = Date.now()
  for (const name of await fs.readdir(directory)) {
    if (!name.startsWith(prefix) || !/^[0-9a-f]{12}\.tmp$/.test(name.slice(prefix.length))) continue
    const file = path.join(directory, name)
    const stat = await fs.stat(file).catch(() => undefined)
    if (stat !== undefined && now - stat.mtimeMs > staleAfterMs) await fs.rm(file, { force: true })
  }
}

/**
 * A write may take fewer bytes than asked (a full disk, a file size limit): write the rest, or fail. Synchronous,
 * like the store's reads between the writes: with an asynchronous write V8 promoted every page of text to its old
 * generation, which grew until a full collection (docs/benchmarks.md, section 2).
 */
const writeAll = (handle: fs.FileHandle, buffer: Buffer) => {
  for (let offset = 0; offset < buffer.length;) {
    const bytesWritten = writeSync(handle.fd, buffer, offset, buffer.length - offset)
    if (bytesWritten <= 0) throw new Error(`the file system accepted no bytes at offset ${offset}`)
    offset += bytesWritten
  }
}

/**
 * Writes text to a temp file beside `target`, then fsyncs, checks its size, renames and fsyncs the directory. A
 * `target` that is a symbolic link is written through (the file it names is replaced, the link stays): renaming over
 * the link would replace it, and `/dev/stdout` is one.
 */
const atomicFile = (given: string, options: AtomicOptions = {}) =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: async () => {
        const target = await fs.realpath(given).catch(() => given)
        // The rename would replace a device (`/dev/null`), pipe or socket itself, not write into it.
        const existing = await fs.stat(target).catch(() => undefined)
        if (existing !== undefined && !existing.isFile()) {
          throw new Error(
            `${target} is not a regular file: the artifact would replace it instead of being written to it`
          )
        }
        await sweepStaleTemps(target, options.staleAfterMs ?? defaultStaleAfterMs)
        const temp = path.join(path.dirname(target), `.${path.basename(target)}.${randomBytes(6).toString("hex")}.tmp`)
        return { target, temp, handle: await fs.open(temp, "w") }
      },
      catch: (cause) => new MergeError({ path: given, cause })
    }),
    ({ handle, temp }, exit) =>
      Effect.promise(async () => {
        await handle.close().catch(() => undefined)
        if (exit._tag === "Failure") await fs.rm(temp, { force: true })
      })
  ).pipe(Effect.map(({ handle, target, temp }) => {
    const hash = createHash("sha256")
    let bytes = 0
    const io = <A>(f: () => Promise<A>) =>
      Effect.tryPromise({ try: f, catch: (cause) => new MergeError({ path: given, cause }) })
    const write = (text: string) =>
      text === "" ? Effect.void : Effect.try({
        try: () => {
          const buffer = Buffer.from(text, "utf8")
          writeAll(handle, buffer)
          hash.update(buffer)
          bytes += buffer.length
        },
        catch: (cause) => new MergeError({ path: given, cause })
      })
    const commit = Effect.gen(function*() {
      yield* io(async () => {
        await handle.sync()
        const { size } = await handle.stat()
        if (size !== bytes) throw new Error(`the temp file ${temp} holds ${size} bytes, but ${bytes} were written`)
        await handle.close()
      })
      if (options.fence !== undefined) yield* options.fence
      yield* io(async () => {
        await fs.rename(temp, target)
        const directory = await fs.open(path.dirname(target), "r")
        try {
          await directory.sync()
        } finally {
          await directory.close()
        }
      })
      return { sha256: hash.digest("hex"), bytes }
    })
    return { write, commit }
  }))

const validPrefix = /^(?:[A-Za-z][A-Za-z0-9_-]*)?$/

const prefixesFor = (ontology: Option.Option<Ontology>) => {
  const prefixes: Record<string, string> = { ...Rdf.standardPrefixes }
  if (Option.isSome(ontology)) {
    for (const [prefix, namespace] of Object.entries(ontology.value.prefixes)) {
      if (validPrefix.test(prefix) && !Object.values(prefixes).includes(namespace)) prefixes[prefix] = namespace
    }
  }
  return prefixes
}

const XSD_ANY_URI = "http://www.w3.org/2001/XMLSchema#anyURI"
const QUARRY_NS = "https://w3id.org/quarry/ns#"
const PROV = "http://www.w3.org/ns/prov#"
const XSD_INTEGER = "http://www.w3.org/2001/XMLSchema#integer"

/** Predicates whose `xsd:anyURI` values are resources (FOAF's mailbox and homepage are IRIs by definition). */
const resourcePredicates = new Set([
  "http://xmlns.com/foaf/0.1/mbox",
  "http://xmlns.com/foaf/0.1/homepage",
  "http://xmlns.com/foaf/0.1/page",
  "http://xmlns.com/foaf/0.1/weblog"
])

/** An `xsd:anyURI` value as an IRI, when it is one (e-mail addresses become `mailto:` IRIs). */
const asIri = (value: string): string | undefined => {
  const iri = /^[A-Za-z][A-Za-z0-9+.-]*:/.test(value) ? value : value.includes("@") ? `mailto:${value}` : undefined
  return iri !== undefined && !/[\u0000-\u0020<>"{}|^`\\]/u.test(iri) ? iri : undefined
}

interface Provenance {
  readonly run: string
  readonly agentLabel: string
  readonly header: ReadonlyArray<readonly [string, string, string]>
}

const provenanceOf = (runId: RunId, extractor: ExtractorIdentity): Provenance => {
  const run = `https://w3id.org/quarry/run/${encodeURIComponent(runId)}`
  const agent = `https://w3id.org/quarry/extractor/${encodeURIComponent(extractor.name)}/${
    encodeURIComponent(extractor.version)
  }`
  const agentLabel = `${extractor.name} ${extractor.version}`
  return {
    run,
    agentLabel,
    header: [
      [run, Rdf.RDF_TYPE, `${PROV}Activity`],
      [run, `${PROV}wasAssociatedWith`, agent],
      [agent, Rdf.RDF_TYPE, `${PROV}SoftwareAgent`]
    ]
  }
}

/** Serialises entities and relations as JSON Lines: one object per entity and per relation. */
const jsonlFormatter = (iris: EntityIris, provenance: Provenance | undefined) => ({
  header: provenance === undefined ?
    "" :
    JSON.stringify({ kind: "run", iri: provenance.run, extractor: provenance.agentLabel }) + "\n",
  entity: (e: EntityRow, mentions: ReadonlyArray<MentionRow>) =>
    JSON.stringify({
      kind: "entity",
      iri: iris.entity(e),
      label: e.label,
      type: e.type,
      attributes: JSON.parse(e.attributes),
      mentions: mentions.map((m) => [m.start, m.end])
    }) + "\n",
  relationsHeader: "",
  relation: (r: RelationRow) =>
    JSON.stringify({
      kind: "relation",
      subject: iris.key(r.subject_key),
      predicate: r.predicate,
      object: r.object_key !== null ?
        { iri: iris.key(r.object_key) } :
        {
          value: r.object_value,
          ...(r.object_datatype === null ? {} : { datatype: r.object_datatype }),
          ...(r.object_language === null ? {} : { language: r.object_language })
        }
    }) + "\n"
})

/** Serialises entities and relations in one of the formats. */
const formatter = (
  format: OutputFormat,
  ontology: Option.Option<Ontology>,
  iris: EntityIris,
  provenance: Provenance | undefined = undefined
) => {
  if (format === "jsonl") return jsonlFormatter(iris, provenance)
  const prefixes = prefixesFor(ontology)
  if (provenance !== undefined) prefixes.quarry = QUARRY_NS
  const name = format === "turtle" ? Rdf.prefixer(prefixes) : Rdf.iriRef
  const objectProperties = new Set(
    Option.match(ontology, {
      onNone: () => [],
      onSome: (o) => o.properties.filter((p) => p.kind === "object").map((p) => p.iri)
    })
  )
  const object = (r: RelationRow) => {
    if (r.object_key !== null) return Rdf.iriRef(iris.key(r.object_key))
    const iri = r.object_datatype === XSD_ANY_URI &&
        (resourcePredicates.has(r.predicate) || objectProperties.has(r.predicate)) ?
      asIri(r.object_value ?? "") :
      undefined
    if (iri !== undefined) return Rdf.iriRef(iri)
    return Rdf.literal({
      value: r.object_value ?? "",
      datatype: r.object_datatype ?? undefined,
      language: r.object_language ?? undefined
    }, name)
  }
  const statements = (triples: ReadonlyArray<readonly [string, string, string]>) =>
    triples.map(([s, p, o]) => `${s} ${p} ${o} .\n`).join("")
  const provenanceHeader = provenance === undefined ? "" : statements([
    ...provenance.header.map(([s, p, o]) => [Rdf.iriRef(s), name(p), name(o)] as const),
    [Rdf.iriRef(provenance.header[1]![2]), name(Rdf.RDFS_LABEL), Rdf.literal({ value: provenance.agentLabel })]
  ])
  /** Provenance triples of one entity: generated by the run, derived from each mention. */
  const entityProvenance = (e: EntityRow, mentions: ReadonlyArray<MentionRow>) => {
    if (provenance === undefined) return ""
    const subject = Rdf.iriRef(iris.entity(e))
    const triples: Array<readonly [string, string, string]> = [
      [subject, name(`${PROV}wasGeneratedBy`), Rdf.iriRef(provenance.run)]
    ]
    for (const m of mentions) {
      const mention = Rdf.iriRef(`${provenance.run}/mention/${m.start}-${m.end}`)
      triples.push(
        [subject, name(`${PROV}wasDerivedFrom`), mention],
        [mention, name(`${QUARRY_NS}start`), Rdf.literal({ value: String(m.start), datatype: XSD_INTEGER }, name)],
        [mention, name(`${QUARRY_NS}end`), Rdf.literal({ value: String(m.end), datatype: XSD_INTEGER }, name)]
      )
    }
    return statements(triples)
  }
  switch (format) {
    case "turtle":
      return {
        header: Rdf.prefixHeader(prefixes) + (provenanceHeader === "" ? "" : "\n" + provenanceHeader),
        entity: (e: EntityRow, mentions: ReadonlyArray<MentionRow>) =>
          `\n${Rdf.iriRef(iris.entity(e))} a ${name(e.type)} ;\n    rdfs:label ${labelLiteral(e)} .\n` +
          entityProvenance(e, mentions),
        relationsHeader: "\n",
        relation: (r: RelationRow) =>
          `${Rdf.iriRef(iris.key(r.subject_key))} ${r.predicate === Rdf.RDF_TYPE ? "a" : name(r.predicate)} ${
            object(r)
          } .\n`
      }
    case "ntriples":
      return {
        header: provenanceHeader,
        entity: (e: EntityRow, mentions: ReadonlyArray<MentionRow>) => {
          const subject = Rdf.iriRef(iris.entity(e))
          return `${subject} ${Rdf.iriRef(Rdf.RDF_TYPE)} ${Rdf.iriRef(e.type)} .\n` +
            `${subject} ${Rdf.iriRef(Rdf.RDFS_LABEL)} ${labelLiteral(e)} .\n` +
            entityProvenance(e, mentions)
        },
        relationsHeader: "",
        relation: (r: RelationRow) =>
          `${Rdf.iriRef(iris.key(r.subject_key))} ${Rdf.iriRef(r.predicate)} ${object(r)} .\n`
      }
  }
}

/** The label, tagged with the language the extractor detected for its first mention (`attributes.language`), if any. */
const labelLiteral = (e: EntityRow): string => {
  const language: unknown = e.attributes.includes("\"language\"") ? JSON.parse(e.attributes).language : undefined
  return Rdf.literal({
    value: e.label,
    language: typeof language === "string" && Extractor.languageTagPattern.test(language) ? language : undefined
  })
}

/** Entity IRIs, by row and by key (`type NUL normalised label`), from the run's class segments. */
interface EntityIris {
  readonly entity: (e: EntityRow) => string
  readonly key: (key: string) => string
}

const entityIris = (segments: ClassSegments): EntityIris => ({
  entity: (e) => segments.iri(e.label, e.type),
  key: (key) => {
    const { label, type } = splitKey(key)
    return segments.iri(label, type)
  }
})

/**
 * Writes an artifact for a run with no batches: valid and empty (Turtle keeps its prefix header).
 *
 * @since 0.1.0
 * @category merging
 */
export const writeEmpty = Effect.fn("Merge.writeEmpty")(function*(options: Omit<MergeOptions, "runId" | "pageSize">) {
  const file = yield* atomicFile(options.path, options)
  yield* file.write(formatter(options.format, options.ontology, entityIris(classSegments())).header)
  const written = yield* file.commit
  return new Artifact({ path: options.path, format: options.format, ...written })
}, Effect.scoped)

/**
 * Where the manifest of skipped batches of a partial artifact is written.
 *
 * @since 0.1.0
 * @category merging
 */
export const manifestPath = (artifactPath: string): string => `${artifactPath}.skipped.json`

/**
 * Writes (or, when nothing was skipped, removes) the manifest listing the batches a partial artifact is missing,
 * with their document offsets and errors, and `resume`: the command that retries them (default
 * `quarry resume <run> --retry-skipped`).
 *
 * @since 0.1.0
 * @category merging
 */
export const writeSkippedManifest = Effect.fn("Merge.writeSkippedManifest")(function*(
  runId: RunId,
  artifactPath: string,
  skipped: ReadonlyArray<SkippedBatch>,
  batches: ReadonlyArray<Chunking.Batch>,
  resume = `quarry resume ${runId} --retry-skipped`
) {
  const target = manifestPath(artifactPath)
  if (skipped.length === 0) {
    return yield* Effect.tryPromise({
      try: () => fs.rm(target, { force: true }),
      catch: (cause) => new MergeError({ path: target, cause })
    })
  }
  const file = yield* atomicFile(target)
  yield* file.write(
    JSON.stringify(
      {
        runId,
        artifact: artifactPath,
        complete: false,
        skipped: skipped.map(({ batchIndex, error }) => {
          const chunks = batches[batchIndex]?.chunks ?? []
          return { batch: batchIndex, start: chunks[0]?.start ?? null, end: chunks.at(-1)?.end ?? null, error }
        }),
        resume
      },
      null,
      2
    ) + "\n"
  )
  yield* file.commit
}, Effect.scoped)

/**
 * Merges every committed batch of a run into an artifact at `options.path`.
 *
 * @since 0.1.0
 * @category merging
 */
export const merge = Effect.fn("Merge.merge")(function*(options: MergeOptions) {
  const store = yield* RunStore
  const workspace = yield* store.mergeWorkspace

  // Pass 1: resolve. First appearance (batch order, then order within the batch) decides label and position.
  // Mentions are only written to JSON Lines and provenance: otherwise they are not collected at all.
  const withMentions = options.format === "jsonl" || options.provenance !== undefined
  const segments = classSegments()
  const rows = rowCollector(withMentions, segments)
  const pageSize = options.pageSize ?? defaultPageSize
  let after = -1
  while (true) {
    const page = yield* store.batchPage(options.runId, after, pageSize)
    if (page.length === 0) break
    after = page[page.length - 1]!.batchIndex
    for (const { output } of page) {
      rows.collect(output)
      // Rows are flushed while they are young: V8 promotes what outlives two scavenges, and promoted garbage
      // grows the old generation until a full collection (what made peak RSS grow with the run, section 2).
      if (rows.size() >= rowsPerAdd) yield* workspace.add(rows.take())
    }
  }
  yield* workspace.add(rows.take())
  rows.seeRelationClasses()

  // Pass 2: write, page by page.
  const format = formatter(
    options.format,
    options.ontology,
    entityIris(segments),
    options.provenance === undefined ? undefined : provenanceOf(options.runId, options.provenance.extractor)
  )
  const file = yield* atomicFile(options.path, options)
  yield* file.write(format.header)
  let lastOrd = -1
  while (true) {
    const rows = yield* workspace.entities(lastOrd, rowsPerRead)
    if (rows.length === 0) break
    lastOrd = rows[rows.length - 1]!.ord
    const mentions = withMentions ? yield* workspace.mentions(rows.map((r) => r.entity_key)) : []
    const byKey = new Map<string, Array<MentionRow>>()
    for (const m of mentions) {
      const list = byKey.get(m.entity_key)
      if (list === undefined) byKey.set(m.entity_key, [m])
      else list.push(m)
    }
    yield* file.write(rows.map((row) => format.entity(row, byKey.get(row.entity_key) ?? [])).join(""))
  }
  yield* file.write(format.relationsHeader)
  lastOrd = -1
  while (true) {
    const rows = yield* workspace.relations(lastOrd, rowsPerRead)
    if (rows.length === 0) break
    lastOrd = rows[rows.length - 1]!.ord
    yield* file.write(rows.map(format.relation).join(""))
  }
  yield* CrashPoint.hit("merge.beforeRename")
  const written = yield* file.commit
  return new Artifact({ path: options.path, format: options.format, ...written })
}, (effect, options) => effect.pipe(Effect.scoped, Effect.annotateLogs({ runId: options.runId })))

/** Collects a merge's workspace rows batch by batch, numbering entities and relations in order of appearance. */
const rowCollector = (withMentions: boolean, segments: ClassSegments) => {
  let entityOrd = 0
  let relationOrd = 0
  let entities: Array<EntityRow> = []
  let mentions: Array<MentionRow> = []
  let relations: Array<RelationRow & { readonly identity: string }> = []
  const addEntity = (label: string, type: string, attributes: Readonly<Record<string, string>>) => {
    const key = entityKey(label, type)
    entities.push({ entity_key: key, ord: entityOrd++, label, type, attributes: JSON.stringify(attributes) })
    return key
  }
  // Classes named only by relations so far: they get segments after every class a mention names.
  const relationClasses = new Set<string>()
  const collect = (output: Extractor.BatchOutput) => {
    let fresh: Array<string> | undefined
    for (const mention of output.entities) {
      // An extractor may name the full form of a short mention ("Bob" of "Bob Johnson"): one entity.
      const key = addEntity(mention.attributes.canonical ?? mention.label, mention.type, mention.attributes)
      if (withMentions) mentions.push({ entity_key: key, start: mention.span.start, end: mention.span.end })
      if (!segments.has(mention.type)) (fresh ??= []).push(mention.type)
    }
    // Class segments in the order the known-entity context sees classes: batch of first mention, then IRI.
    if (fresh !== undefined) segments.seeBatch(fresh)
    for (const relation of output.relations) {
      relations.push(relationRow(relation, relationOrd++, addEntity))
      relationClasses.add(relation.subject.type)
      if (relation.object._tag === "Entity") relationClasses.add(relation.object.type)
    }
  }
  const take = () => {
    const page = { entities, mentions, relations }
    entities = []
    mentions = []
    relations = []
    return page
  }
  return {
    collect,
    take,
    seeRelationClasses: () => segments.seeBatch(relationClasses),
    size: () => entities.length + mentions.length + relations.length
  }
}

/** The attributes of an entity named only by a relation. */
const noAttributes: Readonly<Record<string, string>> = {}

/**
 * One relation's workspace row, built as one object literal: spreading a row into a second object (and a fresh `{}`
 * per call) made V8 promote every relation row of a long merge to its old generation (docs/benchmarks.md, section 2).
 */
const relationRow = (
  relation: Extractor.RelationMention,
  ord: number,
  addEntity: (label: string, type: string, attributes: Readonly<Record<string, string>>) => string
): RelationRow & { readonly identity: string } => {
  const subject = addEntity(relation.subject.label, relation.subject.type, noAttributes)
  const object = relation.object
  const objectKey = object._tag === "Entity" ? addEntity(object.label, object.type, noAttributes) : null
  const literal = object._tag === "Literal"
  const value = literal ? object.value : null
  const datatype = literal ? object.datatype ?? null : null
  const language = literal ? object.language ?? null : null
  return {
    ord,
    subject_key: subject,
    predicate: relation.predicate,
    object_key: objectKey,
    object_value: value,
    object_datatype: datatype,
    object_language: language,
    identity: JSON.stringify([subject, relation.predicate, objectKey, value, datatype, language])
  }
}
