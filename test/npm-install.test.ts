/**
 * Quarry as users get it: the five packages packed with `pnpm pack` (from the built `dist/`, as `pnpm test` leaves it)
 * and installed with plain `npm` into a fresh project outside the workspace, dependencies from the registry. Then the
 * installed `quarry` runs (`--version`, `start` to Turtle, `serve` answering `/livez`) and a TypeScript program
 * composing `@quarry/core`'s layers compiles against the published `.d.ts` (strict, ESM, `nodenext`, library checks
 * on) and runs. A missing export, a type that resolves only inside the workspace, a dependency declared only at the
 * root or a native module that did not build fails here.
 *
 * One install serves every case: better-sqlite3 compiles from source (no prebuilt binary is reachable), which takes
 * minutes on a busy machine.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as os from "node:os"
import * as path from "node:path"

const root = path.resolve(import.meta.dirname, "..")
const packages = ["core", "llm", "offline", "server", "cli"]
const texts = path.join(root, "test/data/texts")
/** The workspace's TypeScript, not one from the registry: the compiler the project is built with. */
const tsc = path.join(root, "node_modules/typescript/bin/tsc")
/** The registry dependencies the consumer declares itself: what the packages' READMEs tell users to install. */
const consumerDependencies = ["effect@^3.22.4", "@types/node@^20.19.0"]

/** The environment of plain npm: none of the `npm_config_*` variables pnpm sets for its scripts, no QUARRY_. */
const plainEnv = (): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !/^(npm_|pnpm_|quarry_)/i.test(key)) env[key] = value
  }
  return env
}

interface Result {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs a command to its end in its own process group (npx runs `quarry` under a shell), collecting its output. */
const exec = (command: string, args: ReadonlyArray<string>, cwd: string): Promise<Result> =>
  new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env: plainEnv(), stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk))
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk))
    child.on("error", reject)
    child.on("close", (code) => resolve({ code, stdout, stderr }))
  })

/** `exec`, failing with the command's output unless it exits 0. */
const ok = async (command: string, args: ReadonlyArray<string>, cwd: string): Promise<Result> => {
  const result = await exec(command, args, cwd)
  if (result.code !== 0) {
    throw new Error(`${command} ${args.join(" ")} exited ${result.code}\n${result.stdout}\n${result.stderr}`)
  }
  return result
}

/** A tarball: its file, its bytes, the paths inside it (without the `package/` prefix). */
interface Tarball {
  readonly name: string
  readonly file: string
  readonly bytes: number
  readonly entries: ReadonlyArray<string>
}

/** `name: 123 kB packed, N files` for each tarball, for failure messages. */
const sizes = (tarballs: ReadonlyArray<Tarball>) =>
  tarballs.map((t) => `${t.name}: ${(t.bytes / 1000).toFixed(0)} kB packed, ${t.entries.length} files`).join("; ")

/** Packs every publishable package into `dir` with pnpm, which turns `workspace:^` into `^<version>`. */
const pack = async (dir: string): Promise<Array<Tarball>> => {
  await ok("npx", ["-y", "pnpm@10.34.8", "-r", "--filter", "./packages/*", "pack", "--pack-destination", dir], root)
  return Promise.all(packages.map(async (name) => {
    const file = path.join(dir, `quarry-${name}-0.1.0.tgz`)
    const listing = await ok("tar", ["tzf", file], dir)
    const entries = listing.stdout.split("\n").filter((line) => line !== "").map((line) =>
      line.replace(/^package\//, "")
    )
    return { name, file, bytes: fs.statSync(file).size, entries }
  }))
}

/** The program of docs/architecture.md ("Composing the layers"), as a user would write it. */
const program = (database: string, graph: string) => `
import { CapitalizedExtractor, Database, Extractor, SqliteRunStore, WorkflowManager } from "@quarry/core"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

const QuarryLive = WorkflowManager.layer().pipe(
  Layer.provideMerge(SqliteRunStore.layer),
  Layer.provideMerge(Extractor.layerRegistry(CapitalizedExtractor.make())),
  Layer.provideMerge(Database.layer(${JSON.stringify(database)}))
)

const program = Effect.gen(function*() {
  const manager = yield* WorkflowManager.WorkflowManager
  const handle = yield* manager.start({
    input: "Ada Lovelace met Charles Babbage in London.",
    extractor: "capitalized",
    chunking: { windowSize: 200, overlap: 20, batchSize: 2 },
    output: { path: ${JSON.stringify(graph)}, format: "turtle" }
  })
  const run = yield* manager.await(handle.runId)
  console.log(JSON.stringify({ id: run.id, status: run.status }))
})

Effect.runPromise(program.pipe(Effect.provide(QuarryLive)))
`

/** The part of n3's API the test uses (n3 ships no declarations; the workspace's @types/n3 is not the point here). */
interface N3Module {
  readonly Parser: new(options: { format: string }) => {
    parse: (text: string) => Array<{ readonly object: { readonly value: string } }>
  }
}

/** Strict ESM on Node's own resolution; library checks on, so an unresolvable type in a published .d.ts fails. */
const tsconfig = {
  compilerOptions: {
    strict: true,
    exactOptionalPropertyTypes: true,
    target: "ES2022",
    module: "NodeNext",
    moduleResolution: "NodeNext",
    skipLibCheck: false,
    types: ["node"],
    outDir: "out"
  },
  files: ["main.ts"]
}

describe("the npm packages", () => {
  let dir = ""
  let app = ""
  let tarballs: Array<Tarball> = []

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "quarry-npm-"))
    app = path.join(dir, "app")
    fs.mkdirSync(app)
    tarballs = await pack(path.join(dir, "tarballs"))
    fs.writeFileSync(
      path.join(app, "package.json"),
      JSON.stringify({ name: "quarry-npm-install-test", private: true, type: "module" })
    )
    await ok("npm", [
      "install",
      "--no-audit",
      "--no-fund",
      "--loglevel=error",
      ...tarballs.map((t) => t.file),
      ...consumerDependencies
    ], app)
  }, 900_000)

  // Asynchronously: node_modules with a native build is tens of thousands of files, and a synchronous delete would
  // stall the worker past vitest's RPC timeout.
  afterAll(() => dir === "" ? Promise.resolve() : fs.promises.rm(dir, { recursive: true, force: true }), 300_000)

  it("each tarball holds its dist, src (for the source maps), LICENSE and README, and no tests", () => {
    const summary = sizes(tarballs)
    for (const t of tarballs) {
      for (const file of ["LICENSE", "README.md", "package.json", "dist/index.js", "dist/index.d.ts"]) {
        assert.include(t.entries, file, `${t.name} lacks ${file} (${summary})`)
      }
      assert.isTrue(t.entries.some((e) => e.startsWith("src/")), `${t.name} ships no src (${summary})`)
      const stray = t.entries.filter((e) =>
        /(^|\/)(test|tests|__tests__|scripts)\//.test(e) || /\.test\.|tsbuildinfo|meta\.json$|^node_modules\//.test(e)
      )
      assert.deepStrictEqual(stray, [], `${t.name} (${summary})`)
      assert.isBelow(t.bytes, 4_000_000, `${t.name} grew (${summary})`)
    }
    const offline = tarballs.find((t) => t.name === "offline")!
    assert.include(offline.entries, "data/cities.json", "the offline extractor reads it beside its modules")
  })

  it("the installed manifests name real versions, and every file they point at is installed", () => {
    for (const name of packages) {
      const dir = path.join(app, "node_modules/@quarry", name)
      const text = fs.readFileSync(path.join(dir, "package.json"), "utf8")
      assert.notInclude(text, "workspace:", name)
      const manifest = JSON.parse(text) as {
        dependencies: Record<string, string>
        bin?: Record<string, string>
        exports: Record<string, { types: string; default: string } | null>
      }
      for (const [dep, range] of Object.entries(manifest.dependencies)) {
        if (dep.startsWith("@quarry/")) assert.strictEqual(range, "^0.1.0", `${name} -> ${dep}`)
      }
      const root = manifest.exports["."]!
      for (const target of [root.types, root.default, ...Object.values(manifest.bin ?? {})]) {
        assert.isTrue(fs.existsSync(path.join(dir, target)), `${name}: ${target}`)
      }
      // Every source map points at a source that ships.
      const maps = fs.readdirSync(path.join(dir, "dist"), { recursive: true, encoding: "utf8" })
        .filter((file) => file.endsWith(".map"))
      assert.isNotEmpty(maps, name)
      for (const map of maps) {
        const { sources } = JSON.parse(fs.readFileSync(path.join(dir, "dist", map), "utf8")) as { sources: string[] }
        for (const source of sources) {
          assert.isTrue(fs.existsSync(path.resolve(path.dirname(path.join(dir, "dist", map)), source)), source)
        }
      }
    }
  })

  it("npx quarry --version, and --completions bash from the installed bundle", async () => {
    const result = await ok("npx", ["--no-install", "quarry", "--version"], app)
    assert.strictEqual(result.stdout.trim(), "0.1.0")
    const script = await ok("npx", ["--no-install", "quarry", "--completions", "bash"], app)
    assert.include(script.stdout, "complete -F _quarry_bash_completions")
    for (const command of ["start", "resume", "status", "serve"]) assert.include(script.stdout, command)
  })

  it("npx quarry start writes a Turtle graph with the offline extractor (native SQLite built)", async () => {
    const out = path.join(app, "moby.ttl")
    const result = await ok("npx", [
      "--no-install",
      "quarry",
      "start",
      path.join(texts, "long-multi-chapter.txt"),
      "--db",
      path.join(app, "quarry.db"),
      "--out",
      out
    ], app)
    assert.match(result.stdout, /completed/)
    // Parsed with the n3 the install brought, not the workspace's.
    const N3 = createRequire(path.join(app, "package.json"))("n3") as N3Module
    const quads = new N3.Parser({ format: "text/turtle" }).parse(fs.readFileSync(out, "utf8"))
    assert.isAbove(quads.length, 50)
    assert.isTrue(quads.some((q) => q.object.value === "http://xmlns.com/foaf/0.1/Person"), "a foaf:Person")
  })

  it("npx quarry serve --port 0 answers /livez", async () => {
    const child: ChildProcess = spawn(
      "npx",
      ["--no-install", "quarry", "serve", "--db", path.join(app, "serve.db"), "--port", "0", "--json"],
      { cwd: app, env: plainEnv(), stdio: ["ignore", "pipe", "pipe"], detached: true }
    )
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
    try {
      let stdout = ""
      let stderr = ""
      child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk))
      const listening = await new Promise<{ port: number }>((resolve, reject) => {
        child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
          stdout += chunk
          const line = stdout.split("\n").find((l) => l.includes("server.listening"))
          if (line !== undefined) resolve(JSON.parse(line) as { port: number })
        })
        void exited.then((code) => reject(new Error(`quarry serve exited ${code}\n${stdout}\n${stderr}`)))
      })
      const response = await fetch(`http://127.0.0.1:${listening.port}/livez`)
      assert.strictEqual(response.status, 200)
    } finally {
      // npx runs quarry under a shell: signal the whole group, so the server itself drains and exits.
      process.kill(-child.pid!, "SIGTERM")
      await exited
    }
  })

  it("without better-sqlite3's native build, quarry says how to build it", async () => {
    // What a global install or npx with npm 11.19+ leaves behind unless given --allow-scripts=better-sqlite3.
    const binding = path.join(app, "node_modules/better-sqlite3/build/Release/better_sqlite3.node")
    fs.renameSync(binding, `${binding}.aside`)
    try {
      const result = await exec("npx", [
        "--no-install",
        "quarry",
        "start",
        path.join(texts, "minimal-single-sentence.txt"),
        "--db",
        path.join(app, "unbuilt.db")
      ], app)
      assert.strictEqual(result.code, 3, result.stderr)
      assert.include(result.stderr, "native module (better-sqlite3) is not built")
      assert.include(result.stderr, "npm rebuild better-sqlite3")
    } finally {
      fs.renameSync(`${binding}.aside`, binding)
    }
  })

  it("a TypeScript program composes @quarry/core's layers against the published .d.ts and runs", async () => {
    fs.writeFileSync(path.join(app, "main.ts"), program(path.join(app, "lib.db"), path.join(app, "lib.ttl")))
    fs.writeFileSync(path.join(app, "tsconfig.json"), JSON.stringify(tsconfig))
    const compiled = await exec(process.execPath, [tsc, "-p", "."], app)
    assert.strictEqual(compiled.code, 0, compiled.stdout + compiled.stderr)
    const ran = await ok(process.execPath, ["out/main.js"], app)
    assert.deepInclude(JSON.parse(ran.stdout.trim().split("\n").at(-1)!), { status: "completed" })
    assert.match(fs.readFileSync(path.join(app, "lib.ttl"), "utf8"), /Ada Lovelace/)
  })
})
