import postgres, { type Sql } from 'postgres';
import { redactedUrl } from '../../core/redacted-url.js';

/**
 * The PostgreSQL ledger's schema, as numbered migrations applied in order and recorded in
 * `gravity_schema_migrations`. A migration, once released, never changes: a new column or index is a new
 * migration at the end of the list (replicas of the previous release keep running against it, so
 * migrations add rather than rename or drop).
 */
export interface LedgerMigration {
  id: number;
  name: string;
  sql: string;
}

export const ledgerMigrations: readonly LedgerMigration[] = [
  {
    id: 1,
    name: '0001-usage-records-by-day',
    // usage_records is partitioned by day on received_at_ms (PostgresLedgerStore creates each day's
    // partition on demand), so that retention drops whole tables instead of deleting rows. A partitioned
    // table's unique keys must contain the partition key, so "one record per request" across days is
    // kept by usage_request_ids, written in the same transaction. request_id sorts bytewise (COLLATE "C"),
    // as SQLite compares text, so both stores order ties the same whatever the database's locale (replica
    // too, which orders replica periods).
    // Floating-point columns are double precision: `real` is 4 bytes in PostgreSQL and would round.
    sql: `
CREATE TABLE usage_records (
  request_id text COLLATE "C" NOT NULL,
  received_at_ms bigint NOT NULL,
  finished_at_ms bigint NOT NULL,
  endpoint text NOT NULL,
  tenant text NOT NULL,
  api_key_id text,
  model text NOT NULL,
  engine text,
  replica text,
  tier text NOT NULL,
  stream boolean NOT NULL,
  status integer NOT NULL,
  error_code text,
  finish_reason text,
  prompt_tokens bigint NOT NULL,
  cached_prompt_tokens bigint NOT NULL,
  completion_tokens bigint NOT NULL,
  usage_source text NOT NULL,
  queue_wait_ms double precision,
  ttft_ms double precision,
  itl_mean_ms double precision,
  itl_p50_ms double precision,
  itl_p95_ms double precision,
  itl_max_ms double precision,
  e2e_ms double precision NOT NULL,
  energy_joules double precision NOT NULL,
  energy_source text NOT NULL,
  cost_usd double precision NOT NULL,
  cost_source text NOT NULL,
  price_usd double precision NOT NULL,
  margin_usd double precision NOT NULL,
  carbon_grams double precision NOT NULL,
  route text,
  partial boolean NOT NULL DEFAULT false
) PARTITION BY RANGE (received_at_ms);
CREATE INDEX usage_records_received ON usage_records (received_at_ms);
CREATE INDEX usage_records_tenant_received ON usage_records (tenant, received_at_ms);
CREATE TABLE usage_request_ids (
  request_id text COLLATE "C" PRIMARY KEY,
  received_at_ms bigint NOT NULL
);
CREATE INDEX usage_request_ids_received ON usage_request_ids (received_at_ms);
CREATE TABLE replica_periods (
  replica text COLLATE "C" NOT NULL,
  period_start_ms bigint NOT NULL,
  period_end_ms bigint NOT NULL,
  energy_joules double precision NOT NULL,
  idle_energy_joules double precision NOT NULL,
  energy_source text NOT NULL,
  cost_usd double precision NOT NULL,
  idle_cost_usd double precision NOT NULL
);
CREATE INDEX replica_periods_start ON replica_periods (period_start_ms);
`,
  },
  {
    id: 2,
    name: '0002-batch-queue',
    // The Batch API's store for a fleet (src/batch/postgres-batch-store.ts): it shares the ledger's
    // database, so one URL and one `gravity migrate` serve both. A batch row carries its runner's lease
    // (lease_owner until lease_expires_at, on the server's clock). File bytes are rows of at most 1 MiB.
    sql: `
CREATE TABLE batch_files (
  seq bigserial PRIMARY KEY,
  id text NOT NULL UNIQUE,
  tenant text NOT NULL,
  purpose text NOT NULL,
  filename text NOT NULL,
  bytes bigint NOT NULL,
  created_at bigint NOT NULL
);
CREATE INDEX batch_files_tenant ON batch_files (tenant, seq);
CREATE TABLE batch_file_chunks (
  file_id text NOT NULL,
  chunk integer NOT NULL,
  content bytea NOT NULL,
  PRIMARY KEY (file_id, chunk)
);
CREATE TABLE batches (
  seq bigserial PRIMARY KEY,
  id text NOT NULL UNIQUE,
  tenant text NOT NULL,
  api_key_id text,
  endpoint text NOT NULL,
  input_file_id text NOT NULL,
  completion_window text NOT NULL,
  status text NOT NULL,
  created_at bigint NOT NULL,
  expires_at bigint NOT NULL,
  in_progress_at bigint,
  finalizing_at bigint,
  completed_at bigint,
  failed_at bigint,
  expired_at bigint,
  cancelling_at bigint,
  cancelled_at bigint,
  output_file_id text,
  error_file_id text,
  errors_json jsonb,
  metadata_json jsonb,
  validated boolean NOT NULL DEFAULT false,
  total bigint NOT NULL DEFAULT 0,
  completed bigint NOT NULL DEFAULT 0,
  failed bigint NOT NULL DEFAULT 0,
  prompt_tokens bigint NOT NULL DEFAULT 0,
  cached_prompt_tokens bigint NOT NULL DEFAULT 0,
  completion_tokens bigint NOT NULL DEFAULT 0,
  lease_owner text,
  lease_expires_at timestamptz
);
CREATE INDEX batches_tenant ON batches (tenant, seq);
CREATE INDEX batches_unfinished ON batches (seq)
  WHERE status IN ('validating', 'in_progress', 'finalizing', 'cancelling');
CREATE TABLE batch_lines (
  batch_id text NOT NULL,
  line_number integer NOT NULL,
  succeeded boolean NOT NULL,
  result_line text NOT NULL,
  PRIMARY KEY (batch_id, line_number)
);
`,
  },
  {
    id: 3,
    name: '0003-stored-responses',
    // `/v1/responses` with `store` (src/responses/postgres-response-store.ts), shared by the replicas so
    // that `previous_response_id` works on any of them. The Response is text: the JSON as it was sent.
    sql: `
CREATE TABLE stored_responses (
  id text PRIMARY KEY,
  tenant text NOT NULL,
  created_at bigint NOT NULL,
  previous_response_id text,
  response text NOT NULL,
  input_items text NOT NULL
);
CREATE INDEX stored_responses_created_at ON stored_responses (created_at);
`,
  },
  {
    id: 4,
    name: '0004-client-request-id',
    // The client's own x-request-id beside Gravity's: added to the partitioned parent, so every day's
    // partition, existing or future, has it. Older replicas' inserts leave it null.
    sql: `
ALTER TABLE usage_records ADD COLUMN client_request_id text;
`,
  },
];

/**
 * The advisory lock the migrations hold (an arbitrary constant, "gravity" in ASCII), so that replicas
 * starting at once apply each migration once: the second waits, then finds them applied.
 */
const migrationLockKey = 0x67726176;

/**
 * Applies the migrations the database lacks, all in one transaction under `pg_advisory_xact_lock`:
 * either every pending migration is applied and recorded, or none. Returns the names applied, in order
 * (empty when the schema was up to date). `gravity migrate` and `PostgresLedgerStore.open` call it.
 */
export async function migrateLedger(sql: Sql): Promise<string[]> {
  return sql.begin(async (transaction) => {
    await transaction`SELECT pg_advisory_xact_lock(${migrationLockKey})`;
    // Created under the lock: two replicas' CREATE TABLE IF NOT EXISTS can otherwise both try to create it.
    await transaction.unsafe(
      `CREATE TABLE IF NOT EXISTS gravity_schema_migrations (
        id integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
    );
    const appliedRows = await transaction<Array<{ id: number }>>`SELECT id FROM gravity_schema_migrations`;
    const applied = new Set(appliedRows.map((row) => row.id));
    const names: string[] = [];
    for (const migration of ledgerMigrations) {
      if (applied.has(migration.id)) continue;
      await transaction.unsafe(migration.sql);
      await transaction`INSERT INTO gravity_schema_migrations (id, name) VALUES (${migration.id}, ${migration.name})`;
      names.push(migration.name);
    }
    return names;
  });
}

/**
 * The migrations this Gravity needs that the database has not applied (their names; empty when it is up
 * to date). A database migrated by a newer Gravity has more, which is fine: migrations only add.
 */
export async function pendingLedgerMigrations(sql: Sql): Promise<string[]> {
  const [table] = await sql<Array<{ exists: boolean }>>`
    SELECT to_regclass('gravity_schema_migrations') IS NOT NULL AS exists`;
  if (!table?.exists) return ledgerMigrations.map((migration) => migration.name);
  const appliedRows = await sql<Array<{ id: number }>>`SELECT id FROM gravity_schema_migrations`;
  const applied = new Set(appliedRows.map((row) => row.id));
  return ledgerMigrations
    .filter((migration) => !applied.has(migration.id))
    .map((migration) => migration.name);
}

/**
 * A connection pool to the ledger's database, checked with one query: a server that cannot be reached
 * fails here with an error naming the URL (password hidden) and the cause, so a replica never starts
 * without its ledger. Counts, token sums and times come back as JavaScript numbers, as SQLite gives them.
 */
export async function postgresConnection(url: string, options: { max?: number } = {}): Promise<Sql> {
  const sql = postgres(url, {
    max: options.max ?? 1,
    connect_timeout: 10,
    // Idle connections close, so an idle gateway holds none.
    idle_timeout: 30,
    onnotice: () => {},
    // int8 and numeric come back as text by default, as they may pass 2^53; epoch ms and token totals do not.
    types: {
      bigint: { to: 20, from: [20, 1700], serialize: (value: number) => String(value), parse: Number },
    },
    connection: {
      application_name: 'gravity-ledger',
      // Shortest exact float text: every double reads back bit for bit, whatever the server's default.
      extra_float_digits: 1,
      // The ledger's summaries look costly to the planner (a subquery per group), so it JIT-compiles
      // them: ~2 s of compilation for a query that runs in milliseconds (bench:usage --postgres-jit).
      jit: 'off',
    },
  });
  try {
    await sql`SELECT 1`;
  } catch (error) {
    await sql.end({ timeout: 0 });
    throw new Error(
      `cannot connect to the PostgreSQL ledger at ${redactedUrl(url)}: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
  return sql;
}

/**
 * A pool to the fleet's database with its schema current: migrated (`migrate`), or checked, failing
 * with "run gravity migrate" when it is behind. The ledger, the batch store and the response store each
 * open theirs through here, so that each fails alike, naming the URL (password hidden).
 */
export async function migratedPostgres(
  url: string,
  options: { migrate: boolean; max: number },
): Promise<Sql> {
  const sql = await postgresConnection(url, { max: options.max });
  try {
    if (options.migrate) await migrateLedger(sql);
    else {
      const pending = await pendingLedgerMigrations(sql);
      if (pending.length > 0)
        throw new Error(
          `the PostgreSQL database at ${redactedUrl(url)} lacks migrations ${pending.join(', ')}: run gravity migrate`,
        );
    }
  } catch (error) {
    await sql.end({ timeout: 5 });
    throw error;
  }
  return sql;
}
