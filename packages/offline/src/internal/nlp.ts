/**
 * The compromise layer of the offline extractor: tokens with exact offsets and part-of-speech tags, sentence units,
 * and lookups in compromise's own lexicon. No plugin is registered and the global lexicon is never changed.
 */
import nlp from "compromise"
import * as Gazetteer from "./gazetteer.js"
import type { Steps } from "./steps.js"

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

/** A term compromise tagged, in segment offsets, with the index of its sentence in the segment. */
interface Tagged {
  readonly text: string
  readonly start: number
  readonly end: number
  readonly tags: ReadonlySet<string>
  readonly sentence: number
}

/** A value's member at `keys`, if every step is an object. */
const member = (value: unknown, keys: ReadonlyArray<string>): unknown =>
  keys.reduce<unknown>((v, key) => typeof v === "object" && v !== null ? Reflect.get(v, key) : undefined, value)

/**
 * compromise's own sentence splitter, the first thing `nlp(text)` does (whitespace goes to the end of a sentence, so
 * the sentences join back into the text). None if a compromise version has no such method.
 */
const splitSentences = ((): ((text: string) => ReadonlyArray<string>) | undefined => {
  const world: unknown = nlp.world()
  const split: unknown = member(world, ["methods", "one", "tokenize", "splitSentences"])
  if (typeof split !== "function") return undefined
  return (text) => {
    const sentences: unknown = split(text, world)
    return Array.isArray(sentences) && sentences.every((t) => typeof t === "string") ? sentences : [text]
  }
})()

/** Characters compromise tags at once (25 to 50 ms on a loaded machine): the extractor yields between pieces. */
const defaultPieceChars = 2_000

/** A stretch of a text, at its offset. */
interface Piece {
  readonly start: number
  readonly text: string
}

const sameSentences = (a: ReadonlyArray<string>, b: ReadonlyArray<string>) =>
  a.length === b.length && a.every((sentence, i) => sentence === b[i])

/**
 * The text cut into pieces of whole sentences, `pieceChars` characters or more each, that compromise splits alone into the
 * sentences it finds there in the whole text. Its tagger reads one sentence at a time, so each piece gets the tags the
 * whole text would; the whole text is one piece when it cannot be cut so.
 */
const piecesOf = (text: string, pieceChars: number): ReadonlyArray<Piece> => {
  const whole = [{ start: 0, text }]
  const split = splitSentences
  if (split === undefined) return whole
  const sentences = split(text)
  if (sentences.join("") !== text) return whole
  const pieces: Array<Piece> = []
  let start = 0
  let group: Array<string> = []
  let piece = ""
  for (const [i, sentence] of sentences.entries()) {
    group.push(sentence)
    piece += sentence
    const last = i === sentences.length - 1
    if (piece.length < pieceChars && !last) continue
    if (sameSentences(split(piece), group)) {
      pieces.push({ start, text: piece })
      start += piece.length
      group = []
      piece = ""
    } else if (last) {
      return whole
    }
  }
  return pieces
}

/** The terms of one piece, in text offsets, their sentences numbered from `firstSentence`. */
const tag = (text: string, piece: Piece, firstSentence: number) => {
  const doc = nlp(piece.text)
  doc.compute("offset")
  const terms: Array<Tagged> = []
  doc.docs.forEach((sentence, s) => {
    for (const term of sentence) {
      const offset = "offset" in term ? term.offset : undefined
      if (!isOffset(offset)) continue
      const start = piece.start + offset.start
      const end = start + offset.length
      if (text.slice(start, end) !== term.text || term.text === "") continue
      terms.push({ text: term.text, start, end, tags: term.tags ?? new Set(), sentence: firstSentence + s })
    }
  })
  return { terms, sentences: doc.docs.length }
}

/** The sentence units of the tagged terms of a text. */
const unitsOf = (text: string, raw: ReadonlyArray<Tagged>): Array<Unit> => {
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

/**
 * Tokenises and tags a text with compromise, a piece of whole sentences at a time (`piecesOf`), a step after each.
 * Offsets are checked against the text; a token that does not match is skipped.
 */
export function* analyse(text: string, pieceChars = defaultPieceChars): Steps<Array<Unit>> {
  const raw: Array<Tagged> = []
  let sentences = 0
  for (const piece of piecesOf(text, pieceChars)) {
    const tagged = tag(text, piece, sentences)
    for (const term of tagged.terms) raw.push(term)
    sentences += tagged.sentences
    yield
  }
  return unitsOf(text, raw)
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
