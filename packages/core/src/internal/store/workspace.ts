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

const rowsPerInsert = 400
/** A workspace older than this belongs to a merge that died: no merge runs for a day. */
const abandonedAfterMs = 24 * 60 * 60 * 1000

const names = (suffix: string) => ({
  entities: `quarry_merge_entities_${suffix}`,
  mentions: `quarry_merge_mentions_${suffix}`,
  relations: `quarry_merge_relations_${suffix}`
})

const createSqlite = (sql: SqlClient.SqlClient, suffix: string) => {
  const t = names(suffix)
  return Effect.all([
    sql`CREATE TEMP TABLE ${sql(t.entities)} (
      entity_key TEXT PRIMARY KEY, ord INTEGER NOT NULL UNIQUE, label TEXT NOT NULL, type TEXT NOT NULL,
      attributes TEXT NOT NULL)`,
    sql`CREATE TEMP TABLE ${sql(t.mentions)} (
      entity_key TEXT NOT NULL, start INTEGER NOT NULL, "end" INTEGER NOT NULL,
      PRIMARY KEY (entity_key, start, "end")) WITHOUT ROWID`,
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

const chunksOf = <A>(items: ReadonlyArray<A>, size: number): Array<ReadonlyArray<A>> => {
  const out: Array<ReadonlyArray<A>> = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

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
    const insert = (table: string, rows: Rows, conflict: string) =>
      Effect.forEach(
        chunksOf(rows, rowsPerInsert),
        (slice) =>
          sql`INSERT INTO ${sql(table)} ${sql.insert(slice)} ON CONFLICT (${sql.literal(conflict)}) DO NOTHING`,
        { discard: true }
      )
    // Keys become bytes on PostgreSQL; SQLite takes the rows as they are (no copy per row on the merge's hot path).
    const pgPage = (page: RunStore.WorkspacePage): Record<keyof RunStore.WorkspacePage, Rows> => ({
      entities: page.entities.map((e) => ({ ...e, entity_key: key(e.entity_key) })),
      mentions: page.mentions.map((m) => ({ ...m, entity_key: key(m.entity_key) })),
      relations: page.relations.map((r) => ({
        ...r,
        subject_key: key(r.subject_key),
        object_key: r.object_key === null ? null : key(r.object_key)
      }))
    })
    const add = (page: RunStore.WorkspacePage) => {
      const rows = isPg ? pgPage(page) : page
      // Inserts that keep the first row of each key are idempotent: a broken connection is retried.
      return retryDisconnects(ctx.transaction(Effect.all([
        insert(t.entities, rows.entities, "entity_key"),
        insert(t.mentions, rows.mentions, "entity_key, start, \"end\""),
        insert(t.relations, rows.relations, "identity")
      ], { discard: true }))).pipe(persistence("mergeWorkspace.add"))
    }
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
      retryDisconnects(sql<RunStore.WorkspaceMention>`SELECT entity_key, start, "end" FROM ${sql(t.mentions)}
        WHERE entity_key IN ${sql.in(keys.map(key))} ORDER BY entity_key, start, "end"`).pipe(
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

  const mergeWorkspace = Effect.gen(function*() {
    const suffix = randomBytes(6).toString("hex")
    const now = yield* Clock.currentTimeMillis
    yield* Effect.acquireRelease(
      isPg ? Effect.zipRight(sweepPg(sql, now), createPg(sql, suffix, now)) : createSqlite(sql, suffix),
      () => Effect.ignore(drop(sql, suffix))
    )
    return open(suffix)
  }).pipe(persistence("mergeWorkspace"))

  return { mergeWorkspace }
}
