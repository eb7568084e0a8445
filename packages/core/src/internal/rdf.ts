/** Minimal, byte-deterministic RDF term serialisation shared by the Turtle and N-Triples writers. */

export const RDF_TYPE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
export const RDFS_LABEL = "http://www.w3.org/2000/01/rdf-schema#label"
export const XSD_STRING = "http://www.w3.org/2001/XMLSchema#string"

export const standardPrefixes: Readonly<Record<string, string>> = {
  rdf: "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
  rdfs: "http://www.w3.org/2000/01/rdf-schema#",
  xsd: "http://www.w3.org/2001/XMLSchema#",
  owl: "http://www.w3.org/2002/07/owl#",
  foaf: "http://xmlns.com/foaf/0.1/",
  schema: "http://schema.org/",
  prov: "http://www.w3.org/ns/prov#"
}

/**
 * An absolute IRI that `iriRef` writes as it is: a scheme, a colon, and none of the characters IRIREF forbids. A
 * relative name such as `Person` would make N-Triples invalid and resolve against a Turtle file's own location.
 */
export const absoluteIri = /^[A-Za-z][A-Za-z0-9+.-]*:[^\u0000-\u0020<>"{}|^`\\]*$/u

/** `<iri>`, escaping what IRIREF forbids (the IRIs we mint never contain these; foreign IRIs might). */
export const iriRef = (iri: string): string =>
  `<${
    iri.replace(
      /[\u0000-\u0020<>"{}|^`\\]/gu,
      (c) => `\\u${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")}`
    )
  }>`

/** Escapes a string for a quoted N-Triples/Turtle literal. */
export const escapeString = (value: string) =>
  value.replace(/["\\\n\r\t\b\f]|[\u0000-\u001f\u007f]/gu, (c) => {
    switch (c) {
      case "\"":
        return "\\\""
      case "\\":
        return "\\\\"
      case "\n":
        return "\\n"
      case "\r":
        return "\\r"
      case "\t":
        return "\\t"
      case "\b":
        return "\\b"
      case "\f":
        return "\\f"
      default:
        return `\\u${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")}`
    }
  })

export interface LiteralTerm {
  readonly value: string
  readonly datatype?: string | undefined
  readonly language?: string | undefined
}

/** A literal in N-Triples/Turtle syntax; the IRI writer decides how datatypes are shown. */
export const literal = (term: LiteralTerm, writeIri: (iri: string) => string = iriRef): string => {
  const quoted = `"${escapeString(term.value)}"`
  if (term.language !== undefined && term.language !== "") return `${quoted}@${term.language.toLowerCase()}`
  if (term.datatype !== undefined && term.datatype !== XSD_STRING) return `${quoted}^^${writeIri(term.datatype)}`
  return quoted
}

const safeLocalName = /^[A-Za-z_][A-Za-z0-9_-]*$/u

/** Writes IRIs as prefixed names where the local name is plainly safe, else as `<iri>`. */
export const prefixer = (prefixes: Readonly<Record<string, string>>) => {
  const entries = Object.entries(prefixes).sort(([, a], [, b]) => b.length - a.length)
  return (iri: string): string => {
    for (const [prefix, namespace] of entries) {
      if (iri.startsWith(namespace)) {
        const local = iri.slice(namespace.length)
        if (safeLocalName.test(local)) return `${prefix}:${local}`
      }
    }
    return iriRef(iri)
  }
}

export const prefixHeader = (prefixes: Readonly<Record<string, string>>): string =>
  Object.entries(prefixes)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([prefix, namespace]) => `@prefix ${prefix}: ${iriRef(namespace)} .\n`)
    .join("")
