import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as CliStartup from "../src/CliStartup.js"
import * as Harness from "../src/Harness.js"
import * as Report from "../src/Report.js"
import type * as Stats from "../src/Stats.js"

// Smoke versions of benchmarks 9 and 12: tiny sizes, no timing assertions; each must run and give sane figures.

const sane = (summary: Stats.Summary, what: string, n: number) => {
  assert.strictEqual(summary.n, n, `${what}: samples`)
  assert.isTrue(Number.isFinite(summary.min) && summary.min > 0, `${what}: min ${summary.min}`)
  assert.isTrue(summary.min <= summary.median && summary.median <= summary.max, `${what}: min <= median <= max`)
}

const renders = (section: Report.Section, targets: ReadonlyArray<string>) => {
  assert.deepStrictEqual(section.targets.map((t) => t.name.split(" ")[0]), targets)
  assert.notInclude(Report.text(section), "NaN")
  assert.notInclude(Report.markdownTable(section.tables[0]!), "NaN")
}

describe("benchmarks 9 and 12 (smoke)", () => {
  it.live("9 CLI start-up", () =>
    Effect.gen(function*() {
      const config = CliStartup.startupConfigs.smoke
      const { data, section } = yield* CliStartup.runStartup(config).pipe(Effect.provide(Harness.quiet))
      for (const key of ["node", "version", "status", "runs", "unbundledVersion", "unbundledStatus"] as const) {
        sane(data[key].wall, `${key} wall`, config.repeats)
        sane(data[key].cpu, `${key} cpu`, config.repeats)
      }
      assert.isBelow(data.startupBytes.command, data.bundleBytes, "some chunks are loaded only on demand")
      assert.isBelow(data.startupBytes.version, data.startupBytes.command / 100, "--version loads almost nothing")
      renders(section, ["P9", "P9", "P9"])
    }), 120_000)

  it.live("12 status on a large database", () =>
    Effect.gen(function*() {
      const config = CliStartup.statusConfigs.smoke
      const { data, section } = yield* CliStartup.runStatus(config).pipe(Effect.provide(Harness.quiet))
      for (const key of ["statusSmall", "statusLarge", "statusBigRun"] as const) sane(data[key], key, config.repeats)
      sane(data.doctorLarge, "doctorLarge", config.doctorRepeats)
      assert.isAbove(data.largeFile, data.smallFile * 2, "the large database is larger")
      assert.isAbove(data.smallFile, config.smallBytes / 2, "the small database has about the size asked for")
      renders(section, ["P12"])
    }), 120_000)
})
