import type { Chunk } from "@quarry/core/Chunking"

/** A place in the document where a label occurs, with the document's own text there. */
export interface Occurrence {
  readonly start: number
  readonly end: number
  readonly text: string
}

/** A run of the batch text that is a contiguous slice of the document. */
interface Piece {
  readonly textStart: number
  readonly docStart: number
  readonly length: number
}

/**
 * The text the model sees for a batch: its chunks with their overlaps removed, so a mention that crosses a chunk
 * boundary is still whole. Chunks that do not touch are joined by a newline that maps to no document offset.
 */
export interface BatchText {
  readonly text: string
  readonly pieces: ReadonlyArray<Piece>
}

export const batchText = (chunks: ReadonlyArray<Chunk>): BatchText => {
  let text = ""
  const pieces: Array<Piece> = []
  let end = -1
  for (const chunk of chunks) {
    if (pieces.length === 0 || chunk.start > end) {
      if (pieces.length > 0) text += "\n"
      pieces.push({ textStart: text.length, docStart: chunk.start, length: chunk.text.length })
      text += chunk.text
    } else if (chunk.end > end) {
      const added = chunk.text.slice(end - chunk.start)
      const last = pieces[pieces.length - 1]!
      pieces[pieces.length - 1] = { ...last, length: last.length + added.length }
      text += added
    }
    end = Math.max(end, chunk.end)
  }
  return { text, pieces }
}

/** The document range of `[start, end)` of the batch text, if it lies within one piece. */
const toDocument = (batch: BatchText, start: number, end: number): [number, number] | undefined => {
  for (const piece of batch.pieces) {
    if (start >= piece.textStart && end <= piece.textStart + piece.length) {
      const offset = piece.docStart - piece.textStart
      return [start + offset, end + offset]
    }
  }
  return undefined
}

const wordChar = /[\p{L}\p{N}\p{M}]/u

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

/** Whitespace in a label matches any run of whitespace in the text (a name broken across lines). */
const pattern = (label: string, flags: string) => new RegExp(label.trim().split(/\s+/).map(escape).join("\\s+"), flags)

const atWordBoundary = (text: string, start: number, end: number) => {
  const before = start > 0 ? text[start - 1]! : ""
  const after = end < text.length ? text[end]! : ""
  return !(wordChar.test(text[start] ?? "") && wordChar.test(before)) &&
    !(wordChar.test(text[end - 1] ?? "") && wordChar.test(after))
}

const search = (batch: BatchText, label: string, flags: string): Array<Occurrence> => {
  const found: Array<Occurrence> = []
  for (const match of batch.text.matchAll(pattern(label, flags))) {
    const end = match.index + match[0].length
    if (match[0].length === 0 || !atWordBoundary(batch.text, match.index, end)) continue
    const span = toDocument(batch, match.index, end)
    if (span !== undefined) found.push({ start: span[0], end: span[1], text: match[0] })
  }
  return found
}

/**
 * Every occurrence of `label` in the batch, as document offsets: exact matches, or, when there is none,
 * case-insensitive ones. Matches inside a longer word do not count.
 */
export const occurrences = (batch: BatchText, label: string): Array<Occurrence> => {
  if (label.trim() === "") return []
  const exact = search(batch, label, "gu")
  return exact.length > 0 ? exact : search(batch, label, "giu")
}
