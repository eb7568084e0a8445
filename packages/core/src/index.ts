/**
 * @since 0.1.0
 */
export * as CapitalizedExtractor from "./CapitalizedExtractor.js"
export * as Chunking from "./Chunking.js"
export * as Errors from "./Errors.js"
export * as Extractor from "./Extractor.js"
export * as Ontology from "./Ontology.js"
export * as Run from "./Run.js"
