import * as path from "node:path"
import { defineConfig } from "vitest/config"

const root = path.resolve(import.meta.dirname, "..")
const core = path.join(root, "packages/core/src")
const offline = path.join(root, "packages/offline/src")
const coreModules = path.join(root, "packages/core/node_modules")
const offlineModules = path.join(root, "packages/offline/node_modules")

// The evaluation is not a workspace package: it borrows the packages' sources and dependencies by alias.
export default defineConfig({
  resolve: {
    alias: [
      { find: /^@quarry\/core$/, replacement: path.join(core, "index.ts") },
      { find: /^@quarry\/core\/(.*)$/, replacement: path.join(core, "$1.ts") },
      { find: /^@quarry\/offline\/(.*)$/, replacement: path.join(offline, "$1.ts") },
      { find: /^effect$/, replacement: path.join(coreModules, "effect/dist/esm/index.js") },
      { find: /^effect\/(.*)$/, replacement: path.join(coreModules, "effect/dist/esm/$1.js") },
      { find: /^compromise$/, replacement: path.join(offlineModules, "compromise/src/three.js") }
    ]
  },
  test: {
    root,
    include: ["eval/**/*.eval.ts"],
    testTimeout: 600_000,
    pool: "forks",
    disableConsoleIntercept: true,
    reporters: ["dot"]
  }
})
