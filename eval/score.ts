/**
 * Scoring of the extraction evaluation: lenient, document-level matching of predicted entities and relations against
 * hand-annotated gold files (format in docs/extraction-quality.md).
 */

/** The coarse categories gold entities are annotated with. */
export type Category = "person" | "organization" | "place" | "date" | "email" | "url" | "other"

/** Every category, in report order. */
export const categories: ReadonlyArray<Category> = ["person", "organization", "place", "date", "email", "url", "other"]

/** A gold entity: its label, category, other names it goes by, and whether finding it is optional. */
export interface GoldEntity {
  readonly label: string
  readonly type: Category
  readonly aliases?: ReadonlyArray<string>
  readonly optional?: boolean
}

/** A gold relation between two gold entity labels (or an entity and a literal). */
export interface GoldRelation {
  readonly subject: string
  readonly predicate: string
  readonly object: string
}

/** One annotated text. */
export interface Gold {
  readonly text: string
  /** Only this part of the text (UTF-16 offsets) is annotated and extracted. */
  readonly excerpt?: { readonly start: number; readonly end: number }
  readonly entities: ReadonlyArray<GoldEntity>
  readonly relations: ReadonlyArray<GoldRelation>
}

/** A predicted entity reduced to what is scored. */
export interface PredictedEntity {
  readonly label: string
  readonly type: Category
}

/** A predicted relation reduced to what is scored (object: a label or a literal value). */
export interface PredictedRelation {
  readonly subject: string
  readonly predicate: string
  readonly object: string
}

/** Relations whose direction does not matter. */
export const symmetric: ReadonlySet<string> = new Set(["knows", "spouse", "sibling"])

const honorific = /^(?:(?:dr|prof|professor|mr|mrs|ms|sir|dame)\.?\s+)+/u

/** Lower case, no honorific, no possessive, no punctuation (addresses and URLs keep theirs). */
export const normalise = (label: string, type?: Category): string => {
  const base = label.normalize("NFKC").toLowerCase().replace(/[’‘]/gu, "'").replace(/\s+/gu, " ").trim()
  if (type === "email" || type === "url" || /^[^\s@]+@[^\s@]+$/u.test(base) || /^[a-z]+:\/\//u.test(base)) {
    return base.replace(/^mailto:/u, "").replace(/\/$/u, "")
  }
  return base
    .replace(/^the\s+/u, "")
    .replace(honorific, "")
    .replace(/'s$/u, "")
    .replace(/[^\p{L}\p{N}\s&+-]/gu, " ")
    .replace(/\s+/gu, " ")
    .trim()
}

/** Counts for precision and recall. */
export interface Counts {
  /** Predictions that match gold. */
  truePredicted: number
  /** Predictions scored (not matching an optional gold entity). */
  predicted: number
  /** Gold items found. */
  found: number
  /** Gold items (not optional). */
  gold: number
}

/** Zero counts. */
export const zero = (): Counts => ({ truePredicted: 0, predicted: 0, found: 0, gold: 0 })

/** Adds counts into `into`. */
export const addCounts = (into: Counts, c: Counts): void => {
  into.truePredicted += c.truePredicted
  into.predicted += c.predicted
  into.found += c.found
  into.gold += c.gold
}

/** Precision, recall and F1 of counts. */
export const prf = (c: Counts): { readonly p: number; readonly r: number; readonly f1: number } => {
  const p = c.predicted === 0 ? (c.gold === 0 ? 1 : 0) : c.truePredicted / c.predicted
  const r = c.gold === 0 ? (c.predicted === 0 ? 1 : 0) : c.found / c.gold
  return { p, r, f1: p + r === 0 ? 0 : (2 * p * r) / (p + r) }
}

const namesOf = (e: GoldEntity) => [e.label, ...(e.aliases ?? [])].map((n) => normalise(n, e.type))

/** What an entity evaluation reports per category, plus the misses for a verbose report. */
export interface EntityScore {
  readonly counts: Record<Category, Counts>
  readonly missed: ReadonlyArray<string>
  readonly spurious: ReadonlyArray<string>
}

/** Scores the distinct predicted (label, category) pairs of one document. */
export const scoreEntities = (gold: Gold, predicted: ReadonlyArray<PredictedEntity>): EntityScore => {
  const counts: Record<Category, Counts> = {
    person: zero(),
    organization: zero(),
    place: zero(),
    date: zero(),
    email: zero(),
    url: zero(),
    other: zero()
  }
  const missed: Array<string> = []
  const spurious: Array<string> = []
  const distinct = new Map<string, PredictedEntity>()
  for (const p of predicted) distinct.set(`${p.type}\u0000${normalise(p.label, p.type)}`, p)
  const matchedGold = new Set<GoldEntity>()
  for (const p of distinct.values()) {
    const name = normalise(p.label, p.type)
    const hit = gold.entities.find((g) => !g.optional && g.type === p.type && namesOf(g).includes(name))
    if (hit !== undefined) {
      matchedGold.add(hit)
      counts[p.type].truePredicted++
      counts[p.type].predicted++
      continue
    }
    if (gold.entities.some((g) => g.optional === true && namesOf(g).includes(name))) continue
    counts[p.type].predicted++
    spurious.push(`${p.type}: ${p.label}`)
  }
  for (const g of gold.entities) {
    if (g.optional === true) continue
    counts[g.type].gold++
    if (matchedGold.has(g)) counts[g.type].found++
    else missed.push(`${g.type}: ${g.label}`)
  }
  return { counts, missed, spurious }
}

/** What a relation evaluation reports per predicate, plus the misses for a verbose report. */
export interface RelationScore {
  readonly counts: Map<string, Counts>
  readonly missed: ReadonlyArray<string>
  readonly spurious: ReadonlyArray<string>
}

/** Scores the distinct predicted relations of one document. */
export const scoreRelations = (gold: Gold, predicted: ReadonlyArray<PredictedRelation>): RelationScore => {
  const counts = new Map<string, Counts>()
  const countsOf = (predicate: string) => {
    let c = counts.get(predicate)
    if (c === undefined) {
      c = zero()
      counts.set(predicate, c)
    }
    return c
  }
  const entityNames = (label: string) => {
    const e = gold.entities.find((g) => g.label === label)
    return e === undefined ? [normalise(label)] : namesOf(e)
  }
  const matches = (g: GoldRelation, p: PredictedRelation) => {
    if (g.predicate !== p.predicate) return false
    const s = normalise(p.subject)
    const o = normalise(p.object)
    const gs = entityNames(g.subject)
    const go = entityNames(g.object)
    if (gs.includes(s) && go.includes(o)) return true
    return symmetric.has(g.predicate) && gs.includes(o) && go.includes(s)
  }
  const missed: Array<string> = []
  const spurious: Array<string> = []
  const distinct = new Map<string, PredictedRelation>()
  for (const p of predicted) {
    const parts = [normalise(p.subject), normalise(p.object)]
    if (symmetric.has(p.predicate)) parts.sort()
    distinct.set(`${p.predicate}\u0000${parts.join("\u0000")}`, p)
  }
  const found = new Set<GoldRelation>()
  for (const p of distinct.values()) {
    const c = countsOf(p.predicate)
    c.predicted++
    const hit = gold.relations.find((g) => matches(g, p))
    if (hit !== undefined) {
      c.truePredicted++
      found.add(hit)
    } else {
      spurious.push(`${p.subject} ${p.predicate} ${p.object}`)
    }
  }
  for (const g of gold.relations) {
    const c = countsOf(g.predicate)
    c.gold++
    if (found.has(g)) c.found++
    else missed.push(`${g.subject} ${g.predicate} ${g.object}`)
  }
  return { counts, missed, spurious }
}

/** Formats a row of a Markdown table. */
export const row = (cells: ReadonlyArray<string | number>): string => `| ${cells.join(" | ")} |`

/** Formats a ratio with two decimals. */
export const fixed = (n: number): string => n.toFixed(2)
