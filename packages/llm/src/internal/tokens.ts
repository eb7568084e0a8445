import { countTokens } from "gpt-tokenizer"
import type { Message } from "../ChatCompletions.js"

// Text is the user's, never control tokens: count `<|endoftext|>` and friends as plain text instead of throwing.
const asPlainText = { disallowedSpecial: new Set<string>() }

/** Tokens of a text with the o200k_base encoding (an estimate for other models' tokenizers). */
export const count = (text: string): number => countTokens(text, asPlainText)

/** Prompt tokens of a chat request: the messages plus the few tokens of framing each one costs. */
export const estimatePrompt = (messages: ReadonlyArray<Message>): number =>
  messages.reduce((sum, m) => sum + count(m.content) + 4, 3)
