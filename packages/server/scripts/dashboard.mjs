/**
 * Builds the web dashboard (`dashboard/*.ts`, plain TypeScript and the DOM) into `dist/dashboard/`: one minified
 * `app.js`, plus `index.html` and `app.css` as they are. The server serves that folder from beside its own module
 * (`dist/Dashboard.js`); the CLI's bundle copies it beside its chunks for the same reason. No CDN, no framework.
 *
 * Usage: node scripts/dashboard.mjs (from any directory).
 */
import * as esbuild from "esbuild"
import * as fs from "node:fs"
import * as path from "node:path"

const root = path.resolve(import.meta.dirname, "..")
const source = path.join(root, "dashboard")
const outdir = path.join(root, "dist/dashboard")

fs.rmSync(outdir, { recursive: true, force: true })
await esbuild.build({
  entryPoints: [path.join(source, "app.ts")],
  outfile: path.join(outdir, "app.js"),
  bundle: true,
  minify: true,
  format: "iife",
  target: "es2022",
  platform: "browser",
  logLevel: "warning"
})
for (const file of ["index.html", "app.css"]) fs.copyFileSync(path.join(source, file), path.join(outdir, file))
