import { assert, describe, it } from "@effect/vitest"
import { RunId } from "@quarry/core/Run"
import * as Artifacts from "@quarry/server/Artifacts"
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

const sha = (digit: string) => digit.repeat(64)

describe("Artifacts.removeExports", () => {
  it.effect("removes the run's cached exports only, not those of a run whose id extends it", () =>
    Effect.gen(function*() {
      const artifacts = fs.mkdtempSync(path.join(os.tmpdir(), "quarry-exports-"))
      const dir = path.join(artifacts, Artifacts.exportsFolder)
      fs.mkdirSync(dir)
      const own = [`zz.${sha("a")}.nt`, `zz.${sha("a")}.nt.sha256`, `zz.${sha("b")}.jsonl`]
      const others = [`zz.y.${sha("a")}.nt`, `zz.y.${sha("a")}.nt.sha256`, `zz.${sha("c")}.${sha("a")}.ttl`, "zzz.nt"]
      for (const file of [...own, ...others]) fs.writeFileSync(path.join(dir, file), "x")
      yield* Artifacts.removeExports(artifacts, RunId.make("zz"))
      assert.deepStrictEqual(fs.readdirSync(dir).sort(), [...others].sort())
      fs.rmSync(artifacts, { recursive: true, force: true })
    }))
})
