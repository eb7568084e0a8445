/**
 * The bundled `quarry` (`packages/cli/dist/bundle/quarry.js`, what `bin` points at): it starts, each command loads
 * only the chunks it needs, and the read-only commands do not read the whole database (no `quick_check`), while
 * `doctor` does.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"
import { damage } from "./damagedDatabase.js"
import { bin, makeDir, removeDir, run, texts } from "./support.js"

/** esbuild's metafile, as far as it is read here. */
interface Metafile {
  readonly outputs: Readonly<
    Record<string, {
      readonly imports: ReadonlyArray<{ readonly path: string; readonly kind: string; readonly external?: boolean }>
      readonly inputs: Readonly<Record<string, unknown>>
    }>
  >
}

/** Bundled, in chunks only the commands that need them load: the llm extractor's tokenizer and its HTTP client. */
const lazyPackages = ["gpt-tokenizer", "undici"]

/**
 * Left out of the bundle and imported when a command runs the extractor: the offline extractor, whose gazetteers are
 * data files beside its modules, and with it its NLP models.
 */
const externalPackage = "@quarry/offline"
const externalModels = ["compromise", "chrono-node"]

describe("the bundled quarry", () => {
  let dir = ""
  beforeAll(() => {
    dir = makeDir()
  })
  afterAll(() => removeDir(dir))

  it("is the package's bin and starts", async () => {
    const pkg: unknown = JSON.parse(
      fs.readFileSync(path.resolve(import.meta.dirname, "../packages/cli/package.json"), "utf8")
    )
    assert.deepInclude(pkg, { bin: { quarry: "./dist/bundle/quarry.js" } })
    assert.strictEqual(path.resolve(import.meta.dirname, "../packages/cli/dist/bundle/quarry.js"), bin)
    const version = await run(["--version"])
    assert.strictEqual(version.code, 0, version.stderr)
    assert.match(version.stdout, /^\d+\.\d+\.\d+\s*$/)
    const help = await run(["--help"])
    assert.strictEqual(help.code, 0, help.stderr)
    assert.match(help.stdout, /^quarry \d+\.\d+\.\d+: /)
  })

  it("loads the extractors' packages only when a command runs them", () => {
    const metafile: Metafile = JSON.parse(fs.readFileSync(path.join(path.dirname(bin), "meta.json"), "utf8"))
    const outputs = metafile.outputs
    const entry = Object.keys(outputs).find((file) => file.endsWith("/quarry.js"))
    assert.isDefined(entry)
    // What a file loads with it: its static imports, transitively.
    const staticClosure = (file: string, loaded = new Set<string>()) => {
      if (loaded.has(file)) return loaded
      loaded.add(file)
      for (const i of outputs[file]?.imports ?? []) {
        if (i.kind === "import-statement" && i.external !== true) staticClosure(i.path, loaded)
      }
      return loaded
    }
    const inputsOf = (files: Iterable<string>) => [...files].flatMap((file) => Object.keys(outputs[file]?.inputs ?? {}))
    // `--version` loads only the entry and its static imports: no effect, no command.
    const versionInputs = inputsOf(staticClosure(entry!))
    assert.deepStrictEqual(versionInputs.filter((i) => i.includes("/effect/") || i.includes("/@effect/")), [])
    // Every other command line also loads the program the entry imports (main): that is start-up for them.
    const programs = (outputs[entry!]?.imports ?? []).filter((i) => i.kind === "dynamic-import" && i.external !== true)
    assert.strictEqual(programs.length, 1, "the entry imports the program")
    const inputs = inputsOf(staticClosure(programs[0]!.path, staticClosure(entry!)))
    assert.isAbove(inputs.length, 100, "the start-up chunks of a command hold effect and the commands")
    for (const name of lazyPackages) {
      const bundled = Object.values(outputs).some((o) => Object.keys(o.inputs).some((i) => i.includes(`/${name}/`)))
      assert.isTrue(bundled, `${name} is in the bundle`)
      assert.deepStrictEqual(inputs.filter((i) => i.includes(`/${name}/`)), [], `${name} is loaded at start-up`)
    }
    const imports = Object.values(outputs).flatMap((o) => o.imports)
    const offline = imports.filter((i) => i.path.startsWith(externalPackage))
    assert.isNotEmpty(offline, `${externalPackage} is imported`)
    assert.deepStrictEqual(offline.map((i) => [i.kind, i.external]), offline.map(() => ["dynamic-import", true]))
    for (const name of externalModels) {
      const bundled = Object.values(outputs).some((o) => Object.keys(o.inputs).some((i) => i.includes(`/${name}/`)))
      assert.isFalse(bundled, `${name} is in the bundle`)
    }
  })

  it("status and runs answer on a damaged database without reading all of it; doctor finds the damage", async () => {
    const db = path.join(dir, "damaged.db")
    const start = await run([
      "start",
      path.join(texts, "long-multi-chapter.txt"),
      "--db",
      db,
      "--run-id",
      "r",
      "--extractor",
      "capitalized",
      "--out",
      path.join(dir, "r.ttl")
    ])
    assert.strictEqual(start.code, 0, start.stderr)
    const finding = damage(db)
    const status = await run(["status", "r", "--db", db])
    assert.strictEqual(status.code, 0, status.stderr)
    assert.match(status.stdout, /^status +completed$/m)
    const runs = await run(["runs", "--db", db])
    assert.strictEqual(runs.code, 0, runs.stderr)
    assert.match(runs.stdout, /^r +completed/m)
    const doctor = await run(["doctor", "--db", db])
    assert.strictEqual(doctor.code, 3, doctor.stdout)
    assert.include(doctor.stdout, "quick_check failed")
    assert.include(doctor.stdout, finding.split("\n")[0])
  })
})
