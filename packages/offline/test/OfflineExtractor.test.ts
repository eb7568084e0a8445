import { assert, describe, it } from "@effect/vitest"
import * as Chunking from "@quarry/core/Chunking"
import * as DefaultOntology from "@quarry/core/DefaultOntology"
import * as Extractor from "@quarry/core/Extractor"
import * as FairScheduler from "@quarry/core/FairScheduler"
import * as Ontology from "@quarry/core/Ontology"
import * as Run from "@quarry/core/Run"
import * as Nlp from "@quarry/offline/internal/nlp"
import * as Steps from "@quarry/offline/internal/steps"
import * as OfflineExtractor from "@quarry/offline/OfflineExtractor"
import * as ConfigError from "effect/ConfigError"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as fs from "node:fs"
import * as path from "node:path"

// Helpers ---------------------------------------------------------------------------------------------------------

const data = path.resolve(import.meta.dirname, "../../../test/data")
const readText = (name: string) => fs.readFileSync(path.join(data, "texts", name), "utf8")
const loadOntology = (name: string) =>
  Ontology.parse(fs.readFileSync(path.join(data, "ontologies", name), "utf8"), { source: name })

const FOAF = "http://xmlns.com/foaf/0.1/"
const SCHEMA = "http://schema.org/"
const SCHEMAS = "https://schema.org/"
const XSD = "http://www.w3.org/2001/XMLSchema#"
const OWL_THING = "http://www.w3.org/2002/07/owl#Thing"

const runId = Run.RunId.make("offline-test")

/** A batch holding the whole text as one chunk, or the given chunks. */
const batch = (
  text: string,
  ontology: Option.Option<Ontology.Ontology>,
  options: {
    readonly chunks?: ReadonlyArray<Chunking.Chunk>
    readonly known?: ReadonlyArray<Extractor.KnownEntity>
  } = {}
): Extractor.BatchInput => ({
  runId,
  batchIndex: 0,
  chunks: options.chunks ?? [new Chunking.Chunk({ index: 0, start: 0, end: text.length, text })],
  ontology,
  knownEntities: Effect.succeed(options.known ?? [])
})

const extract = (
  text: string,
  ontology: Option.Option<Ontology.Ontology> = Option.none(),
  options: OfflineExtractor.Options = {},
  known: ReadonlyArray<Extractor.KnownEntity> = []
) => OfflineExtractor.make(options).extract(batch(text, ontology, { known }))

const defaultOntology = DefaultOntology.load

const labelsOfType = (output: Extractor.BatchOutput, type: string) =>
  output.entities.filter((e) => e.type === type).map((e) => e.label)

const entity = (output: Extractor.BatchOutput, label: string) => {
  const found = output.entities.find((e) => e.label === label)
  assert.isDefined(found, `no mention labelled ${label}: ${output.entities.map((e) => e.label).join(", ")}`)
  return found!
}

const triples = (output: Extractor.BatchOutput) =>
  output.relations.map((r) =>
    `${r.subject.label} ${r.predicate} ${r.object._tag === "Entity" ? r.object.label : r.object.value}`
  )

const hasTriple = (output: Extractor.BatchOutput, subject: string, predicate: string, object: string) =>
  assert.include(triples(output), `${subject} ${predicate} ${object}`, triples(output).join("\n"))

const texts = fs.readdirSync(path.join(data, "texts")).filter((f) => f.endsWith(".txt") && f !== "moby-dick.txt")

// Spans -----------------------------------------------------------------------------------------------------------

describe("OfflineExtractor spans", () => {
  it.effect("every mention's span slices its label out of the document, in every shared text, batch by batch", () =>
    Effect.gen(function*() {
      const ontology = Option.some(yield* defaultOntology)
      const extractor = OfflineExtractor.make()
      for (const name of texts) {
        const text = readText(name)
        for (const b of Chunking.plan(text, Chunking.defaults)) {
          const output = yield* extractor.extract(batch(text, ontology, { chunks: b.chunks }))
          for (const e of output.entities) {
            const surface = text.slice(e.span.start, e.span.end)
            assert.isTrue(
              surface === e.label || surface.includes(e.label),
              `${name}: span [${e.span.start}, ${e.span.end}) is "${surface}", label "${e.label}"`
            )
            assert.isTrue(e.span.start >= b.chunks[0]!.start && e.span.end <= b.chunks[b.chunks.length - 1]!.end)
          }
          for (const r of output.relations) {
            assert.isDefined(r.span)
            assert.isTrue(r.span!.start >= 0 && r.span!.end <= text.length && r.span!.start < r.span!.end)
          }
        }
      }
    }))

  it.effect("overlapping chunks are read once and give document offsets", () =>
    Effect.gen(function*() {
      const text = "Alice Smith works at Acme Corporation. Bob Johnson lives in Berlin."
      const chunks = [
        new Chunking.Chunk({ index: 0, start: 0, end: 45, text: text.slice(0, 45) }),
        new Chunking.Chunk({ index: 1, start: 30, end: text.length, text: text.slice(30) })
      ]
      const output = yield* OfflineExtractor.make().extract(batch(text, Option.none(), { chunks }))
      const acme = output.entities.filter((e) => e.label === "Acme Corporation")
      assert.strictEqual(acme.length, 1)
      assert.strictEqual(text.slice(acme[0]!.span.start, acme[0]!.span.end), "Acme Corporation")
      assert.strictEqual(text.slice(entity(output, "Berlin").span.start, entity(output, "Berlin").span.end), "Berlin")
    }))

  it.effect("an empty batch and whitespace give nothing", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* extract(""), { entities: [], relations: [] })
      assert.deepStrictEqual(yield* extract("   \n\n  "), { entities: [], relations: [] })
    }))
})

// Names -----------------------------------------------------------------------------------------------------------

describe("OfflineExtractor names", () => {
  it.effect("titles are stripped from names and kept as the title attribute", () =>
    Effect.gen(function*() {
      const output = yield* extract(
        "Dr. Sarah Chen met Prof. Michael Brown. Professor James Wilson joined later. CEO Tim Cook said hello."
      )
      const expected = [["Sarah Chen", "Dr."], ["Michael Brown", "Prof."], ["James Wilson", "Professor"], [
        "Tim Cook",
        "CEO"
      ]] as const
      for (const [label, title] of expected) {
        const e = entity(output, label)
        assert.strictEqual(e.type, `${FOAF}Person`)
        assert.strictEqual(e.attributes.title, title)
      }
      assert.isFalse(output.entities.some((e) => /^(?:Dr|Prof|Professor|CEO)\b/.test(e.label)))
    }))

  it.effect("CJK, Greek, Cyrillic, Icelandic and accented names keep every letter", () =>
    Effect.gen(function*() {
      const text = readText("edge-cases-unicode.txt")
      const output = yield* extract(text, Option.some(yield* defaultOntology))
      const people = labelsOfType(output, `${FOAF}Person`)
      for (
        const name of [
          "François Müller",
          "田中優子",
          "Björk Sigurðsson",
          "Αλέξανδρος Παπαδόπουλος",
          "Анна Петрова",
          "李明",
          "José García-López"
        ]
      ) {
        assert.include(people, name)
        const e = entity(output, name)
        assert.strictEqual(text.slice(e.span.start, e.span.end), name)
      }
      const organizations = labelsOfType(output, `${FOAF}Organization`)
      for (const name of ["ETH Zürich", "University of Iceland", "Universidad Complutense de Madrid"]) {
        assert.include(organizations, name)
      }
      hasTriple(output, "François Müller", `${SCHEMA}worksFor`, "ETH Zürich")
      hasTriple(output, "Björk Sigurðsson", `${FOAF}homepage`, "https://hi.is/staff/björk")
    }))

  it.effect("organisation heads, gazetteer, context cues and the batch's votes type names", () =>
    Effect.gen(function*() {
      const output = yield* extract(
        "Lisa Park joined Neural Systems Ltd after years at Google. The startup is based in Silicon Valley. " +
          "Later, Park said the University of Iceland had called."
      )
      assert.strictEqual(entity(output, "Lisa Park").type, `${FOAF}Person`)
      assert.strictEqual(entity(output, "Park").type, `${FOAF}Person`)
      assert.strictEqual(entity(output, "Park").attributes.canonical, "Lisa Park")
      assert.strictEqual(entity(output, "Neural Systems Ltd").type, `${FOAF}Organization`)
      assert.strictEqual(entity(output, "Google").type, `${FOAF}Organization`)
      assert.strictEqual(entity(output, "University of Iceland").type, `${FOAF}Organization`)
      assert.strictEqual(entity(output, "Silicon Valley").type, `${SCHEMA}Place`)
    }))

  it.effect("job titles in title case and sentence-initial words are not names", () =>
    Effect.gen(function*() {
      const output = yield* extract(
        "Together they worked hard. Alice's title is \"Chief Technology Officer (CTO)\". Meanwhile nothing happened."
      )
      assert.deepStrictEqual(output.entities.map((e) => e.label), ["Alice"])
    }))

  it.effect("a class word of the ontology types the name it introduces", () =>
    Effect.gen(function*() {
      const ontology = Option.some(yield* loadOntology("example-organization.ttl"))
      const output = yield* extract(
        "She visited the company Acme and Globex, a startup company from Ohio. The manager Bob Stone waved.",
        ontology
      )
      assert.strictEqual(entity(output, "Acme").type, "http://example.org/org#Company")
      assert.strictEqual(entity(output, "Globex").type, "http://example.org/org#StartupCompany")
      assert.strictEqual(entity(output, "Bob Stone").type, "http://example.org/org#Manager")
    }))

  it.effect("bare names take the type of an entity the run already knows", () =>
    Effect.gen(function*() {
      const known = [{ label: "Ada Quillfeather", type: `${FOAF}Person`, iri: "urn:x:ada" }]
      const text = "They saw Quillfeather."
      const withKnown = yield* extract(text, Option.none(), {}, known)
      assert.strictEqual(entity(withKnown, "Quillfeather").type, `${FOAF}Person`)
      assert.strictEqual(entity(withKnown, "Quillfeather").attributes.canonical, "Ada Quillfeather")
      const without = yield* extract(text, Option.none(), { useKnownEntities: false }, known)
      assert.isFalse(without.entities.some((e) => e.label === "Quillfeather"))
    }))
})

// Values ----------------------------------------------------------------------------------------------------------

describe("OfflineExtractor values", () => {
  it.effect("e-mail addresses and URLs, with trailing punctuation cut and @ inside URLs kept", () =>
    Effect.gen(function*() {
      const text = "Write to bob.j@big-tech.com, see https://medium.com/@bob.martinez.tech and " +
        "https://en.wikipedia.org/wiki/Foo_(bar). Also www.example.org/x?y=1&z=2."
      const output = yield* extract(text, Option.none(), { unmapped: "generic" })
      const labels = output.entities.map((e) => e.label)
      assert.includeMembers(labels, [
        "bob.j@big-tech.com",
        "https://medium.com/@bob.martinez.tech",
        "https://en.wikipedia.org/wiki/Foo_(bar)",
        "www.example.org/x?y=1&z=2"
      ])
      assert.notInclude(labels, "bob.martinez.tech")
      assert.strictEqual(entity(output, "https://medium.com/@bob.martinez.tech").type, `${FOAF}Document`)
      assert.strictEqual(entity(output, "bob.j@big-tech.com").type, OWL_THING)
    }))

  it.effect("dates: complete ones as xsd:date, partial ones by what is stated, relative ones not at all", () =>
    Effect.gen(function*() {
      const output = yield* extract(
        "It opened on March 5, 2021, moved in January 2019, was founded in 2010, " +
          "grew in the 1990s, met on March 7 and again last month.",
        Option.none(),
        { unmapped: "generic" }
      )
      const value = (label: string): ReadonlyArray<string | undefined> => [
        entity(output, label).attributes.value,
        entity(output, label).attributes.datatype
      ]
      assert.deepStrictEqual(value("March 5, 2021"), ["2021-03-05", `${XSD}date`])
      assert.deepStrictEqual(value("January 2019"), ["2019-01", `${XSD}gYearMonth`])
      assert.deepStrictEqual(value("2010"), ["2010", `${XSD}gYear`])
      assert.deepStrictEqual(value("1990s"), [undefined, undefined])
      assert.deepStrictEqual(value("March 7"), [undefined, undefined])
      assert.isFalse(output.entities.some((e) => e.label.includes("last month")))
    }))
})

// Ordinary prose --------------------------------------------------------------------------------------------------

describe("OfflineExtractor on ordinary prose", () => {
  const prose = (text: string) => Effect.flatMap(defaultOntology, (o) => extract(text, Option.some(o)))
  const typeOf = (output: Extractor.BatchOutput, label: string) => entity(output, label).type

  it.effect("institutions are organisations; capitalised common nouns alone are not names", () =>
    Effect.gen(function*() {
      const output = yield* prose(
        "The Navy and the Congress agreed. The Nation is strong and the Union endures. " +
          "Democrats and Republicans met in the Senate. The National Guard and the Coast Guard helped."
      )
      for (const label of ["Navy", "Congress", "Democrats", "Republicans", "Senate", "National Guard", "Coast Guard"]) {
        assert.strictEqual(typeOf(output, label), `${FOAF}Organization`, label)
      }
      assert.isFalse(output.entities.some((e) => e.label === "Nation" || e.label === "Union"))
      const maker = yield* prose("Last year Tom Kessler and his sister Ann took over Kessler Manufacturing.")
      assert.strictEqual(typeOf(maker, "Kessler Manufacturing"), `${FOAF}Organization`)
    }))

  it.effect("hyphenated names with a linking particle stay whole", () =>
    Effect.gen(function*() {
      const output = yield* prose("The convoy reached Mazar-e-Sharif at dawn.")
      const labels = output.entities.map((e) => e.label)
      assert.include(labels, "Mazar-e-Sharif")
      assert.notInclude(labels, "Mazar")
      assert.notInclude(labels, "Sharif")
    }))

  it.effect("the names of a list are typed together", () =>
    Effect.gen(function*() {
      const output = yield* prose("Groups like Hamas, Hizballah, Islamic Jihad, and Jaish-e-Mohammed operate there.")
      for (const label of ["Hamas", "Hizballah", "Islamic Jihad", "Jaish-e-Mohammed"]) {
        assert.strictEqual(typeOf(output, label), `${FOAF}Organization`, label)
      }
    }))

  it.effect("cities, countries and US states from the gazetteers are places", () =>
    Effect.gen(function*() {
      const output = yield* prose("She flew from Aalborg to Abeokuta, then drove through Wyoming into Paraguay.")
      for (const label of ["Aalborg", "Abeokuta", "Wyoming", "Paraguay"]) {
        assert.strictEqual(typeOf(output, label), `${SCHEMA}Place`, label)
      }
      // Former countries (ISO 3166-3), which older texts name.
      const older = yield* prose("The envoys of Czechoslovakia, Zaire and Yugoslavia were there in 1975.")
      for (const label of ["Czechoslovakia", "Zaire", "Yugoslavia"]) {
        assert.strictEqual(typeOf(older, label), `${SCHEMA}Place`, label)
      }
    }))

  it.effect("storms, operations, battles and treaties named by their first word are events", () =>
    Effect.gen(function*() {
      const output = yield* prose(
        "The town was rebuilt after Hurricane Ida. Historians still argue about the Battle of Hastings, and the " +
          "veterans of Operation Overlord met again."
      )
      for (const label of ["Hurricane Ida", "Battle of Hastings", "Operation Overlord"]) {
        assert.match(typeOf(output, label) ?? "", /Event$/u, label)
      }
    }))

  it.effect("an organisation before a rank or title is split from the person, who works for it", () =>
    Effect.gen(function*() {
      const output = yield* prose(
        "Navy Petty Officer Dana Cole steered. Acme Corporation CEO Jane Doe spoke. Army Staff Sergeant John Miller waved."
      )
      hasTriple(output, "Dana Cole", `${SCHEMA}worksFor`, "Navy")
      hasTriple(output, "Jane Doe", `${SCHEMA}worksFor`, "Acme Corporation")
      hasTriple(output, "John Miller", `${SCHEMA}worksFor`, "Army")
      assert.strictEqual(entity(output, "John Miller").attributes.title, "Staff Sergeant")
    }))

  it.effect("a rank's modifiers stay with the rank, whole or after an organisation", () =>
    Effect.gen(function*() {
      const output = yield* prose("We heard Vice President Ana Ruiz. Navy Chief Petty Officer Dana Cole steered.")
      assert.strictEqual(entity(output, "Ana Ruiz").attributes.title, "Vice President")
      hasTriple(output, "Dana Cole", `${SCHEMA}worksFor`, "Navy")
      const labels = output.entities.map((e) => e.label)
      for (const fragment of ["Vice", "Chief", "Navy Chief"]) assert.notInclude(labels, fragment)
    }))

  it.effect("appositions and prepositions: a person of a place, a person from a place, a business in a place", () =>
    Effect.gen(function*() {
      const output = yield* prose(
        "Saul of Tarsus listened. Miriam Katz, a nurse from Denver, arrived. We visited Acme Tools, a small business in Texas."
      )
      hasTriple(output, "Saul", `${SCHEMA}homeLocation`, "Tarsus")
      hasTriple(output, "Miriam Katz", `${SCHEMA}homeLocation`, "Denver")
      hasTriple(output, "Acme Tools", `${SCHEMA}location`, "Texas")
    }))

  it.effect("place heads name places; jury and newspaper heads name organisations; a surname is no head", () =>
    Effect.gen(function*() {
      const output = yield* prose(
        "The Elm County Grand Jury met in Elm County. Ships sailed down the Silver River to Cape Marden and into " +
          "the North Sea. The Springfield Examiner and the Dayton Herald printed it. Ann Bay and Tom Lake came too."
      )
      for (const label of ["Elm County", "Silver River", "Cape Marden", "North Sea"]) {
        assert.strictEqual(typeOf(output, label), `${SCHEMA}Place`, label)
      }
      for (const label of ["Elm County Grand Jury", "Springfield Examiner", "Dayton Herald"]) {
        assert.strictEqual(typeOf(output, label), `${FOAF}Organization`, label)
      }
      for (const label of ["Ann Bay", "Tom Lake"]) assert.strictEqual(typeOf(output, label), `${FOAF}Person`, label)
    }))

  it.effect("boards and councils of something; the House of Representatives; seas; the Soviet Union; parties", () =>
    Effect.gen(function*() {
      const output = yield* prose(
        "The Board of Education met. In the event Congress acts, the House of Representatives will vote. " +
          "Ann Roe will lead a Water Policy Council review. Ships crossed the Atlantic from the Soviet Union and " +
          "the Ottoman Empire. Ohio Democrats and the GOP agreed."
      )
      for (const label of ["Board of Education", "Congress", "House of Representatives", "Water Policy Council"]) {
        assert.strictEqual(typeOf(output, label), `${FOAF}Organization`, label)
      }
      for (const label of ["Ohio Democrats", "GOP"]) assert.strictEqual(typeOf(output, label), `${FOAF}Organization`)
      for (const label of ["Atlantic", "Soviet Union", "Ottoman Empire"]) {
        assert.strictEqual(typeOf(output, label), `${SCHEMA}Place`, label)
      }
    }))

  it.effect("more titles: Father, Private First Class, Attorney General, Policeman; not before a headed name", () =>
    Effect.gen(function*() {
      const output = yield* prose(
        "Father Ambrose Kell prayed. Private First Class Dana Webb wrote home. Attorney General Lyle Marsh " +
          "objected, and Springfield Policeman Ray Otto agreed. They sued Private Equity Group and General Motors."
      )
      assert.strictEqual(entity(output, "Ambrose Kell").attributes.title, "Father")
      assert.strictEqual(entity(output, "Dana Webb").attributes.title, "Private First Class")
      assert.strictEqual(entity(output, "Lyle Marsh").attributes.title, "Attorney General")
      assert.strictEqual(entity(output, "Ray Otto").attributes.title, "Policeman")
      for (const label of ["Private Equity Group", "General Motors"]) {
        assert.strictEqual(typeOf(output, label), `${FOAF}Organization`, label)
      }
      const agent = yield* prose(
        "She serves our country, Border Crimes Investigations Special Agent Rosa Quill. The Attorney General agreed."
      )
      assert.strictEqual(typeOf(agent, "Border Crimes Investigations"), `${FOAF}Organization`)
      hasTriple(agent, "Rosa Quill", `${SCHEMA}worksFor`, "Border Crimes Investigations")
      assert.notInclude(agent.entities.map((e) => e.label), "General")
    }))

  it.effect("'and' inside an institution's 'of' part, not between two places", () =>
    Effect.gen(function*() {
      const output = yield* prose(
        "The Springfield Association of Commerce and Industry met. The Bank of Italy and Spain did not."
      )
      assert.strictEqual(typeOf(output, "Springfield Association of Commerce and Industry"), `${FOAF}Organization`)
      assert.strictEqual(typeOf(output, "Spain"), `${SCHEMA}Place`)
    }))

  it.effect("a lower-case head ends a name written the old way, but not after a or his", () =>
    Effect.gen(function*() {
      const output = yield* prose(
        "They dined at the Harbor Yacht club and slept at the Elm Arms hotel. He ran for the Whig party. " +
          "She stayed at a Boston hotel and went to our Christmas party."
      )
      assert.strictEqual(typeOf(output, "Harbor Yacht club"), `${FOAF}Organization`)
      assert.strictEqual(typeOf(output, "Elm Arms hotel"), `${SCHEMA}Place`)
      assert.strictEqual(typeOf(output, "Whig party"), `${FOAF}Organization`)
      const labels = output.entities.map((e) => e.label)
      assert.notInclude(labels, "Boston hotel")
      assert.notInclude(labels, "Christmas party")
    }))

  it.effect("a person of an unknown name makes it a place; so does a state after a comma", () =>
    Effect.gen(function*() {
      const output = yield* prose("Mrs. Ada Pell of Quillby spoke. Jon Reeve came from Tarnwick, Ohio, by train.")
      assert.strictEqual(typeOf(output, "Quillby"), `${SCHEMA}Place`)
      assert.strictEqual(typeOf(output, "Tarnwick"), `${SCHEMA}Place`)
      hasTriple(output, "Ada Pell", `${SCHEMA}homeLocation`, "Quillby")
    }))

  it.effect("where a person is from: Ohio's John Doe, a prominent Ohio lawyer; not a family, not an office", () =>
    Effect.gen(function*() {
      const output = yield* prose(
        "Nevada's Ruth Vance spoke first. Carl Ames, a prominent Ohio lawyer, answered. " +
          "They visited the Paolo Rossis of Milan."
      )
      hasTriple(output, "Ruth Vance", `${SCHEMA}homeLocation`, "Nevada")
      hasTriple(output, "Carl Ames", `${SCHEMA}homeLocation`, "Ohio")
      assert.isFalse(triples(output).some((t) => t.startsWith("Paolo Rossis")), triples(output).join("\n"))
    }))

  it.effect("employment: X, Org role; X and Y of Org; a congressman is a member of Congress", () =>
    Effect.gen(function*() {
      const output = yield* prose(
        "Dan Roe, State Water Department press director, resigned. Meg Hart and Lou Pike of Kessler Manufacturing " +
          "came. Congress adjourned; Congressman Paul Ortiz stayed. Nina Cole spent her junior year at Vassar college."
      )
      hasTriple(output, "Dan Roe", `${SCHEMA}worksFor`, "State Water Department")
      hasTriple(output, "Meg Hart", `${SCHEMA}worksFor`, "Kessler Manufacturing")
      hasTriple(output, "Lou Pike", `${SCHEMA}worksFor`, "Kessler Manufacturing")
      hasTriple(output, "Paul Ortiz", `${SCHEMA}memberOf`, "Congress")
      const party = yield* prose("Rita Vale, state GOP chairman, spoke.")
      hasTriple(party, "Rita Vale", `${SCHEMA}memberOf`, "GOP")
      assert.isFalse(triples(output).some((t) => t.startsWith("Nina Cole")), triples(output).join("\n"))
    }))

  it.effect("family through a possessive: his wife, her son, his brother", () =>
    Effect.gen(function*() {
      const output = yield* prose(
        "Tom Baker came home with his wife Anna Baker. Lucy Grant lives with her son Peter Grant. " +
          "Carl Lund wrote to his brother Erik Lund. Rosa Diaz, a nurse, came with her sister, Mrs. Inez Diaz."
      )
      hasTriple(output, "Rosa Diaz", `${SCHEMA}sibling`, "Inez Diaz")
      const pair = yield* prose("Mrs. Ida Rune and K. Lee Sand will wed at the home of her brother, J. Otto Rune.")
      assert.deepStrictEqual(triples(pair).filter((t) => t.includes("sibling")), [])
      assert.strictEqual(typeOf(pair, "J. Otto Rune"), `${FOAF}Person`)
      hasTriple(output, "Tom Baker", `${SCHEMA}spouse`, "Anna Baker")
      hasTriple(output, "Peter Grant", `${SCHEMA}parent`, "Lucy Grant")
      hasTriple(output, "Carl Lund", `${SCHEMA}sibling`, "Erik Lund")
    }))
})

// Relations -------------------------------------------------------------------------------------------------------

describe("OfflineExtractor relations", () => {
  const relations = (text: string) => Effect.flatMap(defaultOntology, (o) => extract(text, Option.some(o)))

  it.effect("employment: works at, role of, joined, years at", () =>
    Effect.gen(function*() {
      const output = yield* relations(
        "Bob Johnson works at Acme Corporation. Dr. Emma Watson, CEO of Quantum Computing Inc, spoke. " +
          "Carol Smith joined BigTech Corporation in 2019. Sarah Jones brought expertise from her five years at Amazon Web Services."
      )
      hasTriple(output, "Bob Johnson", `${SCHEMA}worksFor`, "Acme Corporation")
      hasTriple(output, "Emma Watson", `${SCHEMA}worksFor`, "Quantum Computing Inc")
      hasTriple(output, "Carol Smith", `${SCHEMA}worksFor`, "BigTech Corporation")
      hasTriple(output, "Sarah Jones", `${SCHEMA}worksFor`, "Amazon Web Services")
    }))

  it.effect("membership: member of, joined a group", () =>
    Effect.gen(function*() {
      const output = yield* relations(
        "Dan Brickley is a member of the Semantic Web Consortium. Libby Miller joined the Open Data Group. " +
          "Ann Lee, a longtime member of the Springfield Rotary Club, came. Jim Bo told a member of the Elm County Board."
      )
      hasTriple(output, "Ann Lee", `${SCHEMA}memberOf`, "Springfield Rotary Club")
      assert.isFalse(triples(output).some((t) => t.startsWith("Jim Bo")), triples(output).join("\n"))
      hasTriple(output, "Dan Brickley", `${SCHEMA}memberOf`, "Semantic Web Consortium")
      hasTriple(output, "Libby Miller", `${SCHEMA}memberOf`, "Open Data Group")
    }))

  it.effect("founding: founded, founded by (with every founder), founder of, founding date as xsd:gYear", () =>
    Effect.gen(function*() {
      const output = yield* relations(
        "Dr. Elizabeth Warren founded TechCorp in 2010. The company \"Smith & Johnson, LLC\" was founded by " +
          "Alice Smith and Bob Johnson in 2012. Tom Wilson, Founder of StartupX, smiled."
      )
      hasTriple(output, "TechCorp", `${SCHEMA}founder`, "Elizabeth Warren")
      hasTriple(output, "Smith & Johnson, LLC", `${SCHEMA}founder`, "Alice Smith")
      hasTriple(output, "Smith & Johnson, LLC", `${SCHEMA}founder`, "Bob Johnson")
      hasTriple(output, "StartupX", `${SCHEMA}founder`, "Tom Wilson")
      const date = output.relations.find((r) =>
        r.subject.label === "TechCorp" && r.predicate === `${SCHEMA}foundingDate`
      )
      assert.deepStrictEqual(date?.object, { _tag: "Literal", value: "2010", datatype: `${XSD}gYear` })
    }))

  it.effect("location: based in, headquartered in, offices in", () =>
    Effect.gen(function*() {
      const output = yield* relations(
        "Acme Corporation is based in Berlin. Globex Inc, a company headquartered in Tokyo, grew. " +
          "Initech Ltd has offices in London, Paris and Madrid."
      )
      hasTriple(output, "Acme Corporation", `${SCHEMA}location`, "Berlin")
      hasTriple(output, "Globex Inc", `${SCHEMA}location`, "Tokyo")
      for (const city of ["London", "Paris", "Madrid"]) hasTriple(output, "Initech Ltd", `${SCHEMA}location`, city)
    }))

  it.effect("family: married, son of, sibling, parent", () =>
    Effect.gen(function*() {
      const output = yield* relations(
        "John Miller married Mary Smith. Tom Miller, the son of John Miller, was born later. " +
          "Anna Miller is the sister of Tom Miller. Peter Brown and Jane Brown are married."
      )
      hasTriple(output, "John Miller", `${SCHEMA}spouse`, "Mary Smith")
      hasTriple(output, "Tom Miller", `${SCHEMA}parent`, "John Miller")
      hasTriple(output, "Anna Miller", `${SCHEMA}sibling`, "Tom Miller")
      hasTriple(output, "Peter Brown", `${SCHEMA}spouse`, "Jane Brown")
    }))

  it.effect("family: her father, his mother (the child comes first)", () =>
    Effect.gen(function*() {
      const output = yield* relations(
        "Mary Jones arrived with her father, John Jones, on Tuesday. Peter Brown lives with his mother, Alice Brown."
      )
      hasTriple(output, "Mary Jones", `${SCHEMA}parent`, "John Jones")
      hasTriple(output, "Peter Brown", `${SCHEMA}parent`, "Alice Brown")
    }))

  it.effect("an office of a group is membership, of a company employment", () =>
    Effect.gen(function*() {
      const output = yield* relations(
        "Jane Doe, chairman of the Elm County Democratic Committee, spoke on Monday. " +
          "Tom Smith, president of the Springfield Tennis Association, opened the season. " +
          "Ann Lee, chief engineer of Acme Corporation, was there too."
      )
      hasTriple(output, "Jane Doe", `${SCHEMA}memberOf`, "Elm County Democratic Committee")
      hasTriple(output, "Tom Smith", `${SCHEMA}memberOf`, "Springfield Tennis Association")
      hasTriple(output, "Ann Lee", `${SCHEMA}worksFor`, "Acme Corporation")
    }))

  it.effect("knows: X knows Y, Z and W; X and Y met; a colleague; pronouns that open a sentence", () =>
    Effect.gen(function*() {
      const output = yield* relations(
        "Alice Chen knows Bob Martinez, Carol Thompson, and David Kumar. Eve Williams and Frank Lee met in Paris. " +
          "Dr. Lisa Park leads research. Her colleague, Michael Roberts, helped."
      )
      for (const other of ["Bob Martinez", "Carol Thompson", "David Kumar"]) {
        hasTriple(output, "Alice Chen", `${FOAF}knows`, other)
      }
      hasTriple(output, "Eve Williams", `${FOAF}knows`, "Frank Lee")
      hasTriple(output, "Lisa Park", `${FOAF}knows`, "Michael Roberts")
    }))

  it.effect("mbox and homepage: by the name the value spells, as mailto: and xsd:anyURI", () =>
    Effect.gen(function*() {
      const output = yield* relations(
        "Alice Smith is an engineer. Contact: alice@example.com, support@example.com. " +
          "Bob Johnson's homepage is https://bob.example.com and his blog is at https://bob-writes.example.org."
      )
      const mbox = output.relations.filter((r) => r.predicate === `${FOAF}mbox`)
      assert.deepStrictEqual(mbox.map((r) => [r.subject.label, r.object]), [[
        "Alice Smith",
        { _tag: "Literal", value: "mailto:alice@example.com", datatype: `${XSD}anyURI` }
      ]])
      hasTriple(output, "Bob Johnson", `${FOAF}homepage`, "https://bob.example.com")
    }))

  it.effect("a relation is only emitted where the ontology has a fitting property", () =>
    Effect.gen(function*() {
      const foaf = Option.some(yield* loadOntology("foaf.ttl"))
      const output = yield* extract("Bob Johnson works at Acme Corporation. Bob Johnson knows Alice Smith.", foaf)
      assert.deepStrictEqual(triples(output), [`Bob Johnson ${FOAF}knows Alice Smith`])
    }))
})

// Ontology mapping ------------------------------------------------------------------------------------------------

describe("OfflineExtractor ontology mapping", () => {
  const text = "Dr. Sarah Chen works at Acme Corporation in Berlin. She knows Bob Johnson."

  it.effect("foaf.ttl: FOAF classes; a place (no FOAF class) goes to owl:Thing or is dropped", () =>
    Effect.gen(function*() {
      const foaf = Option.some(yield* loadOntology("foaf.ttl"))
      const generic = yield* extract(text, foaf, { unmapped: "generic" })
      assert.strictEqual(entity(generic, "Sarah Chen").type, `${FOAF}Person`)
      assert.strictEqual(entity(generic, "Acme Corporation").type, `${FOAF}Organization`)
      assert.strictEqual(entity(generic, "Berlin").type, OWL_THING)
      const dropped = yield* extract(text, foaf, { unmapped: "drop" })
      assert.isFalse(dropped.entities.some((e) => e.label === "Berlin"))
      assert.strictEqual(entity(dropped, "Sarah Chen").type, `${FOAF}Person`)
    }))

  it.effect("schemaorg.ttl: schema.org classes and properties in its https namespace", () =>
    Effect.gen(function*() {
      const schema = Option.some(yield* loadOntology("schemaorg.ttl"))
      const output = yield* extract(text, schema)
      assert.strictEqual(entity(output, "Sarah Chen").type, `${SCHEMAS}Person`)
      assert.strictEqual(entity(output, "Acme Corporation").type, `${SCHEMAS}Organization`)
      assert.strictEqual(entity(output, "Berlin").type, `${SCHEMAS}Place`)
      hasTriple(output, "Sarah Chen", `${SCHEMAS}worksFor`, "Acme Corporation")
      hasTriple(output, "Sarah Chen", `${SCHEMAS}knows`, "Bob Johnson")
    }))

  it.effect("an ontology without agent classes: people go to its most general agent class", () =>
    Effect.gen(function*() {
      const ontology = Option.some(
        yield* Ontology.parse(
          `@prefix ex: <http://example.org/> . @prefix owl: <http://www.w3.org/2002/07/owl#> .
           @prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
           ex:Agent a owl:Class ; rdfs:label "Agent" . ex:Thing a owl:Class ; rdfs:label "Thing" .`
        )
      )
      const output = yield* extract(text, ontology, { unmapped: "generic" })
      assert.strictEqual(entity(output, "Sarah Chen").type, "http://example.org/Agent")
      assert.strictEqual(entity(output, "Berlin").type, "http://example.org/Thing")
    }))

  it("the unmapped policy is part of the configuration hash", () => {
    assert.notStrictEqual(
      OfflineExtractor.make({ unmapped: "generic" }).configHash,
      OfflineExtractor.make({ unmapped: "drop" }).configHash
    )
    assert.strictEqual(OfflineExtractor.make().configHash, OfflineExtractor.make({ unmapped: "drop" }).configHash)
    assert.strictEqual(OfflineExtractor.make().name, "offline")
  })

  it("publishes its settings, which read back as the extractor with the same configuration hash", () => {
    const extractor = OfflineExtractor.make({ unmapped: "generic", useKnownEntities: false })
    assert.deepStrictEqual(extractor.settings, { unmapped: "generic", useKnownEntities: false })
    const stored = Option.getOrThrow(OfflineExtractor.decodeSettings(extractor.settings))
    assert.strictEqual(OfflineExtractor.make(stored).configHash, extractor.configHash)
    assert.deepStrictEqual(OfflineExtractor.make().settings, { ...OfflineExtractor.defaults })
    // A run stored before the extractor published settings has none to read.
    assert.isTrue(Option.isNone(OfflineExtractor.decodeSettings({})))
    assert.isTrue(Option.isNone(OfflineExtractor.decodeSettings({ unmapped: "bogus", useKnownEntities: true })))
  })

  it.effect("layerConfig reads QUARRY_OFFLINE_* settings", () =>
    Effect.gen(function*() {
      const extractor = yield* OfflineExtractor.OfflineExtractor
      assert.strictEqual(extractor.configHash, OfflineExtractor.configHash({ unmapped: "generic" }))
    }).pipe(
      Effect.provide(
        OfflineExtractor.layerConfig().pipe(
          Layer.provide(
            Layer.setConfigProvider(ConfigProvider.fromMap(new Map([["QUARRY_OFFLINE_UNMAPPED", "generic"]])))
          )
        )
      )
    ))

  it.effect("config reads QUARRY_OFFLINE_USE_KNOWN_ENTITIES as true or false in any case, or yes/no, on/off, 1/0", () =>
    Effect.gen(function*() {
      const read = (value: string) =>
        Effect.withConfigProvider(
          OfflineExtractor.config,
          ConfigProvider.fromMap(new Map([["QUARRY_OFFLINE_USE_KNOWN_ENTITIES", value]]))
        )
      const spellings = [["TRUE", true], ["False", false], ["no", false], ["ON", true], ["1", true], [
        "0",
        false
      ]] as const
      for (const [value, expected] of spellings) {
        assert.strictEqual((yield* read(value)).useKnownEntities, expected, value)
      }
      const refused = yield* Effect.flip(read("maybe"))
      assert.isTrue(
        ConfigError.isInvalidData(refused) && refused.path.join("_") === "QUARRY_OFFLINE_USE_KNOWN_ENTITIES"
      )
    }))
})

// Language tags ---------------------------------------------------------------------------------------------------

/** A French paragraph written for these tests. */
const french = "Marie Curie est née à Varsovie en 1867. Elle a travaillé à Paris avec son mari, Pierre Curie, et " +
  "elle a reçu le prix Nobel de physique en 1903, puis le prix Nobel de chimie en 1911. Sa fille, Irène " +
  "Joliot-Curie, a aussi reçu le prix Nobel."

/** The language attribute of every mention, by label. */
const languages = (output: Extractor.BatchOutput) =>
  new Map(output.entities.map((e) => [e.label, e.attributes.language] as const))

describe("OfflineExtractor language tags", () => {
  it.effect("an English text: names carry en; addresses, URLs and dated values carry none", () =>
    Effect.gen(function*() {
      const output = yield* extract(readText("edge-cases-unicode.txt"), Option.none(), { unmapped: "generic" })
      const tags = languages(output)
      for (const name of ["François Müller", "ETH Zürich", "Anna Petrova", "Tsinghua University"]) {
        assert.strictEqual(tags.get(name), "en", name)
      }
      for (const value of ["anna.petrova@msu.ru", "https://msu.ru/сотрудники/петрова"]) {
        assert.isTrue(tags.has(value), value)
        assert.isUndefined(tags.get(value), value)
      }
      const dated = yield* extract(
        "The museum opened on March 5, 2021, after the architects Anna Berg and Tom Lund had worked on it for " +
          "many years with the city of Oslo and a dozen engineers.",
        Option.none(),
        { unmapped: "generic" }
      )
      assert.isUndefined(languages(dated).get("March 5, 2021"))
      assert.strictEqual(languages(dated).get("Anna Berg"), "en")
    }))

  it.effect("a text too short to tell carries no tag at all", () =>
    Effect.gen(function*() {
      for (const text of ["Alice Smith works at Acme.", readText("minimal-single-sentence.txt")]) {
        const output = yield* extract(text, Option.none(), { unmapped: "generic" })
        assert.isAbove(output.entities.length, 0, text)
        for (const e of output.entities) assert.isUndefined(e.attributes.language, `${e.label} in ${text}`)
      }
    }))

  it.effect("a French text: fr, from the batch's own text whatever the earlier batches were", () =>
    Effect.gen(function*() {
      const known = [{ label: "Alice Smith", type: `${FOAF}Person`, iri: "urn:x:alice" }]
      const output = yield* extract(french, Option.none(), {}, known)
      const tags = languages(output)
      for (const name of ["Marie Curie", "Pierre Curie", "Paris"]) assert.strictEqual(tags.get(name), "fr", name)
    }))
})

// Determinism -----------------------------------------------------------------------------------------------------

describe("OfflineExtractor determinism", () => {
  it.effect("the same batch gives the same output, from the same or a new extractor, byte for byte", () =>
    Effect.gen(function*() {
      const ontology = Option.some(yield* defaultOntology)
      for (const name of ["long-multi-chapter.txt", "edge-cases-unicode.txt", "ambiguous-temporal.txt"]) {
        const text = readText(name)
        for (const b of Chunking.plan(text, Chunking.defaults)) {
          const input = batch(text, ontology, { chunks: b.chunks })
          const first = yield* OfflineExtractor.make().extract(input)
          const second = yield* OfflineExtractor.make().extract(input)
          const third = yield* OfflineExtractor.make().extract(batch(text, ontology, { chunks: [...b.chunks] }))
          assert.deepStrictEqual(second, first)
          assert.strictEqual(Extractor.encodeOutput(third), Extractor.encodeOutput(first))
        }
      }
    }))
})

// The event loop --------------------------------------------------------------------------------------------------

describe("OfflineExtractor and the event loop", () => {
  const moby = readText("moby-dick.txt")

  it.effect("compromise tags a text a piece of whole sentences at a time exactly as it tags the whole text", () =>
    Effect.sync(() => {
      for (const text of [moby.slice(0, 200_000), ...texts.map(readText)]) {
        assert.deepStrictEqual(Steps.runSync(Nlp.analyse(text)), Steps.runSync(Nlp.analyse(text, Infinity)))
      }
    }))

  it.live("the event loop turns while a batch of 100,000 characters is extracted (fair scheduler)", () =>
    Effect.gen(function*() {
      let turns = 0
      let next: NodeJS.Immediate | undefined
      const count = () => {
        turns++
        next = setImmediate(count)
      }
      // Read by the extractor before it starts: the count starts with the extraction.
      const knownEntities = Effect.sync(() => {
        next = setImmediate(count)
        return []
      })
      const input = { ...batch(moby.slice(0, 100_000), Option.none()), knownEntities }
      yield* OfflineExtractor.make().extract(input).pipe(
        Effect.withScheduler(FairScheduler.shared),
        Effect.ensuring(Effect.sync(() => clearImmediate(next)))
      )
      // An extraction that holds the event loop lets it turn once at most, before it starts.
      assert.isAbove(turns, 2)
    }))
})
