import { assert, describe, it } from "@effect/vitest"
import * as Extractor from "@quarry/core/Extractor"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FastCheck from "effect/FastCheck"
import * as Schema from "effect/Schema"

/** `output` with the value at one of its paths (the `pick`-th, cyclically, root excluded) replaced by `value`. */
const replaced = (output: Extractor.BatchOutput, value: unknown, pick: number): Extractor.BatchOutput => {
  const copy = structuredClone(output) as unknown as Record<string, unknown>
  const slots: Array<[Record<string, unknown>, string]> = []
  const visit = (node: unknown) => {
    if (typeof node !== "object" || node === null) return
    for (const key of Object.keys(node)) {
      slots.push([node as Record<string, unknown>, key])
      visit((node as Record<string, unknown>)[key])
    }
  }
  visit(copy)
  const [parent, key] = slots[pick % slots.length]!
  parent[key] = value
  return copy as unknown as Extractor.BatchOutput
}

/** A well-formed mention, for outputs that change one of its values. */
const mention = {
  label: "Pip",
  type: "http://xmlns.com/foaf/0.1/Person",
  span: { start: 1, end: 4 },
  confidence: 0.5,
  attributes: {}
}

const withLanguage = (language: string): Extractor.BatchOutput => ({
  entities: [],
  relations: [{
    subject: { _tag: "Entity", label: "Ishmael", type: "http://xmlns.com/foaf/0.1/Person" },
    predicate: "http://xmlns.com/foaf/0.1/nick",
    object: { _tag: "Literal", value: "Call me Ishmael", language },
    confidence: 0.9
  }]
})

describe("Extractor.checkOutput", () => {
  it.effect("accepts well-formed language tags on literals", () =>
    Effect.gen(function*() {
      for (const tag of ["en", "en-GB", "zh-Hant-TW"]) {
        const output = yield* Extractor.checkOutput("llm", 0)(withLanguage(tag))
        assert.deepStrictEqual(output, withLanguage(tag))
      }
    }))

  it.effect("refuses a language tag that would make invalid Turtle, naming the batch", () =>
    Effect.gen(function*() {
      for (const tag of ["en us", "e", "en-", "en\"@x"]) {
        const error = yield* Effect.flip(Extractor.checkOutput("llm", 3)(withLanguage(tag)))
        assert.strictEqual(error.batchIndex, 3)
        assert.isFalse(error.retryable)
        assert.include(error.message, "does not match the batch output schema")
      }
    }))

  it.effect("refuses a class, predicate or datatype that is not an absolute IRI, quoting it", () =>
    Effect.gen(function*() {
      const relation = withLanguage("en").relations[0]!
      const wrong: ReadonlyArray<readonly [Extractor.BatchOutput, string, string]> = [
        [{ entities: [{ ...mention, type: "Person" }], relations: [] }, "entities[0].type", "\"Person\""],
        [{ entities: [], relations: [{ ...relation, predicate: "knows" }] }, "relations[0].predicate", "\"knows\""],
        [
          { entities: [], relations: [{ ...relation, subject: { ...relation.subject, type: "foaf Person" } }] },
          "relations[0].subject.type",
          "\"foaf Person\""
        ],
        [
          { entities: [], relations: [{ ...relation, object: { _tag: "Entity", label: "a", type: "" } }] },
          "relations[0].object.type",
          "\"\""
        ],
        [
          { entities: [], relations: [{ ...relation, object: { _tag: "Literal", value: "1", datatype: "integer" } }] },
          "relations[0].object.datatype",
          "\"integer\""
        ],
        [{ entities: [{ ...mention, type: "http://x/<a>" }], relations: [] }, "entities[0].type", "\"http://x/<a>\""]
      ]
      for (const [output, where, quoted] of wrong) {
        const error = yield* Effect.flip(Extractor.checkOutput("custom", 2)(output))
        assert.include(
          error.message,
          `${where}: expected an absolute IRI such as http://xmlns.com/foaf/0.1/Person (a scheme, a colon, no space), ` +
            `got ${quoted}`
        )
      }
      for (const type of ["urn:isbn:0451450523", "tag:quarry.example,2026:Whale", "https://example.org/Wal%C3%A9"]) {
        yield* Extractor.checkOutput("custom", 2)({ entities: [{ ...mention, type }], relations: [] })
      }
    }))

  it.effect("the JSON it encoded is what the store writes, and the same bytes a second encode gives", () =>
    Effect.gen(function*() {
      // Keys out of schema order, optional fields absent and present: encoding must not depend on either.
      const output: Extractor.BatchOutput = {
        relations: withLanguage("en").relations,
        entities: [{
          attributes: { jobTitle: "harpooneer" },
          confidence: 0.5,
          span: { end: 8, start: 0 },
          type: "http://xmlns.com/foaf/0.1/Person",
          label: "Queequeg"
        }],
        usage: { requests: 1, promptTokens: 2, completionTokens: 3 }
      }
      const checked = yield* Extractor.checkOutput("llm", 0)(output)
      assert.strictEqual(Extractor.canonicalJson(checked), Extractor.encodeOutput(output))
      assert.strictEqual(Extractor.canonicalJson(checked), Extractor.encodeOutput(checked))
      // An output that was never checked is encoded on demand.
      assert.strictEqual(Extractor.canonicalJson(output), Extractor.encodeOutput(output))
    }))

  // The check writes the canonical JSON by hand (no Schema encode on the commit path): these bytes must be exactly
  // the Schema encoding's, and it must accept exactly the outputs the Schema encode and decode accepted.
  // Effect's parser throws on a few values instead of refusing them (a null-prototype object as a union's `_tag`):
  // a refusal all the same.
  const schemaCheck = (output: Extractor.BatchOutput) => {
    try {
      return Either.flatMap(
        Schema.encodeEither(Schema.parseJson(Extractor.CheckedBatchOutput))(output),
        (json) =>
          Either.map(Schema.decodeUnknownEither(Schema.parseJson(Extractor.CheckedBatchOutput))(json), () => json)
      )
    } catch (thrown) {
      return Either.left(thrown)
    }
  }

  it.prop(
    "writes the bytes of the Schema encoding, and accepts exactly what the Schema encode and decode accept",
    [Extractor.CheckedBatchOutput],
    ([output]) => {
      const expected = schemaCheck(output)
      const checked = Effect.runSync(Effect.either(Extractor.checkOutput("prop", 0)(output)))
      assert.strictEqual(Either.isRight(checked), Either.isRight(expected))
      if (Either.isRight(checked) && Either.isRight(expected)) {
        assert.strictEqual(Extractor.canonicalJson(checked.right), expected.right)
        assert.strictEqual(Extractor.canonicalJson(output), expected.right)
      }
    },
    { fastCheck: { numRuns: 300 } }
  )

  // The hand-written path vouches for an output without any Schema check: wherever one value is wrong, it must refuse
  // exactly what the Schema encode and decode refuse, and write their bytes for the rest.
  it.prop(
    "with one value anywhere replaced by any value: accepts and writes exactly as the Schema encode and decode",
    [
      Extractor.CheckedBatchOutput,
      FastCheck.anything({ withSparseArray: true, withNullPrototype: true }),
      FastCheck.nat()
    ],
    ([valid, replacement, pick]) => {
      const output = replaced(valid, replacement, pick)
      const expected = schemaCheck(output)
      const checked = Effect.runSync(Effect.either(Extractor.checkOutput("prop", 0)(output)))
      assert.strictEqual(Either.isRight(checked), Either.isRight(expected))
      if (Either.isRight(checked) && Either.isRight(expected)) {
        assert.strictEqual(Extractor.canonicalJson(checked.right), expected.right)
      }
    },
    { fastCheck: { numRuns: 1000 } }
  )

  it.effect("refuses what JSON or the schema cannot carry, as the Schema path does", () =>
    Effect.gen(function*() {
      const sparse: Array<typeof mention> = [mention]
      sparse.length = 2
      const wrong: ReadonlyArray<unknown> = [
        { entities: sparse, relations: [] },
        { entities: [{ ...mention, span: { start: 1.5, end: 4 } }], relations: [] },
        { entities: [{ ...mention, span: { start: 2 ** 53, end: 4 } }], relations: [] },
        { entities: [{ ...mention, confidence: Number.POSITIVE_INFINITY }], relations: [] },
        { entities: [{ ...mention, attributes: ["x"] }], relations: [] },
        { entities: [{ ...mention, attributes: { a: 1 } }], relations: [] },
        { entities: [], relations: [], usage: null },
        { entities: [], relations: [], usage: { requests: 1, promptTokens: 2, completionTokens: 0.5 } },
        {
          entities: [],
          relations: [{ ...withLanguage("en").relations[0]!, subject: { label: "a", type: "urn:x:b" } }]
        },
        { entities: [], relations: [{ ...withLanguage("en").relations[0]!, object: { _tag: "Other", value: "v" } }] },
        // Effect's parser throws on this one (`String()` of a null-prototype object) instead of refusing it.
        {
          entities: [],
          relations: [{ ...withLanguage("en").relations[0]!, object: { _tag: Object.create(null), value: "v" } }]
        },
        { entities: {}, relations: [] },
        // The store reads an entity's class back from its key (`class NUL label`); PostgreSQL's TEXT refuses NUL.
        { entities: [{ ...mention, type: "http://xmlns.com/foaf/0.1/Per\u0000son" }], relations: [] },
        { entities: [{ ...mention, label: "P\u0000ip" }], relations: [] },
        {
          entities: [],
          relations: [{
            ...withLanguage("en").relations[0]!,
            subject: { _tag: "Entity", label: "a\u0000", type: "urn:x:b" }
          }]
        },
        {
          entities: [],
          relations: [{ ...withLanguage("en").relations[0]!, object: { _tag: "Entity", label: "a", type: "\u0000b" } }]
        }
      ]
      for (const output of wrong) {
        const error = yield* Effect.flip(Extractor.checkOutput("llm", 1)(output as Extractor.BatchOutput))
        assert.include(error.message, "does not match the batch output schema", JSON.stringify(output))
        assert.isTrue(Either.isLeft(schemaCheck(output as Extractor.BatchOutput)))
      }
    }))

  it.effect("refuses an output that is not an object (an extractor in JavaScript returning nothing) as the batch's error", () =>
    Effect.gen(function*() {
      const outputs: ReadonlyArray<[unknown, string]> = [
        [null, "null"],
        [undefined, "undefined"],
        [42, "number"],
        ["entities", "string"],
        [[], "an array"]
      ]
      for (const [output, got] of outputs) {
        const error = yield* Effect.flip(Extractor.checkOutput("custom", 4)(output as Extractor.BatchOutput))
        assert.strictEqual(error._tag, "ExtractorError")
        assert.strictEqual(error.batchIndex, 4)
        assert.isFalse(error.retryable)
        assert.strictEqual(
          error.message,
          "extractor custom failed on batch 4: its output does not match the batch output schema (a bug in the " +
            `extractor): the output: expected an object with entities and relations, got ${got}`
        )
      }
    }))

  it.effect("drops excess keys and undefined optional fields as the Schema encoding does, and refuses NaN", () =>
    Effect.gen(function*() {
      const relation = withLanguage("en").relations[0]!
      // Not fresh literals, so that the excess keys type-check: an extractor written in JavaScript may add them.
      const span = { start: 1, end: 4, extra: "x" }
      const mention = {
        label: "Pip",
        type: "http://xmlns.com/foaf/0.1/Person",
        span,
        confidence: -0,
        attributes: { "2": "two", a: "\u0001 \"quoted\"", "1": "one" },
        note: "not in the schema"
      }
      const literal = { _tag: "Literal" as const, value: "v", datatype: undefined }
      const usage = { requests: 1, promptTokens: 2, completionTokens: 3, costUsd: undefined }
      const output = {
        extra: 1,
        entities: [mention],
        relations: [{ ...relation, span: undefined, object: literal }],
        usage
      }
      const checked = yield* Extractor.checkOutput("llm", 0)(output)
      assert.strictEqual(Extractor.canonicalJson(checked), Extractor.encodeOutput(output))
      const nan = { ...output, entities: [{ ...output.entities[0]!, confidence: Number.NaN }] }
      const error = yield* Effect.flip(Extractor.checkOutput("llm", 5)(nan))
      assert.strictEqual(error.batchIndex, 5)
      assert.include(error.message, "does not match the batch output schema")
    }))

  it.effect("refuses a NUL or a lone surrogate in any string, which PostgreSQL cannot store and SQLite garbles", () =>
    Effect.gen(function*() {
      const relation = withLanguage("en").relations[0]!
      const outputs: ReadonlyArray<[Extractor.BatchOutput, string]> = [
        [
          { entities: [], relations: [{ ...relation, object: { _tag: "Literal", value: "a\u0000b" } }] },
          "relations[0].object.value: holds a NUL character (U+0000)"
        ],
        [
          { entities: [], relations: [{ ...relation, object: { _tag: "Literal", value: "half \ud83d of an emoji" } }] },
          "relations[0].object.value: holds a lone surrogate (U+D83D), half of a character"
        ],
        [
          { entities: [{ ...mention, label: "Pip\udc00" }], relations: [] },
          "entities[0].label: holds a lone surrogate (U+DC00), half of a character"
        ],
        [
          { entities: [{ ...mention, attributes: { note: "x\u0000" } }], relations: [] },
          "entities[0].attributes.note: holds a NUL character (U+0000)"
        ],
        [
          { entities: [{ ...mention, attributes: { ["k\ud800"]: "v" } }], relations: [] },
          "entities[0].attributes: a key holds a lone surrogate (U+D800), half of a character"
        ]
      ]
      for (const [output, problem] of outputs) {
        const error = yield* Effect.flip(Extractor.checkOutput("custom", 2)(output))
        assert.strictEqual(
          error.message,
          "extractor custom failed on batch 2: its output does not match the batch output schema (a bug in the " +
            `extractor): ${problem}, which the store cannot keep`
        )
        assert.isFalse(error.retryable)
      }
      // A backslash written before a u is text, and a whole surrogate pair is a character: both are kept.
      const kept = { entities: [{ ...mention, label: "Pip \\u0000 \ud83d\ude00" }], relations: [] }
      assert.deepStrictEqual(yield* Extractor.checkOutput("custom", 2)(kept), kept)
    }))

  it.effect("names a confidence that is not finite as the extractor gave it, not as the null JSON makes of it", () =>
    Effect.gen(function*() {
      const relation = { ...withLanguage("en").relations[0]!, confidence: Number.NEGATIVE_INFINITY }
      const outputs: ReadonlyArray<[Extractor.BatchOutput, string]> = [
        [{ entities: [{ ...mention, confidence: Number.NaN }], relations: [] }, "entities[0].confidence: "],
        [{ entities: [], relations: [relation] }, "relations[0].confidence: "]
      ]
      for (const [output, place] of outputs) {
        const error = yield* Effect.flip(Extractor.checkOutput("custom", 0)(output))
        const issue = error.message.slice(error.message.indexOf(place))
        assert.match(issue, /^(entities|relations)\[0\]\.confidence: Expected a finite number, actual (NaN|-Infinity)$/)
      }
    }))
})

describe("Extractor spans", () => {
  const relation = withLanguage("en").relations[0]!
  const refusal = (problem: string) =>
    "extractor custom failed on batch 2: its output does not match the batch output schema (a bug in the extractor): " +
    problem

  it.effect("refuses a span that starts before the document or ends before it starts, naming the place", () =>
    Effect.gen(function*() {
      const outputs: ReadonlyArray<[Extractor.BatchOutput, string]> = [
        [
          { entities: [mention, { ...mention, span: { start: 9, end: 3 } }], relations: [] },
          "entities[1].span: a span runs from start to end, 0 <= start <= end; got start 9 and end 3"
        ],
        [
          { entities: [{ ...mention, span: { start: -1, end: 3 } }], relations: [] },
          "entities[0].span: a span runs from start to end, 0 <= start <= end; got start -1 and end 3"
        ],
        [
          { entities: [], relations: [{ ...relation, span: { start: 5, end: 4 } }] },
          "relations[0].span: a span runs from start to end, 0 <= start <= end; got start 5 and end 4"
        ]
      ]
      for (const [output, problem] of outputs) {
        const error = yield* Effect.flip(Extractor.checkOutput("custom", 2)(output))
        assert.strictEqual(error.message, refusal(problem))
        assert.isFalse(error.retryable)
      }
    }))

  it.effect("refuses a span that ends beyond the document when its length is given, and accepts one ending at it", () =>
    Effect.gen(function*() {
      const beyond = { entities: [mention, { ...mention, span: { start: 4, end: 11 } }], relations: [] }
      const error = yield* Effect.flip(Extractor.checkOutput("custom", 2, 10)(beyond))
      assert.strictEqual(
        error.message,
        refusal("entities[1].span: ends at 11, beyond the end of the document (10 characters)")
      )
      const atEnd = { entities: [{ ...mention, span: { start: 10, end: 10 } }], relations: [] }
      assert.deepStrictEqual(yield* Extractor.checkOutput("custom", 2, 10)(atEnd), atEnd)
      // Without a length, the check has no end to compare with.
      assert.deepStrictEqual(yield* Extractor.checkOutput("custom", 2)(beyond), beyond)
    }))

  it.effect("still reads a stored output whose spans a new output may not have", () =>
    Effect.gen(function*() {
      const stored = { entities: [{ ...mention, span: { start: -2, end: -5 } }], relations: [] }
      assert.deepStrictEqual(yield* Extractor.decodeOutput(Extractor.encodeOutput(stored)), stored)
    }))
})

describe("Extractor labels", () => {
  const relation = withLanguage("en").relations[0]!
  const ref = (label: string) => ({ _tag: "Entity" as const, label, type: "http://xmlns.com/foaf/0.1/Person" })
  const nameless = (got: string) =>
    `a label must name something, and this one is empty once normalised (case, Unicode form, white space); got ${got}`

  it.effect("refuses a label that normalises to nothing, in a mention, a canonical name or a relation, naming the place", () =>
    Effect.gen(function*() {
      const outputs: ReadonlyArray<[Extractor.BatchOutput, string]> = [
        [{ entities: [mention, { ...mention, label: "" }], relations: [] }, `entities[1].label: ${nameless("\"\"")}`],
        [
          { entities: [{ ...mention, label: " \t\n" }], relations: [] },
          `entities[0].label: ${nameless("\" \\t\\n\"")}`
        ],
        // An ideographic space and a no-break space are white space too.
        [
          { entities: [{ ...mention, label: "\u3000\u00a0" }], relations: [] },
          `entities[0].label: ${nameless("\"\u3000\u00a0\"")}`
        ],
        [
          { entities: [{ ...mention, attributes: { canonical: " " } }], relations: [] },
          `entities[0].attributes.canonical: ${nameless("\" \"")}`
        ],
        [
          { entities: [], relations: [{ ...relation, subject: ref("") }] },
          `relations[0].subject.label: ${nameless("\"\"")}`
        ],
        [
          { entities: [], relations: [{ ...relation, object: ref("  ") }] },
          `relations[0].object.label: ${nameless("\"  \"")}`
        ]
      ]
      for (const [output, problem] of outputs) {
        const error = yield* Effect.flip(Extractor.checkOutput("custom", 2)(output))
        assert.strictEqual(
          error.message,
          "extractor custom failed on batch 2: its output does not match the batch output schema (a bug in the " +
            `extractor): ${problem}`
        )
        assert.isFalse(error.retryable)
      }
    }))

  it.effect("accepts labels of any script, and single characters that are not white space", () =>
    Effect.gen(function*() {
      for (const label of ["Ahab", "É", "北京", "\u00a0Pip ", "_", "0"]) {
        const output = { entities: [{ ...mention, label }], relations: [{ ...relation, subject: ref(label) }] }
        assert.deepStrictEqual(yield* Extractor.checkOutput("custom", 2)(output), output)
      }
    }))

  const spaces = FastCheck.constantFrom(
    " ",
    "\t",
    "\n",
    "\u00a0",
    "\u2003",
    "\u3000",
    "\ufeff",
    "\u2028",
    "\u200b",
    "\u00a8"
  )
  it.prop(
    "refuses a label exactly when normalising it (NFKC, lower case, white space collapsed and trimmed) leaves nothing",
    [FastCheck.array(FastCheck.oneof(spaces, FastCheck.fullUnicode()), { maxLength: 4 }).map((cs) => cs.join(""))],
    ([label]) => {
      const normalised = label.normalize("NFKC").toLowerCase().replace(/\s+/gu, " ").trim()
      const checked = Effect.runSync(
        Effect.either(Extractor.checkOutput("prop", 0)({ entities: [{ ...mention, label }], relations: [] }))
      )
      const nameless = Either.isLeft(checked) && checked.left.message.includes("a label must name something")
      assert.strictEqual(nameless, normalised === "")
    },
    { fastCheck: { numRuns: 2000 } }
  )

  it.effect("still reads a stored output with a label a new output may not have", () =>
    Effect.gen(function*() {
      const stored = { entities: [{ ...mention, label: " " }], relations: [{ ...relation, subject: ref("") }] }
      assert.deepStrictEqual(yield* Extractor.decodeOutput(Extractor.encodeOutput(stored)), stored)
    }))
})
