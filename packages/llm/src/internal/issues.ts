/**
 * Short, readable decode errors (`entities[0].type: Expected "Person" | "Place", actual "Animal"`) for messages
 * that people and models read: a repair prompt, a failed batch, a bad reply from the server. `Schema`'s tree
 * formatter spends most of a length limit on the schema's own structure before it reaches the problem.
 */
import * as ParseResult from "effect/ParseResult"

const clip = (text: string, max: number) => text.length > max ? `${text.slice(0, max)}…` : text

/** JSON.parse's own message when `text` is not JSON. */
export const notJson = (text: string): string | undefined => {
  try {
    JSON.parse(text)
    return undefined
  } catch (error) {
    return error instanceof Error ? error.message : String(error)
  }
}

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

/** Where the value is wrong and why, the first `max` places. */
export const describe = (error: ParseResult.ParseError, max = 5): string => {
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
  const shown = places.slice(0, max).map(([place, messages]) =>
    `${place === "" ? "" : `${place}: `}${clip(merge(messages), 400)}`
  )
  return shown.join("; ") + (places.length > shown.length ? ` (and ${places.length - shown.length} more)` : "")
}
