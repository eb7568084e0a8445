/**
 * Mentions of the offline extractor: name candidates from compromise tokens, typed by votes (titles, organisation
 * heads, gazetteer, compromise's lexicon and tags, context cues, ontology class words), values (e-mail addresses,
 * URLs, dates) from patterns, and one type per label across the batch.
 */
import { findDates } from "./dates.js"
import * as Gazetteer from "./gazetteer.js"
import {
  commonAcronyms,
  eventPrefixes,
  eventSuffixes,
  honorifics,
  knownOrganizations,
  knownPlaces,
  lowerCaseHeads,
  nameParticles,
  notNames,
  notNamesAlone,
  ofJoiningHeads,
  organizationPrefixes,
  organizationSuffixes,
  partyNames,
  placePrefixes,
  placeSuffixes,
  prefixJobTitles,
  projectSuffixes,
  rankModifiers,
  roleWords,
  speechVerbs,
  surnamePlaceSuffixes
} from "./lexicon.js"
import type { Kind, TypeMap } from "./mapping.js"
import { analyse, isFirstName, isGivenName, lexiconTags, type Token, type Unit } from "./nlp.js"
import type { Steps } from "./steps.js"
import { findEmails, findUrls, labelKey, layoutOf, mask, type Segment } from "./text.js"

/** Kinds a name can have (values have fixed kinds). */
type NameKind = "person" | "organization" | "place" | "event" | "project" | "work"

const nameKinds: ReadonlyArray<NameKind> = ["person", "organization", "place", "event", "project", "work"]

type Votes = Record<NameKind, number>

const noVotes = (): Votes => ({ person: 0, organization: 0, place: 0, event: 0, project: 0, work: 0 })

/** One occurrence of a name or value in a segment, before the batch decides its type. */
export interface Occurrence {
  /** Document offsets. */
  readonly start: number
  readonly end: number
  readonly label: string
  readonly key: string
  readonly words: ReadonlyArray<string>
  readonly votes: Votes
  readonly classVotes: Map<string, number>
  /** Values (e-mail, URL, date) have a fixed kind. */
  readonly fixed: Kind | undefined
  readonly title: string | undefined
  /** Index of the occurrence this one renames in parentheses ("田中優子 (Yuko Tanaka)"). */
  aliasOf: number | undefined
  /** Batch-wide id of the list of names this one stands in ("Hamas, Hizballah, and Islamic Jihad"). */
  list: number | undefined
  /** Index of the name right before this one with " of " between them ("Tom Doe of Kenilworth"). */
  ofName: number | undefined
  readonly unit: number
  readonly value: string | undefined
  readonly datatype: string | undefined
}

/** A segment after analysis: its text, units and occurrences (occurrence indexes are batch-wide). */
export interface AnalysedSegment {
  readonly segment: Segment
  readonly units: ReadonlyArray<Unit>
  /** Batch-wide index of the segment's first unit. */
  readonly unitBase: number
  readonly occurrences: ReadonlyArray<number>
  readonly paragraphOf: (documentOffset: number) => number
  readonly lineOf: (documentOffset: number) => number
}

const strip = (word: string) => word.replace(/\.$/u, "").toLowerCase()

const nonNameTags = [
  "Pronoun",
  "Determiner",
  "Preposition",
  "Conjunction",
  "QuestionWord",
  "Copula",
  "Modal",
  "Auxiliary",
  "Negative"
]

const camelCase = /^(?!Mc|Mac|O')\p{Lu}?\p{Ll}+\p{Lu}|^\p{Lu}{2,}\p{Ll}+\p{Lu}|\p{Ll}\p{Lu}$/u
const acronym = /^\p{Lu}[\p{Lu}\p{N}&]{1,5}$/u

const lexiconKind = (phrase: string): NameKind | undefined => {
  const tags = lexiconTags(phrase)
  if (tags.includes("Organization") || tags.includes("SportsTeam")) return "organization"
  if (tags.some((t) => t === "City" || t === "Country" || t === "Region" || t === "Place")) return "place"
  return undefined
}

const isNameToken = (t: Token, capitalisedElsewhere: ReadonlySet<string>): boolean => {
  if (t.tags.has("Email") || t.tags.has("Url") || notNames.has(t.lower)) return false
  if (nonNameTags.some((tag) => t.tags.has(tag)) && !t.tags.has("ProperNoun")) return false
  const capital = /^\p{Lu}/u.test(t.text) || /^\p{Lo}/u.test(t.text) || camelCase.test(t.text)
  if (!capital) return false
  if (!t.initial) return true
  // A capital at the start of a sentence or line proves nothing; ask for evidence that it is a name.
  return t.tags.has("ProperNoun") || t.tags.has("Person") || t.tags.has("Place") || t.tags.has("Organization") ||
    camelCase.test(t.text) || /^\p{Lo}/u.test(t.text) || isFirstName(t.lower) || lexiconKind(t.lower) !== undefined ||
    knownOrganizations.has(t.lower) || acronym.test(t.text) || capitalisedElsewhere.has(t.lower)
}

/** Words that, after a possessive, complete a place name ("Martha's Vineyard"). */
const possessivePlaceWords: ReadonlySet<string> = new Set([
  "vineyard",
  "straits",
  "strait",
  "island",
  "islands",
  "bay",
  "sound",
  "point",
  "head",
  "cape",
  "wood",
  "inn",
  "church",
  "cathedral",
  "abbey",
  "hall",
  "park",
  "square",
  "land",
  "hill",
  "lake",
  "river",
  "harbor",
  "harbour",
  "cove",
  "landing",
  "creek",
  "field",
  "fields",
  "college",
  "hospital"
])

const corporateAfterComma = new Set(["llc", "inc", "ltd", "corp", "plc", "gmbh", "ag", "sa", "llp", "lp", "co"])

const joinable = (previous: Token, next: Token): boolean => {
  const gap = previous.after
  if (previous.possessive) return false
  if (/^[ \t]+$/u.test(gap) || gap === "-" || gap === "‐" || gap === "–") return true
  if (/^\.[ \t]+$/u.test(gap)) {
    return /^\p{Lu}$/u.test(previous.text) || honorifics.has(previous.lower) ||
      ["st", "mt", "ft"].includes(previous.lower)
  }
  if (/^,[ \t]+$/u.test(gap)) return corporateAfterComma.has(strip(next.text))
  return false
}

/** Whether a lower-case word between two name tokens continues the name ("University of X", "Smith & Jones"). */
const connects = (run: ReadonlyArray<Token>, word: Token, next: Token | undefined): boolean => {
  if (next === undefined || !/^\p{Lu}/u.test(next.text)) return false
  // "Mazar-e-Sharif", "Jaish-e-Mohammed", "Abd-al-Aziz": a short linking word inside a hyphenated name.
  if (run[run.length - 1]!.after === "-" && word.after === "-" && /^\p{Ll}{1,3}$/u.test(word.text)) return true
  if (!/^[ \t]+$/u.test(word.before) || !/^[ \t]+$/u.test(word.after)) return false
  if (word.text === "&") return true
  if (nameParticles.has(word.text)) return true
  if (word.text === "of" || word.text === "for") {
    const last = strip(run[run.length - 1]!.text)
    return ofJoiningHeads.has(last) || organizationPrefixes.has(strip(run[0]!.text))
  }
  // "Association of Commerce and Industry": "and" inside an organisation's "of" part, not between two places or people.
  const ofHead = run.some((t, k) => t.text === "of" && k > 0 && ofJoiningHeads.has(strip(run[k - 1]!.text)))
  if (word.text === "and" && ofHead) {
    return ![run[run.length - 1]!, next].some((t) => isPlaceWord(t.lower) || isFirstName(t.lower))
  }
  return false
}

const isPlaceWord = (word: string) =>
  Gazetteer.places().has(word) || knownPlaces.has(word) || lexiconKind(word) === "place"

/** Words before a name that make a lower-case head after it a common noun ("a Chicago hotel", "his Boston club"). */
const indefinite: ReadonlySet<string> = new Set([
  "a",
  "an",
  "his",
  "her",
  "their",
  "its",
  "our",
  "my",
  "your",
  "this",
  "that",
  "these",
  "those",
  "every",
  "each",
  "any",
  "some",
  "no",
  "one"
])

/** "the Chicago Press club", "St. Bernadine's church": a lower-case head that ends the name before it. */
const endsWithLowerCaseHead = (tokens: ReadonlyArray<Token>, run: ReadonlyArray<Token>, t: Token): boolean => {
  const last = run[run.length - 1]
  if (last === undefined || !lowerCaseHeads.has(t.text)) return false
  const gap = last.possessive
    ? /^['’]s[ \t]+$/u.test(last.after) && possessivePlaceWords.has(t.text)
    : last.after === " "
  if (!gap) return false
  const before = tokens[tokens.indexOf(run[0]!) - 1]
  if (before !== undefined && indefinite.has(before.lower)) return false
  // "the Christian church", "the Christmas party": an adjective or a holiday before the noun names nothing.
  return !run.every((r) => r.tags.has("Demonym") || r.tags.has("Date") || r.tags.has("Holiday"))
}

/** Splits a unit into runs of name tokens. */
const runsOf = (unit: Unit, capitalisedElsewhere: ReadonlySet<string>): Array<Array<Token>> => {
  const isName = (t: Token) => isNameToken(t, capitalisedElsewhere)
  const runs: Array<Array<Token>> = []
  let run: Array<Token> = []
  const close = () => {
    if (run.length > 0) runs.push(run)
    run = []
  }
  const tokens = unit.tokens
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!
    if (endsWithLowerCaseHead(tokens, run, t)) {
      run.push(t)
      close()
    } else if (isName(t)) {
      const previous = run[run.length - 1]
      // "Martha's Vineyard", "Behring's Straits": a possessive that names a place with the word after it.
      const placeAfterPossessive = previous !== undefined && previous.possessive && previous.after.endsWith(" ") &&
        /^['’]s[ \t]+$/u.test(previous.after) && possessivePlaceWords.has(t.lower)
      if (previous !== undefined && !placeAfterPossessive && (previous.possessive || !joinable(previous, t))) close()
      run.push(t)
      if (t.possessive && !possessivePlaceWords.has(tokens[i + 1]?.lower ?? "")) close()
    } else if (run.length > 0 && connects(run, t, tokens[i + 1]) && isName(tokens[i + 1]!)) {
      run.push(t)
    } else {
      close()
    }
  }
  close()
  return runs.flatMap(splitAtRank).map((r) => {
    // "the Massachusetts Indians": a trailing demonym describes people, it is not part of the place.
    let end = r.length
    while (end > 1 && r[end - 1]!.tags.has("Demonym")) end--
    return r.slice(0, end)
  }).flatMap((r) => {
    // "MIT Sarah", "Google Sarah": an organisation name glued to a first name is two names.
    for (let i = 1; i < r.length; i++) {
      const head = r.slice(0, i).map((t) => t.lower).join(" ")
      const orgHead = knownOrganizations.has(head) || lexiconKind(head) === "organization" ||
        (i === 1 && acronym.test(r[0]!.text) && !commonAcronyms.has(r[0]!.lower) && !prefixJobTitles.has(r[0]!.lower))
      if (orgHead && isFirstName(r[i]!.lower)) return [r.slice(0, i), r.slice(i)]
    }
    return [r]
  })
}

/** "Army Staff Sergeant Justin Peck", "Acme CEO Jane Doe": an organisation before a title and a name is two names. */
const splitAtRank = (run: Array<Token>): Array<Array<Token>> => {
  for (let i = 1; i < run.length - 1; i++) {
    const t = run[i]!
    const title = honorifics.has(strip(t.text)) || (prefixJobTitles.has(t.lower) && t.text !== t.lower)
    if (!title || run[i - 1]!.after !== " ") continue
    let at = i
    while (at > 0 && rankModifiers.has(run[at - 1]!.lower)) at--
    if (at === 0 || honorifics.has(strip(run[at - 1]!.text))) return [run]
    return [run.slice(0, at), run.slice(at)]
  }
  return [run]
}

/** Whether the rank modifiers from `at` on ("Chief Petty ...") lead to a title ("... Officer"). */
const titleAhead = (run: ReadonlyArray<Token>, at: number): boolean => {
  let k = at
  while (k < run.length - 1 && rankModifiers.has(run[k]!.lower)) k++
  return k > at && (honorifics.has(strip(run[k]!.text)) || prefixJobTitles.has(run[k]!.lower))
}

/** A heading line ("Chapter 1: The Pioneers"): mostly capitalised words, no sentence end. */
const isHeading = (line: string): boolean => {
  const trimmed = line.trim()
  if (trimmed.length === 0 || trimmed.length > 100 || /[.!?,]$|,\s|@|:\/\//u.test(trimmed)) return false
  const words = trimmed.split(/\s+/u).map((w) => w.replace(/^[^\p{L}\p{N}]+|[^\p{L}\p{N}]+$/gu, "")).filter((w) =>
    w.length > 0 && !["of", "the", "a", "an", "and", "in", "on", "for", "to", "at", "with"].includes(w)
  )
  if (words.length < 2) return false
  const capitalised = words.filter((w) => /^[\p{Lu}\p{N}]/u.test(w)).length
  return capitalised === words.length
}

const roles = [...roleWords].join("|")
const after = {
  speech: new RegExp(`^\\s+(?:${[...speechVerbs].join("|")})\\b`, "iu"),
  who: /^,?\s+(?:who|whom|whose)\b/iu,
  roleParen: new RegExp(`^\\s*\\((?:[\\w-]+\\s+){0,2}(?:${roles})\\b`, "iu"),
  roleApposition: new RegExp(`^\\s*,\\s+(?:the\\s+|a\\s+|an\\s+)?(?:[\\w-]+\\s+){0,2}(?:${roles})\\b`, "iu"),
  roleCopula: new RegExp(`^\\s+(?:is|was)\\s+(?:a|an|the)\\s+(?:[\\w-]+\\s+){0,3}(?:${roles})\\b`, "iu"),
  personVerb: /^\s+(?:knows|knew|met|married|and\s+\p{Lu}\p{Ll}+\s+met)\b/u,
  personApposition:
    /^\s*,\s+(?:a|an|the|his|her)\s+(?:[\w-]+\s+){0,2}(?:native|mate|captain|sailor|seaman|harpooneer|man|woman|boy|girl|fellow|son|daughter|wife|husband|friend|cousin|uncle|aunt|brother|sister|widow|child|king|queen|poet|writer|author|painter|priest)\b/iu,
  personPossessive:
    /^['’]s\s+(?:e-?mail|homepage|home page|website|wife|husband|son|daughter|father|mother|colleague|title|work|research|career|supervisor|friend)\b/iu,
  orgVerb: /^\s+(?:is|was)\s+(?:based|headquartered|located|founded|incorporated)\b/iu,
  stateOrCountry:
    /^,\s+(\p{Lu}\p{Ll}+(?:\s+\p{Lu}\p{Ll}+)?)(?=[.;:!?)]|,(?!\s+(?:and|or)\b)|\s+(?!and\b|or\b)\p{Ll}|$)/u,
  orgPossessive:
    /^['’]s\s+(?:offices?|headquarters|employees|ceo|cto|founders?|products?|customers|staff|board|division|efforts)\b/iu
}
const before = {
  place: /\b(?:in|near|across|throughout|native of)\s+$/iu,
  atFrom: /\b(?:at|from)\s+(?:the\s+)?$/iu,
  worksAt: /\b(?:works?|worked|working|employed)\s+(?:at|for)\s+$/iu,
  joined: /\b(?:joined|joins|join)\s+$/iu,
  roleOf: new RegExp(`\\b(?:${roles}|founder|co-founder|member)\\s+(?:of|at)\\s+$`, "iu"),
  basedIn: /\b(?:based|headquartered|located|born|lives?|lived|living|offices?)\s+in\s+$/iu,
  founded: /\b(?:founded|co-?founded|established|started)\s+$/iu,
  foundedBy: /\b(?:founded|created|led|written|invented|directed)\s+by\s+$/iu
}

const add = (votes: Votes, kind: NameKind, n: number) => {
  votes[kind] += n
}

/** Votes of the name's own words: heads, gazetteers, compromise's lexicon, given names. */
const wordVotes = (votes: Votes, words: ReadonlyArray<string>, tokens: ReadonlyArray<Token>, heading: boolean) => {
  const n = words.length
  const first = words[0]!
  const last = words[n - 1]!
  // With its linking words ("house of representatives"), for the hand lists.
  const full = tokens.map((t) => strip(t.text)).join(" ")
  const phrase = knownOrganizations.has(full) || knownPlaces.has(full) ? full : words.join(" ")
  // Headings are title case throughout: there, a head word proves nothing.
  if (!heading && n >= 2) {
    // "Soviet Union" is a place the hand list knows, whatever its head says.
    const org = (organizationSuffixes.has(last) || partyNames.has(last)) && !knownPlaces.has(phrase)
    if (org) add(votes, "organization", 4)
    // "University of X", "Chicago Association of Commerce": an institution's head before "of".
    const headOf = tokens.some((t, k) => organizationSuffixes.has(t.lower) && tokens[k + 1]?.text === "of")
    if (headOf || words.some((w) => organizationPrefixes.has(w))) add(votes, "organization", 4)
    // "United States Congress" is the legislature; "the World Congress of X" an event.
    if (eventSuffixes.has(last) && !(last === "congress" && isPlace(words.slice(0, -1).join(" ")))) {
      add(votes, "event", 6)
    }
    if (eventPrefixes.has(first)) add(votes, "event", 6)
    if (projectSuffixes.has(last)) add(votes, "project", 6)
    if (placeSuffixes.has(last) || placePrefixes.has(first)) add(votes, "place", 4)
    else if (surnamePlaceSuffixes.has(last) && !isGivenName(first)) add(votes, "place", 4)
  }
  if (knownOrganizations.has(phrase)) add(votes, "organization", 5)
  if (knownPlaces.has(phrase)) add(votes, "place", 5)
  // Weaker than the hand list: a city's name also names its university or team ("a professor at Berkeley").
  else if (Gazetteer.places().has(phrase)) add(votes, "place", 2.5)
  const lexical = lexiconKind(phrase)
  if (lexical !== undefined) add(votes, lexical, 3)
  if (n === 1 && isFirstName(first)) add(votes, "person", 2)
  if (n === 1 && lexiconTags(first).includes("LastName")) add(votes, "person", 1)
  const capitalisedWords = tokens.filter((t) => /^\p{Lu}/u.test(t.text)).length
  if (n >= 2 && n <= 4 && capitalisedWords === n && !organizationSuffixes.has(last)) {
    // "J. Hampton Monroe", "W. A. Swanberg": initials before a surname stand for given names.
    const initials = /^\p{Lu}$/u.test(tokens[0]!.text) && tokens[0]!.after.startsWith(".") && last.length > 1
    if (isGivenName(first) || lexiconTags(first).includes("Person") || initials) add(votes, "person", 3)
    if (lexiconTags(last).includes("LastName")) add(votes, "person", 1)
  }
  if (n === 1 && camelCase.test(tokens[0]!.text)) add(votes, "organization", 2)
}

const isPlace = (phrase: string) =>
  knownPlaces.has(phrase) || Gazetteer.places().has(phrase) || lexiconKind(phrase) === "place"

/** Votes of compromise's tags in context and of the words around the name. */
const contextVotes = (
  votes: Votes,
  words: ReadonlyArray<string>,
  tokens: ReadonlyArray<Token>,
  left: string,
  right: string,
  next: Token | undefined
) => {
  const n = words.length
  const first = words[0]!
  const share = (tag: string) => tokens.filter((t) => t.tags.has(tag) && !t.tags.has("Honorific")).length / n
  if (share("Person") >= 0.5) add(votes, "person", 2)
  if (share("Place") >= 0.5) add(votes, "place", 2)
  if (share("Organization") >= 0.5) add(votes, "organization", 1)
  // An acronym, not a shouted common word ("BOOK", "SAILOR") or a Roman numeral.
  if (
    n === 1 && acronym.test(tokens[0]!.text) && !commonAcronyms.has(first.replace(/s$/u, "")) &&
    lexiconTags(first).length === 0 && !/^[IVXLCDM]+$/u.test(tokens[0]!.text)
  ) {
    add(votes, "organization", 1)
  }
  if (before.place.test(left)) add(votes, "place", 1.5)
  if (before.atFrom.test(left)) {
    add(votes, "organization", 1)
    add(votes, "place", 0.5)
  }
  if (before.worksAt.test(left) || before.roleOf.test(left)) add(votes, "organization", 2)
  if (before.joined.test(left)) add(votes, "organization", 1)
  if (before.basedIn.test(left)) add(votes, "place", 2)
  if (before.founded.test(left)) add(votes, "organization", 1.5)
  if (before.foundedBy.test(left)) add(votes, "person", 1.5)
  if (/,\s*$/u.test(left) && /\p{Lu}\p{Ll}+,\s*$/u.test(left) && lexiconTags(first).includes("Abbreviation")) {
    add(votes, "place", 2)
  }
  // "Redding, California": a name before a state or country (not a list: "Smith, Jordan and Lee").
  const state = after.stateOrCountry.exec(right)
  if (state !== null && isPlace(state[1]!.toLowerCase()) && !isGivenName(first)) add(votes, "place", 2)
  if (after.speech.test(right)) add(votes, "person", 2)
  // An unknown word doing something ("Stubb was", "Queequeg gave") is more likely someone than something.
  if (
    n === 1 && next !== undefined && lexiconTags(first).length === 0 && !tokens[0]!.possessive &&
    !before.place.test(left) && !before.atFrom.test(left) &&
    (next.tags.has("PastTense") || next.tags.has("PresentTense") || next.tags.has("Copula")) &&
    !next.tags.has("Infinitive") && !next.tags.has("Gerund") && /^[ \t]+$/u.test(next.before)
  ) add(votes, "person", 1.5)
  if (after.personApposition.test(right)) add(votes, "person", 1.5)
  if (after.who.test(right)) add(votes, "person", 1)
  if (after.roleParen.test(right) || after.roleApposition.test(right) || after.roleCopula.test(right)) {
    add(votes, "person", 1.5)
  }
  if (after.personVerb.test(right) || after.personPossessive.test(right)) add(votes, "person", 1.5)
  if (after.orgVerb.test(right) || after.orgPossessive.test(right)) add(votes, "organization", 1.5)
}

/** Votes of one occurrence of a name. */
const vote = (
  words: ReadonlyArray<string>,
  tokens: ReadonlyArray<Token>,
  title: string | undefined,
  text: string,
  start: number,
  end: number,
  heading: boolean,
  next: Token | undefined
): Votes => {
  const votes = noVotes()
  if (title !== undefined) add(votes, "person", 5)
  wordVotes(votes, words, tokens, heading)
  const n = words.length
  if (n >= 2 && possessivePlaceWords.has(words[n - 1]!) && /['’]s\s/u.test(text.slice(start, end))) {
    add(votes, "place", 5)
  }
  if (!heading) {
    const left = text.slice(Math.max(0, start - 48), start)
    contextVotes(votes, words, tokens, left, text.slice(end, end + 64), next)
  }
  return votes
}

/** A single word the lexicon knows as a common word ("Engineering", "Frank", "Eve"). */
const isCommonWord = (words: ReadonlyArray<string>) => {
  if (words.length !== 1 || knownOrganizations.has(words[0]!) || knownPlaces.has(words[0]!)) return false
  const tags = lexiconTags(words[0]!)
  return tags.length > 0 && !tags.some((t) => nameTags.has(t))
}

const nameTags: ReadonlySet<string> = new Set([
  "FirstName",
  "MaleName",
  "FemaleName",
  "LastName",
  "Person",
  "Organization",
  "SportsTeam",
  "City",
  "Country",
  "Region",
  "Place",
  "ProperNoun",
  "Acronym"
])

const adverbs: ReadonlySet<string> = new Set(["now", "then", "also", "still", "never", "always", "soon", "too", "once"])

/** The token after a run, skipping adverbs ("Queequeg now gave"). */
const tokenAfter = (unit: Unit, last: Token): Token | undefined => {
  let i = unit.tokens.indexOf(last) + 1
  while (i < unit.tokens.length && (unit.tokens[i]!.tags.has("Adverb") || adverbs.has(unit.tokens[i]!.lower))) i++
  return unit.tokens[i]
}

/** Nouns before "called"/"named"/"titled" and the kind they give the name that follows. */
const nounKinds: ReadonlyArray<readonly [RegExp, NameKind]> = [
  [/\b(?:conference|summit|symposium|workshop|festival|meeting|event|congress)$/iu, "event"],
  [/\b(?:project|initiative|programme|program)$/iu, "project"],
  [
    /\b(?:company|firm|startup|organi[sz]ation|group|consortium|team|club|society|association|institute|lab|laboratory|university|agency|foundation|network|community)$/iu,
    "organization"
  ],
  [
    /\b(?:paper|book|article|document|report|film|movie|song|album|talk|presentation|product|tool|software|system|app|application|language|vocabulary|standard|framework|library|study|thesis|novel|poem|play|series|show)$/iu,
    "work"
  ],
  [/\b(?:city|town|village|country|region|island|river|mountain|place)$/iu, "place"]
]

const genericClassPhrases = new Set([
  "thing",
  "class",
  "resource",
  "text",
  "number",
  "boolean",
  "date",
  "time",
  "url",
  "data type",
  "enumeration",
  "structured value",
  "intangible",
  "role",
  "action",
  "property",
  "value",
  "integer",
  "float",
  "literal"
])

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/gu, "\\$&")

const phrasePatternCache = new WeakMap<TypeMap, RegExp | undefined>()

const classPhrasePattern = (types: TypeMap): RegExp | undefined => {
  if (phrasePatternCache.has(types)) return phrasePatternCache.get(types)
  const phrases = types.classPhrases.map((p) => p.phrase).filter((p) =>
    p.length >= 3 && !genericClassPhrases.has(p) && /^[\p{Ll}\p{N} -]+$/u.test(p)
  )
  const pattern = phrases.length === 0 ?
    undefined :
    new RegExp(
      `(?<![\\p{L}\\p{N}-])(?:${[...new Set(phrases)].map(escape).join("|")})(?:s|es)?(?![\\p{L}\\p{N}-])`,
      "gu"
    )
  phrasePatternCache.set(types, pattern)
  return pattern
}

const classOfPhrase = (types: TypeMap, phrase: string): string | undefined => {
  const wanted = phrase.toLowerCase()
  return types.classPhrases.find((p) => p.phrase === wanted || `${p.phrase}s` === wanted || `${p.phrase}es` === wanted)
    ?.iri
}

const quoted = /^["“]([^"”\n]{2,120})["”]/u

const listGap = /^(?:,\s+(?:(?:and|or)\s+)?|\s+(?:and|or)\s+)$/u

/** A name found in a segment: its occurrence and its offsets in the segment. */
interface FoundName {
  readonly index: number
  readonly start: number
  readonly end: number
}

/** One segment being collected: its text, where its occurrences go, and the names found so far. */
interface SegmentScope {
  readonly text: string
  /** The text with URLs and e-mail addresses blanked out. */
  readonly masked: string
  /** The segment's document offset. */
  readonly base: number
  readonly units: ReadonlyArray<Unit>
  readonly unitBase: number
  readonly types: TypeMap
  readonly occurrences: Array<Occurrence>
  /** Adds an occurrence of this segment; answers its index. */
  readonly push: (o: Occurrence) => number
  /** The (batch-wide) unit index of a segment offset. */
  readonly unitAt: (offset: number) => number
  readonly names: Array<FoundName>
}

/** A segment with URLs and e-mails found and masked, and its sentences analysed. */
function* prepare(segment: Segment) {
  const urls = findUrls(segment.text)
  const withoutUrls = mask(segment.text, urls)
  const emails = findEmails(withoutUrls)
  const masked = mask(withoutUrls, emails)
  return { segment, urls, emails, masked, units: yield* analyse(masked) }
}

/** The words capitalised inside a sentence somewhere in the batch (not only at its start). */
const capitalisedWords = (units: ReadonlyArray<Unit>): Set<string> => {
  const words = new Set<string>()
  for (const unit of units) {
    for (const t of unit.tokens) {
      if (!t.initial && /^\p{Lu}/u.test(t.text) && !nonNameTags.some((tag) => t.tags.has(tag))) words.add(t.lower)
    }
  }
  return words
}

/** An occurrence with a fixed kind (e-mail, URL, date) and its value. */
const valueOccurrence = (
  scope: SegmentScope,
  m: { start: number; end: number; text: string },
  kind: Kind,
  v?: string,
  datatype?: string
) =>
  scope.push({
    start: scope.base + m.start,
    end: scope.base + m.end,
    label: m.text,
    key: labelKey(m.text),
    words: [m.text.toLowerCase()],
    votes: noVotes(),
    classVotes: new Map(),
    fixed: kind,
    title: undefined,
    aliasOf: undefined,
    list: undefined,
    ofName: undefined,
    unit: scope.unitAt(m.start),
    value: v,
    datatype
  })

/** The honorific and job-title tokens leading a run of capitalised tokens ("Dr.", "CEO Jane"): how many. */
/** Words after a title that belong to it: "Attorney General", "Private First Class". */
const titleTail = (t: Token, next: Token) =>
  t.lower === "general" || t.lower === "class" || (t.lower === "first" && next.lower === "class")

const leadingTitles = (run: ReadonlyArray<Token>, afterTitle: boolean): number => {
  let from = 0
  // "Private Equity Group", "Father Point Lighthouse": a title never leaves a name that has its own head.
  const last = strip(run[run.length - 1]!.text)
  if (organizationSuffixes.has(last) || placeSuffixes.has(last)) return 0
  while (from < run.length - 1) {
    const t = run[from]!
    const nextToken = run[from + 1]!
    const honorific = (honorifics.has(strip(t.text)) || (rankModifiers.has(t.lower) && titleAhead(run, from)) ||
      ((from > 0 || afterTitle) && titleTail(t, nextToken))) && /^\.?[ \t]+$/u.test(t.after)
    // "CEO Tim Cook"; after a rank's modifier ("Special Agent"), whatever name follows.
    const job = prefixJobTitles.has(t.lower) && t.after === " " &&
      (isFirstName(nextToken.lower) || nextToken.tags.has("FirstName") ||
        (from > 0 && rankModifiers.has(run[from - 1]!.lower)))
    if (!honorific && !job) break
    from++
  }
  return from
}

/** Words that make a run of capitalised tokens no name: acronyms, role words, demonyms, roman numerals. */
const notAName = (words: ReadonlyArray<string>, tokens: ReadonlyArray<Token>): boolean => {
  if (
    words.length === 1 &&
    (commonAcronyms.has(words[0]!.replace(/s$/u, "")) || notNames.has(words[0]!) || notNamesAlone.has(words[0]!) ||
      words[0] === "general")
  ) {
    return true
  }
  // Job titles in title case ("Chief Technology Officer", "VP Engineering") and demonyms are not names.
  if (roleWords.has(words[0]!) || prefixJobTitles.has(words[0]!) || roleWords.has(words[words.length - 1]!)) {
    return true
  }
  if (words.length === 1 && lexiconTags(words[0]!).some((t) => t === "Demonym" || t === "Language")) return true
  return tokens.every((t) => t.tags.has("Demonym") || /^[IVXLCDM]+\.?$/u.test(t.text))
}

/** A run of capitalised tokens of unit `u` as a name occurrence, unless it is none. */
const nameOccurrence = (
  scope: SegmentScope,
  unit: Unit,
  u: number,
  run: ReadonlyArray<Token>,
  isHeadingAt: (offset: number) => boolean
): FoundName | undefined => {
  const text = scope.text
  const previous = unit.tokens[unit.tokens.indexOf(run[0]!) - 1]
  const from = leadingTitles(run, previous !== undefined && honorifics.has(strip(previous.text)))
  const titleTokens: Array<Token> = run.slice(0, from)
  let to = run.length
  while (to > from && (run[to - 1]!.text === "&" || nameParticles.has(run[to - 1]!.text))) to--
  const tokens = run.slice(from, to)
  if (tokens.length === 0) return undefined
  const words = tokens.filter((t, k) =>
    t.text !== "&" && (!/^\p{Ll}/u.test(t.text) || (k === tokens.length - 1 && lowerCaseHeads.has(t.text)))
  ).map((t) => strip(t.text))
  if (notAName(words, tokens)) return undefined
  const start = tokens[0]!.start
  const end = tokens[tokens.length - 1]!.end
  const label = text.slice(start, end)
  // An honorific the run did not take in (a sentence-initial "Professor" is not a name token itself).
  const outside = previous
  if (
    outside !== undefined && /^\p{Lu}/u.test(outside.text) && !hasHead(words) &&
    (honorifics.has(strip(outside.text)) ||
      (titleTokens.length === 0 && prefixJobTitles.has(outside.lower) && isFirstName(tokens[0]!.lower))) &&
    /^\.?[ \t]+$/u.test(outside.after)
  ) titleTokens.unshift(outside)
  let title: string | undefined
  if (titleTokens.length > 0) {
    const titleEnd = titleTokens[titleTokens.length - 1]!.end
    title = text.slice(titleTokens[0]!.start, titleEnd + (text[titleEnd] === "." ? 1 : 0))
  }
  const runStart = titleTokens.length > 0 ? titleTokens[0]!.start : start
  const after = tokenAfter(unit, tokens[tokens.length - 1]!)
  const index = scope.push({
    start: scope.base + start,
    end: scope.base + end,
    label,
    key: labelKey(label),
    words: tokens.map((t) => t.lower),
    votes: vote(words, tokens, title, text, runStart, end, isHeadingAt(start), after),
    classVotes: new Map(),
    fixed: undefined,
    title,
    aliasOf: undefined,
    list: undefined,
    ofName: undefined,
    unit: scope.unitBase + u,
    value: undefined,
    datatype: undefined
  })
  return { index, start, end }
}

/** Every name of the segment, in text order. */
const nameOccurrences = (
  scope: SegmentScope,
  layout: ReturnType<typeof layoutOf>,
  capitalisedElsewhere: Set<string>
) => {
  const headingLines = new Set<number>()
  scope.text.split("\n").forEach((line, i) => {
    if (isHeading(line)) headingLines.add(i)
  })
  const isHeadingAt = (offset: number) => headingLines.has(layout.line(offset))
  scope.units.forEach((unit, u) => {
    for (const run of runsOf(unit, capitalisedElsewhere)) {
      const name = nameOccurrence(scope, unit, u, run, isHeadingAt)
      if (name !== undefined) scope.names.push(name)
    }
  })
  scope.names.sort((a, b) => a.start - b.start)
}

/**
 * Three or more names joined by commas (the last by "and"/"or") are one list: its items are typed together.
 * Answers the next list number.
 */
const markLists = (scope: SegmentScope, firstList: number): number => {
  const { names, occurrences, text } = scope
  let lists = firstList
  for (let i = 0; i < names.length;) {
    let j = i
    while (j + 1 < names.length && listGap.test(text.slice(names[j]!.end, names[j + 1]!.start))) j++
    if (j - i >= 2) {
      for (let k = i; k <= j; k++) occurrences[names[k]!.index]!.list = lists
      lists++
    }
    i = j + 1
  }
  return lists
}

/** "Tom Doe of Kenilworth": remembers the name before " of ", so that a person there makes this a place. */
const markOf = (scope: SegmentScope) => {
  const { names, occurrences, text } = scope
  for (let i = 1; i < names.length; i++) {
    if (text.slice(names[i - 1]!.end, names[i]!.start) === " of ") {
      occurrences[names[i]!.index]!.ofName = names[i - 1]!.index
    }
  }
}

/** Parenthesised renamings share the type of the name before them: "田中優子 (Yuko Tanaka)". */
const markAliases = (scope: SegmentScope) => {
  const { names, occurrences, text } = scope
  for (let i = 1; i < names.length; i++) {
    const a = names[i - 1]!
    const b = names[i]!
    if (!/^\s*\(\s*$/u.test(text.slice(a.end, b.start)) || !/^\s*\)/u.test(text.slice(b.end))) continue
    // A person's other name, or an acronym of what precedes ("Amazon Web Services (AWS)"); not "Amazon (Satori)".
    const va = occurrences[a.index]!.votes
    const personal = va.person > 0 && nameKinds.every((k) => va.person >= va[k])
    if (personal || acronym.test(text.slice(b.start, b.end))) occurrences[b.index]!.aliasOf = a.index
  }
}

/** A vote for an ontology class the text names explicitly. */
const explicit = (scope: SegmentScope, index: number, iri: string, weight: number) => {
  const votes = scope.occurrences[index]!.classVotes
  votes.set(iri, (votes.get(iri) ?? 0) + weight)
}

/** A quoted name at `at` ("a paper titled "Y""): the name found there, or a new occurrence, with its votes. */
const quotedOccurrence = (scope: SegmentScope, at: number, iri: string | undefined, kind: NameKind | undefined) => {
  const m = quoted.exec(scope.text.slice(at))
  if (m === null) return
  const start = at + 1 + (m[1]!.length - m[1]!.trimStart().length)
  const label = m[1]!.trim()
  if (label.length === 0) return
  const end = start + label.length
  const existing = scope.names.find((n) => n.start === start && n.end === end)
  const votes = noVotes()
  if (kind !== undefined) add(votes, kind, 3)
  const index = existing?.index ?? scope.push({
    start: scope.base + start,
    end: scope.base + end,
    label,
    key: labelKey(label),
    words: label.toLowerCase().split(/\s+/u),
    votes,
    classVotes: new Map(),
    fixed: undefined,
    title: undefined,
    aliasOf: undefined,
    list: undefined,
    ofName: undefined,
    unit: scope.unitAt(start),
    value: undefined,
    datatype: undefined
  })
  if (existing !== undefined && kind !== undefined) add(scope.occurrences[index]!.votes, kind, 3)
  if (iri !== undefined) explicit(scope, index, iri, 6)
}

/** "a research group called X", "a paper titled "Y"", "presented "Z"". */
const namingCues = (scope: SegmentScope) => {
  const { masked, types } = scope
  for (
    const m of masked.matchAll(/\b([\p{L}-]+)\s+(?:(?:was|is|were|are|being)\s+)?(called|named|titled|entitled)\s+/gu)
  ) {
    const at = m.index + m[0].length
    const noun = m[1]!
    const kind = /titled$/u.test(m[2]!) ? "work" : nounKinds.find(([pattern]) => pattern.test(noun))?.[1]
    const iri = classOfPhrase(types, noun)
    const name = scope.names.find((n) => n.start === at)
    if (name !== undefined) {
      if (kind !== undefined) add(scope.occurrences[name.index]!.votes, kind, 3)
      if (iri !== undefined) explicit(scope, name.index, iri, 6)
    } else if (kind !== undefined || iri !== undefined) {
      quotedOccurrence(scope, at, iri, kind)
    }
  }
  for (const m of masked.matchAll(/\b(?:presented|published|wrote|released)\s+(?=["“])/gu)) {
    quotedOccurrence(scope, m.index + m[0].length, undefined, "work")
  }
}

/** Whether a name ends with an organisation or place head ("Domestic Policy Council", "Elm County"). */
const hasHead = (words: ReadonlyArray<string>) => {
  const last = words[words.length - 1] ?? ""
  return words.length >= 2 && (organizationSuffixes.has(last) || placeSuffixes.has(last))
}

/** Whether a name's head gives it another kind than a class word near it ("Domestic Policy Council" review). */
const headDisagrees = (words: ReadonlyArray<string>, kind: Kind | undefined) => {
  const last = words[words.length - 1] ?? ""
  if (words.length < 2) return false
  const head = organizationSuffixes.has(last) ? "organization" : placeSuffixes.has(last) ? "place" : undefined
  return head !== undefined && head !== kind
}

/** Class words of the ontology: "the company Acme", "Acme, a company", "the Acme organization". */
const classWordCues = (scope: SegmentScope) => {
  const { masked, types } = scope
  const pattern = classPhrasePattern(types)
  if (pattern === undefined) return
  const nameEndingAt = (offset: number) => scope.names.find((n) => n.end === offset)
  for (const m of masked.matchAll(pattern)) {
    const iri = classOfPhrase(types, m[0])
    if (iri === undefined) continue
    const s = m.index
    const e = s + m[0].length
    const left = masked.slice(Math.max(0, s - 40), s)
    const right = masked.slice(e, e + 40)
    const next = /^(\s*,)?\s+(?:(?:(?:was|is|were|are)\s+)?(?:called|named|known as)\s+)?/u.exec(right)
    // "in the event Congress does": an idiom, not the class word before a name.
    const idiom = /^events?$/u.test(m[0]) && /\bin\s+the\s+$/iu.test(left)
    if (
      !idiom && /\b(?:the|a|an|our|their|its|his|her|this|that)\s+(?:[\p{Ll}-]+\s+){0,2}$/iu.test(left) &&
      next !== null
    ) {
      const at = e + next[0].length
      const name = scope.names.find((n) => n.start === at)
      // "defend our country, Homeland Security Investigations": a name whose head says otherwise keeps it.
      if (name !== undefined) {
        if (!headDisagrees(scope.occurrences[name.index]!.words, types.kindOfClass(iri))) {
          explicit(scope, name.index, iri, 6)
        }
      } else if (quoted.test(masked.slice(at))) quotedOccurrence(scope, at, iri, undefined)
    }
    const apposition = /^(.*?)\s*,\s*(?:a|an|the)\s+(?:[\p{Ll}-]+\s+){0,2}$/u.exec(left)
    if (apposition !== null) {
      const name = nameEndingAt(s - left.length + apposition[1]!.length)
      if (name !== undefined) explicit(scope, name.index, iri, 5)
    }
    const preceding = /\b(?:the|a|an)\s+$/iu
    const name = nameEndingAt(s - 1)
    // "the Domestic Policy Council review": a name with its own head only qualifies the class word after it.
    if (
      name !== undefined && masked[s - 1] === " " &&
      !headDisagrees(scope.occurrences[name.index]!.words, types.kindOfClass(iri)) &&
      preceding.test(masked.slice(Math.max(0, name.start - 8), name.start))
    ) {
      explicit(scope, name.index, iri, 5)
    }
  }
}

/** Collects the occurrences of a batch's segments, a step at a time. Occurrence offsets are document offsets. */
export function* collect(
  segments: ReadonlyArray<Segment>,
  types: TypeMap
): Steps<{ readonly occurrences: Array<Occurrence>; readonly analysed: Array<AnalysedSegment> }> {
  const occurrences: Array<Occurrence> = []
  const analysed: Array<AnalysedSegment> = []
  let unitBase = 0
  let lists = 0
  const prepared = []
  for (const segment of segments) prepared.push(yield* prepare(segment))
  // A capital at the start of a sentence counts as a name when the same word is capitalised inside a sentence too.
  const capitalisedElsewhere = capitalisedWords(prepared.flatMap((p) => p.units))
  for (const { segment, urls, emails, masked, units } of prepared) {
    const base = segment.start
    const layout = layoutOf(segment.text)
    const own: Array<number> = []
    const first = unitBase
    const scope: SegmentScope = {
      text: segment.text,
      masked,
      base,
      units,
      unitBase,
      types,
      occurrences,
      names: [],
      push: (o) => {
        own.push(occurrences.length)
        occurrences.push(o)
        return occurrences.length - 1
      },
      unitAt: (offset) => {
        const index = units.findIndex((u) => offset >= u.start && offset < u.end + 1)
        return first + (index >= 0 ? index : Math.max(0, units.findIndex((u) => u.start > offset)))
      }
    }
    for (const m of emails) valueOccurrence(scope, m, "email")
    for (const m of urls) valueOccurrence(scope, m, "url")
    for (const d of findDates(masked)) valueOccurrence(scope, d, "date", d.value, d.datatype)
    yield
    nameOccurrences(scope, layout, capitalisedElsewhere)
    lists = markLists(scope, lists)
    markOf(scope)
    markAliases(scope)
    namingCues(scope)
    classWordCues(scope)
    analysed.push({
      segment,
      units,
      unitBase,
      occurrences: own,
      paragraphOf: (offset) => layout.paragraph(offset - base),
      lineOf: (offset) => layout.line(offset - base)
    })
    unitBase += units.length
    yield
  }
  return { occurrences, analysed }
}

/** A decided mention: the type the batch gave its label. */
export interface Mention {
  readonly occurrence: number
  readonly start: number
  readonly end: number
  readonly label: string
  readonly kind: Kind
  /** The ontology class; `undefined` when the unmapped policy dropped it (it can still anchor relations). */
  readonly type: string | undefined
  readonly confidence: number
  readonly title: string | undefined
  readonly unit: number
  readonly value: string | undefined
  readonly datatype: string | undefined
}

/** What the run already knows, reduced to what typing needs. */
export interface Known {
  readonly byKey: ReadonlyMap<string, string>
  readonly personTokens: ReadonlySet<string>
}

const threshold = 1.5

/** The votes of every occurrence of a label (and of the names they rename), summed. */
interface Totals {
  readonly votes: Votes
  readonly classes: Map<string, number>
}

const best = (votes: Votes): { kind: NameKind; score: number } => {
  let kind: NameKind = "person"
  let score = -1
  for (const k of nameKinds) {
    if (votes[k] > score) {
      kind = k
      score = votes[k]
    }
  }
  return { kind, score }
}

/** The occurrences to type (not values), grouped by label key, with their summed votes. */
const tally = (occurrences: ReadonlyArray<Occurrence>) => {
  const groups = new Map<string, Array<number>>()
  occurrences.forEach((o, i) => {
    if (o.fixed !== undefined) return
    const list = groups.get(o.key)
    if (list === undefined) groups.set(o.key, [i])
    else list.push(i)
  })
  const total = (indexes: ReadonlyArray<number>): Totals => {
    const votes = noVotes()
    const classes = new Map<string, number>()
    for (const i of indexes) {
      const o = occurrences[i]!
      for (const k of nameKinds) votes[k] += o.votes[k]
      if (o.aliasOf !== undefined) {
        const a = occurrences[o.aliasOf]!
        for (const k of nameKinds) votes[k] += a.votes[k]
      }
      for (const [iri, n] of o.classVotes) classes.set(iri, (classes.get(iri) ?? 0) + n)
    }
    return { votes, classes }
  }
  return { groups, totals: new Map([...groups].map(([key, indexes]) => [key, total(indexes)] as const)) }
}

/** Whether occurrence `i` follows a person's name with " of " between them. */
const ofPerson = (occurrences: ReadonlyArray<Occurrence>, i: number, people: ReadonlySet<string>) => {
  const before = occurrences[i]!.ofName
  return before !== undefined && people.has(occurrences[before]!.key)
}

/**
 * Votes from the whole batch and the run: bare first or last names of people named in full (in the batch or known
 * to the run) are people too; common words need more; a label the run already typed keeps its type.
 */
const batchVotes = (
  occurrences: ReadonlyArray<Occurrence>,
  groups: ReadonlyMap<string, ReadonlyArray<number>>,
  totals: ReadonlyMap<string, Totals>,
  known: Known
) => {
  const personWords = new Set(known.personTokens)
  for (const [key, indexes] of groups) {
    const b = best(totals.get(key)!.votes)
    const words = occurrences[indexes[0]!]!.words
    if (b.kind === "person" && b.score >= threshold && words.length >= 2) {
      personWords.add(words[0]!)
      personWords.add(words[words.length - 1]!)
    }
  }
  // "Tom Doe of Kenilworth" (GUIDELINES.md: a person of a place): decided before any vote below changes.
  const people = new Set(
    [...totals].filter(([, t]) => {
      const b = best(t.votes)
      return b.kind === "person" && b.score >= threshold
    }).map(([key]) => key)
  )
  for (const [key, indexes] of groups) {
    const words = occurrences[indexes[0]!]!.words
    const votes = totals.get(key)!.votes
    if (!isCommonWord(words) && indexes.some((i) => ofPerson(occurrences, i, people))) votes.place += 2
    if (words.length === 1 && personWords.has(words[0]!)) votes.person += 3
    // A common word needs more than context to be a name, however often it occurs.
    if (isCommonWord(words)) { for (const k of nameKinds) votes[k] -= 1.5 }
    const knownType = known.byKey.get(key)
    if (knownType !== undefined) {
      const classes = totals.get(key)!.classes
      classes.set(knownType, (classes.get(knownType) ?? 0) + 4)
    }
  }
}

/** List items share the kind most of the list's decided items have ("France, Spain, and Prussia"). */
const listVotes = (occurrences: ReadonlyArray<Occurrence>, totals: ReadonlyMap<string, Totals>) => {
  const lists = new Map<number, Set<string>>()
  occurrences.forEach((o) => {
    if (o.list === undefined || o.fixed !== undefined) return
    const keys = lists.get(o.list) ?? new Set<string>()
    keys.add(o.key)
    lists.set(o.list, keys)
  })
  const listKinds = [...lists.values()].map((keys) => {
    const kinds = noVotes()
    let typed = 0
    for (const key of keys) {
      const b = best(totals.get(key)!.votes)
      if (b.score >= threshold) {
        kinds[b.kind]++
        typed++
      }
    }
    const major = best(kinds)
    return { keys, kind: major.score * 2 > typed ? major.kind : undefined }
  })
  for (const { keys, kind } of listKinds) {
    if (kind !== undefined) { for (const key of keys) totals.get(key)!.votes[kind] += 3 }
  }
}

type Decision = { kind: Kind; type: string | undefined; confidence: number }

/** Each label's type: an explicit class (3 or more class votes), else the best kind if it has votes enough. */
const decisions = (totals: ReadonlyMap<string, Totals>, types: TypeMap): Map<string, Decision | undefined> => {
  const decided = new Map<string, Decision | undefined>()
  for (const [key, t] of totals) {
    const classes = [...t.classes].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    const b = best(t.votes)
    if (classes.length > 0 && classes[0]![1] >= 3) {
      const iri = classes[0]![0]
      decided.set(key, { kind: types.kindOfClass(iri) ?? b.kind, type: iri, confidence: 0.85 })
    } else if (b.score >= threshold) {
      decided.set(key, {
        kind: b.kind,
        type: types.classOf(b.kind),
        confidence: Math.min(0.95, Math.round((0.5 + b.score * 0.05) * 100) / 100)
      })
    }
  }
  return decided
}

/** The mention of an occurrence: a value as what it is, a name as its label was decided (or none). */
const mentionOf = (
  o: Occurrence,
  i: number,
  decided: ReadonlyMap<string, Decision | undefined>,
  types: TypeMap
): Mention | undefined => {
  if (o.fixed !== undefined) {
    return {
      occurrence: i,
      start: o.start,
      end: o.end,
      label: o.label,
      kind: o.fixed,
      type: types.classOf(o.fixed),
      confidence: o.fixed === "date" ? 0.9 : 0.99,
      title: undefined,
      unit: o.unit,
      value: o.value,
      datatype: o.datatype
    }
  }
  const d = decided.get(o.key)
  if (d === undefined) return undefined
  return {
    occurrence: i,
    start: o.start,
    end: o.end,
    label: o.label,
    kind: d.kind,
    type: d.type,
    confidence: d.confidence,
    title: o.title,
    unit: o.unit,
    value: undefined,
    datatype: undefined
  }
}

/** Overlaps: a value (URL, e-mail, date) or the longer name wins. */
const withoutOverlaps = (mentions: Array<Mention>): Array<Mention> => {
  mentions.sort((a, b) => a.start - b.start || b.end - a.end || a.occurrence - b.occurrence)
  const kept: Array<Mention> = []
  for (const m of mentions) {
    const previous = kept[kept.length - 1]
    if (previous !== undefined && m.start < previous.end) {
      const valueWins = m.kind === "email" || m.kind === "url" || m.kind === "date"
      const previousValue = previous.kind === "email" || previous.kind === "url" || previous.kind === "date"
      if (valueWins && !previousValue) kept[kept.length - 1] = m
      continue
    }
    kept.push(m)
  }
  return kept
}

/** Decides one type per label across the batch and returns the mentions in document order. */
export const decide = (
  occurrences: ReadonlyArray<Occurrence>,
  types: TypeMap,
  known: Known
): Array<Mention> => {
  const { groups, totals } = tally(occurrences)
  batchVotes(occurrences, groups, totals, known)
  listVotes(occurrences, totals)
  const decided = decisions(totals, types)
  const mentions: Array<Mention> = []
  occurrences.forEach((o, i) => {
    const mention = mentionOf(o, i, decided, types)
    if (mention !== undefined) mentions.push(mention)
  })
  return withoutOverlaps(mentions)
}
