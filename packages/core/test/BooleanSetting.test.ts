import { assert, describe, it } from "@effect/vitest"
import * as BooleanSetting from "@quarry/core/BooleanSetting"
import * as fc from "effect/FastCheck"
import * as Option from "effect/Option"

describe("BooleanSetting.parse", () => {
  const spellings = [["true", true], ["false", false], ["yes", true], ["no", false], ["on", true], ["off", false], [
    "1",
    true
  ], ["0", false]] as const

  it.prop(
    "reads every spelling in any case, with spaces around it",
    [fc.constantFrom(...spellings), fc.array(fc.boolean()), fc.constantFrom("", " ", "\t")],
    ([[spelling, value], upper, pad]) => {
      const cased = [...spelling].map((c, i) => upper[i] === true ? c.toUpperCase() : c).join("")
      assert.deepStrictEqual(BooleanSetting.parse(`${pad}${cased}${pad}`), Option.some(value))
    }
  )

  it("reads nothing else, not even an inherited property name", () => {
    for (const text of ["", "maybe", "2", "y", "toString", "constructor", "t rue"]) {
      assert.isTrue(Option.isNone(BooleanSetting.parse(text)), text)
    }
  })
})
