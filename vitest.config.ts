import * as os from "node:os"
import * as path from "node:path"
import { defineConfig } from "vitest/config"

const core = path.resolve(import.meta.dirname, "packages/core/src")
const cli = path.resolve(import.meta.dirname, "packages/cli/src")
const llm = path.resolve(import.meta.dirname, "packages/llm/src")
const offline = path.resolve(import.meta.dirname, "packages/offline/src")
const server = path.resolve(import.meta.dirname, "packages/server/src")
const testkit = path.resolve(import.meta.dirname, "testkit/src")

export default defineConfig({
  resolve: {
    alias: [
      { find: /^@quarry\/core$/, replacement: path.join(core, "index.ts") },
      { find: /^@quarry\/core\/(.*)$/, replacement: path.join(core, "$1.ts") },
      { find: /^@quarry\/llm$/, replacement: path.join(llm, "index.ts") },
      { find: /^@quarry\/llm\/(.*)$/, replacement: path.join(llm, "$1.ts") },
      { find: /^@quarry\/offline$/, replacement: path.join(offline, "index.ts") },
      { find: /^@quarry\/offline\/(.*)$/, replacement: path.join(offline, "$1.ts") },
      { find: /^@quarry\/server$/, replacement: path.join(server, "index.ts") },
      { find: /^@quarry\/server\/(.*)$/, replacement: path.join(server, "$1.ts") },
      { find: /^@quarry\/cli$/, replacement: path.join(cli, "index.ts") },
      { find: /^@quarry\/cli\/(.*)$/, replacement: path.join(cli, "$1.ts") },
      { find: /^@quarry\/testkit\/(.*)$/, replacement: path.join(testkit, "$1.ts") }
    ]
  },
  test: {
    include: ["packages/*/test/**/*.test.ts", "test/**/*.test.ts", "bench/test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    // Vitest's default is one file at a time on two cores (cores - 1). Most end-to-end files wait on child processes,
    // leases, timers and PostgreSQL, so two at a time there took 17 minutes instead of 27 (README, "Test").
    maxWorkers: Math.max(2, os.availableParallelism() - 1)
  }
})
