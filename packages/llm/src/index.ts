/**
 * @since 0.1.0
 */
export * as ChatCompletions from "./ChatCompletions.js"
export * as CircuitBreaker from "./CircuitBreaker.js"
export * as LlmExtractor from "./LlmExtractor.js"
export * as Pricing from "./Pricing.js"
export * as Prompt from "./Prompt.js"
export * as RateLimiter from "./RateLimiter.js"
