/**
 * Dates of the offline extractor: chrono-node for written dates, a pattern for bare years and decades. Only dates
 * the text states absolutely are kept; relative ones ("last month") would depend on a reference date and are skipped.
 */
import * as chrono from "chrono-node"

/** A fixed reference date, so chrono never reads the machine clock (output must not depend on when it runs). */
export const referenceDate = new Date(Date.UTC(2000, 0, 1))

const XSD = "http://www.w3.org/2001/XMLSchema#"

/** A date found in a segment (segment offsets), with its XSD value when the year is stated. */
export interface DateMatch {
  readonly start: number
  readonly end: number
  readonly text: string
  readonly value: string | undefined
  readonly datatype: string | undefined
}

const pad = (n: number, width: number) => String(n).padStart(width, "0")

const valueOf = (components: chrono.ParsedComponents) => {
  if (!components.isCertain("year")) return { value: undefined, datatype: undefined }
  const year = components.get("year") ?? 0
  if (components.isCertain("month") && components.isCertain("day")) {
    return {
      value: `${pad(year, 4)}-${pad(components.get("month") ?? 1, 2)}-${pad(components.get("day") ?? 1, 2)}`,
      datatype: `${XSD}date`
    }
  }
  if (components.isCertain("month")) {
    return { value: `${pad(year, 4)}-${pad(components.get("month") ?? 1, 2)}`, datatype: `${XSD}gYearMonth` }
  }
  return { value: pad(year, 4), datatype: `${XSD}gYear` }
}

const yearPattern = /(?<![\p{L}\p{N}#/$€£¥.,:+])(1[5-9]\d\d|20\d\d)(?![\p{L}\p{N}%°]|[.,:/]\d)/gu
const decadePattern = /(?<![\p{L}\p{N}'])(?:1[5-9]|20)\d0s(?![\p{L}\p{N}])/gu
const yearCue =
  /(?:^|[^\p{L}])(?:in|since|by|from|to|until|till|through|of|during|after|before|around|circa|c\.|year|early|late|mid|between|and|or|as of|published|founded|born|died|spring|summer|autumn|fall|winter)\s*$/iu

/** Finds absolute dates, years and decades in a text. Results are sorted and do not overlap. */
export const findDates = (text: string): Array<DateMatch> => {
  const found: Array<DateMatch> = []
  for (const result of chrono.casual.parse(text, { instant: referenceDate, timezone: 0 })) {
    if (result.tags().has("result/relativeDate") || !/\d/.test(result.text)) continue
    const start = result.start
    const monthName = /\p{L}{3}/u.test(result.text)
    const stated = start.isCertain("year") || (start.isCertain("month") && start.isCertain("day") && monthName)
    if (!stated) continue
    // A range ("2015 to 2018") gives two dates; chrono reports it as one result with an end.
    if (result.end !== undefined && /\b(?:to|until|till|through|-|–)\b/u.test(result.text)) continue
    found.push({ start: result.index, end: result.index + result.text.length, text: result.text, ...valueOf(start) })
  }
  const taken = (s: number, e: number) => found.some((d) => s < d.end && d.start < e)
  const extra: Array<DateMatch> = []
  for (const m of text.matchAll(yearPattern)) {
    const s = m.index
    const e = s + m[0].length
    if (taken(s, e)) continue
    const before = text.slice(Math.max(0, s - 16), s)
    const after = text.slice(e, e + 8)
    const range = /[-–]\s*$/u.test(before) && /\d\s*[-–]\s*$/u.test(text.slice(Math.max(0, s - 8), s))
    const rangeStart = /^\s*[-–]\s*(?:1[5-9]|20)\d\d/u.test(after)
    if (!(yearCue.test(before) || /[©(]\s*$/u.test(before) || range || rangeStart)) continue
    extra.push({ start: s, end: e, text: m[0], value: m[0], datatype: `${XSD}gYear` })
  }
  for (const m of text.matchAll(decadePattern)) {
    const s = m.index
    const e = s + m[0].length
    if (taken(s, e)) continue
    extra.push({ start: s, end: e, text: m[0], value: undefined, datatype: undefined })
  }
  return [...found, ...extra].sort((a, b) => a.start - b.start || a.end - b.end)
}
