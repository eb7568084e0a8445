/**
 * The merge workspace: scratch tables where a merge resolves entities and relations across batches (first insert
 * of a key wins) and reads them back by keyset pages. SQLite: TEMP tables (its client has one connection).
 * PostgreSQL: UNLOGGED tables, since a TEMP table lives in one session and the pool has many; they are registered,
 * so that a later merge drops those of a merge that was killed.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import { randomBytes } from "node:crypto"
import type * as RunStore from "../../RunStore.js"
import { persistence, retryDisconnects, type StoreContext } from "./context.js"

/** A workspace older than this belongs to a merge that died: no merge runs for a day. */
const abandonedAfterMs = 24 * 60 * 60 * 1000

const names = (suffix: string) => ({
  entities: `quarry_merge_entities_${suffix}`,
  mentions: `quarry_merge_mentions_${suffix}`,
  relations: `quarry_merge_relations_${suffix}`
})

/**
 * SQLite's page cache for the temp database (KiB, as a negative `cache_size`). better-sqlite3's build gives every
 * database 16 MB, which a large merge's workspace fills: bounded lower, the rest of the temp tables stays in the
 * file system's cache (docs/benchmarks.md, section 2).
 */
const tempCacheKib = 2048

/**
 * SQLite's page cache for the main database while a merge runs (KiB). The merge reads every stored batch once, in
 * order, so cached pages are never read again; unbounded, a 100,000-batch merge filled better-sqlite3's 16 MB cache
 * with them (docs/benchmarks.md, section 2). The previous size comes back when the last merge of the store ends.
 */
const mainCacheKib = 2048

const createSqlite = (sql: SqlClient.SqlClient, suffix: string) => {
  const t = names(suffix)
  return Effect.all([
    sql.unsafe(`PRAGMA temp.cache_size = -${tempCacheKib}`),
    sql`CREATE TEMP TABLE ${sql(t.entities)} (
      entity_key TEXT PRIMARY KEY, ord INTEGER NOT NULL UNIQUE, label TEXT NOT NULL, type TEXT NOT NULL,
      attributes TEXT NOT NULL)`,
    // No key while the first pass appends: its index is built once, sorted, before the first read (`indexMentions`).
    sql`CREATE TEMP TABLE ${
      sql(t.mentions)
    } (entity_key TEXT NOT NULL, start INTEGER NOT NULL, "end" INTEGER NOT NULL)`,
    sql`CREATE TEMP TABLE ${sql(t.relations)} (
      ord INTEGER NOT NULL UNIQUE, subject_key TEXT NOT NULL, predicate TEXT NOT NULL, object_key TEXT,
      object_value TEXT, object_datatype TEXT, object_language TEXT, identity TEXT PRIMARY KEY)`
  ], { discard: true })
}

const createPg = (sql: SqlClient.SqlClient, suffix: string, now: number) => {
  const t = names(suffix)
  return sql.withTransaction(Effect.all([
    sql`INSERT INTO merge_workspaces (suffix, created_at) VALUES (${suffix}, ${now})`,
    sql`CREATE UNLOGGED TABLE ${sql(t.entities)} (
      entity_key BYTEA PRIMARY KEY, ord INTEGER NOT NULL UNIQUE, label TEXT NOT NULL, type TEXT NOT NULL,
      attributes TEXT NOT NULL)`,
    sql`CREATE UNLOGGED TABLE ${sql(t.mentions)} (
      entity_key BYTEA NOT NULL, start INTEGER NOT NULL, "end" INTEGER NOT NULL,
      PRIMARY KEY (entity_key, start, "end"))`,
    sql`CREATE UNLOGGED TABLE ${sql(t.relations)} (
      ord INTEGER NOT NULL UNIQUE, subject_key BYTEA NOT NULL, predicate TEXT NOT NULL, object_key BYTEA,
      object_value TEXT, object_datatype TEXT, object_language TEXT, identity TEXT PRIMARY KEY)`
  ], { discard: true }))
}

const drop = (sql: SqlClient.SqlClient, suffix: string) => {
  const t = names(suffix)
  return Effect.all([
    sql`DROP TABLE IF EXISTS ${sql(t.entities)}`,
    sql`DROP TABLE IF EXISTS ${sql(t.mentions)}`,
    sql`DROP TABLE IF EXISTS ${sql(t.relations)}`,
    sql.onDialectOrElse({
      pg: () => sql`DELETE FROM merge_workspaces WHERE suffix = ${suffix}`,
      orElse: () => Effect.void
    })
  ], { discard: true })
}

/** Drops the PostgreSQL workspaces of merges that were killed. */
const sweepPg = (sql: SqlClient.SqlClient, now: number) =>
  Effect.gen(function*() {
    const stale = yield* sql<{ suffix: string }>`SELECT suffix FROM merge_workspaces
      WHERE created_at < ${now - abandonedAfterMs}`
    yield* Effect.forEach(stale, ({ suffix }) => drop(sql, suffix), { discard: true })
  })

/** A column of a workspace table as a row's JSON carries it: entity keys, integers, text. */
type Column = readonly [name: string, kind: "key" | "int" | "text"]

const columns: Record<"entities" | "mentions" | "relations", ReadonlyArray<Column>> = {
  entities: [["entity_key", "key"], ["ord", "int"], ["label", "text"], ["type", "text"], ["attributes", "text"]],
  mentions: [["entity_key", "key"], ["start", "int"], ["end", "int"]],
  relations: [
    ["ord", "int"],
    ["subject_key", "key"],
    ["predicate", "text"],
    ["object_key", "key"],
    ["object_value", "text"],
    ["object_datatype", "text"],
    ["object_language", "text"],
    ["identity", "text"]
  ]
}

/** The SQL that reads column `index` of a row array (`value`); PostgreSQL's keys travel as hex (JSON has no NUL). */
const selectColumn = (isPg: boolean, [, kind]: Column, index: number): string =>
  !isPg ?
    `value ->> ${index}` :
    kind === "key" ?
    `decode(value ->> ${index}, 'hex')` :
    kind === "int" ?
    `(value ->> ${index})::integer` :
    `value ->> ${index}`

type Rows = ReadonlyArray<Record<string, unknown>>

/** PostgreSQL gives keys back as bytes. */
const text = (value: unknown): string =>
  typeof value === "string" ? value : Buffer.from(value as Uint8Array).toString("utf8")

/** The merge-workspace operation of the store. */
// A namespace of short operations over one context (each reads at once), not one long function.
export const make = (ctx: StoreContext) => {
  const { isPg, key, sql } = ctx

  const open = (suffix: string): RunStore.MergeWorkspace => {
    const t = names(suffix)
    // One statement per table and page: the rows travel as one JSON array of arrays, which SQLite (`json_each`) and
    // PostgreSQL (`json_array_elements`) unpack in order, so the first row of a key still wins. Binding every value
    // of a multi-row VALUES list made the statement compiler the merge's largest allocator (docs/benchmarks.md, 2).
    const insert = (table: keyof typeof columns, rows: Rows, conflict: string | undefined) => {
      if (rows.length === 0) return Effect.void
      const cols = columns[table]
      const hex = (value: unknown) => typeof value === "string" ? Buffer.from(value, "utf8").toString("hex") : value
      const json = JSON.stringify(
        rows.map((row) => cols.map(([name, kind]) => isPg && kind === "key" ? hex(row[name]) : row[name]))
      )
      const columnList = sql.literal(cols.map(([name]) => `"${name}"`).join(", "))
      const values = sql.literal(cols.map((column, i) => selectColumn(isPg, column, i)).join(", "))
      const source = sql.onDialectOrElse({
        pg: () => sql`json_array_elements(${json}::json) WITH ORDINALITY AS rows (value, n) ORDER BY n`,
        orElse: () => sql`json_each(${json}) WHERE true`
      })
      const onConflict = conflict === undefined
        ? sql.literal("")
        : sql`ON CONFLICT (${sql.literal(conflict)}) DO NOTHING`
      return sql`INSERT INTO ${sql(t[table])} (${columnList}) SELECT ${values} FROM ${source} ${onConflict}`
    }
    // SQLite's mentions arrive in batch order, keyed by entity: inserted into a keyed B-tree they land at random
    // places, which outgrew the workspace's cache and spent about 37 s of a 100,000-batch JSON Lines merge. They are
    // appended unkeyed instead and indexed in one sort before the first read; duplicates are dropped on reading.
    let mentionsIndexed = isPg
    const indexMentions = Effect.suspend(() =>
      mentionsIndexed ?
        Effect.void :
        sql`CREATE INDEX IF NOT EXISTS ${sql(`${t.mentions}_by_key`)} ON ${sql(t.mentions)} (entity_key, start, "end")`
          .pipe(Effect.tap(() => (mentionsIndexed = true)))
    )
    // Inserts that keep the first row of each key are idempotent: a broken connection is retried. They need no
    // transaction (scratch tables: a failed insert fails the merge, and the scope drops them), and one cost memory:
    // each `withTransaction` left objects in V8's old generation, and the page's rows with them, which made the
    // merge's peak RSS grow with the run (docs/benchmarks.md, section 2).
    const add = (page: RunStore.WorkspacePage) =>
      Effect.all([
        retryDisconnects(insert("entities", page.entities, "entity_key")),
        retryDisconnects(insert("mentions", page.mentions, isPg ? "entity_key, start, \"end\"" : undefined)),
        retryDisconnects(insert("relations", page.relations, "identity"))
      ], { discard: true }).pipe(persistence("mergeWorkspace.add"))
    const entities = (afterOrd: number, limit: number) =>
      retryDisconnects(
        sql<RunStore.WorkspaceEntity>`SELECT ord, entity_key, label, type, attributes FROM ${
          sql(t.entities)
        } WHERE ord > ${afterOrd} ORDER BY ord LIMIT ${limit}`
      ).pipe(
        Effect.map((rows) => isPg ? rows.map((r) => ({ ...r, entity_key: text(r.entity_key) })) : rows),
        persistence("mergeWorkspace.entities")
      )
    const mentions = (keys: ReadonlyArray<string>) =>
      Effect.zipRight(
        indexMentions,
        retryDisconnects(
          sql<RunStore.WorkspaceMention>`SELECT DISTINCT entity_key, start, "end" FROM ${
            sql(t.mentions)
          } WHERE entity_key IN ${sql.in(keys.map(key))} ORDER BY entity_key, start, "end"`
        )
      ).pipe(
        Effect.map((rows) => isPg ? rows.map((r) => ({ ...r, entity_key: text(r.entity_key) })) : rows),
        persistence("mergeWorkspace.mentions")
      )
    const relations = (afterOrd: number, limit: number) =>
      retryDisconnects(sql<RunStore.WorkspaceRelation>`SELECT ord, subject_key, predicate, object_key, object_value,
          object_datatype, object_language FROM ${sql(t.relations)}
        WHERE ord > ${afterOrd} ORDER BY ord LIMIT ${limit}`).pipe(
        Effect.map((rows) =>
          isPg ?
            rows.map((r) => ({
              ...r,
              subject_key: text(r.subject_key),
              object_key: r.object_key === null ? null : text(r.object_key)
            })) :
            rows
        ),
        persistence("mergeWorkspace.relations")
      )
    return { add, entities, mentions, relations }
  }

  // SQLite: one connection per store, so the main cache is bounded while any of its merges runs (see mainCacheKib).
  let merging = 0
  let savedCacheSize: number | undefined
  const boundMainCache = Effect.suspend(() => {
    if (isPg || merging++ > 0) return Effect.void
    return sql<{ cache_size: number }>`PRAGMA main.cache_size`.pipe(
      Effect.tap((rows) => {
        savedCacheSize = rows[0]?.cache_size
      }),
      Effect.zipRight(sql.unsafe(`PRAGMA main.cache_size = -${mainCacheKib}`)),
      Effect.onError(() => Effect.sync(() => merging--))
    )
  })
  const restoreMainCache = Effect.suspend(() => {
    if (isPg || --merging > 0 || savedCacheSize === undefined) return Effect.void
    return sql.unsafe(`PRAGMA main.cache_size = ${Math.trunc(savedCacheSize)}`)
  })

  const mergeWorkspace = Effect.gen(function*() {
    const suffix = randomBytes(6).toString("hex")
    const now = yield* Clock.currentTimeMillis
    yield* Effect.acquireRelease(boundMainCache, () => Effect.ignore(restoreMainCache))
    yield* Effect.acquireRelease(
      isPg ? Effect.zipRight(sweepPg(sql, now), createPg(sql, suffix, now)) : createSqlite(sql, suffix),
      () => Effect.ignore(drop(sql, suffix))
    )
    return open(suffix)
  }).pipe(persistence("mergeWorkspace"))

  return { mergeWorkspace }
}
