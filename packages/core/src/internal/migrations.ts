import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"

/**
 * Append-only: never edit a migration that has shipped; add the next number instead. A migration is as long as the
 * schema it creates (plain SQL statements in order), which is why the first one runs past ~80 lines.
 */
export const sqliteMigrations = {
  "0001_create_runs": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE ontologies (
      sha256 TEXT PRIMARY KEY,
      source TEXT NOT NULL
    )`
    yield* sql`CREATE TABLE runs (
      id TEXT PRIMARY KEY,
      status TEXT NOT NULL
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled', 'interrupted')),
      status_version INTEGER NOT NULL,
      created_at INTEGER NOT NULL,
      updated_at INTEGER NOT NULL,
      started_at INTEGER,
      finished_at INTEGER,
      input_sha256 TEXT NOT NULL,
      input_length INTEGER NOT NULL,
      chunking_strategy TEXT NOT NULL,
      window_size INTEGER NOT NULL,
      overlap INTEGER NOT NULL,
      batch_size INTEGER NOT NULL,
      chunker_version TEXT NOT NULL,
      extractor_name TEXT NOT NULL,
      extractor_version TEXT NOT NULL,
      extractor_config_hash TEXT NOT NULL,
      extractor_settings TEXT NOT NULL DEFAULT '{}',
      ontology_sha256 TEXT REFERENCES ontologies (sha256),
      concurrency INTEGER NOT NULL,
      total_batches INTEGER NOT NULL,
      output_path TEXT NOT NULL,
      output_format TEXT NOT NULL,
      on_batch_error TEXT NOT NULL CHECK (on_batch_error IN ('fail', 'skip')),
      provenance INTEGER NOT NULL DEFAULT 0,
      committed_batches INTEGER NOT NULL DEFAULT 0,
      skipped_batches INTEGER NOT NULL DEFAULT 0,
      entity_mentions INTEGER NOT NULL DEFAULT 0,
      relations INTEGER NOT NULL DEFAULT 0,
      digest TEXT NOT NULL,
      usage_requests INTEGER NOT NULL DEFAULT 0,
      usage_prompt_tokens INTEGER NOT NULL DEFAULT 0,
      usage_completion_tokens INTEGER NOT NULL DEFAULT 0,
      usage_cost_usd REAL NOT NULL DEFAULT 0,
      last_error TEXT,
      failure_reason TEXT,
      artifact_path TEXT,
      artifact_sha256 TEXT,
      artifact_bytes INTEGER,
      artifact_format TEXT,
      lease_owner TEXT,
      lease_expires_at INTEGER,
      cancel_requested INTEGER NOT NULL DEFAULT 0,
      extractor_status TEXT NOT NULL DEFAULT '{}'
    )`
    yield* sql`CREATE INDEX runs_by_status ON runs (status, created_at)`
    yield* sql`CREATE TABLE run_inputs (
      run_id TEXT PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
      sha256 TEXT NOT NULL,
      text TEXT NOT NULL
    )`
    yield* sql`CREATE TABLE batches (
      run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
      batch_index INTEGER NOT NULL,
      status TEXT NOT NULL CHECK (status IN ('ok', 'skipped')),
      error TEXT,
      output BLOB NOT NULL,
      encoding TEXT NOT NULL CHECK (encoding IN ('json', 'deflate')),
      output_sha256 TEXT NOT NULL,
      entity_mentions INTEGER NOT NULL,
      relations INTEGER NOT NULL,
      attempts INTEGER NOT NULL,
      duration_ms INTEGER NOT NULL,
      usage TEXT,
      committed_at INTEGER NOT NULL,
      PRIMARY KEY (run_id, batch_index)
    )`
    yield* sql`CREATE TABLE checkpoints (
      run_id TEXT NOT NULL,
      batch_index INTEGER NOT NULL,
      entity_mentions INTEGER NOT NULL,
      relations INTEGER NOT NULL,
      digest TEXT NOT NULL,
      committed_at INTEGER NOT NULL,
      PRIMARY KEY (run_id, batch_index),
      FOREIGN KEY (run_id, batch_index) REFERENCES batches (run_id, batch_index) ON DELETE CASCADE
    ) WITHOUT ROWID`
    yield* sql`CREATE TABLE entities (
      run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
      entity_key TEXT NOT NULL,
      label TEXT NOT NULL,
      type TEXT NOT NULL,
      first_batch INTEGER NOT NULL,
      PRIMARY KEY (run_id, entity_key)
    ) WITHOUT ROWID`
    yield* sql`CREATE TABLE run_errors (
      run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
      at INTEGER NOT NULL,
      reason TEXT NOT NULL,
      message TEXT NOT NULL
    )`
    yield* sql`CREATE INDEX run_errors_by_run ON run_errors (run_id, at)`
    // Usage of every extractor attempt, written as soon as it is known (outside the batch transaction), so that
    // spend on attempts lost to a crash is still counted against budgets and reported.
    yield* sql`CREATE TABLE usage_attempts (
      run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
      batch_index INTEGER NOT NULL,
      at INTEGER NOT NULL,
      requests INTEGER NOT NULL,
      prompt_tokens INTEGER NOT NULL,
      completion_tokens INTEGER NOT NULL,
      cost_usd REAL NOT NULL
    )`
    yield* sql`CREATE INDEX usage_attempts_by_run ON usage_attempts (run_id, batch_index)`
  }),
  "0002_lease_tokens": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // A random token per claim: the owner name alone does not tell two executions with the same name apart.
    yield* sql`ALTER TABLE runs ADD COLUMN lease_token TEXT`
    // Where the holder runs, so that a holder that is provably dead (same host, process gone) is taken over at once.
    yield* sql`ALTER TABLE runs ADD COLUMN lease_host TEXT`
    yield* sql`ALTER TABLE runs ADD COLUMN lease_pid INTEGER`
    yield* sql`ALTER TABLE runs ADD COLUMN lease_pid_started TEXT`
    // knownEntities reads the entities first seen in a range of batches.
    yield* sql`CREATE INDEX entities_by_first_batch ON entities (run_id, first_batch, entity_key)`
  }),
  "0003_compensation_steps": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // Undo steps live with the run, not with the process that registered them: any process can run them.
    yield* sql`CREATE TABLE compensation_steps (
      run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
      seq INTEGER NOT NULL,
      handler TEXT NOT NULL,
      name TEXT NOT NULL,
      payload TEXT NOT NULL,
      state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'failed')),
      last_error TEXT,
      registered_at INTEGER NOT NULL,
      settled_at INTEGER,
      PRIMARY KEY (run_id, seq)
    )`
  }),
  "0004_queued_executions": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // The admission FIFO of `quarry serve`: a restart requeues these with their options (the budget above all).
    // A row lives from the request until its execution ends; `seq` (a rowid alias) gives the order.
    yield* sql`CREATE TABLE queued_executions (
      seq INTEGER PRIMARY KEY,
      run_id TEXT NOT NULL UNIQUE REFERENCES runs (id) ON DELETE CASCADE,
      retry_skipped INTEGER NOT NULL DEFAULT 0,
      budget TEXT,
      request_id TEXT,
      queued_at INTEGER NOT NULL
    )`
  }),
  "0005_usage_attempt_ids": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* attemptIds(sql)
  }),
  "0006_entity_type_in_key": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* entityTypeInKey(sql)
  }),
  "0007_run_budgets": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* runBudgets(sql)
  })
}

/**
 * An entity's class is the part of its key before the first NUL (`Extractor.Name` refuses NUL in classes), so the
 * `type` column repeated it: dropping it saves about a tenth of the metadata a batch stores (docs/benchmarks.md,
 * section 6). Before this migration a JavaScript extractor could store a class with a NUL, which the key cannot give
 * back: `entityTypesWithNul` refuses such a database before anything is migrated.
 */
const entityTypeInKey = (sql: SqlClient.SqlClient) => sql`ALTER TABLE entities DROP COLUMN type`

/** The SQLite schema version that no longer stores an entity's class apart from its key. */
const typeInKeyVersion = 6

/**
 * Why a SQLite database at `schemaVersion` cannot take migration 0006: the runs whose entity classes hold a NUL
 * (reading every entity row once, only while that migration is pending).
 */
export const entityTypesWithNul = (sql: SqlClient.SqlClient, schemaVersion: number) =>
  schemaVersion === 0 || schemaVersion >= typeInKeyVersion ?
    Effect.succeed([]) :
    Effect.map(
      sql<{ run_id: string }>`SELECT DISTINCT run_id FROM entities WHERE instr(CAST(type AS BLOB), x'00') > 0`,
      (rows) =>
        rows.length === 0 ? [] : [
          `entity classes with a NUL character in run${rows.length === 1 ? "" : "s"} ` +
          `${rows.map((r) => r.run_id).join(", ")}, which this Quarry refuses and cannot migrate; open the ` +
          `database with the Quarry that wrote it to export or delete ${rows.length === 1 ? "that run" : "those runs"}`
        ]
    )

/** The spend limits in force for each run (JSON), which a resume without limits keeps. */
const runBudgets = (sql: SqlClient.SqlClient) => sql`ALTER TABLE runs ADD COLUMN budget TEXT`

/**
 * A key per extractor attempt, chosen by the caller once per attempt: a write retried after a lost answer (the
 * insert may have landed) stores nothing the second time, so no attempt's usage is counted twice. Rows written
 * before it have none (a unique index lets NULLs repeat).
 */
const attemptIds = (sql: SqlClient.SqlClient) =>
  Effect.zipRight(
    sql`ALTER TABLE usage_attempts ADD COLUMN attempt_id TEXT`,
    sql`CREATE UNIQUE INDEX usage_attempts_by_id ON usage_attempts (run_id, attempt_id)`
  )

/** The newest SQLite schema version this code knows; a database with a newer one is refused. */
export const latestSchemaVersion = Object.keys(sqliteMigrations).length

export const migrate = Migrator.make({})({ loader: Migrator.fromRecord(sqliteMigrations) })

/**
 * PostgreSQL's own history, append-only like SQLite's. Its first migration is the SQLite schema of 0001-0003 in
 * PostgreSQL types: BIGINT milliseconds, BYTEA outputs, entity keys as BYTEA (they hold a NUL, which TEXT refuses;
 * BYTEA also orders them bytewise, as SQLite's BINARY collation does), ids in the "C" collation (the order of
 * `runs` pages must not depend on the server's locale).
 */
const pgMigrations = {
  "0001_create_runs": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE ontologies (sha256 TEXT PRIMARY KEY, source TEXT NOT NULL)`
    yield* sql`CREATE TABLE runs (
      id TEXT COLLATE "C" PRIMARY KEY,
      status TEXT NOT NULL
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled', 'interrupted')),
      status_version INTEGER NOT NULL,
      created_at BIGINT NOT NULL,
      updated_at BIGINT NOT NULL,
      started_at BIGINT,
      finished_at BIGINT,
      input_sha256 TEXT NOT NULL,
      input_length INTEGER NOT NULL,
      chunking_strategy TEXT NOT NULL,
      window_size INTEGER NOT NULL,
      overlap INTEGER NOT NULL,
      batch_size INTEGER NOT NULL,
      chunker_version TEXT NOT NULL,
      extractor_name TEXT NOT NULL,
      extractor_version TEXT NOT NULL,
      extractor_config_hash TEXT NOT NULL,
      extractor_settings TEXT NOT NULL DEFAULT '{}',
      ontology_sha256 TEXT REFERENCES ontologies (sha256),
      concurrency INTEGER NOT NULL,
      total_batches INTEGER NOT NULL,
      output_path TEXT NOT NULL,
      output_format TEXT NOT NULL,
      on_batch_error TEXT NOT NULL CHECK (on_batch_error IN ('fail', 'skip')),
      provenance INTEGER NOT NULL DEFAULT 0,
      committed_batches INTEGER NOT NULL DEFAULT 0,
      skipped_batches INTEGER NOT NULL DEFAULT 0,
      entity_mentions BIGINT NOT NULL DEFAULT 0,
      relations BIGINT NOT NULL DEFAULT 0,
      digest TEXT NOT NULL,
      usage_requests BIGINT NOT NULL DEFAULT 0,
      usage_prompt_tokens BIGINT NOT NULL DEFAULT 0,
      usage_completion_tokens BIGINT NOT NULL DEFAULT 0,
      usage_cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
      last_error TEXT,
      failure_reason TEXT,
      artifact_path TEXT,
      artifact_sha256 TEXT,
      artifact_bytes BIGINT,
      artifact_format TEXT,
      lease_owner TEXT,
      lease_expires_at BIGINT,
      cancel_requested INTEGER NOT NULL DEFAULT 0,
      extractor_status TEXT NOT NULL DEFAULT '{}',
      lease_token TEXT,
      lease_host TEXT,
      lease_pid INTEGER,
      lease_pid_started TEXT
    )`
    yield* sql`CREATE INDEX runs_by_status ON runs (status, created_at)`
    yield* sql`CREATE INDEX runs_by_created ON runs (created_at, id)`
    yield* sql`CREATE TABLE run_inputs (
      run_id TEXT COLLATE "C" PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
      sha256 TEXT NOT NULL,
      text TEXT NOT NULL
    )`
    yield* sql`CREATE TABLE batches (
      run_id TEXT COLLATE "C" NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
      batch_index INTEGER NOT NULL,
      status TEXT NOT NULL CHECK (status IN ('ok', 'skipped')),
      error TEXT,
      output BYTEA NOT NULL,
      encoding TEXT NOT NULL CHECK (encoding IN ('json', 'deflate')),
      output_sha256 TEXT NOT NULL,
      entity_mentions INTEGER NOT NULL,
      relations INTEGER NOT NULL,
      attempts INTEGER NOT NULL,
      duration_ms BIGINT NOT NULL,
      usage TEXT,
      committed_at BIGINT NOT NULL,
      PRIMARY KEY (run_id, batch_index)
    )`
    yield* sql`CREATE TABLE checkpoints (
      run_id TEXT COLLATE "C" NOT NULL,
      batch_index INTEGER NOT NULL,
      entity_mentions BIGINT NOT NULL,
      relations BIGINT NOT NULL,
      digest TEXT NOT NULL,
      committed_at BIGINT NOT NULL,
      PRIMARY KEY (run_id, batch_index),
      FOREIGN KEY (run_id, batch_index) REFERENCES batches (run_id, batch_index) ON DELETE CASCADE
    )`
    yield* sql`CREATE TABLE entities (
      run_id TEXT COLLATE "C" NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
      entity_key BYTEA NOT NULL,
      label TEXT NOT NULL,
      type TEXT NOT NULL,
      first_batch INTEGER NOT NULL,
      PRIMARY KEY (run_id, entity_key)
    )`
    yield* sql`CREATE INDEX entities_by_first_batch ON entities (run_id, first_batch, entity_key)`
    yield* sql`CREATE TABLE run_errors (
      seq BIGSERIAL PRIMARY KEY,
      run_id TEXT COLLATE "C" NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
      at BIGINT NOT NULL,
      reason TEXT NOT NULL,
      message TEXT NOT NULL
    )`
    yield* sql`CREATE INDEX run_errors_by_run ON run_errors (run_id, at)`
    yield* sql`CREATE TABLE usage_attempts (
      run_id TEXT COLLATE "C" NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
      batch_index INTEGER NOT NULL,
      at BIGINT NOT NULL,
      requests BIGINT NOT NULL,
      prompt_tokens BIGINT NOT NULL,
      completion_tokens BIGINT NOT NULL,
      cost_usd DOUBLE PRECISION NOT NULL
    )`
    yield* sql`CREATE INDEX usage_attempts_by_run ON usage_attempts (run_id, batch_index)`
    yield* sql`CREATE TABLE compensation_steps (
      run_id TEXT COLLATE "C" NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
      seq INTEGER NOT NULL,
      handler TEXT NOT NULL,
      name TEXT NOT NULL,
      payload TEXT NOT NULL,
      state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'failed')),
      last_error TEXT,
      registered_at BIGINT NOT NULL,
      settled_at BIGINT,
      PRIMARY KEY (run_id, seq)
    )`
    // Merge workspaces are UNLOGGED tables shared by the pool's connections (a TEMP table lives in one session);
    // this registry lets a later merge drop the tables of one that was killed.
    yield* sql`CREATE TABLE merge_workspaces (suffix TEXT PRIMARY KEY, created_at BIGINT NOT NULL)`
  }),
  "0002_queued_executions": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // SQLite's 0004: the durable admission FIFO.
    yield* sql`CREATE TABLE queued_executions (
      seq BIGSERIAL PRIMARY KEY,
      run_id TEXT COLLATE "C" NOT NULL UNIQUE REFERENCES runs (id) ON DELETE CASCADE,
      retry_skipped INTEGER NOT NULL DEFAULT 0,
      budget TEXT,
      request_id TEXT,
      queued_at BIGINT NOT NULL
    )`
  }),
  "0003_usage_attempt_ids": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // SQLite's 0005.
    yield* attemptIds(sql)
  }),
  "0004_run_budgets": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // SQLite's 0007.
    yield* runBudgets(sql)
  })
  // No counterpart of SQLite's 0006: the `type` column stays for runners of the version before (see
  // `StoreContext.entityRow`).
}

/** The newest PostgreSQL schema version this code knows. */
export const latestPgSchemaVersion = Object.keys(pgMigrations).length

/** Each PostgreSQL migration's name by its id, as the migrator records them (`1` -> `create_runs`). */
const pgMigrationNames = new Map(
  Object.keys(pgMigrations).map((key) => [Number(key.slice(0, key.indexOf("_"))), key.slice(key.indexOf("_") + 1)])
)

/**
 * The recorded migrations (`id name`) that are not Quarry's: `effect_sql_migrations` is `@effect/sql`'s table, so
 * another application on the same database may have written it. Read as Quarry's, its ids would pass for Quarry's
 * schema version and skip (or refuse as newer) Quarry's own migrations. Ids beyond this Quarry's are a newer
 * Quarry's, whose names it cannot know.
 */
export const foreignPgMigrations = (
  recorded: ReadonlyArray<{ readonly id: number; readonly name: string }>
): ReadonlyArray<string> =>
  recorded.filter(({ id, name }) => id <= latestPgSchemaVersion && pgMigrationNames.get(id) !== name)
    .map(({ id, name }) => `${id} ${name}`)

/**
 * Migrates PostgreSQL inside one transaction that first takes an advisory lock: a second process migrating the same
 * empty database waits, then finds everything done (PostgreSQL's DDL is transactional; the migrator's own
 * transactions nest as savepoints).
 */
export const migratePg = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  return yield* sql.withTransaction(Effect.gen(function*() {
    yield* sql`SELECT pg_advisory_xact_lock(${migrationLockKey})`
    // The migrator probes its table with a statement that fails when it is missing, which would abort this
    // transaction: create it first (the migrator's own schema), under the lock.
    yield* sql`CREATE TABLE IF NOT EXISTS effect_sql_migrations (
      migration_id integer primary key,
      created_at timestamp with time zone not null default now(),
      name text not null
    )`
    return yield* Migrator.make({})({ loader: Migrator.fromRecord(pgMigrations) })
  }))
})

/** `hashtext('quarry migrations')` would do too; a constant keeps it obvious in `pg_locks`. */
const migrationLockKey = 7_161_527_979
