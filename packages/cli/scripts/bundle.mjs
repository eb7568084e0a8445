/**
 * Bundles the `quarry` executable (`dist/bin.js`, compiled by `tsc -b`) into `dist/bundle/`: one entry file plus
 * chunks that only the commands needing them load (the offline extractor's NLP models, the llm extractor, undici).
 * Node resolves and reads hundreds of files of `effect` and friends per unbundled start, which cost more than
 * everything `quarry status` does; the bundle makes that one file. better-sqlite3 (a native module) and
 * `@quarry/offline` (which reads data files beside its modules) stay external, resolved from `node_modules` at run
 * time. `dist/bundle/meta.json` records what went where.
 *
 * Usage: node scripts/bundle.mjs (from any directory; run after `tsc -b`).
 */
import * as esbuild from "esbuild"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const root = path.resolve(import.meta.dirname, "..")
const entry = path.join(root, "dist/bin.js")
const outdir = path.join(root, "dist/bundle")

if (!fs.existsSync(entry)) {
  console.error(`quarry bundle: ${entry} does not exist; compile first (tsc -b tsconfig.build.json)`)
  process.exit(1)
}
// Chunk names carry content hashes: stale chunks of an earlier build would pile up.
fs.rmSync(outdir, { recursive: true, force: true })

const result = await esbuild.build({
  entryPoints: { quarry: entry },
  outdir,
  bundle: true,
  // Dynamic `import()`s become chunks loaded on demand.
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20",
  // The offline extractor reads its gazetteers (package JSON files, `data/cities.json`) relative to its own module,
  // so it is loaded from its package, not copied into a chunk.
  external: ["better-sqlite3", "@quarry/offline", "@quarry/offline/*"],
  // Bundled CommonJS modules (undici, readable-stream) call `require` for Node's own modules.
  banner: {
    js: "import { createRequire as __quarryCreateRequire } from \"node:module\"\n" +
      "const require = __quarryCreateRequire(import.meta.url)"
  },
  metafile: true,
  logLevel: "warning"
})
fs.writeFileSync(path.join(outdir, "meta.json"), JSON.stringify(result.metafile))
// The server's dashboard assets (built by packages/server/scripts/dashboard.mjs) are read from beside the module
// that serves them, which is a chunk of this bundle now.
const dashboard = path.join(path.dirname(fileURLToPath(import.meta.resolve("@quarry/server"))), "dashboard")
if (!fs.existsSync(path.join(dashboard, "index.html"))) {
  console.error(`quarry bundle: ${dashboard} has no index.html; build the server first (pnpm build)`)
  process.exit(1)
}
fs.cpSync(dashboard, path.join(outdir, "dashboard"), { recursive: true })
fs.chmodSync(path.join(outdir, "quarry.js"), 0o755)
