import { createHash } from "node:crypto"

/** Labels that differ only in case, Unicode form or spacing name the same entity; letters of every script stay. */
export const normalizeLabel = (label: string): string =>
  label.normalize("NFKC").toLowerCase().replace(/\s+/gu, " ").trim()

/**
 * Whether a label names something once normalised: nameless labels would all be one entity per class. A label with a
 * visible ASCII character first (almost all) is named without normalising it: NFKC keeps ASCII as it is.
 */
export const isNamed = (label: string): boolean => {
  const first = label.charCodeAt(0)
  return (first > 0x20 && first < 0x7f) || normalizeLabel(label) !== ""
}

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

/** A stable IRI for an entity: the same label and class always give the same IRI, in every run. */
export const entityIri = (label: string, type: string): string =>
  `${entityBase}${iriSegment(localName(type))}/${iriSegment(normalizeLabel(label))}`

export const sha256 = (data: string | Uint8Array): string => createHash("sha256").update(data).digest("hex")
