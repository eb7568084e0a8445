/**
 * The language of a batch, for the language tags of labels and text literals: `franc-min` (trigram profiles of the
 * 82 languages with 8 million speakers or more, MIT) over the batch's own text, so the tag depends only on what the
 * determinism rule lets a batch's output depend on. The code is written as BCP 47 wants it: the ISO 639-1 code where
 * one exists (`iso-639-3`, MIT), else the ISO 639-3 code. A new version of either package can change tags: the
 * lockfile pins them, and a change bumps `OfflineExtractor.version`.
 */
import type * as Extractor from "@quarry/core/Extractor"
import { franc } from "franc-min"
import { iso6393To1 } from "iso-639-3/iso6393-to-1.js"
import type { Kind } from "./mapping.js"
import type { Segment } from "./text.js"

/**
 * Below this many characters of prose (after addresses and URLs are taken out) there is no tag: trigram detection
 * guesses on short strings (franc calls a single English word Romanian).
 */
export const minimumLength = 100

/** Detection reads at most this much of a batch: enough for a stable answer, and it keeps the cost per batch flat. */
export const sampleLength = 1000

const addressOrUrl = /\S+@\S+|\b(?:[a-z]+:\/\/|www\.)\S+/giu

/** The prose of a batch, without e-mail addresses and URLs (which look like no language), at most `sampleLength`. */
const sampleOf = (segments: ReadonlyArray<Segment>): string => {
  let sample = ""
  for (const s of segments) {
    sample += s.text.slice(0, sampleLength * 2).replace(addressOrUrl, " ").replace(/\s+/gu, " ") + " "
    if (sample.length >= sampleLength) break
  }
  return sample.slice(0, sampleLength).trim()
}

/** The BCP 47 tag of the batch's language, or `undefined` when the text is too short or no language is recognised. */
export const detect = (segments: ReadonlyArray<Segment>): string | undefined => {
  const code = franc(sampleOf(segments), { minLength: minimumLength })
  return code === "und" ? undefined : iso6393To1[code] ?? code
}

/** Words in the text's language: names, and dates without a stated year ("December 18th"); not addresses or URLs. */
export const isText = (kind: Kind, value: string | undefined): boolean =>
  kind !== "email" && kind !== "url" && (kind !== "date" || value === undefined)

const addressOrScheme = /@|^[a-z][a-z0-9+.-]*:/iu

/** A literal of words (no datatype, not an address or URL) takes the batch's language; any other is left as it is. */
export const tagLiteral = (
  relation: Extractor.RelationMention,
  language: string | undefined
): Extractor.RelationMention => {
  const o = relation.object
  if (language === undefined || o._tag !== "Literal" || o.datatype !== undefined || o.language !== undefined) {
    return relation
  }
  return addressOrScheme.test(o.value) ? relation : { ...relation, object: { ...o, language } }
}
