/**
 * Text helpers of the offline extractor: contiguous segments of a batch, e-mail and URL detection, folding.
 */
import type { Chunk } from "@quarry/core/Chunking"

/** A contiguous stretch of the document: `text === document.slice(start, start + text.length)`. */
export interface Segment {
  readonly start: number
  readonly text: string
}

/**
 * Joins a batch's chunks into contiguous segments. Overlapping chunks are stitched (the overlap is read once), so
 * every name is seen in one piece unless it crosses a gap between chunks.
 */
export const segmentsOf = (chunks: ReadonlyArray<Chunk>): Array<Segment> => {
  const sorted = [...chunks].sort((a, b) => a.start - b.start || a.end - b.end)
  const segments: Array<{ start: number; end: number; parts: Array<string> }> = []
  for (const chunk of sorted) {
    const last = segments[segments.length - 1]
    if (last !== undefined && chunk.start <= last.end) {
      if (chunk.end > last.end) {
        last.parts.push(chunk.text.slice(last.end - chunk.start))
        last.end = chunk.end
      }
    } else {
      segments.push({ start: chunk.start, end: chunk.end, parts: [chunk.text] })
    }
  }
  return segments.map((s) => ({ start: s.start, text: s.parts.join("") }))
}

/** A match in a segment, in segment offsets. */
export interface Match {
  readonly start: number
  readonly end: number
  readonly text: string
}

const urlPattern = /\b(?:(?:https?|wss?|ftps?):\/\/|www\.)[^\s<>"'`\\^{}|]+/giu

const trailing = new Set([".", ",", ";", ":", "!", "?", "'", "\"", "»", "”", "’", ")", "]", "}", "*"])

const count = (text: string, char: string) => text.split(char).length - 1

/** Drops sentence punctuation after a URL, keeping a closing bracket that belongs to it ("wiki/Foo_(bar)"). */
const trimUrl = (url: string): string => {
  let end = url.length
  while (end > 0) {
    const c = url[end - 1]!
    if (!trailing.has(c)) break
    if (c === ")" && count(url.slice(0, end), "(") >= count(url.slice(0, end), ")")) break
    if (c === "]" && count(url.slice(0, end), "[") >= count(url.slice(0, end), "]")) break
    end--
  }
  return url.slice(0, end)
}

/** Finds URLs (with a scheme, or starting with `www.`). */
export const findUrls = (text: string): Array<Match> => {
  const found: Array<Match> = []
  for (const m of text.matchAll(urlPattern)) {
    const url = trimUrl(m[0])
    if (url.length < 8 || !/[\p{L}\p{N}]\.[\p{L}\p{N}]|:\/\/[\p{L}\p{N}]/u.test(url)) continue
    found.push({ start: m.index, end: m.index + url.length, text: url })
  }
  return found
}

const emailPattern =
  /(?<![\p{L}\p{N}._%+\-@/])[\p{L}\p{N}](?:[\p{L}\p{N}._%+-]*[\p{L}\p{N}_%+-])?@[\p{L}\p{N}](?:[\p{L}\p{N}-]*[\p{L}\p{N}])?(?:\.[\p{L}\p{N}](?:[\p{L}\p{N}-]*[\p{L}\p{N}])?)+/gu

/** Finds e-mail addresses; run it on text whose URLs are masked, so "medium.com/@name" is not one. */
export const findEmails = (text: string): Array<Match> => {
  const found: Array<Match> = []
  for (const m of text.matchAll(emailPattern)) {
    const domain = m[0].slice(m[0].indexOf("@") + 1)
    if (!/\.\p{L}{2,}$/u.test(domain)) continue
    found.push({ start: m.index, end: m.index + m[0].length, text: m[0] })
  }
  return found
}

/** Replaces the given ranges by spaces of the same UTF-16 length, so offsets stay valid. */
export const mask = (text: string, ranges: ReadonlyArray<{ readonly start: number; readonly end: number }>): string => {
  if (ranges.length === 0) return text
  const sorted = [...ranges].sort((a, b) => a.start - b.start)
  let out = ""
  let at = 0
  for (const r of sorted) {
    if (r.start < at) continue
    out += text.slice(at, r.start) + " ".repeat(r.end - r.start)
    at = r.end
  }
  return out + text.slice(at)
}

const special: Record<string, string> = {
  "ß": "ss",
  "ø": "o",
  "æ": "ae",
  "œ": "oe",
  "đ": "d",
  "ð": "d",
  "þ": "th",
  "ł": "l",
  "ı": "i"
}

/** Lower case without diacritics ("Björk Sigurðsson" → "bjork sigurdsson"); other scripts are kept. */
export const fold = (text: string): string =>
  text.toLowerCase().normalize("NFD").replace(/\p{M}/gu, "").replace(/[ßøæœđðþłı]/gu, (c) => special[c] ?? c)

/** The German transliteration of umlauts ("Müller" → "mueller"), as e-mail addresses often spell names. */
export const foldGerman = (text: string): string =>
  fold(text.toLowerCase().replace(/ä/gu, "ae").replace(/ö/gu, "oe").replace(/ü/gu, "ue"))

/** The lower-cased key under which labels vote for a type: whitespace collapsed, quotes unified. */
export const labelKey = (label: string): string =>
  label.normalize("NFKC").toLowerCase().replace(/[’‘]/gu, "'").replace(/\s+/gu, " ").trim()

/** Where lines and paragraphs (blank-line separated blocks) start, for "same line" and "same paragraph" tests. */
export interface Layout {
  readonly line: (offset: number) => number
  readonly paragraph: (offset: number) => number
}

const lowerBound = (starts: ReadonlyArray<number>, offset: number) => {
  let lo = 0
  let hi = starts.length - 1
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1
    if (starts[mid]! <= offset) lo = mid
    else hi = mid - 1
  }
  return lo
}

/** Indexes the lines and paragraphs of a text. */
export const layoutOf = (text: string): Layout => {
  const lines = [0]
  const paragraphs = [0]
  for (const m of text.matchAll(/\r?\n/g)) lines.push(m.index + m[0].length)
  for (const m of text.matchAll(/\r?\n[ \t]*\r?\n\s*/g)) paragraphs.push(m.index + m[0].length)
  return {
    line: (offset) => lowerBound(lines, offset),
    paragraph: (offset) => lowerBound(paragraphs, offset)
  }
}
