/**
 * @since 0.1.0
 */
export * as CapitalizedExtractor from "./CapitalizedExtractor.js"
export * as Chunking from "./Chunking.js"
export * as Database from "./Database.js"
export * as DefaultOntology from "./DefaultOntology.js"
export * as Durability from "./Durability.js"
export * as Errors from "./Errors.js"
export * as Extractor from "./Extractor.js"
export * as FairScheduler from "./FairScheduler.js"
export * as Merge from "./Merge.js"
export * as Ontology from "./Ontology.js"
export * as OntologyCache from "./OntologyCache.js"
export * as Run from "./Run.js"
export * as RunStore from "./RunStore.js"
export * as SqliteRunStore from "./SqliteRunStore.js"
export * as Workflow from "./Workflow.js"
export * as WorkflowManager from "./WorkflowManager.js"
