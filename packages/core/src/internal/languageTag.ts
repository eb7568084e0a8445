/**
 * A language tag as RDF writes it (`en`, `en-GB`, `zh-Hant-TW`). Defined here so that `Extractor` (which publishes it
 * as `languageTagPattern`) and the canonical JSON writer it imports share it without importing each other.
 */
export const pattern = /^[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8})*$/u
