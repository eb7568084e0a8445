import { assert, describe, it } from "@effect/vitest"
import type * as Extractor from "@quarry/core/Extractor"
import * as Language from "../src/internal/language.js"

const XSD = "http://www.w3.org/2001/XMLSchema#"

const relation = (object: Extractor.Literal): Extractor.RelationMention => ({
  subject: { _tag: "Entity", label: "Acme", type: "urn:x:Organization" },
  predicate: "urn:x:p",
  object,
  confidence: 1
})

const languageOf = (r: Extractor.RelationMention) => (r.object._tag === "Literal" ? r.object.language : undefined)

describe("Language", () => {
  it("detects the language of a batch as a BCP 47 tag (ISO 639-1 where there is one)", () => {
    const seg = (text: string) => [{ start: 0, text }]
    assert.strictEqual(
      Language.detect(
        seg(
          "The committee met on Tuesday and agreed that the new bridge over the river " +
            "should be built before the winter comes."
        )
      ),
      "en"
    )
    assert.strictEqual(
      Language.detect(
        seg(
          "Der Ausschuss traf sich am Dienstag und beschloss, dass die neue Brücke über den " +
            "Fluss vor dem Winter gebaut wird."
        )
      ),
      "de"
    )
    assert.strictEqual(
      Language.detect(
        seg(
          "El comité se reunió el martes y acordó que el nuevo puente sobre el río se " +
            "construya antes del invierno."
        )
      ),
      "es"
    )
  })

  it("gives no tag below the minimum length, and ignores addresses and URLs when measuring it", () => {
    assert.isUndefined(Language.detect([{ start: 0, text: "Alice Smith works at Acme." }]))
    const padding = Array.from({ length: 20 }, (_, i) => `someone${i}@example.com https://example.com/${i}`).join(" ")
    assert.isUndefined(Language.detect([{ start: 0, text: `Alice Smith works at Acme. ${padding}` }]))
  })

  it("tags literals of words only: not typed values, addresses or URLs, nor an existing tag", () => {
    assert.strictEqual(
      languageOf(Language.tagLiteral(relation({ _tag: "Literal", value: "December 18th" }), "en")),
      "en"
    )
    assert.isUndefined(
      languageOf(Language.tagLiteral(relation({ _tag: "Literal", value: "December 18th" }), undefined))
    )
    const typed = relation({ _tag: "Literal", value: "2010", datatype: `${XSD}gYear` })
    assert.strictEqual(Language.tagLiteral(typed, "en"), typed)
    for (const value of ["alice@acme.example", "mailto:alice@acme.example", "https://acme.example/"]) {
      assert.isUndefined(languageOf(Language.tagLiteral(relation({ _tag: "Literal", value }), "en")), value)
    }
    assert.strictEqual(
      languageOf(Language.tagLiteral(relation({ _tag: "Literal", value: "Mai", language: "de" }), "en")),
      "de"
    )
  })

  it("treats names and undated dates as words, addresses, URLs and dated values as values", () => {
    assert.isTrue(Language.isText("person", undefined))
    assert.isTrue(Language.isText("organization", undefined))
    assert.isTrue(Language.isText("date", undefined))
    assert.isFalse(Language.isText("date", "2021-03-05"))
    assert.isFalse(Language.isText("email", undefined))
    assert.isFalse(Language.isText("url", undefined))
  })
})
