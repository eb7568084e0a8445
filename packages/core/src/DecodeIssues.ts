/**
 * Short, readable decode errors (`entities[0].type: Expected "Person" | "Place", actual "Animal"`) for messages that
 * people and models read: a refused extractor output, a repair prompt, a bad reply from a server. `Schema`'s tree
 * formatter spends most of a length limit on the schema's own structure before it reaches the problem.
 *
 * @since 0.1.0
 */
import * as ParseResult from "effect/ParseResult"

const clip = (text: string, max: number) => text.length > max ? `${text.slice(0, max)}…` : text

const alternative = /^Expected ([\s\S]+), actual ([\s\S]+)$/

/**
 * One message per place: a union reports each member it tried (`Expected "City", actual "Animal"`, `Expected
 * "Person", actual "Animal"`), read as `Expected "City" | "Person", actual "Animal"`.
 */
const merge = (messages: ReadonlyArray<string>): string => {
  const parts = messages.flatMap((m) => {
    const p = alternative.exec(m)
    return p === null ? [] : [{ expected: p[1], actual: p[2] }]
  })
  const actual = parts[0]?.actual
  return messages.length > 1 && parts.length === messages.length && parts.every((p) => p.actual === actual) ?
    `Expected ${parts.map((p) => p.expected).join(" | ")}, actual ${actual}` :
    messages.join(", or ")
}

/**
 * Where the value is wrong and why, the first `max` places (5 by default); `whole` names the value itself, when the
 * problem is at its top.
 *
 * @since 0.1.0
 * @category formatting
 */
export const describe = (
  error: ParseResult.ParseError,
  options: { readonly max?: number | undefined; readonly whole?: string | undefined } = {}
): string => {
  const byPlace = new Map<string, Array<string>>()
  for (const issue of ParseResult.ArrayFormatter.formatErrorSync(error)) {
    const place = issue.path.map((key, i) =>
      typeof key === "number" ? `[${key}]` : `${i === 0 ? "" : "."}${String(key)}`
    ).join("")
    const messages = byPlace.get(place) ?? []
    messages.push(issue.message)
    byPlace.set(place, messages)
  }
  const places = [...byPlace]
  const shown = places.slice(0, options.max ?? 5).map(([place, messages]) => {
    const where = place === "" ? options.whole : place
    return `${where === undefined ? "" : `${where}: `}${clip(merge(messages), 400)}`
  })
  return shown.join("; ") + (places.length > shown.length ? ` (and ${places.length - shown.length} more)` : "")
}
