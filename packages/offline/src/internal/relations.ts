/**
 * Relations of the offline extractor: documented surface patterns between the mentions of one sentence, plus
 * owners for e-mail addresses and homepages. Each pattern only fires where the ontology has a fitting property.
 */
import type * as Extractor from "@quarry/core/Extractor"
import {
  accountHosts,
  genericMailboxes,
  groupSuffixes,
  honorifics,
  organizationSuffixes,
  partyNames,
  rankModifiers,
  roleWords
} from "./lexicon.js"
import { type Kind, literalFor, type RelationKind, type TypeMap } from "./mapping.js"
import type { AnalysedSegment, Mention } from "./mentions.js"
import { genderOf, type Unit } from "./nlp.js"
import { fold, foldGerman, type Segment } from "./text.js"

/** A mention as a relation end: its canonical label (the full name where the batch has one) and type. */
interface Item {
  readonly start: number
  readonly end: number
  readonly kind: Kind
  readonly label: string
  readonly type: string | undefined
  readonly possessive: boolean
  readonly value: string | undefined
  readonly datatype: string | undefined
  readonly group: boolean
  /** "the Guglielmo Rostagnos": a family named in the plural, no one person (GUIDELINES.md). */
  readonly family: boolean
}

const isValue = (kind: Kind) => kind === "email" || kind === "url" || kind === "date"

const words = (label: string) => label.toLowerCase().split(/[\s-]+/u).filter((w) => w.length > 0)

/**
 * The canonical label of each mention: a bare first or last name becomes the nearest full name of the batch
 * ("Bob" → "Bob Johnson"), a short organisation name its long form ("BigTech" → "BigTech Corporation").
 */
export const canonicalLabels = (
  mentions: ReadonlyArray<Mention>,
  knownPeople: ReadonlyArray<{ readonly label: string; readonly type: string }>
): Array<{ readonly label: string; readonly type: string | undefined }> => {
  const people = mentions.filter((m) => m.kind === "person" && words(m.label).length >= 2)
  const orgs = mentions.filter((m) => m.kind === "organization")
  const nearest = (m: Mention, candidates: ReadonlyArray<Mention>) => {
    let bestBefore: Mention | undefined
    let bestAfter: Mention | undefined
    for (const c of candidates) {
      if (c.start <= m.start) bestBefore = c
      else if (bestAfter === undefined) bestAfter = c
    }
    return bestBefore ?? bestAfter
  }
  return mentions.map((m) => {
    const own = { label: m.label, type: m.type }
    const w = words(m.label)
    if (m.kind === "person" && w.length === 1) {
      const full = people.filter((p) => {
        const pw = words(p.label)
        return pw[0] === w[0] || pw[pw.length - 1] === w[0]
      })
      const chosen = nearest(m, full)
      if (chosen !== undefined) return { label: chosen.label, type: chosen.type }
      const knownFull = knownPeople.filter((k) => words(k.label).includes(w[0]!))
      if (knownFull.length === 1) return { label: knownFull[0]!.label, type: knownFull[0]!.type }
      return own
    }
    if (m.kind === "organization") {
      const longer = orgs.filter((o) => {
        if (!o.label.startsWith(`${m.label} `)) return false
        return words(o.label.slice(m.label.length)).every((x) => legalForms.has(x.replace(/[.,]$/u, "")))
      })
      const chosen = nearest(m, longer)
      if (chosen !== undefined) return { label: chosen.label, type: chosen.type }
    }
    return own
  })
}

/** Endings that name the same organisation in full ("BigTech" → "BigTech Corporation", not "Google" → "Google Research"). */
const legalForms: ReadonlySet<string> = new Set([
  "inc",
  "incorporated",
  "corp",
  "corporation",
  "co",
  "company",
  "ltd",
  "limited",
  "llc",
  "llp",
  "plc",
  "gmbh",
  "ag",
  "sa",
  "technologies",
  "holdings",
  "group"
])

const roles = [...roleWords].join("|")
/** Titles and ranks that stand between an organisation and a name ("Acme CEO", "Army Staff Sergeant"). */
const titles = [...new Set([...roleWords, ...honorifics, ...rankModifiers])].map((w) => w.replace(/\./gu, "\\.")).join(
  "|"
)
const title = "(?: (?:dr|prof|professor|mr|mrs|ms|miss)\\.?)?"
/** Professions a place can qualify ("a California journalist"); offices ("an Ohio senator") say whom one serves. */
const professions = [
  "journalist",
  "politician",
  "lawyer",
  "attorney",
  "businessman",
  "businesswoman",
  "merchant",
  "banker",
  "farmer",
  "rancher",
  "physician",
  "surgeon",
  "dentist",
  "teacher",
  "student",
  "writer",
  "author",
  "poet",
  "painter",
  "artist",
  "architect",
  "engineer",
  "scientist",
  "clergyman",
  "publisher",
  "industrialist",
  "manufacturer",
  "socialite",
  "resident",
  "native",
  "man",
  "woman",
  "boy",
  "girl"
].join("|")

interface Rule {
  readonly a: ReadonlyArray<Kind>
  readonly b: ReadonlyArray<Kind>
  readonly gap: RegExp
  /** Text after `b` that must follow. */
  readonly after?: RegExp
  /** `a` must be possessive (a name with 's, or His/Her). */
  readonly possessive?: boolean
  /** Text before `a` that must precede it. */
  readonly before?: RegExp
  readonly relation: RelationKind | "worksForOrMember"
  /** The relation points from `b` to `a`. */
  readonly swap?: boolean
  readonly chainObjects?: boolean
  readonly chainSubjects?: boolean
  /** Also emit `memberOf` (founders of a group are members). */
  readonly member?: boolean
  /** No other person may stand between `a` and `b`. */
  readonly adjacent?: boolean
  /** A bare "X from/at Y": not when Y only modifies a noun ("from AWS partnerships"). */
  readonly affiliation?: boolean
  readonly confidence: number
}

const person: ReadonlyArray<Kind> = ["person"]
const org: ReadonlyArray<Kind> = ["organization"]
const place: ReadonlyArray<Kind> = ["place"]

/** The patterns, documented in docs/extractor.md. Gaps are matched lower-cased, quotes removed, spaces collapsed. */
const rules: ReadonlyArray<Rule> = [
  // knows
  {
    a: person,
    b: person,
    gap: new RegExp(
      `^(?:knows|knew|has known|had known|have known|met|meets|has met|had met|first met|befriended|collaborated with|collaborates with|worked with|works with|worked closely with|co-?authored with|partnered with)${title}$`
    ),
    relation: "knows",
    chainObjects: true,
    chainSubjects: true,
    confidence: 0.8
  },
  {
    a: person,
    b: person,
    possessive: true,
    gap: new RegExp(
      `^(?:'s )?(?:[\\w-]+ )?(?:colleague|friend|co-?author|collaborator|mentor|supervisor|advisor|adviser|student|boss|manager|partner|co-?founder)s?,?${title}$`
    ),
    relation: "knows",
    confidence: 0.75
  },
  {
    a: person,
    b: person,
    gap: new RegExp(
      `\\b(?:his|her|their) (?:[\\w-]+ )?(?:colleague|friend|co-?author|collaborator|supervisor|mentor|advisor|adviser|co-?founder)s?,?${title}$`
    ),
    adjacent: true,
    relation: "knows",
    confidence: 0.7
  },
  {
    a: person,
    b: person,
    gap:
      /^, (?:a |an |the |his |her )?(?:[\w-]+ )?(?:colleague|friend|co-?author|collaborator|student|mentor|supervisor) of$/,
    relation: "knows",
    confidence: 0.75
  },
  {
    a: person,
    b: person,
    possessive: true,
    gap: new RegExp(`^(?:'s )?(?:work|collaboration|research|partnership|papers?) with${title}$`),
    relation: "knows",
    confidence: 0.7
  },
  {
    a: person,
    b: person,
    gap: new RegExp(
      `\\b(?:co-?authored|collaborated|worked)\\b.{0,30}\\bwith(?: (?:his|her|their) [\\w-]+,?)?${title}$`
    ),
    adjacent: true,
    relation: "knows",
    confidence: 0.7
  },
  {
    a: person,
    b: person,
    gap: new RegExp(`^and${title}$`),
    after:
      /^\s+(?:met|have met|had met|first met|are friends|were friends|became friends|are colleagues|were colleagues|know each other|knew each other|co-?authored|are co-?authors|were co-?authors|collaborated|have collaborated|worked together|work together)\b/iu,
    relation: "knows",
    chainSubjects: true,
    confidence: 0.75
  },
  // family
  {
    a: person,
    b: person,
    gap: new RegExp(`^and${title}$`),
    after: /^\s+(?:are|were|got|have been) married\b|^\s+married\b/iu,
    relation: "spouse",
    confidence: 0.8
  },
  {
    a: person,
    b: person,
    gap: new RegExp(`^and${title}$`),
    after: /^\s+(?:are|were) (?:siblings|brothers|sisters|twins)\b/iu,
    relation: "sibling",
    confidence: 0.8
  },
  {
    a: person,
    b: person,
    gap: /^(?:married|marries|has married|had married|is married to|was married to|wed|weds)$/,
    relation: "spouse",
    confidence: 0.85
  },
  {
    a: person,
    b: person,
    possessive: true,
    gap: new RegExp(`^(?:'s )?(?:wife|husband|spouse),?${title}$`),
    relation: "spouse",
    confidence: 0.8
  },
  {
    a: person,
    b: person,
    gap: new RegExp(`^, (?:his|her) (?:wife|husband|spouse),?${title}$`),
    relation: "spouse",
    confidence: 0.8
  },
  {
    a: person,
    b: person,
    gap: /^(?:, (?:the )?|(?:is|was) (?:the )?)(?:eldest |youngest |only )?(?:son|daughter|child) of$/,
    relation: "parent",
    confidence: 0.85
  },
  {
    a: person,
    b: person,
    possessive: true,
    gap: new RegExp(`^(?:'s )?(?:son|daughter|child),?${title}$`),
    relation: "parent",
    swap: true,
    confidence: 0.8
  },
  {
    a: person,
    b: person,
    possessive: true,
    gap: new RegExp(`^(?:'s )?(?:father|mother|parent),?${title}$`),
    relation: "parent",
    confidence: 0.8
  },
  {
    a: person,
    b: person,
    gap: /^(?:, (?:the )?|(?:is|was) (?:the )?)(?:father|mother|parent) of$/,
    relation: "parent",
    swap: true,
    confidence: 0.85
  },
  {
    a: person,
    b: person,
    gap: /^(?:, (?:the )?|(?:is|was) (?:the )?)(?:older |younger |twin )?(?:brother|sister|sibling) of$/,
    relation: "sibling",
    confidence: 0.85
  },
  {
    a: person,
    b: person,
    possessive: true,
    gap: new RegExp(`^(?:'s )?(?:brother|sister|sibling),?${title}$`),
    relation: "sibling",
    confidence: 0.8
  },
  // employment and membership
  {
    // "Acme CEO Jane Doe", "Army Staff Sergeant John Miller", "the Acme founder, Jane Doe"
    a: org,
    b: person,
    gap: new RegExp(`^(?:(?:${titles})\\.? ){0,3}(?:${titles})\\.?,?$`),
    relation: "worksForOrMember",
    swap: true,
    confidence: 0.7
  },
  {
    a: person,
    b: org,
    gap:
      /^(?:, )?(?:(?:who|which) )?(?:(?:has|had|have) )?(?:always |previously |also |now |currently |later |still |then )*(?:works?|worked|working|been working|is employed|was employed|employed|been employed)(?: [\w-]+){0,4}? (?:at|for|with|in)(?: the)?$/,
    adjacent: true,
    relation: "worksFor",
    chainSubjects: true,
    confidence: 0.85
  },
  {
    a: person,
    b: org,
    gap:
      /^(?:, )?(?:who )?(?:has been|had been|have been|is|was|stayed|stays|remained|remains)(?: now| currently| still| also)? at$/,
    adjacent: true,
    relation: "worksFor",
    confidence: 0.7
  },
  {
    a: person,
    b: org,
    gap: /^(?:, )?(?:who )?(?:had |has |later |then )?(?:joined|joins|rejoined)(?: the)?$/,
    adjacent: true,
    relation: "worksForOrMember",
    confidence: 0.75
  },
  {
    a: person,
    b: org,
    gap:
      /\b(?:was|been|got|is|being) (?:recruited|hired|headhunted|poached|employed) by$|^(?:, )?(?:who )?(?:left|moved|switched|went)(?: \w+)? (?:for|to)$/,
    adjacent: true,
    relation: "worksFor",
    confidence: 0.65
  },
  {
    a: person,
    b: org,
    // Not a student's "junior year at Smith college".
    gap: /\b(?<!(?:junior|senior|freshman|sophomore) )(?:years?|months?|decades?|stint|tenure|career) (?:at|with)$/,
    adjacent: true,
    relation: "worksFor",
    confidence: 0.65
  },
  {
    a: person,
    b: org,
    gap: /^(?:, )?(?:who )?(?:had |has )?(?:joined|came|moved) from$/,
    adjacent: true,
    relation: "worksFor",
    confidence: 0.65
  },
  {
    a: person,
    b: org,
    gap: new RegExp(
      `^(?:,|(?:, )?(?:who )?(?:is|was|became|becomes|has been|had been|serves as|served as|works as|worked as|remained|remains))(?: now| currently| also| still)?(?: (?:a|an|the|its|their|his|her))?(?: [\\w-]+){0,3} (?:${roles})(?: [\\w&-]+){0,3} (?:at|of|for|with|in|from)(?: the)?$`
    ),
    adjacent: true,
    // "Jane Doe, chairman of the Elm County Democratic Committee": a group's office holder is a member (GUIDELINES.md).
    relation: "worksForOrMember",
    confidence: 0.8
  },
  {
    a: person,
    b: org,
    gap:
      /^(?:leads?|led|heads?|headed|manages?|managed|runs?|ran|directs?|directed|oversees|oversaw)(?: the| a| an)?(?: [\w-]+){0,4} (?:at|of|in|for)$/,
    adjacent: true,
    relation: "worksFor",
    confidence: 0.7
  },
  { a: person, b: org, gap: /^(?:from|at)(?: the)?$/, relation: "worksFor", affiliation: true, confidence: 0.6 },
  {
    // "Steve Staub and Sandy Keplinger of Staub Manufacturing"
    a: person,
    b: org,
    gap: /^of(?: the)?$/,
    relation: "worksForOrMember",
    affiliation: true,
    chainSubjects: true,
    confidence: 0.6
  },
  {
    // "Sam Doe, Elm County Highway Department public relations director", "Tom Roe, the former Gazette man"
    a: person,
    b: org,
    gap: /^,(?: (?:the|a|an))?(?: former| then| longtime)?(?: state| national| county| city| local)?$/,
    after: new RegExp(`^\\s+(?:[\\w-]+\\s+){0,3}?(?:${roles}|man|woman)\\b`, "iu"),
    adjacent: true,
    relation: "worksForOrMember",
    confidence: 0.7
  },
  { a: org, b: person, gap: /^'s$/, relation: "worksFor", swap: true, confidence: 0.6 },
  {
    a: org,
    b: person,
    before: /(?:^|[.!?]\s+|\n)\s*at\s+$/iu,
    gap: /^,$/,
    relation: "worksFor",
    swap: true,
    chainObjects: true,
    confidence: 0.6
  },
  {
    a: person,
    b: org,
    gap:
      /^(?:(?:is|was|became|becomes|has been|had been) )?(?:also )?(?:a |an )?(?:founding |active |full |board |senior )?members? of(?: the)?$/,
    adjacent: true,
    relation: "memberOf",
    chainSubjects: true,
    confidence: 0.8
  },
  {
    // "X, a longtime member of Y", "X, who was a regular member of Y", "X is a born member of Y"
    a: person,
    b: org,
    gap:
      /^(?:, (?:a|an|the) |(?:, )?(?:who )?(?:is|was|became|becomes|has been|had been|remained)(?: also| now| still)? (?:a |an |the )?)(?:[\w-]+ ){0,2}members? of(?: the)?$/,
    adjacent: true,
    relation: "memberOf",
    confidence: 0.75
  },
  // founding
  {
    a: person,
    b: org,
    gap:
      /^(?:, )?(?:who )?(?:(?:had|has|would|later|then|also|went on to|helped(?: to)?) )*(?:co-?founded|founded|co-?found|found|established|launched|set up|started|formed|incorporated)(?: (?:the|a|an))?(?: [\w-]+){0,3}?(?: (?:called|named))?$/,
    adjacent: true,
    relation: "founded",
    chainSubjects: true,
    member: true,
    confidence: 0.8
  },
  {
    a: person,
    b: org,
    gap: /^, (?:the |a |an |its )?(?:co-?founder|founder)(?: and [\w-]+)? of$/,
    relation: "founded",
    confidence: 0.85
  },
  {
    a: org,
    b: person,
    gap: new RegExp(
      `^(?:, )?(?:(?:was|is|were|had been) )?(?:co-?founded|founded|established|started|set up|formed) by${title}$`
    ),
    relation: "founded",
    swap: true,
    chainObjects: true,
    confidence: 0.85
  },
  // location
  {
    a: org,
    b: place,
    gap:
      /^(?:(?:, )?(?:(?:is|was|are|were) )?|, (?:a|an|the) (?:[\w-]+ ){0,3})(?:based|headquartered|located|situated) in$/,
    relation: "location",
    chainObjects: true,
    confidence: 0.85
  },
  {
    a: org,
    b: place,
    gap: /\b(?:offices?|headquarters|locations?|branch(?:es)?|campus(?:es)?|hq) in(?: [\w ]{0,30}:)?$/,
    relation: "location",
    chainObjects: true,
    confidence: 0.7
  },
  {
    a: person,
    b: place,
    gap: /^(?:, )?(?:who )?(?:lives|lived|living|resides|resided|is based|was based|based) in$/,
    relation: "location",
    confidence: 0.75
  },
  {
    // "Jane Doe of Ohio", "Jane Doe, a teacher from Ohio" (not a bare "from": "knows Tom from Silicon Valley")
    a: person,
    b: place,
    gap: /^(?:of|, (?:a|an|the) (?:[\w-]+ ){0,4}(?:from|of|in))$/,
    adjacent: true,
    relation: "location",
    confidence: 0.65
  },
  {
    // "Ohio's John Doe" (GUIDELINES.md: where the person is from)
    a: place,
    b: person,
    possessive: true,
    gap: new RegExp(`^'s${title}$`),
    relation: "location",
    swap: true,
    confidence: 0.65
  },
  {
    // "John Doe, a prominent Ohio lawyer": a place as the adjective of a profession (not of an office)
    a: person,
    b: place,
    gap: /^, (?:a|an|the)(?: [\w-]+){0,2}$/,
    after: new RegExp(`^\\s+(?:[\\w-]+\\s+)?(?:${professions})\\b`, "iu"),
    adjacent: true,
    relation: "location",
    confidence: 0.65
  },
  {
    // "Acme, a small business in Ohio", "Acme of Ohio"
    a: org,
    b: place,
    gap:
      /^, (?:a|an|the) (?:[\w-]+,? ){0,4}(?:business|company|firm|maker|manufacturer|plant|factory|store|shop|bank|school|university|college|hospital|church|group|organi[sz]ation|charity) (?:in|of|from)$/,
    relation: "location",
    confidence: 0.7
  },
  // family through a possessive: "(He ... with) his wife Mary", "her son John"
  {
    a: person,
    b: person,
    gap: new RegExp(`\\b(?:his|her) (?:wife|husband|spouse),?${title}$`),
    adjacent: true,
    relation: "spouse",
    confidence: 0.7
  },
  {
    a: person,
    b: person,
    gap: new RegExp(
      `\\b(?:his|her|their) (?:new |eldest |youngest |only |baby )?(?:son|daughter|child)(?: named)?,?${title}$`
    ),
    adjacent: true,
    relation: "parent",
    swap: true,
    confidence: 0.65
  },
  {
    // "Jane Doe ... her father, John Doe": the child comes first
    a: person,
    b: person,
    gap: new RegExp(`\\b(?:his|her) (?:late )?(?:father|mother),?${title}$`),
    adjacent: true,
    relation: "parent",
    confidence: 0.65
  },
  {
    a: person,
    b: person,
    gap: new RegExp(`\\b(?:his|her) (?:older |younger |twin |elder )?(?:brother|sister),?${title}$`),
    adjacent: true,
    relation: "sibling",
    confidence: 0.65
  }
]

const foundingDateGap =
  /^(?:, )?(?:(?:was|is|were) )?(?:co-?founded|founded|established|formed|started|created|launched|incorporated)(?: by .{0,80}?)?(?: in \w+)? in$/

const conjunction = new RegExp(`^(?:\\([^)]{0,40}\\) ?)?(?:,|, and|, or|and|or)${title}$`)

const normalise = (gap: string) =>
  gap.toLowerCase().replace(/[“”"]/gu, "").replace(/[’‘]/gu, "'").replace(/\s+/gu, " ").trim().replace(/^\)\s*/u, "")

const genericOrganizationWords: ReadonlySet<string> = new Set([
  "company",
  "firm",
  "organization",
  "organisation",
  "corporation",
  "startup",
  "business"
])

const definiteOrganizationWords: ReadonlySet<string> = new Set([
  ...genericOrganizationWords,
  "consortium",
  "university",
  "institute",
  "group",
  "lab",
  "laboratory",
  "team",
  "foundation",
  "society",
  "association",
  "agency",
  "bank",
  "college",
  "school"
])

const pronouns: Readonly<Record<string, { readonly gender: "female" | "male"; readonly possessive: boolean }>> = {
  he: { gender: "male", possessive: false },
  she: { gender: "female", possessive: false },
  his: { gender: "male", possessive: true },
  her: { gender: "female", possessive: true }
}

type Target =
  | { readonly _tag: "Item"; readonly item: Item }
  | { readonly _tag: "Literal"; readonly literal: Extractor.Literal; readonly start: number; readonly end: number }
  | {
    readonly _tag: "Value"
    readonly relation: "mbox" | "homepage" | "weblog"
    readonly value: string
    readonly start: number
    readonly end: number
  }

/** Emits a relation: `types` picks the ontology's property; invalid, self and repeated relations are dropped. */
type Emit = (relation: RelationKind, s: Item, target: Target, confidence: number) => void

/** The relations `emit` accepted, in order. */
const makeEmitter = (types: TypeMap): { readonly out: Array<Extractor.RelationMention>; readonly emit: Emit } => {
  const out: Array<Extractor.RelationMention> = []
  const seen = new Set<string>()
  const emit: Emit = (relation, s, target, confidence) => {
    if (s.type === undefined) return
    if (target._tag === "Item" && target.item.type === undefined) return
    const objectType = target._tag === "Item" ? target.item.type : undefined
    const chosen = types.property(relation, s.type, objectType)
    if (chosen === undefined) return
    const subject: Extractor.EntityRef = { _tag: "Entity", label: s.label, type: s.type }
    let object: Extractor.EntityRef | Extractor.Literal
    switch (target._tag) {
      case "Item":
        object = { _tag: "Entity", label: target.item.label, type: objectType ?? "" }
        break
      case "Literal":
        object = target.literal
        break
      case "Value": {
        const literal = literalFor(target.relation, chosen.iri, target.value)
        object = literal.datatype === undefined ?
          { _tag: "Literal", value: literal.value } :
          { _tag: "Literal", value: literal.value, datatype: literal.datatype }
      }
    }
    if (object._tag === "Literal" && chosen.inverse) return
    if (object._tag === "Entity" && object.label === subject.label && object.type === subject.type) return
    const [from, to] = chosen.inverse && object._tag === "Entity" ? [object, subject] : [subject, object]
    if (from._tag !== "Entity") return
    const key = JSON.stringify([from, chosen.iri, to])
    if (seen.has(key)) return
    seen.add(key)
    const targetStart = target._tag === "Item" ? target.item.start : target.start
    const targetEnd = target._tag === "Item" ? target.item.end : target.end
    out.push({
      subject: from,
      predicate: chosen.iri,
      object: to,
      span: { start: Math.min(s.start, targetStart), end: Math.max(s.end, targetEnd) },
      confidence
    })
  }
  return { out, emit }
}

/** The batch's text between two document offsets (within one segment). */
const textReader = (analysed: ReadonlyArray<AnalysedSegment>) => {
  const segmentAt = (offset: number): Segment | undefined =>
    analysed.find((a) => offset >= a.segment.start && offset <= a.segment.start + a.segment.text.length)?.segment
  return (start: number, end: number) => {
    const seg = segmentAt(start)
    return seg === undefined ? "" : seg.text.slice(start - seg.start, Math.max(start, end) - seg.start)
  }
}

/** The mentions as relation candidates, under their canonical labels and types. */
const itemsOf = (
  mentions: ReadonlyArray<Mention>,
  canonical: ReadonlyArray<{ readonly label: string; readonly type: string | undefined }>,
  textOf: (start: number, end: number) => string
) =>
  mentions.map((m, i): Item => {
    const c = canonical[i]!
    const next = textOf(m.end, m.end + 3)
    return {
      start: m.start,
      end: m.end,
      kind: m.kind,
      label: c.label,
      type: c.type,
      possessive: /^['’]s?(?!\p{L})/u.test(next),
      value: m.value,
      datatype: m.datatype,
      group: m.kind === "organization" &&
        (groupSuffixes.has(words(c.label).at(-1) ?? "") || partyNames.has(words(c.label).at(-1) ?? "") ||
          (c.type !== undefined && /Group$/u.test(c.type))),
      family: m.kind === "person" && /\bthe\s+$/iu.test(textOf(Math.max(0, m.start - 4), m.start)) &&
        /\p{Ll}s$/u.test(m.label)
    }
  })

/** The last item before `offset` (within 1500 characters) that `fits`. */
const lastBefore = (items: ReadonlyArray<Item>, offset: number, fits: (it: Item) => boolean) => {
  let found: Item | undefined
  for (const it of items) {
    if (it.start >= offset) break
    if (offset - it.end > 1500) continue
    if (fits(it)) found = it
  }
  return found
}

/**
 * The item a sentence's opening words stand for: He/She/His/Her for the last fitting person before it, "The
 * company"/"The consortium" for the last organisation of that kind.
 */
const antecedent = (a: AnalysedSegment, unit: Unit, items: ReadonlyArray<Item>): Item | undefined => {
  const first = unit.tokens[0]
  if (first === undefined) return undefined
  const start = a.segment.start + first.start
  const pronoun = pronouns[first.lower]
  const second = unit.tokens[1]
  if (pronoun !== undefined) {
    const person = lastBefore(items, start, (it) => {
      if (it.kind !== "person") return false
      const g = genderOf(words(it.label)[0] ?? "")
      return g === undefined || g === pronoun.gender
    })
    return person === undefined ?
      undefined :
      { ...person, start, end: a.segment.start + first.end, possessive: pronoun.possessive }
  }
  if (first.lower === "the" && second !== undefined && definiteOrganizationWords.has(second.lower)) {
    const organization = lastBefore(
      items,
      start,
      (it) =>
        it.kind === "organization" &&
        (genericOrganizationWords.has(second.lower) || words(it.label).at(-1) === second.lower)
    )
    return organization === undefined ?
      undefined :
      { ...organization, start, end: a.segment.start + second.end, possessive: second.possessive }
  }
  return undefined
}

/** The items of each sentence (by batch-wide unit index), a sentence's antecedent first. */
const itemsBySentence = (
  analysed: ReadonlyArray<AnalysedSegment>,
  mentions: ReadonlyArray<Mention>,
  items: ReadonlyArray<Item>
): Map<number, Array<Item>> => {
  const lists = new Map<number, Array<Item>>()
  mentions.forEach((m, i) => {
    const list = lists.get(m.unit)
    if (list === undefined) lists.set(m.unit, [items[i]!])
    else list.push(items[i]!)
  })
  for (const a of analysed) {
    a.units.forEach((unit, u) => {
      const virtual = antecedent(a, unit, items)
      if (virtual === undefined) return
      const list = lists.get(a.unitBase + u)
      if (list === undefined) lists.set(a.unitBase + u, [virtual])
      else list.unshift(virtual)
    })
  }
  return lists
}

/** "from AWS partnerships": true when the name only modifies the (common) noun after it. */
const nounModifier = (analysed: ReadonlyArray<AnalysedSegment>, textOf: (start: number, end: number) => string) => {
  const tokens = analysed.flatMap((a) =>
    a.units.flatMap((unit) =>
      unit.tokens.map((t) => ({ start: a.segment.start + t.start, text: t.text, tags: t.tags }))
    )
  )
  const tokenAfter = (offset: number) => {
    let lo = 0
    let hi = tokens.length
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (tokens[mid]!.start < offset) lo = mid + 1
      else hi = mid
    }
    return tokens[lo]
  }
  return (it: Item) => {
    const next = tokenAfter(it.end)
    return next !== undefined && /^\s*$/u.test(textOf(it.end, next.start)) && /^\p{Ll}/u.test(next.text) &&
      next.tags.has("Noun") && !next.tags.has("Verb")
  }
}

/** One sentence's items and what the rules need to read around them. */
interface Sentence {
  readonly list: ReadonlyArray<Item>
  readonly textOf: (start: number, end: number) => string
  readonly modifiesNoun: (it: Item) => boolean
  readonly emit: Emit
}

/** The normalised text between items `i` and `j` of the sentence. */
const gapOf = (s: Sentence, i: number, j: number) => normalise(s.textOf(s.list[i]!.end, s.list[j]!.start))

/** The items joined to item `from` by "and"/commas, going forward or backward ("Ann and Bob founded ..."). */
const chain = (s: Sentence, from: number, step: 1 | -1): Array<Item> => {
  const found: Array<Item> = []
  const kind = s.list[from]!.kind
  let previous = from
  for (let k = from + step; k >= 0 && k < s.list.length; k += step) {
    const g = step === 1 ? gapOf(s, previous, k) : gapOf(s, k, previous)
    const candidate = s.list[k]!
    if (candidate.kind === kind && conjunction.test(g)) {
      found.push(candidate)
      previous = k
    } else if (
      step === 1 && kind === "person" && (candidate.kind === "organization" || candidate.kind === "place") &&
      /^(?:from|at|of)$/u.test(g)
    ) {
      previous = k
    } else {
      break
    }
  }
  return found
}

/** Whether `rule` holds between items `i` and `j` (whose gap is `g`). */
const ruleHolds = (s: Sentence, rule: Rule, i: number, j: number, g: string): boolean => {
  const x = s.list[i]!
  const y = s.list[j]!
  if (!rule.a.includes(x.kind) || !rule.b.includes(y.kind) || !rule.gap.test(g)) return false
  if (x.family || y.family) return false
  // "Ann Roe and Lee Wells ... her brother": a pronoun after two people is not the second one's.
  if (/\b(?:his|her)\b/u.test(g) && s.list[i - 1]?.kind === "person" && /^(?:and|&)$/u.test(gapOf(s, i - 1, i))) {
    return false
  }
  if (rule.possessive === true && !x.possessive) return false
  if (rule.adjacent === true && s.list.slice(i + 1, j).some((z) => z.kind === "person")) return false
  if (rule.affiliation === true && s.modifiesNoun(y)) return false
  // "Google's Sarah": the organisation qualifies the person after it, not the subject before it.
  if (
    x.kind === "person" && y.kind === "organization" && y.possessive && s.list[j + 1]?.kind === "person" &&
    gapOf(s, j, j + 1) === "'s"
  ) return false
  if (rule.after !== undefined && !rule.after.test(s.textOf(y.end, y.end + 60))) return false
  return rule.before === undefined || rule.before.test(s.textOf(Math.max(0, x.start - 40), x.start))
}

/** Emits what `rule` says about items `i` and `j` (and the items chained to them). */
const applyRule = (s: Sentence, rule: Rule, i: number, j: number, g: string) => {
  const x = s.list[i]!
  const y = s.list[j]!
  const subjects = [x, ...(rule.chainSubjects === true ? chain(s, i, -1) : [])]
  const objects = [y, ...(rule.chainObjects === true ? chain(s, j, 1) : [])]
  const relation: RelationKind = rule.relation === "worksForOrMember" ?
    ((rule.swap === true ? x : y).group ? "memberOf" : "worksFor") :
    rule.relation
  for (const subject of subjects) {
    for (const object of objects) {
      if (rule.swap === true) s.emit(relation, object, { _tag: "Item", item: subject }, rule.confidence)
      else s.emit(relation, subject, { _tag: "Item", item: object }, rule.confidence)
      if (rule.member === true && /\bformed\b/u.test(g)) {
        s.emit("memberOf", subject, { _tag: "Item", item: object }, rule.confidence)
      }
    }
  }
  if (relation === "founded") {
    const orgIndex = rule.swap === true ? i : j
    const next = s.list[orgIndex + 1]
    if (
      next !== undefined && next.kind === "date" && next.value !== undefined &&
      gapOf(s, orgIndex, orgIndex + 1) === "in"
    ) {
      s.emit("foundingDate", s.list[orgIndex]!, dateTarget(next), 0.75)
    }
  }
}

/** The relations between the items of one sentence, pair by pair, by the first rule that holds. */
const sentenceRelations = (s: Sentence) => {
  const list = s.list
  for (let i = 0; i < list.length; i++) {
    const x = list[i]!
    if (isValue(x.kind)) continue
    for (let j = i + 1; j < list.length && j <= i + 8; j++) {
      const y = list[j]!
      if (y.kind === "email" || y.kind === "url") continue
      const g = gapOf(s, i, j)
      if (g.length > 120) break
      if (y.kind === "date") {
        if (x.kind === "organization" && y.value !== undefined && foundingDateGap.test(g)) {
          s.emit("foundingDate", x, dateTarget(y), 0.75)
        }
        continue
      }
      const rule = rules.find((rule) => ruleHolds(s, rule, i, j, g))
      if (rule !== undefined) applyRule(s, rule, i, j, g)
    }
  }
}

/** Finds the relations of a batch. */
export const findRelations = (
  analysed: ReadonlyArray<AnalysedSegment>,
  mentions: ReadonlyArray<Mention>,
  canonical: ReadonlyArray<{ readonly label: string; readonly type: string | undefined }>,
  types: TypeMap
): Array<Extractor.RelationMention> => {
  const textOf = textReader(analysed)
  const items = itemsOf(mentions, canonical, textOf)
  const { emit, out } = makeEmitter(types)
  const lists = itemsBySentence(analysed, mentions, items)
  const modifiesNoun = nounModifier(analysed, textOf)
  for (const unit of [...lists.keys()].sort((x, y) => x - y)) {
    sentenceRelations({ list: lists.get(unit)!, textOf, modifiesNoun, emit })
  }
  valueOwners(analysed, mentions, items, textOf, emit)
  titledMembers(mentions, items, emit)
  return out
}

const congress = /^(?:the )?(?:united states |u\.s\. )?congress$/iu

/** "Congressman Steve Scalise" is a member of Congress, when the batch names Congress (GUIDELINES.md). */
const titledMembers = (mentions: ReadonlyArray<Mention>, items: ReadonlyArray<Item>, emit: Emit) => {
  const congresses = items.filter((it) => it.kind === "organization" && congress.test(it.label))
  if (congresses.length === 0) return
  mentions.forEach((m, i) => {
    if (m.kind !== "person" || m.title === undefined || !/\bcongress(?:wo)?man\b/iu.test(m.title)) return
    const nearest = congresses.reduce((a, b) => (Math.abs(b.start - m.start) < Math.abs(a.start - m.start) ? b : a))
    emit("memberOf", items[i]!, { _tag: "Item", item: nearest }, 0.6)
  })
}

const dateTarget = (date: Item): Target => ({
  _tag: "Literal",
  literal: date.datatype === undefined ?
    { _tag: "Literal", value: date.value ?? date.label } :
    { _tag: "Literal", value: date.value ?? date.label, datatype: date.datatype },
  start: date.start,
  end: date.end
})

const nameParts = (label: string): Array<string> => {
  const parts = label.split(/[\s\-.,&'’()]+/u).filter((w) => w.length > 0)
  return [...new Set(parts.flatMap((p) => [fold(p), foldGerman(p)]))]
}

const stripSuffixes = (label: string) => {
  const w = label.split(/\s+/u)
  while (w.length > 1 && organizationSuffixes.has(w[w.length - 1]!.toLowerCase().replace(/[.,]$/u, ""))) w.pop()
  return w.join(" ")
}

/** How strongly a name shows in an address or URL ("bob.johnson", "bjohnson", "lisapark", "田中"). */
const nameScore = (label: string, target: string, kind: Kind): number => {
  const parts = nameParts(kind === "organization" ? stripSuffixes(label) : label)
  let score = 0
  for (const p of parts) {
    if (/^\p{Lo}/u.test(p)) {
      for (let i = 0; i + 2 <= p.length; i++) {
        if (target.includes(p.slice(i, i + 2))) {
          score += 2
          break
        }
      }
    } else if (p.length >= 3 && target.includes(p)) {
      score += 2
    }
  }
  if (kind === "person") {
    const ws = label.split(/\s+/u)
    if (ws.length >= 2) {
      const initial = fold(ws[0]!).slice(0, 1)
      for (const lastName of [fold(ws[ws.length - 1]!), foldGerman(ws[ws.length - 1]!)]) {
        const compact = lastName.replace(/[^\p{L}\p{N}]/gu, "")
        if (
          initial.length > 0 && (target.includes(`${initial}${lastName}`) || target.includes(`${initial}${compact}`))
        ) {
          score += 2
        }
      }
    }
  }
  return score
}

const homepageCue =
  /\b(?:home ?page|web ?site|site|page|profile|publications|notes|research is at|work is at)\b[^\n]{0,60}$/iu
const organizationHomepageCue = /\b(?:home ?page|web ?site|(?:corporate|main|official|company) site)\b[^\n]{0,60}$/iu
const blogCue = /\b(?:blog|weblog)\b[^\n]{0,40}$/iu
const mailCue = /\b(?:e-?mail|contact|reach|reached|mailbox|address)\b/iu

const hostOf = (url: string) => {
  const m = /^(?:[a-z]+:\/\/)?([^/?#]+)/iu.exec(url)
  return (m?.[1] ?? "").toLowerCase().replace(/^www\./u, "")
}

/** Who could own an e-mail address or a URL of the batch: the agents, and the people near a mention. */
interface Owners {
  readonly mentions: ReadonlyArray<Mention>
  readonly items: ReadonlyArray<Item>
  readonly agents: ReadonlyArray<Item>
  readonly textOf: (start: number, end: number) => string
  readonly emit: Emit
  /** The document offset of the start of the line holding `offset`. */
  readonly lineStart: (offset: number) => number
  /** The paragraph (within its segment) of a document offset. */
  readonly paragraphOf: (offset: number) => number
}

/** Ranks candidates: a higher score, then the nearer one (one before the value counts as half as far). */
const nearestBest = (value: Item, candidates: ReadonlyArray<readonly [Item, number]>): Item | undefined => {
  let best: Item | undefined
  let bestScore = 0
  let bestDistance = Number.POSITIVE_INFINITY
  for (const [agent, score] of candidates) {
    const distance = agent.start <= value.start ? value.start - agent.start : 2 * (agent.start - value.start) + 1
    if (score > bestScore || (score === bestScore && distance < bestDistance)) {
      best = agent
      bestScore = score
      bestDistance = distance
    }
  }
  return best
}

/** The agent whose name best matches `target` (an address's local part). */
const owner = (o: Owners, value: Item, target: string, allowOrgs: boolean) =>
  nearestBest(
    value,
    o.agents.flatMap((agent): Array<readonly [Item, number]> => {
      if (agent.kind === "organization" && !allowOrgs) return []
      const score = nameScore(agent.label, target, agent.kind) + (agent.kind === "person" ? 0.5 : 0)
      return score < 2 ? [] : [[agent, score]]
    })
  )

/** The last person before mention `index` in the same sentence. */
const sameUnitPerson = (o: Owners, index: number) => {
  const m = o.mentions[index]!
  for (let k = index - 1; k >= 0 && o.mentions[k]!.unit === m.unit; k--) {
    if (o.items[k]!.kind === "person") return o.items[k]
  }
  return undefined
}

/** The last person before mention `index` in the same paragraph. */
const paragraphPerson = (o: Owners, index: number) => {
  const paragraph = o.paragraphOf(o.mentions[index]!.start)
  for (let k = index - 1; k >= 0; k--) {
    if (o.paragraphOf(o.mentions[k]!.start) !== paragraph) break
    if (o.items[k]!.kind === "person") return o.items[k]
  }
  return undefined
}

/** An e-mail address's owner: named by its local part, else (not a generic mailbox) the person it follows. */
const mailboxOwner = (o: Owners, m: Mention, index: number) => {
  const value = o.items[index]!
  const local = m.label.slice(0, m.label.indexOf("@"))
  const named = owner(o, value, fold(local), false)
  const generic = local.toLowerCase().split(/[._+-]+/u).some((p) =>
    genericMailboxes.has(p) || p === "firstname" || p === "lastname" || p === "name" || p === "user"
  )
  const line = o.textOf(o.lineStart(m.start), m.start)
  const fallback = named ?? (generic ? undefined : sameUnitPerson(o, index) ??
    (mailCue.test(line) ? paragraphPerson(o, index) : undefined))
  if (fallback !== undefined) {
    o.emit(
      "mbox",
      fallback,
      { _tag: "Value", relation: "mbox", value: m.label, start: m.start, end: m.end },
      named !== undefined ? 0.9 : 0.6
    )
  }
}

/** A URL's owner as homepage or weblog: an agent named in it, or with a cue word the person it follows. */
const homepageOwner = (o: Owners, m: Mention, index: number) => {
  const value = o.items[index]!
  const host = hostOf(m.label)
  const left = o.textOf(Math.max(o.lineStart(m.start), m.start - 100), m.start)
  const blog = blogCue.test(left)
  const cue = blog || homepageCue.test(left)
  const account = accountHosts.includes(host)
  if (account && !/home ?page/iu.test(left)) return
  const decoded = fold(decodeURIComponentSafe(m.label).replace(/^[a-z]+:\/\//iu, ""))
  const cut = decoded.search(/[/?#]/u)
  const hostPart = cut < 0 ? decoded : decoded.slice(0, cut)
  const pathPart = cut < 0 ? "" : decoded.slice(cut)
  // A person's name in the path, or all over the host ("alicechen.io"), makes a homepage without a cue word;
  // an organisation's name in the host only with one ("corporate site", "website").
  const organizationCue = organizationHomepageCue.test(left)
  const named = nearestBest(
    value,
    o.agents.flatMap((agent): Array<readonly [Item, number]> => {
      const inHost = nameScore(agent.label, hostPart, agent.kind)
      const inPath = nameScore(agent.label, pathPart, agent.kind)
      const eligible = agent.kind === "person" ?
        inPath >= 2 || inHost >= 4 || (cue && inHost >= 2) :
        organizationCue && inHost >= 2
      return eligible ? [[agent, inHost + inPath + (agent.kind === "person" && inPath > 0 ? 1 : 0)]] : []
    })
  )
  const chosen = named ?? (cue ? sameUnitPerson(o, index) : undefined)
  if (chosen !== undefined) {
    const relation = blog ? "weblog" : "homepage"
    o.emit(relation, chosen, { _tag: "Value", relation, value: m.label, start: m.start, end: m.end }, 0.7)
  }
}

/** E-mail addresses and homepages: the owner whose name the value spells, else the person of the same sentence. */
const valueOwners = (
  analysed: ReadonlyArray<AnalysedSegment>,
  mentions: ReadonlyArray<Mention>,
  items: ReadonlyArray<Item>,
  textOf: (start: number, end: number) => string,
  emit: Emit
) => {
  const segmentOf = (offset: number) =>
    analysed.find((s) => offset >= s.segment.start && offset <= s.segment.start + s.segment.text.length)
  const o: Owners = {
    mentions,
    items,
    agents: items.filter((it) => it.kind === "person" || it.kind === "organization"),
    textOf,
    emit,
    paragraphOf: (offset) => segmentOf(offset)?.paragraphOf(offset) ?? -1,
    lineStart: (offset) => {
      const a = segmentOf(offset)
      if (a === undefined) return offset
      const local = offset - a.segment.start
      return a.segment.start + a.segment.text.lastIndexOf("\n", local - 1) + 1
    }
  }
  mentions.forEach((m, index) => {
    if (m.kind === "email") mailboxOwner(o, m, index)
    else if (m.kind === "url") homepageOwner(o, m, index)
  })
}

const decodeURIComponentSafe = (url: string) => {
  try {
    return decodeURIComponent(url)
  } catch {
    return url
  }
}
