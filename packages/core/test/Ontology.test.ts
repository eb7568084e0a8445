import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as FileSystem from "@effect/platform/FileSystem"
import { assert, describe, it } from "@effect/vitest"
import * as DefaultOntology from "@quarry/core/DefaultOntology"
import * as Ontology from "@quarry/core/Ontology"
import * as Effect from "effect/Effect"
import * as FastCheck from "effect/FastCheck"
import * as Option from "effect/Option"
import * as N3 from "n3"
import * as path from "node:path"

const ontologies = path.resolve(import.meta.dirname, "../../../test/data/ontologies")
const file = (name: string) => path.join(ontologies, name)

const RDFS = "http://www.w3.org/2000/01/rdf-schema#"
const OWL = "http://www.w3.org/2002/07/owl#"
const XSD = "http://www.w3.org/2001/XMLSchema#"
const FOAF = "http://xmlns.com/foaf/0.1/"
const ORG = "http://www.w3.org/ns/org#"
const DCAT = "http://www.w3.org/ns/dcat#"
const SCHEMA = "https://schema.org/"
const EX = "http://example.org/org#"

const load = (name: string) => Ontology.load(file(name)).pipe(Effect.provide(NodeFileSystem.layer))

const classOf = (ontology: Ontology.Ontology, iri: string) => {
  const found = Ontology.getClass(ontology, iri)
  assert.isTrue(Option.isSome(found), `class ${iri}`)
  return Option.getOrThrow(found)
}

const propertyOf = (ontology: Ontology.Ontology, iri: string) => {
  const found = Ontology.getProperty(ontology, iri)
  assert.isTrue(Option.isSome(found), `property ${iri}`)
  return Option.getOrThrow(found)
}

const parseError = (text: string, options: Ontology.ParseOptions = {}) =>
  Effect.flip(Ontology.parse(text, { source: "test.ttl", ...options }))

/** A deterministic shuffle (mulberry32), so a failing order can be reproduced. */
const shuffled = <A>(items: ReadonlyArray<A>, seed: number): Array<A> => {
  let state = seed >>> 0
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const copy = [...items]
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1))
    ;[copy[i], copy[j]] = [copy[j]!, copy[i]!]
  }
  return copy
}

const quadsOf = (text: string, format?: string) => new N3.Parser(format === undefined ? {} : { format }).parse(text)

/** The same quads with every blank node renamed and the order shuffled. */
const scrambled = (quads: ReadonlyArray<N3.Quad>, seed: number): Array<N3.Quad> => {
  const names = new Map<string, N3.BlankNode>()
  const rename = <T extends N3.Term>(term: T): T | N3.BlankNode => {
    if (term.termType !== "BlankNode") return term
    let renamed = names.get(term.value)
    if (renamed === undefined) {
      renamed = N3.DataFactory.blankNode(`x${seed}_${(names.size * 7919 + seed) % 100003}_${names.size}`)
      names.set(term.value, renamed)
    }
    return renamed
  }
  const quads2 = quads.map((q) =>
    N3.DataFactory.quad(
      rename(q.subject),
      q.predicate,
      rename(q.object),
      q.graph
    )
  )
  return shuffled(quads2, seed)
}

const writeTurtle = (quads: ReadonlyArray<N3.Quad>, prefixes: Record<string, string>) =>
  Effect.async<string>((resume) => {
    const writer = new N3.Writer({ format: "Turtle", prefixes })
    writer.addQuads([...quads])
    writer.end((error, result: string) => resume(error ? Effect.die(error) : Effect.succeed(result)))
  })

const canonicalOf = (text: string, format?: string) => Ontology.canonicalize(quadsOf(text, format))

describe("Ontology", () => {
  describe("loading the shared ontologies", () => {
    it.effect("foaf.ttl: classes, superclasses, object and datatype properties", () =>
      Effect.gen(function*() {
        const foaf = yield* load("foaf.ttl")
        assert.match(foaf.sha256, /^[0-9a-f]{64}$/)
        assert.strictEqual(foaf.prefixes[""], FOAF)
        const person = classOf(foaf, `${FOAF}Person`)
        assert.deepStrictEqual(person.labels, [{ value: "Person", language: undefined }])
        assert.deepStrictEqual(person.superClasses, [`${FOAF}Agent`])
        assert.strictEqual(person.description, "A person.")
        assert.strictEqual(propertyOf(foaf, `${FOAF}knows`).kind, "object")
        assert.deepStrictEqual(propertyOf(foaf, `${FOAF}knows`).domain, [`${FOAF}Person`])
        assert.strictEqual(propertyOf(foaf, `${FOAF}name`).kind, "datatype")
        assert.deepStrictEqual(propertyOf(foaf, `${FOAF}homepage`).range, [`${FOAF}Document`])
        assert.strictEqual(Option.getOrThrow(Ontology.mostGeneralAgentOrThing(foaf)).iri, `${FOAF}Agent`)
        assert.strictEqual(foaf.tripleCount, 147)
      }))

    it.effect("dcterms.ttl: classes and properties with datatype ranges", () =>
      Effect.gen(function*() {
        const dct = yield* load("dcterms.ttl")
        assert.isAbove(dct.classes.length, 5)
        assert.isAbove(dct.properties.length, 20)
        assert.isTrue(dct.classes.some((c) => c.iri === "http://purl.org/dc/terms/Agent"))
        const created = propertyOf(dct, "http://purl.org/dc/terms/created")
        assert.deepStrictEqual(created.range, [`${XSD}date`])
        assert.strictEqual(created.description, "Date of creation of the resource.")
        assert.strictEqual(created.kind, "datatype")
        assert.strictEqual(
          Option.getOrThrow(Ontology.mostGeneralAgentOrThing(dct)).iri,
          "http://purl.org/dc/terms/Agent"
        )
      }))

    it.effect("example-organization.ttl: transitive ancestors and the most general class", () =>
      Effect.gen(function*() {
        const org = yield* load("example-organization.ttl")
        assert.deepStrictEqual(Ontology.ancestors(org, `${EX}Manager`), [`${EX}Employee`, `${EX}Person`])
        assert.deepStrictEqual(Ontology.ancestors(org, `${EX}StartupCompany`), [`${EX}Company`, `${EX}Organization`])
        assert.isTrue(Ontology.isSubClassOf(org, `${EX}StartupCompany`, `${EX}Organization`))
        assert.isFalse(Ontology.isSubClassOf(org, `${EX}Organization`, `${EX}StartupCompany`))
        const hasName = propertyOf(org, `${EX}hasName`)
        assert.strictEqual(hasName.kind, "datatype")
        assert.deepStrictEqual(hasName.range, [`${XSD}string`])
        assert.isTrue(org.datatypes.includes(`${XSD}date`))
        // No agent or thing class: the root with the most descendants (Organization has three).
        assert.strictEqual(Option.getOrThrow(Ontology.mostGeneralAgentOrThing(org)).iri, `${EX}Organization`)
        assert.strictEqual(Option.getOrThrow(Ontology.classByLabel(org, "startup company")).iri, `${EX}StartupCompany`)
        assert.strictEqual(Option.getOrThrow(Ontology.classByLabel(org, "StartupCompany")).iri, `${EX}StartupCompany`)
        assert.deepStrictEqual(
          Ontology.propertiesOf(org, `${EX}StartupCompany`).map((p) => p.iri).includes(`${EX}hasName`),
          true
        )
      }))

    it.effect("w3c-org.ttl: multilingual labels, union domains, restriction blank nodes", () =>
      Effect.gen(function*() {
        const org = yield* load("w3c-org.ttl")
        const organization = classOf(org, `${ORG}Organization`)
        const languages = organization.labels.map((l) => l.language)
        for (const language of ["en", "fr", "it", "es"]) assert.include(languages, language)
        assert.include(organization.superClasses, `${FOAF}Agent`)
        for (const label of ["organization", "ORGANIZZAZIONE", "Organización"]) {
          assert.strictEqual(Option.getOrThrow(Ontology.classByLabel(org, label)).iri, `${ORG}Organization`, label)
        }
        // rdfs:domain [ owl:unionOf (foaf:Agent org:Post) ] is expanded to its members.
        assert.deepStrictEqual(propertyOf(org, `${ORG}reportsTo`).domain, [`${ORG}Post`, `${FOAF}Agent`])
        assert.strictEqual(Option.getOrThrow(Ontology.mostGeneralAgentOrThing(org)).iri, `${FOAF}Agent`)
        assert.match(org.canonical, /^_:c[0-9a-f]{16} <http:\/\/www\.w3\.org\/2002\/07\/owl#onProperty> /m)
        assert.isDefined(organization.description)
        assert.isAtMost(organization.description!.length, 200)
      }))

    it.effect("w3c-dcat.ttl: labels and alternative labels in many languages", () =>
      Effect.gen(function*() {
        const dcat = yield* load("w3c-dcat.ttl")
        const dataset = classOf(dcat, `${DCAT}Dataset`)
        const languages = new Set(dataset.labels.map((l) => l.language))
        for (const language of ["en", "da", "es", "it", "ja", "cs"]) assert.isTrue(languages.has(language), language)
        assert.isTrue(dataset.altLabels.some((l) => l.value === "Datasamling" && l.language === "da"))
        assert.strictEqual(Option.getOrThrow(Ontology.classByLabel(dcat, "datasamling")).iri, `${DCAT}Dataset`)
        const japanese = dataset.labels.find((l) => l.language === "ja")!
        assert.strictEqual(Option.getOrThrow(Ontology.classByLabel(dcat, japanese.value)).iri, `${DCAT}Dataset`)
        assert.strictEqual(Ontology.preferredLabel(dataset), "Dataset")
      }))

    it.effect("schemaorg.ttl (1 MB): classes, data types and domainIncludes/rangeIncludes", () =>
      Effect.gen(function*() {
        const schema = yield* load("schemaorg.ttl")
        assert.isAbove(schema.classes.length, 800)
        assert.isAbove(schema.properties.length, 1400)
        assert.isTrue(schema.datatypes.includes(`${SCHEMA}Text`))
        assert.isTrue(schema.datatypes.includes(`${SCHEMA}URL`))
        assert.isFalse(schema.classes.some((c) => c.iri === `${SCHEMA}Text`))
        assert.deepStrictEqual(Ontology.ancestors(schema, `${SCHEMA}City`), [
          `${SCHEMA}AdministrativeArea`,
          `${SCHEMA}Place`,
          `${SCHEMA}Thing`
        ])
        const founder = propertyOf(schema, `${SCHEMA}founder`)
        assert.include(founder.domain, `${SCHEMA}Organization`)
        assert.include(founder.range, `${SCHEMA}Person`)
        assert.strictEqual(founder.kind, "object")
        assert.strictEqual(propertyOf(schema, `${SCHEMA}birthDate`).kind, "datatype")
        assert.strictEqual(propertyOf(schema, `${SCHEMA}location`).kind, "mixed")
        assert.strictEqual(Option.getOrThrow(Ontology.classByLabel(schema, "sports team")).iri, `${SCHEMA}SportsTeam`)
        assert.strictEqual(Option.getOrThrow(Ontology.mostGeneralAgentOrThing(schema)).iri, `${SCHEMA}Thing`)
        assert.notInclude(classOf(schema, `${SCHEMA}3DModel`).description ?? "", "[[")
      }))
  })

  describe("load errors", () => {
    it.effect("a missing file says so", () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(load("no-such-ontology.ttl"))
        assert.strictEqual(error._tag, "OntologyError")
        assert.include(error.reason, "no such file")
        assert.include(error.message, "no-such-ontology.ttl")
      }))

    it.effect("a directory says so", () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(Ontology.load(ontologies).pipe(Effect.provide(NodeFileSystem.layer)))
        assert.include(error.reason, "directory")
      }))

    it.scoped("the format comes from the extension: .nt and .nq load strictly", () =>
      Effect.gen(function*() {
        const fs = yield* FileSystem.FileSystem
        const dir = yield* fs.makeTempDirectoryScoped()
        const turtle = "@prefix ex: <http://example.org/> .\nex:A a <http://www.w3.org/2002/07/owl#Class> .\n"
        const ntriples = "<http://example.org/A> <http://www.w3.org/1999/02/22-rdf-syntax-ns#type> " +
          "<http://www.w3.org/2002/07/owl#Class> .\n"
        yield* fs.writeFileString(path.join(dir, "a.ttl"), turtle)
        yield* fs.writeFileString(path.join(dir, "a.nt"), ntriples)
        yield* fs.writeFileString(path.join(dir, "a.nq"), ntriples)
        yield* fs.writeFileString(path.join(dir, "turtle-in-disguise.nt"), turtle)
        const fromTurtle = yield* Ontology.load(path.join(dir, "a.ttl"))
        const fromNt = yield* Ontology.load(path.join(dir, "a.nt"))
        const fromNq = yield* Ontology.load(path.join(dir, "a.nq"))
        assert.strictEqual(fromNt.sha256, fromTurtle.sha256)
        assert.strictEqual(fromNq.sha256, fromTurtle.sha256)
        const error = yield* Effect.flip(Ontology.load(path.join(dir, "turtle-in-disguise.nt")))
        assert.strictEqual(error.line, 1)
        assert.include(error.reason, "format \"turtle\"")
        // An explicit format wins over the extension.
        const forced = yield* Ontology.load(path.join(dir, "turtle-in-disguise.nt"), { format: "turtle" })
        assert.strictEqual(forced.sha256, fromTurtle.sha256)
      }).pipe(Effect.provide(NodeFileSystem.layer)))
  })

  describe("syntax errors", () => {
    it.effect("an unterminated string gives its line and column", () =>
      Effect.gen(function*() {
        const error = yield* parseError(
          "@prefix ex: <http://example.org/> .\nex:a ex:b ex:c .\nex:d ex:e \"unterminated .\n"
        )
        assert.strictEqual(error.line, 3)
        assert.strictEqual(error.column, 11)
        assert.include(error.reason, "unterminated string")
        assert.include(error.message, "test.ttl")
        assert.include(error.message, "line 3, column 11")
      }))

    it.effect("an undefined prefix says how to declare it", () =>
      Effect.gen(function*() {
        const error = yield* parseError("@prefix ex: <http://example.org/> .\n\n  ex:d foo:e ex:f .\n")
        assert.strictEqual(error.line, 3)
        assert.strictEqual(error.column, 8)
        assert.include(error.reason, "@prefix foo:")
      }))

    it.effect("a missing dot between statements", () =>
      Effect.gen(function*() {
        const error = yield* parseError(
          "@prefix ex: <http://example.org/> .\nex:a ex:b ex:c\nex:g ex:h ex:i .\n",
          { format: "turtle" }
        )
        assert.strictEqual(error.line, 3)
        assert.strictEqual(error.column, 1)
        assert.include(error.reason, "end the statement with \".\"")
      }))

    it.effect("Turtle read as N-Triples (a .nt file) says to rename it, the only fix the CLI offers", () =>
      Effect.gen(function*() {
        const error = yield* parseError("@prefix ex: <http://example.org/> .\nex:a ex:b ex:c .\n", { format: "nt" })
        assert.include(
          error.reason,
          "if the file is Turtle, give it a .ttl extension (or, from a program, parse it with format \"turtle\")"
        )
      }))

    it.effect("RDF/XML and JSON-LD, which n3 does not read, are named as what they look like", () =>
      Effect.gen(function*() {
        const rdfXml = yield* parseError(
          "\n<?xml version=\"1.0\"?>\n<rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\"/>\n"
        )
        assert.include(rdfXml.reason, "this looks like RDF/XML, which Quarry does not read: convert it to Turtle first")
        const jsonLd = yield* parseError("[{\"@id\": \"http://example.org/A\", \"@type\": [\"http://example.org/C\"]}]")
        assert.include(jsonLd.reason, "this looks like JSON-LD, which Quarry does not read: convert it to Turtle first")
        // A TriG graph block or a Turtle blank node opening the text is neither.
        const trig = yield* parseError("{ <http://example.org/a> <http://example.org/b> }", { format: "trig" })
        assert.notInclude(trig.reason, "JSON-LD")
        const turtle = yield* parseError("[ <http://example.org/b> <http://example.org/c> ] <x", { format: "turtle" })
        assert.notInclude(turtle.reason, "JSON-LD")
      }))

    it.effect("an unknown format is refused", () =>
      Effect.gen(function*() {
        const error = yield* parseError("", { format: "rdfxml" })
        assert.include(error.reason, "unknown format \"rdfxml\"")
      }))
  })

  describe("identity", () => {
    it.effect("is the same for every serialisation of the same graph (prefixes, order, syntax, blank node labels)", () =>
      Effect.gen(function*() {
        for (const name of ["foaf.ttl", "w3c-org.ttl", "w3c-dcat.ttl"]) {
          const original = yield* load(name)
          const quads = quadsOf(original.canonical, "N-Triples")
          for (const seed of [1, 2, 3]) {
            const ntriples = new N3.Writer({ format: "N-Triples" }).quadsToString(scrambled(quads, seed))
            const fromNt = yield* Ontology.parse(ntriples, { format: "ntriples" })
            assert.strictEqual(fromNt.sha256, original.sha256, `${name} as scrambled N-Triples, seed ${seed}`)
          }
          const turtle = yield* writeTurtle(scrambled(quads, 9), { zz: FOAF, o: OWL, r: RDFS, q: ORG })
          const fromTurtle = yield* Ontology.parse(turtle, { format: "turtle" })
          assert.strictEqual(fromTurtle.sha256, original.sha256, `${name} as Turtle with other prefix names`)
          assert.deepStrictEqual(fromTurtle.classes, original.classes)
          assert.deepStrictEqual(fromTurtle.properties, original.properties)
        }
      }))

    it("does not depend on how blank nodes are written ([] versus _:labels) or on whitespace and comments", () => {
      const bracketed = `@prefix ex: <http://example.org/> . @prefix owl: <${OWL}> . @prefix rdfs: <${RDFS}> .
        ex:C rdfs:subClassOf [ a owl:Restriction ; owl:onProperty ex:p ; owl:someValuesFrom ex:D ] ,
          [ a owl:Restriction ; owl:onProperty ex:q ; owl:allValuesFrom ex:E ] .`
      const labelled = `PREFIX ex: <http://example.org/>
        # the same restrictions, labelled and in another order
        _:r2 <${OWL}allValuesFrom> ex:E ; <${OWL}onProperty> ex:q ; a <${OWL}Restriction> .
        ex:C <${RDFS}subClassOf> _:r2, _:r1 .
        _:r1    a    <${OWL}Restriction> ;   <${OWL}someValuesFrom> ex:D ; <${OWL}onProperty> ex:p .`
      assert.strictEqual(canonicalOf(bracketed), canonicalOf(labelled))
    })

    it("tells apart graphs that differ in any one triple, including inside restrictions", () => {
      const base = `@prefix ex: <http://example.org/> . @prefix owl: <${OWL}> . @prefix rdfs: <${RDFS}> .
        ex:C a owl:Class ; rdfs:subClassOf ex:B ,
          [ a owl:Restriction ; owl:onProperty ex:p ; owl:someValuesFrom ex:D ] .
        ex:p a owl:ObjectProperty ; rdfs:domain ex:C .`
      const variants = [
        base.replace("owl:someValuesFrom", "owl:allValuesFrom"),
        base.replace("owl:someValuesFrom ex:D", "owl:someValuesFrom ex:E"),
        base.replace("rdfs:subClassOf ex:B ,", "rdfs:subClassOf"),
        base.replace("rdfs:domain ex:C", "rdfs:domain ex:B"),
        base.replace("ex:p a owl:ObjectProperty", "ex:p a owl:DatatypeProperty"),
        `${base} ex:C rdfs:label "C" .`,
        `${base} ex:C rdfs:label "C"@en .`
      ]
      const hashes = new Set([base, ...variants].map((text) => Ontology.digest(canonicalOf(text))))
      assert.strictEqual(hashes.size, variants.length + 1)
    })

    it.effect("removing any single blank-node triple (or a sample of the others) of w3c-org changes the hash", () =>
      Effect.gen(function*() {
        const org = yield* load("w3c-org.ttl")
        const quads = quadsOf(org.canonical, "N-Triples")
        let checked = 0
        quads.forEach((quad, index) => {
          const blank = quad.subject.termType === "BlankNode" || quad.object.termType === "BlankNode"
          if (!blank && index % 25 !== 0) return
          const without = quads.filter((_, i) => i !== index)
          assert.notStrictEqual(Ontology.digest(Ontology.canonicalize(without)), org.sha256, `without quad ${index}`)
          checked++
        })
        assert.isAbove(checked, 90)
      }))

    it.effect("keeps named graphs (N-Quads, TriG) in the content, blank graph names included", () =>
      Effect.gen(function*() {
        const nquads = `<http://e/a> <http://e/p> <http://e/o> <http://e/g1> .
<http://e/a> <http://e/p> <http://e/o> _:g .
_:g <http://e/q> "x" .
`
        const trig = `@prefix e: <http://e/> . e:g1 { e:a e:p e:o } _:other { e:a e:p e:o } _:other e:q "x" .`
        const fromNq = yield* Ontology.parse(nquads, { format: "nquads" })
        const fromTrig = yield* Ontology.parse(trig, { format: "trig" })
        assert.strictEqual(fromNq.sha256, fromTrig.sha256)
        assert.strictEqual(fromNq.tripleCount, 3)
        assert.include(fromNq.canonical, "<http://e/a> <http://e/p> <http://e/o> <http://e/g1> .")
        const defaultGraphOnly = yield* Ontology.parse("<http://e/a> <http://e/p> <http://e/o> .", { format: "nquads" })
        assert.notStrictEqual(defaultGraphOnly.sha256, fromNq.sha256)
      }))

    it.effect("an empty ontology is valid and has the identity of the empty text", () =>
      Effect.gen(function*() {
        const empty = yield* Ontology.parse("# nothing here\n", { format: "turtle" })
        assert.strictEqual(empty.canonical, "")
        assert.strictEqual(empty.sha256, Ontology.digest(""))
        assert.strictEqual(empty.tripleCount, 0)
        assert.isTrue(Option.isNone(Ontology.mostGeneralAgentOrThing(empty)))
        assert.isTrue(Option.isNone(Ontology.classByLabel(empty, "person")))
      }))

    it("keeps identical-looking blank nodes apart and stable under reordering", () => {
      const twice = `@prefix ex: <http://example.org/> . @prefix owl: <${OWL}> . @prefix rdfs: <${RDFS}> .
        ex:C rdfs:subClassOf [ owl:onProperty ex:p ; owl:someValuesFrom ex:D ] ,
                             [ owl:onProperty ex:p ; owl:someValuesFrom ex:D ] .`
      const canonical = canonicalOf(twice)
      const labels = new Set(canonical.match(/_:c[0-9a-f]+/g))
      assert.strictEqual(labels.size, 2)
      assert.strictEqual(canonical.split("\n").length - 1, 6)
      for (const seed of [1, 2, 3, 4]) {
        assert.strictEqual(Ontology.canonicalize(scrambled(quadsOf(twice), seed)), canonical)
      }
      const once = `@prefix ex: <http://example.org/> . @prefix owl: <${OWL}> . @prefix rdfs: <${RDFS}> .
        ex:C rdfs:subClassOf [ owl:onProperty ex:p ; owl:someValuesFrom ex:D ] .`
      assert.notStrictEqual(canonicalOf(once), canonical)
    })

    it("tells apart blank node structures that colour refinement alone cannot (a 6-cycle versus two 3-cycles)", () => {
      const p = "<http://example.org/p>"
      const cycle = (nodes: ReadonlyArray<string>) =>
        nodes.map((node, i) => `_:${node} ${p} _:${nodes[(i + 1) % nodes.length]} .`).join("\n")
      const six = cycle(["a", "b", "c", "d", "e", "f"])
      const threes = `${cycle(["a", "b", "c"])}\n${cycle(["d", "e", "f"])}`
      assert.notStrictEqual(canonicalOf(six, "N-Triples"), canonicalOf(threes, "N-Triples"))
      assert.strictEqual(canonicalOf(six, "N-Triples"), canonicalOf(cycle(["f", "a", "c", "e", "b", "d"]), "N-Triples"))
      assert.strictEqual(
        canonicalOf(threes, "N-Triples"),
        canonicalOf(`${cycle(["z", "y", "x"])}\n${cycle(["w", "v", "u"])}`, "N-Triples")
      )
    })

    const cycles = FastCheck.array(FastCheck.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 4 })
    const unionOfCycles = (lengths: ReadonlyArray<number>, seed: number) => {
      const names = shuffled(Array.from({ length: 20 }, (_, i) => `v${i}`), seed)
      const lines: Array<string> = []
      let next = 0
      for (const length of lengths) {
        const nodes = names.slice(next, next + length)
        next += length
        nodes.forEach((node, i) => lines.push(`_:${node} <http://example.org/p> _:${nodes[(i + 1) % length]} .`))
      }
      return shuffled(lines, seed + 1).join("\n")
    }

    it.prop(
      "disjoint unions of cycles (where colour refinement tells no node apart) are equal exactly when isomorphic",
      [cycles, cycles, FastCheck.boolean(), FastCheck.integer({ min: 1, max: 1000 })],
      ([a, b, copy, seed]) => {
        const second = copy ? shuffled(a, seed) : b
        const same = [...a].sort().join() === [...second].sort().join()
        const left = canonicalOf(unionOfCycles(a, seed), "N-Triples")
        const right = canonicalOf(unionOfCycles(second, seed * 7 + 3), "N-Triples")
        assert.strictEqual(left === right, same, `${a} versus ${second}`)
      },
      { fastCheck: { numRuns: 200 } }
    )

    const edge = FastCheck.record({
      s: FastCheck.integer({ min: 0, max: 4 }),
      p: FastCheck.integer({ min: 0, max: 1 }),
      o: FastCheck.integer({ min: 0, max: 5 })
    })
    const graph = FastCheck.array(edge, { minLength: 1, maxLength: 7 })
    type Edge = { readonly s: number; readonly p: number; readonly o: number }
    // Object 5 is an IRI; 0..4 are blank nodes.
    const render = (edges: ReadonlyArray<Edge>, names: ReadonlyArray<string>) =>
      edges.map(({ o, p, s }) =>
        `_:${names[s]} <http://example.org/p${p}> ${o === 5 ? "<http://example.org/x>" : `_:${names[o]}`} .`
      ).join("\n")
    const key = (edges: ReadonlyArray<Edge>, perm: ReadonlyArray<number>) =>
      [...new Set(edges.map(({ o, p, s }) => `${perm[s]} ${p} ${o === 5 ? "x" : perm[o]}`))].sort().join(",")
    const permutations = (items: ReadonlyArray<number>): Array<Array<number>> =>
      items.length <= 1 ?
        [[...items]] :
        items.flatMap((item, i) =>
          permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest])
        )
    const isomorphic = (a: ReadonlyArray<Edge>, b: ReadonlyArray<Edge>) => {
      const target = key(b, [0, 1, 2, 3, 4])
      return permutations([0, 1, 2, 3, 4]).some((perm) => key(a, perm) === target)
    }

    it.prop(
      "canonical forms are equal exactly when the blank node graphs are isomorphic",
      [graph, graph, FastCheck.boolean(), FastCheck.integer({ min: 1, max: 1000 })],
      ([a, b, copy, seed]) => {
        // Half of the cases compare a graph with a relabelled, reordered copy of itself.
        const second = copy ? shuffled(a, seed) : b
        const plain = ["n0", "n1", "n2", "n3", "n4"]
        const names = copy ? shuffled(plain, seed) : plain
        const left = canonicalOf(render(a, plain), "N-Triples")
        const right = canonicalOf(render(second, names), "N-Triples")
        assert.strictEqual(left === right, isomorphic(a, second))
      },
      { fastCheck: { numRuns: 500 } }
    )
  })

  describe("the default ontology", () => {
    it.effect("loads, with labels, and maps common words to its classes", () =>
      Effect.gen(function*() {
        const ontology = yield* DefaultOntology.load
        const again = yield* DefaultOntology.load
        assert.strictEqual(ontology.sha256, again.sha256)
        assert.include(DefaultOntology.turtle, "CC BY 1.0")
        assert.include(DefaultOntology.turtle, "CC BY-SA 3.0")
        for (const cls of ontology.classes) assert.isNotEmpty(cls.labels, cls.iri)
        for (const p of ontology.properties) {
          assert.isNotEmpty(p.labels, p.iri)
          assert.notStrictEqual(p.kind, "unknown", p.iri)
        }
        const expectations: ReadonlyArray<readonly [string, string]> = [
          ["person", `${FOAF}Person`],
          ["Company", `${FOAF}Organization`],
          ["organisation", `${FOAF}Organization`],
          ["team", `${FOAF}Group`],
          ["city", "http://schema.org/City"],
          ["country", "http://schema.org/Country"],
          ["event", "http://schema.org/Event"],
          ["place", "http://schema.org/Place"]
        ]
        for (const [label, iri] of expectations) {
          assert.strictEqual(Option.getOrThrow(Ontology.classByLabel(ontology, label)).iri, iri, label)
        }
        assert.strictEqual(Option.getOrThrow(Ontology.mostGeneralAgentOrThing(ontology)).iri, `${FOAF}Agent`)
        const worksFor = propertyOf(ontology, "http://schema.org/worksFor")
        assert.deepStrictEqual(worksFor.domain, [`${FOAF}Person`])
        assert.deepStrictEqual(worksFor.range, [`${FOAF}Organization`])
        assert.strictEqual(propertyOf(ontology, "http://schema.org/birthDate").kind, "datatype")
        assert.deepStrictEqual(propertyOf(ontology, "http://schema.org/foundingDate").range, [`${XSD}date`])
        for (
          const name of ["founder", "location", "spouse", "parent", "children", "sibling", "jobTitle", "email", "url"]
        ) {
          propertyOf(ontology, `http://schema.org/${name}`)
        }
        for (const name of ["name", "knows", "mbox", "homepage", "member"]) propertyOf(ontology, `${FOAF}${name}`)
        assert.deepStrictEqual(
          Ontology.propertiesOf(ontology, `${FOAF}Person`).map((p) => p.iri).filter((iri) => iri.includes("foaf")),
          [
            `${FOAF}currentProject`,
            `${FOAF}familyName`,
            `${FOAF}givenName`,
            `${FOAF}knows`,
            `${FOAF}made`,
            `${FOAF}mbox`
          ]
        )
      }))
  })
})
