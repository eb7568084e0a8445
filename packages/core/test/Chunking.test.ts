import { assert, describe, it } from "@effect/vitest"
import * as Chunking from "@quarry/core/Chunking"
import * as Either from "effect/Either"
import * as fc from "effect/FastCheck"
import * as fs from "node:fs"
import * as path from "node:path"

// Helpers ---------------------------------------------------------------------------------------------------------

const accept = (input: Parameters<typeof Chunking.validate>[0]): Chunking.ChunkingParams =>
  Either.getOrThrowWith(Chunking.validate(input), (error) => new Error(error.message))

const refuse = (input: Parameters<typeof Chunking.validate>[0]): Chunking.ChunkingError =>
  Either.match(Chunking.validate(input), {
    onLeft: (error) => error,
    onRight: (accepted) =>
      assert.fail(`expected ${JSON.stringify(input)} to be refused, got ${JSON.stringify(accepted)}`)
  })

/** The test's own notion of whitespace: JavaScript's `\s`. */
const isSpaceAt = (text: string, i: number) => i >= 0 && i < text.length && /\s/.test(text[i]!)

const splitsSurrogatePair = (text: string, i: number) =>
  /[\uD800-\uDBFF]/.test(text[i - 1] ?? "") && /[\uDC00-\uDFFF]/.test(text[i] ?? "")

/** The maximal run of non-whitespace around a cut at `i` that is inside a word. */
const wordAround = (text: string, i: number) => {
  let a = i
  while (a > 0 && !isSpaceAt(text, a - 1)) a--
  let b = i
  while (b < text.length && !isSpaceAt(text, b)) b++
  return text.slice(a, b)
}

/** Chunk boundaries other than the input's own start and end. */
const innerCuts = (chunks: ReadonlyArray<Chunking.Chunk>, length: number) =>
  chunks.flatMap((c) => [c.start, c.end]).filter((i) => i > 0 && i < length)

const readText = (name: string) =>
  fs.readFileSync(path.resolve(import.meta.dirname, "../../../test/data/texts", name), "utf8")

/**
 * Where the sentence strategy ends sentences in `text`: the cuts it makes with overlap 0 over every window size from
 * the longest expected sentence up, after 0..n short sentences, so that a window ends at every unit boundary.
 */
const observedSentenceEnds = (text: string, longest: number) => {
  const seen = new Set<number>()
  for (let k = 0; 4 * k <= longest + 4; k++) {
    const prefix = "Ok. ".repeat(k)
    for (let windowSize = longest; windowSize < prefix.length + text.length; windowSize++) {
      for (const c of Chunking.chunk(prefix + text, accept({ strategy: "sentences", windowSize, overlap: 0 }))) {
        const end = c.end - prefix.length
        if (end > 0 && end < text.length) seen.add(end)
      }
    }
  }
  return [...seen].sort((a, b) => a - b)
}

/** Asserts that the sentence strategy splits the concatenation of `sentences` exactly between them. */
const assertSentences = (sentences: ReadonlyArray<string>) => {
  const ends = sentences.slice(0, -1).map((_, i) => sentences.slice(0, i + 1).join("").length)
  assert.deepStrictEqual(observedSentenceEnds(sentences.join(""), Math.max(...sentences.map((s) => s.length))), ends)
}

// Arbitraries -----------------------------------------------------------------------------------------------------

const words = [
  "the",
  "whale",
  "Ahab",
  "sea,",
  "ship.",
  "Mr.",
  "Dr.",
  "U.S.",
  "Jan.",
  "5.",
  "No.",
  "I.",
  "?",
  "!\u201d",
  "(Nantucket)",
  "😀",
  "👩‍👩‍👧",
  "🇯🇵",
  "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
  "漢字テキスト",
  "東京に行きました。",
  "caf\u00e9",
  "cafe\u0301",
  "n\u0303o",
  "a\u0308\u0304\u0323",
  "Supercalifragilisticexpialidocious",
  "pneumonoultramicroscopicsilicovolcanoconiosis"
]
const spaces = [
  " ",
  " ",
  " ",
  " ",
  "  ",
  "\t",
  "\n",
  "\n\n",
  "\r\n",
  "\r\n\r\n",
  "\u00a0",
  "\u3000",
  "   \n  ",
  "\u2029"
]

const token = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom(...words) },
  { weight: 6, arbitrary: fc.constantFrom(...spaces) },
  { weight: 1, arbitrary: fc.string({ unit: "grapheme", minLength: 1, maxLength: 12 }) },
  { weight: 1, arbitrary: fc.stringMatching(/^[a-z]{20,150}$/) },
  // Long words without spaces made of surrogate pairs, CJK and combining marks.
  {
    weight: 1,
    arbitrary: fc.string({ unit: fc.constantFrom("😀", "漢", "e\u0301", "x"), minLength: 10, maxLength: 80 })
  },
  // Raw UTF-16, including lone surrogates and pairs formed across tokens.
  { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 8 }) },
  { weight: 1, arbitrary: fc.stringMatching(/^\s{5,60}$/) }
)

const anyText = fc.array(token, { maxLength: 150 }).map((parts) => parts.join(""))

const windowSize = fc.oneof(fc.integer({ min: 1, max: 24 }), fc.integer({ min: 1, max: 400 }))

const paramsOf = (strategy: fc.Arbitrary<Chunking.Strategy>) =>
  fc.tuple(
    strategy,
    windowSize,
    fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
    fc.integer({ min: 1, max: 20 })
  )
    .map(([strategy, windowSize, fraction, batchSize]) =>
      accept({ strategy, windowSize, overlap: Math.floor(windowSize * fraction), batchSize })
    )

const anyParams = paramsOf(fc.constantFrom("chars", "sentences"))
const charParams = paramsOf(fc.constant("chars"))
const sentenceParams = paramsOf(fc.constant("sentences"))

/** Prose whose sentence boundaries are known: each sentence starts with a capital and ends with ". ", "! " or "? ". */
const sentenceWord = fc.stringMatching(/^[a-z]{4,9}$/)
const phrase = fc.constantFrom(
  "Mr. Smith",
  "Mrs. Hussey",
  "Dr. Chen",
  "St. Paul",
  "the U.S. Navy",
  "on Jan. 5",
  "No. 7",
  "J. Ross Browne",
  "e.g. Nantucket"
)
const sentence = fc.tuple(
  fc.oneof(
    fc.stringMatching(/^[A-Z][a-z]{3,8}$/),
    fc.constantFrom("Mr. Smith", "Dr. Chen", "St. Paul", "No. 7", "J. Ross")
  ),
  fc.array(fc.oneof({ weight: 6, arbitrary: sentenceWord }, { weight: 1, arbitrary: phrase }), {
    minLength: 1,
    maxLength: 40
  }),
  fc.array(fc.constantFrom(" ", " ", " ", "\n"), { minLength: 41, maxLength: 41 }),
  fc.constantFrom(".", "!", "?")
).map(([first, rest, gaps, end]) => [first, ...rest].map((word, i) => i === 0 ? word : gaps[i]! + word).join("") + end)
const prose = fc.array(
  fc.tuple(sentence, fc.constantFrom(" ", " ", "  ", "\n", "\n\n", "\r\n\r\n")),
  { minLength: 1, maxLength: 30 }
).map((parts) => {
  const boundaries: Array<number> = [0]
  let text = ""
  parts.forEach(([s, gap], i) => {
    text += i === parts.length - 1 ? s : s + gap
    boundaries.push(text.length)
  })
  return { text, boundaries }
})

// Properties ------------------------------------------------------------------------------------------------------

describe("Chunking.chunk invariants", () => {
  it.prop(
    "every chunk is a non-empty, exact slice of the input at its offsets",
    { text: anyText, params: anyParams },
    ({ params, text }) => {
      for (const c of Chunking.chunk(text, params)) {
        assert.isTrue(c.start < c.end, `empty chunk at ${c.start}`)
        assert.strictEqual(c.text, text.slice(c.start, c.end))
      }
    },
    { fastCheck: { numRuns: 400 } }
  )

  it.prop("chunks are numbered 0..n-1 in order", { text: anyText, params: anyParams }, ({ params, text }) => {
    assert.deepStrictEqual(
      Chunking.chunk(text, params).map((c) => c.index),
      Chunking.chunk(text, params).map((_, i) => i)
    )
  })

  it.prop(
    "chunks cover the whole input: first starts at 0, last ends at its length, each starts after the previous start, " +
      "no later than the previous end, and ends after the previous end",
    { text: anyText, params: anyParams },
    ({ params, text }) => {
      const chunks = Chunking.chunk(text, params)
      if (/^\s*$/.test(text)) return assert.strictEqual(chunks.length, 0)
      assert.strictEqual(chunks[0]!.start, 0)
      assert.strictEqual(chunks[chunks.length - 1]!.end, text.length)
      for (let i = 1; i < chunks.length; i++) {
        const previous = chunks[i - 1]!
        const current = chunks[i]!
        assert.isTrue(current.start > previous.start, `chunk ${i} starts at ${current.start} <= ${previous.start}`)
        assert.isTrue(current.start <= previous.end, `gap before chunk ${i}: ${previous.end}..${current.start}`)
        assert.isTrue(current.end > previous.end, `chunk ${i} adds nothing after ${previous.end}`)
      }
    },
    { fastCheck: { numRuns: 400 } }
  )

  it.prop(
    "consecutive chunks overlap by at most the configured overlap",
    { text: anyText, params: anyParams },
    ({ params, text }) => {
      const chunks = Chunking.chunk(text, params)
      for (let i = 1; i < chunks.length; i++) {
        assert.isAtMost(chunks[i - 1]!.end - chunks[i]!.start, params.overlap)
      }
    },
    { fastCheck: { numRuns: 400 } }
  )

  it.prop(
    "no chunk is longer than the window (except a window of 1, which gets a whole surrogate pair)",
    { text: anyText, params: anyParams },
    ({ params, text }) => {
      for (const c of Chunking.chunk(text, params)) {
        const pairInWindowOfOne = params.windowSize === 1 && c.end - c.start === 2 &&
          splitsSurrogatePair(text, c.start + 1)
        assert.isTrue(
          c.end - c.start <= params.windowSize || pairInWindowOfOne,
          `chunk ${c.index} has ${c.end - c.start} units`
        )
      }
    },
    { fastCheck: { numRuns: 400 } }
  )

  it.prop("no chunk boundary splits a surrogate pair", { text: anyText, params: anyParams }, ({ params, text }) => {
    for (const c of Chunking.chunk(text, params)) {
      assert.isFalse(splitsSurrogatePair(text, c.start), `chunk ${c.index} starts inside a surrogate pair`)
      assert.isFalse(splitsSurrogatePair(text, c.end), `chunk ${c.index} ends inside a surrogate pair`)
    }
  }, { fastCheck: { numRuns: 400 } })

  it.prop(
    "chars windows cut only at whitespace, unless inside a single word longer than the window",
    { text: anyText, params: charParams },
    ({ params, text }) => {
      for (const cut of innerCuts(Chunking.chunk(text, params), text.length)) {
        if (isSpaceAt(text, cut) || isSpaceAt(text, cut - 1)) continue
        const word = wordAround(text, cut)
        assert.isAbove(word.length, params.windowSize, `cut at ${cut} inside the word ${JSON.stringify(word)}`)
      }
    },
    { fastCheck: { numRuns: 400 } }
  )

  it.prop(
    "chars windows overlap (> 0) in prose of short words when overlap and window - overlap exceed a word",
    {
      words: fc.array(fc.stringMatching(/^[a-zA-Z,.]{1,8}$/), { minLength: 1, maxLength: 300 }),
      windowSize: fc.integer({ min: 30, max: 300 }),
      fraction: fc.double({ min: 0, max: 1, noNaN: true })
    },
    ({ fraction, windowSize, words }) => {
      const overlap = 10 + Math.floor((windowSize - 20) * fraction * 0.999)
      const text = words.join(" ")
      const chunks = Chunking.chunk(text, accept({ windowSize, overlap }))
      for (let i = 1; i < chunks.length; i++) {
        assert.isAbove(chunks[i - 1]!.end - chunks[i]!.start, 0, `chunks ${i - 1} and ${i} do not overlap`)
      }
    }
  )

  it.prop(
    "sentence windows start and end at sentence boundaries unless inside a sentence longer than the window",
    { prose, params: sentenceParams },
    ({ params, prose: { boundaries, text } }) => {
      const isBoundary = new Set(boundaries)
      const insideLongSentence = (i: number) =>
        boundaries.some((a, k) =>
          k + 1 < boundaries.length && a < i && i < boundaries[k + 1]! && boundaries[k + 1]! - a > params.windowSize
        )
      for (const cut of innerCuts(Chunking.chunk(text, params), text.length)) {
        assert.isTrue(
          isBoundary.has(cut) || insideLongSentence(cut),
          `cut at ${cut} (…${JSON.stringify(text.slice(Math.max(0, cut - 20), cut))}|${
            JSON.stringify(text.slice(cut, cut + 20))
          }…) is inside a sentence`
        )
      }
    },
    { fastCheck: { numRuns: 300 } }
  )

  it.prop(
    "same input and parameters give deep-equal chunks",
    { text: anyText, params: anyParams },
    ({ params, text }) => {
      assert.deepStrictEqual(Chunking.chunk(text, params), Chunking.chunk(text, params))
    }
  )

  it.prop(
    "empty and whitespace-only input has no chunks and no batches",
    {
      text: fc.string({ unit: fc.constantFrom(...spaces, "\v", "\f", "\u2028", "\u202f", "\ufeff") }),
      params: anyParams
    },
    ({ params, text }) => {
      assert.deepStrictEqual(Chunking.chunk(text, params), [])
      assert.deepStrictEqual(Chunking.plan(text, params), [])
    }
  )
})

// Examples --------------------------------------------------------------------------------------------------------

describe("Chunking.chunk examples", () => {
  it("empty, whitespace-only and blank files have no chunks and no batches, with both strategies", () => {
    for (const text of ["", " ", "\n\n\t  \u00a0\u3000\r\n", readText("minimal-empty.txt")]) {
      for (const strategy of ["chars", "sentences"] as const) {
        assert.deepStrictEqual(Chunking.chunk(text, accept({ strategy })), [])
        assert.deepStrictEqual(Chunking.plan(text, accept({ strategy })), [])
      }
    }
  })

  it("a short input is one chunk with both strategies", () => {
    for (const name of ["minimal-single-word.txt", "minimal-single-sentence.txt"]) {
      const text = readText(name)
      for (const strategy of ["chars", "sentences"] as const) {
        const chunks = Chunking.chunk(text, accept({ strategy }))
        assert.deepStrictEqual(chunks.map((c) => [c.start, c.end, c.text]), [[0, text.length, text]])
      }
    }
  })

  it("chars windows of 100 with overlap 20 overlap on every pair of an ordinary paragraph", () => {
    const text = "Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my " +
      "purse, and nothing particular to interest me on shore, I thought I would sail about a little and see the " +
      "watery part of the world. It is a way I have of driving off the spleen and regulating the circulation. " +
      "Whenever I find myself growing grim about the mouth; whenever it is a damp, drizzly November in my soul; " +
      "whenever I find myself involuntarily pausing before coffin warehouses, then I account it high time to get " +
      "to sea as soon as I can."
    const chunks = Chunking.chunk(text, accept({ windowSize: 100, overlap: 20 }))
    assert.isAtLeast(chunks.length, 6)
    for (let i = 1; i < chunks.length; i++) {
      const overlap = chunks[i - 1]!.end - chunks[i]!.start
      assert.isTrue(overlap > 0 && overlap <= 20, `chunks ${i - 1} and ${i} overlap by ${overlap}`)
      // The overlap starts at a word.
      assert.isTrue(isSpaceAt(text, chunks[i]!.start - 1), `chunk ${i} starts inside a word`)
    }
  })

  it("a word longer than the window is cut inside, never inside a surrogate pair", () => {
    const text = "ab " + "😀".repeat(10) + " cd"
    const chunks = Chunking.chunk(text, accept({ windowSize: 5, overlap: 0 }))
    assert.strictEqual(chunks.map((c) => c.text).join(""), text)
    for (const c of chunks) {
      assert.isFalse(splitsSurrogatePair(text, c.end))
      assert.isAtMost(c.end - c.start, 5)
    }
    assert.deepStrictEqual(
      Chunking.chunk("😀😀", accept({ windowSize: 1, overlap: 0 })).map((c) => c.text),
      ["😀", "😀"]
    )
  })

  it("leading whitespace never forces a cut inside a word that fits in the window", () => {
    const text = "   abcd efg"
    const chunks = Chunking.chunk(text, accept({ windowSize: 5, overlap: 0 }))
    assert.deepStrictEqual(chunks.map((c) => c.text), ["   ", "abcd ", "efg"])
  })

  const abbreviations = "Dr. Sarah Chen met Mr. Smith in the U.S. on Jan. 5. "
  const example = abbreviations + "Then she left."

  it("sentences do not break after \"Mr.\", \"Dr.\", \"U.S.\" or \"Jan.\"", () => {
    assert.deepStrictEqual(
      Chunking.chunk(example, accept({ strategy: "sentences", windowSize: 60, overlap: 0 })).map((c) => c.text),
      [abbreviations, "Then she left."]
    )
    const forbidden = ["Dr. ", "Mr. ", "U.S. ", "Jan. "].map((a) => abbreviations.indexOf(a) + a.length)
    const ends = observedSentenceEnds(example, abbreviations.length)
    for (const cut of forbidden) assert.notInclude(ends, cut)
    assert.deepStrictEqual(ends, [abbreviations.length])
  })

  it("sentences do break after \"No.\", \"I.\" or \"etc.\" ending a sentence, and at a paragraph break", () => {
    const sentences = [
      "Will you go? ",
      "No. ",
      "Then so shall I. ",
      "He packed harpoons, lances, etc. ",
      "She said he was a Dr.\r\n\r\n",
      "Mr. Starbuck said nothing."
    ]
    assertSentences(sentences)
  })

  it("sentences continue across hard-wrapped lines", () => {
    assertSentences([
      "Call me Ishmael. ",
      "Some years ago, never mind\nhow long precisely, having little or no\r\nmoney in my purse, I thought I would " +
      "sail about a\u2028little.\n",
      "It is a way I have."
    ])
  })

  it("windows of whole sentences repeat trailing sentences up to the overlap", () => {
    const text = "One two. Three four. Five six. Seven eight."
    const chunks = Chunking.chunk(text, accept({ strategy: "sentences", windowSize: 22, overlap: 12 }))
    assert.deepStrictEqual(chunks.map((c) => c.text), [
      "One two. Three four. ",
      "Three four. Five six. ",
      "Five six. Seven eight."
    ])
  })

  it("sentence windows never repeat a window's sentences without adding the next one", () => {
    // The overlap would repeat "Bbbb…", but "Bbbb…" + "Cccc…" do not fit in a window: the next one is "Cccc…" alone.
    const a = "Aaaa aaaa aaaa aaaa. "
    const b = "Bbbb bbbb. "
    const c = "Cccc cccc cccc cccc cccc cccc."
    const chunks = Chunking.chunk(a + b + c, accept({ strategy: "sentences", windowSize: 32, overlap: 12 }))
    assert.deepStrictEqual(chunks.map((x) => x.text), [a + b, c])
  })

  it("a sentence longer than the window is cut into word-boundary windows", () => {
    const long = "This sentence is much longer than the tiny window we give it here. "
    const text = long + "Short one."
    const chunks = Chunking.chunk(text, accept({ strategy: "sentences", windowSize: 20, overlap: 0 }))
    for (const c of chunks) assert.isAtMost(c.text.length, 20)
    assert.strictEqual(chunks.map((c) => c.text).join(""), text)
    for (const cut of innerCuts(chunks, text.length)) assert.isTrue(isSpaceAt(text, cut) || isSpaceAt(text, cut - 1))
  })
})

// Real data -------------------------------------------------------------------------------------------------------

describe("Chunking on Moby-Dick (1.2 MB)", () => {
  const text = readText("moby-dick.txt")

  const assertInvariants = (chunks: ReadonlyArray<Chunking.Chunk>, p: Chunking.ChunkingParams) => {
    assert.strictEqual(chunks[0]!.start, 0)
    assert.strictEqual(chunks[chunks.length - 1]!.end, text.length)
    chunks.forEach((c, i) => {
      assert.strictEqual(c.index, i)
      assert.strictEqual(c.text, text.slice(c.start, c.end))
      assert.isAtMost(c.end - c.start, p.windowSize)
      assert.isFalse(splitsSurrogatePair(text, c.start) || splitsSurrogatePair(text, c.end))
      if (i > 0) {
        const previous = chunks[i - 1]!
        assert.isTrue(c.start > previous.start && c.start <= previous.end && c.end > previous.end)
        assert.isAtMost(previous.end - c.start, p.overlap)
      }
    })
  }

  it("chars with the defaults: exact slices covering the file, word-boundary cuts, mostly overlapping", () => {
    const chunks = Chunking.chunk(text, Chunking.defaults)
    assertInvariants(chunks, Chunking.defaults)
    for (const cut of innerCuts(chunks, text.length)) {
      assert.isTrue(isSpaceAt(text, cut) || isSpaceAt(text, cut - 1), `cut inside a word at ${cut}`)
    }
    const overlapping = chunks.filter((c, i) => i > 0 && chunks[i - 1]!.end > c.start).length
    assert.strictEqual(overlapping, chunks.length - 1)
    assert.strictEqual(Chunking.plan(text, Chunking.defaults).length, Math.ceil(chunks.length / 10))
  })

  it("chars with windows of 100 and overlap 20: exact slices covering the file", () => {
    const p = accept({ windowSize: 100, overlap: 20 })
    const chunks = Chunking.chunk(text, p)
    assertInvariants(chunks, p)
    const overlapping = chunks.filter((c, i) => i > 0 && chunks[i - 1]!.end > c.start).length
    assert.isAbove(overlapping / (chunks.length - 1), 0.95)
  })

  it("sentences with the defaults: exact slices covering the file, never cut after Mr./Mrs./Dr.", () => {
    const p = accept({ strategy: "sentences" })
    const chunks = Chunking.chunk(text, p)
    assertInvariants(chunks, p)
    const afterTitle = innerCuts(chunks, text.length).filter((cut) =>
      /(?:^|\s)(?:Mr|Mrs|Dr)\.\s+$/.test(text.slice(cut - 8, cut))
    )
    assert.deepStrictEqual(afterTitle, [])
  })

  it("sentences with windows of 300 and overlap 100: exact slices covering the file", () => {
    const p = accept({ strategy: "sentences", windowSize: 300, overlap: 100 })
    assertInvariants(Chunking.chunk(text, p), p)
  })

  it("the same file chunked twice gives deep-equal chunks", () => {
    const p = accept({ strategy: "sentences", windowSize: 500, overlap: 50 })
    assert.deepStrictEqual(Chunking.chunk(text, p), Chunking.chunk(text, p))
  })
})

// Batches ---------------------------------------------------------------------------------------------------------

describe("Chunking.batches", () => {
  const chunksOf = (n: number) =>
    Array.from({ length: n }, (_, i) => new Chunking.Chunk({ index: i, start: i, end: i + 1, text: "x" }))

  it.prop(
    "groups consecutive chunks by batchSize, numbered 0..n-1, only the last may be shorter",
    { n: fc.integer({ min: 0, max: 200 }), batchSize: fc.integer({ min: 1, max: 30 }) },
    ({ batchSize, n }) => {
      const chunks = chunksOf(n)
      const batches = Chunking.batches(chunks, batchSize)
      assert.strictEqual(batches.length, Math.ceil(n / batchSize))
      batches.forEach((batch, i) => {
        assert.strictEqual(batch.index, i)
        if (i < batches.length - 1) assert.strictEqual(batch.chunks.length, batchSize)
        else assert.isTrue(batch.chunks.length >= 1 && batch.chunks.length <= batchSize)
      })
      assert.deepStrictEqual(batches.flatMap((b) => b.chunks), chunks)
    }
  )

  it("25 chunks in batches of 10 are 10, 10 and 5", () => {
    assert.deepStrictEqual(Chunking.batches(chunksOf(25), 10).map((b) => [b.index, b.chunks.length]), [
      [0, 10],
      [1, 10],
      [2, 5]
    ])
  })

  it.prop(
    "plan is chunk followed by batches of batchSize",
    { text: anyText, params: anyParams },
    ({ params, text }) => {
      assert.deepStrictEqual(
        Chunking.plan(text, params),
        Chunking.batches(Chunking.chunk(text, params), params.batchSize)
      )
    }
  )
})

// Parameters ------------------------------------------------------------------------------------------------------

describe("Chunking.validate", () => {
  it("defaults are window 1000, overlap 200, batch 10, strategy chars, and validate({}) gives them", () => {
    assert.deepStrictEqual(
      [
        Chunking.defaults.windowSize,
        Chunking.defaults.overlap,
        Chunking.defaults.batchSize,
        Chunking.defaults.strategy
      ],
      [1000, 200, 10, "chars"]
    )
    assert.deepStrictEqual(accept({}), Chunking.defaults)
    assert.deepStrictEqual(
      accept({ strategy: undefined, windowSize: undefined, overlap: undefined, batchSize: undefined }),
      Chunking.defaults
    )
  })

  it("an explicit window without an overlap gets a fifth of it as overlap, at most 200", () => {
    assert.deepStrictEqual(
      [1, 4, 5, 100, 200, 201, 250, 999, 1000, 5000].map((windowSize) => accept({ windowSize }).overlap),
      [0, 0, 1, 20, 40, 40, 50, 199, 200, 200]
    )
    assert.strictEqual(accept({ windowSize: 100, overlap: 0 }).overlap, 0)
  })

  const refusals: ReadonlyArray<
    readonly [string, Parameters<typeof Chunking.validate>[0], Chunking.ChunkingError["parameter"], string]
  > = [
    ["window 0", { windowSize: 0 }, "windowSize", "window (0) must be a whole number greater than 0"],
    ["negative window", { windowSize: -5 }, "windowSize", "window (-5) must be a whole number greater than 0"],
    ["fractional window", { windowSize: 10.5 }, "windowSize", "window (10.5) must be a whole number greater than 0"],
    ["NaN window", { windowSize: NaN }, "windowSize", "window (NaN) must be a whole number greater than 0"],
    [
      "infinite window",
      { windowSize: Infinity },
      "windowSize",
      "window (Infinity) must be a whole number greater than 0"
    ],
    ["batch 0", { batchSize: 0 }, "batchSize", "batch-size (0) must be a whole number greater than 0"],
    ["negative batch", { batchSize: -1 }, "batchSize", "batch-size (-1) must be a whole number greater than 0"],
    ["fractional batch", { batchSize: 2.5 }, "batchSize", "batch-size (2.5) must be a whole number greater than 0"],
    ["negative overlap", { overlap: -1 }, "overlap", "overlap (-1) must be a whole number of 0 or more"],
    ["fractional overlap", { overlap: 0.5 }, "overlap", "overlap (0.5) must be a whole number of 0 or more"],
    [
      "overlap above window",
      { windowSize: 200, overlap: 300 },
      "overlap",
      "overlap (300) must be smaller than window (200)"
    ],
    [
      "overlap equal to window",
      { windowSize: 200, overlap: 200 },
      "overlap",
      "overlap (200) must be smaller than window (200)"
    ],
    ["overlap above default window", { overlap: 1000 }, "overlap", "overlap (1000) must be smaller than window (1000)"],
    [
      "unknown strategy",
      { strategy: "words" },
      "strategy",
      "chunking strategy \"words\" is unknown; use \"chars\" or \"sentences\""
    ]
  ]

  for (const [name, input, parameter, message] of refusals) {
    it(`refuses ${name} with a ChunkingError naming ${parameter}: ${message}`, () => {
      const error = refuse(input)
      assert.instanceOf(error, Chunking.ChunkingError)
      assert.strictEqual(error._tag, "ChunkingError")
      assert.strictEqual(error.parameter, parameter)
      assert.strictEqual(error.message, message)
    })
  }

  it.prop(
    "never throws: any numbers give either valid parameters or a ChunkingError",
    {
      strategy: fc.option(fc.oneof(fc.constantFrom("chars", "sentences"), fc.string()), { nil: undefined }),
      windowSize: fc.option(fc.oneof(fc.double(), fc.integer({ min: -5, max: 5000 })), { nil: undefined }),
      overlap: fc.option(fc.oneof(fc.double(), fc.integer({ min: -5, max: 5000 })), { nil: undefined }),
      batchSize: fc.option(fc.oneof(fc.double(), fc.integer({ min: -5, max: 50 })), { nil: undefined })
    },
    (input) => {
      const result = Chunking.validate(input)
      if (Either.isLeft(result)) {
        assert.instanceOf(result.left, Chunking.ChunkingError)
        assert.isNotEmpty(result.left.message)
        return
      }
      const p = result.right
      assert.isTrue(p.strategy === "chars" || p.strategy === "sentences")
      assert.isTrue(Number.isSafeInteger(p.windowSize) && p.windowSize > 0)
      assert.isTrue(Number.isSafeInteger(p.batchSize) && p.batchSize > 0)
      assert.isTrue(Number.isSafeInteger(p.overlap) && p.overlap >= 0 && p.overlap < p.windowSize)
      assert.isFalse(Object.is(p.overlap, -0))
    },
    { fastCheck: { numRuns: 1000 } }
  )
})
