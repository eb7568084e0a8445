import { assert, describe, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"
import { pathToFileURL } from "node:url"

// The built package, as npm installs it: `dist/` only (its `files`), the assets beside the compiled module.
const packageDir = path.resolve(import.meta.dirname, "..")

describe("Dashboard assets", () => {
  it("are built into dist/dashboard, the folder the compiled module serves, and shipped in the package's files", async () => {
    const manifest = JSON.parse(fs.readFileSync(path.join(packageDir, "package.json"), "utf8")) as {
      files: Array<string>
    }
    assert.include(manifest.files, "dist")
    const compiled = (await import(pathToFileURL(path.join(packageDir, "dist/Dashboard.js")).href)) as {
      directory: () => string
    }
    assert.strictEqual(path.resolve(compiled.directory()), path.join(packageDir, "dist/dashboard"))
    for (const file of ["index.html", "app.js", "app.css"]) {
      assert.isAbove(fs.statSync(path.join(packageDir, "dist/dashboard", file)).size, 0, file)
    }
    const html = fs.readFileSync(path.join(packageDir, "dist/dashboard/index.html"), "utf8")
    // Every script and style comes from the server itself: no CDN, nothing inline for the CSP to refuse.
    assert.deepStrictEqual(
      [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]).filter((u) =>
        !u.startsWith("/") && !u.startsWith("data:")
      ),
      []
    )
    assert.notMatch(html, /<script>(?!<\/script>)/)
  })
})
