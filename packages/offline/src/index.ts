/**
 * @since 0.1.0
 */
export * as OfflineExtractor from "./OfflineExtractor.js"
