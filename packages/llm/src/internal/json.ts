/**
 * What a reply that should be JSON is, when it is not (the places of a JSON reply that breaks its schema are told by
 * `@quarry/core/DecodeIssues`).
 */

/** JSON.parse's own message when `text` is not JSON. */
export const notJson = (text: string): string | undefined => {
  try {
    JSON.parse(text)
    return undefined
  } catch (error) {
    return error instanceof Error ? error.message : String(error)
  }
}
