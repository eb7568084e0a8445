/**
 * The compromise layer of the offline extractor: tokens with exact offsets and part-of-speech tags, sentence units,
 * and lookups in compromise's own lexicon. No plugin is registered and the global lexicon is never changed.
 */
import nlp from "compromise"
import * as Gazetteer from "./gazetteer.js"

/** A token of a segment, in segment offsets. A trailing possessive ("Alice's") is cut from the token. */
export interface Token {
  readonly text: string
  readonly lower: string
  readonly start: number
  readonly end: number
  readonly tags: ReadonlySet<string>
  /** Text between the previous token's end and this token's start. */
  readonly before: string
  /** Text between this token's end and the next token's start (including a cut possessive). */
  readonly after: string
  readonly possessive: boolean
  /** Index of the sentence unit (a compromise sentence, further cut at line breaks) within the segment. */
  readonly unit: number
  /** First token of its unit. */
  readonly initial: boolean
}

/** A sentence unit: consecutive tokens of one sentence on one line. */
export interface Unit {
  readonly start: number
  readonly end: number
  readonly tokens: ReadonlyArray<Token>
}

const isOffset = (value: unknown): value is { readonly start: number; readonly length: number } =>
  typeof value === "object" && value !== null && "start" in value && "length" in value &&
  typeof value.start === "number" && typeof value.length === "number"

const possessivePattern = /['’]s?$/u

/** Tokenises and tags a text with compromise. Offsets are checked against the text; a token that does not match is skipped. */
export const analyse = (text: string): Array<Unit> => {
  const doc = nlp(text)
  doc.compute("offset")
  const raw: Array<{ text: string; start: number; end: number; tags: ReadonlySet<string>; sentence: number }> = []
  doc.docs.forEach((sentence, s) => {
    for (const term of sentence) {
      const offset = "offset" in term ? term.offset : undefined
      if (!isOffset(offset)) continue
      const start = offset.start
      const end = start + offset.length
      if (text.slice(start, end) !== term.text || term.text === "") continue
      raw.push({ text: term.text, start, end, tags: term.tags ?? new Set(), sentence: s })
    }
  })
  const units: Array<Unit> = []
  let current: Array<Token> = []
  let unit = 0
  const flush = () => {
    if (current.length > 0) {
      units.push({ start: current[0]!.start, end: current[current.length - 1]!.end, tokens: current })
      current = []
      unit++
    }
  }
  for (let i = 0; i < raw.length; i++) {
    const r = raw[i]!
    const previous = raw[i - 1]
    const before = text.slice(previous === undefined ? 0 : previous.end, r.start)
    if (previous !== undefined && (previous.sentence !== r.sentence || before.includes("\n"))) flush()
    // compromise does not always tag "MIT's" or "Michael's" as possessive; an apostrophe-s ending a name is one.
    const possessive = r.text.length > 2 &&
      (r.tags.has("Possessive") ? possessivePattern.test(r.text) : /^\p{Lu}.*['’]s$/u.test(r.text))
    const surface = possessive ? r.text.replace(possessivePattern, "") : r.text
    const next = raw[i + 1]
    const end = r.start + surface.length
    current.push({
      text: surface,
      lower: surface.toLowerCase(),
      start: r.start,
      end,
      tags: r.tags,
      before,
      after: text.slice(end, next === undefined ? text.length : next.start),
      possessive,
      unit,
      initial: current.length === 0
    })
  }
  flush()
  return units
}

const lexicon: object = (() => {
  const model: unknown = nlp.model()
  if (typeof model !== "object" || model === null || !("one" in model)) return {}
  const one: unknown = model.one
  if (typeof one !== "object" || one === null || !("lexicon" in one)) return {}
  const lex: unknown = one.lexicon
  return typeof lex === "object" && lex !== null ? lex : {}
})()

/** The tags compromise's lexicon gives a lower-case word or phrase ("lisa" → FemaleName), without context. */
export const lexiconTags = (word: string): ReadonlyArray<string> => {
  const value: unknown = Object.hasOwn(lexicon, word) ? Reflect.get(lexicon, word) : undefined
  if (typeof value === "string") return value.split(",")
  if (Array.isArray(value)) return value.filter((v): v is string => typeof v === "string")
  return []
}

const firstNameTags = new Set(["FirstName", "MaleName", "FemaleName"])

/** Whether the lexicon knows the word as a given name. */
export const isFirstName = (word: string): boolean => lexiconTags(word).some((t) => firstNameTags.has(t))

/**
 * Whether the word may start a person's full name: compromise's lexicon knows it as a given name, or the first-name
 * gazetteer lists it and the lexicon knows it as nothing else. Weaker than `isFirstName` ("Web" is in the gazetteer):
 * only for the first word of a longer name.
 */
export const isGivenName = (word: string): boolean =>
  isFirstName(word) || (lexiconTags(word).length === 0 && Gazetteer.firstNames().has(word))

/** The gender the lexicon gives a first name, if any. */
export const genderOf = (word: string): "female" | "male" | undefined => {
  const tags = lexiconTags(word)
  if (tags.includes("FemaleName")) return "female"
  if (tags.includes("MaleName")) return "male"
  return undefined
}
