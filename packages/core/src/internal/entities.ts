import { createHash } from "node:crypto"

/** Labels that differ only in case, Unicode form or spacing name the same entity; letters of every script stay. */
export const normalizeLabel = (label: string): string =>
  label.normalize("NFKC").toLowerCase().replace(/\s+/gu, " ").trim()

const notSpace = /\S/

/**
 * Whether a label names something once normalised (`normalizeLabel(label) !== ""`): nameless labels would all be one
 * entity per class. Tested without normalising, which costs a microsecond per label: NFKC removes no character, and
 * the only code points it maps to white space alone are white space already (checked over all of them, 2026-12-07).
 */
export const isNamed = (label: string): boolean => notSpace.test(label)

/** The identity of an entity within a run: its class and its normalised label. */
export const entityKey = (label: string, type: string): string => `${type}\u0000${normalizeLabel(label)}`

/** The class and the normalised label of a key: a class holds no NUL (`Extractor.Name`), so the first one cuts. */
export const splitKey = (key: string): { readonly type: string; readonly label: string } => {
  const cut = key.indexOf("\u0000")
  return { type: key.slice(0, cut), label: key.slice(cut + 1) }
}

/**
 * Base of the IRIs minted for entities.
 */
export const entityBase = "https://w3id.org/quarry/entity/"

const localName = (iri: string) => {
  const cut = Math.max(iri.lastIndexOf("#"), iri.lastIndexOf("/"))
  const name = cut >= 0 ? iri.slice(cut + 1) : iri
  return name === "" ? "Thing" : name
}

/**
 * Percent-encodes what IRIs may not hold, plus `/ # ? % _` so that distinct labels give distinct IRIs (spaces become
 * `_`); every other character, including non-ASCII letters, is kept.
 */
const iriSegment = (text: string) =>
  text.replace(
    /[\u0000-\u0020<>"{}|^`\\/#?%_\u007f]/gu,
    (c) =>
      c === " "
        ? "_"
        : [...Buffer.from(c, "utf8")].map((b) => `%${b.toString(16).toUpperCase().padStart(2, "0")}`).join("")
  )

/** The IRI of an entity of a class whose segment (`ClassSegments`) is `classSegment`. */
const entityIriIn = (classSegment: string, label: string): string =>
  `${entityBase}${classSegment}/${iriSegment(normalizeLabel(label))}`

/**
 * The IRI segments of one run's classes. A class's segment is its local name (`Person`), unless a class seen before it
 * has the same one: then the local name and the first 8 hex digits of the SHA-256 of the class IRI
 * (`Organization_e7206caf`). A plain segment holds no raw `_` (`iriSegment` encodes it, and a class IRI holds no
 * space), so the two kinds never meet.
 * Classes must be seen in the order of the batch of their first mention, then of their IRI (`seeBatch`), so that the
 * known-entity context and the merge agree, and a class keeps its segment once it has one.
 */
export interface ClassSegments {
  /** Gives segments to the classes first mentioned in one batch (those already seen keep theirs). */
  readonly seeBatch: (types: Iterable<string>) => void
  readonly has: (type: string) => boolean
  /** The IRI of an entity: the same label and class give the same IRI, in every run without a clash. */
  readonly iri: (label: string, type: string) => string
}

/** The segments of a run with no class seen yet. */
export const classSegments = (): ClassSegments => {
  const segments = new Map<string, string>()
  const taken = new Set<string>()
  const give = (type: string) => {
    const plain = iriSegment(localName(type))
    const short = `${plain}_${sha256(type).slice(0, 8)}`
    // 32 bits tell a run's few same-named classes apart; the whole digest only if two ever share the short one.
    const segment = !taken.has(plain) ? plain : !taken.has(short) ? short : `${plain}_${sha256(type)}`
    taken.add(segment)
    segments.set(type, segment)
    return segment
  }
  const seeBatch = (types: Iterable<string>) => {
    const fresh = [...new Set(types)].filter((type) => !segments.has(type))
    for (const type of fresh.sort()) give(type)
  }
  return {
    seeBatch,
    has: (type) => segments.has(type),
    iri: (label, type) => entityIriIn(segments.get(type) ?? give(type), label)
  }
}

/** Sees the classes of known entities, which come in order of first batch (`RunStore.knownEntities`). */
export const seeKnown = (
  segments: ClassSegments,
  rows: ReadonlyArray<{ readonly type: string; readonly firstBatch: number }>
): void => {
  let batch = -1
  let pending: Array<string> = []
  for (const row of rows) {
    if (row.firstBatch !== batch) {
      segments.seeBatch(pending)
      pending = []
      batch = row.firstBatch
    }
    if (!segments.has(row.type)) pending.push(row.type)
  }
  segments.seeBatch(pending)
}

export const sha256 = (data: string | Uint8Array): string => createHash("sha256").update(data).digest("hex")
