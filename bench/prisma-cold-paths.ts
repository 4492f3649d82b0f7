/**
 * Cold read paths, pg vs Prisma Client (docs/prisma.md): for each read the kernel serves through
 * Prisma Client (ListSeries, ListSecrets, ListSchedules), the very same read through the pg path
 * (Database.inTenantTransaction, read-only — what the RPC used before) and through
 * PrismaTenantReads (what it uses now), in one run, on one scratch PostgreSQL database: ops/s and
 * p50/p99 latency. In process, without gRPC (whose cost is the same either way), so the figures
 * are the read paths' own. Each tenant has 100 rows per registry; a "page of 100" reads the RPC's
 * default page (limit 101), a "page of 1" shows the fixed cost of a transaction.
 *
 *   npm run bench:prisma-cold-paths [-- --seconds 3 --concurrency 4]
 */
import { parseArgs } from 'node:util';
import { Client } from 'pg';
import { Database } from '../services/platform/database/database';
import { PrismaTenantReads } from '../services/platform/database/prisma-tenant-client';
import { applyMigrations, loadMigrations } from '../services/platform/migrations/migration-runner';
import { listSchedules, listSchedulesWithPrisma } from '../services/scheduler/schedules';
import { listSecrets, listSecretsWithPrisma } from '../services/secrets/secret-store';
import { listSeriesWithPrisma, SeriesStore } from '../services/sequences/series-store';
import { createTestDatabase } from '../tests/support/test-database';
import { fmt, machineLine, runLoad, type LoadResult } from './load';

const TENANT = 'bench';
const ROWS = 100;

async function seed(url: string): Promise<void> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    await applyMigrations(client, loadMigrations(`${__dirname}/../prisma/migrations`));
    await client.query(
      `INSERT INTO sequence_series (tenant_id, series_id, display_name, pattern, reset_policy, start_value, time_zone, default_reservation_ttl_seconds)
         SELECT $1, 'series-' || lpad(i::text, 3, '0'), 'Series ' || i, 'INV-{YYYY}-{SEQ:6}', 'YEARLY', 1, 'Europe/Prague', 900 FROM generate_series(1, $2) i`,
      [TENANT, ROWS],
    );
    await client.query(
      `INSERT INTO secret (tenant_id, secret_id, kind, description, rotation_period_seconds, default_grace_period_seconds)
         SELECT $1, 'secret-' || lpad(i::text, 3, '0'), 'OPAQUE', 'bench secret ' || i, CASE WHEN i % 2 = 0 THEN 86400 END, 3600 FROM generate_series(1, $2) i`,
      [TENANT, ROWS],
    );
    await client.query(
      `INSERT INTO scheduler_schedule (tenant_id, schedule_id, cron, time_zone, queue, job_type, payload, max_attempts, timeout_ms, overlap_policy, catchup_window_seconds, next_fire_time)
         SELECT $1, 'schedule-' || lpad(i::text, 3, '0'), '0 2 * * *', 'UTC', 'default', 'bench.noop', jsonb_build_object('i', i, 'tags', jsonb_build_array('a', 'b')), 3, 30000, 'SKIP', 0, now() + interval '1 day'
           FROM generate_series(1, $2) i`,
      [TENANT, ROWS],
    );
  } finally {
    await client.end();
  }
}

async function main() {
  const { values } = parseArgs({ options: { seconds: { type: 'string', default: '3' }, concurrency: { type: 'string', default: '4' } } });
  const seconds = Number(values.seconds);
  const concurrency = Number(values.concurrency);
  const db = await createTestDatabase('axis_bench_prisma');
  // The same pool size, timeouts and admission for both paths: only the client differs.
  const options = { poolSize: concurrency, connectionsPerTenant: concurrency, statementTimeoutMs: 5000, lockTimeoutMs: 1000, acquireTimeoutMs: 5000 };
  let pg: Database | undefined;
  let prisma: PrismaTenantReads | undefined;
  try {
    await seed(db.url);
    pg = new Database({ connectionString: db.url, application_name: 'axis-bench-pg' }, options);
    prisma = new PrismaTenantReads(db.url, options);
    const store = new SeriesStore();
    const paths = [
      { name: 'ListSeries', operation: 'SELECT sequence_series', viaPg: store.list.bind(store), viaPrisma: listSeriesWithPrisma },
      { name: 'ListSecrets', operation: 'SELECT secret', viaPg: listSecrets, viaPrisma: listSecretsWithPrisma },
      { name: 'ListSchedules', operation: 'SELECT scheduler_schedule', viaPg: listSchedules, viaPrisma: listSchedulesWithPrisma },
    ] as const;

    const lines: string[] = [];
    const line = (label: string, r: LoadResult) =>
      `    ${label.padEnd(7)} ${fmt(r.perSecond).padStart(7)} ops/s   p50 ${fmt(r.p50, 2).padStart(6)} ms   p99 ${fmt(r.p99, 2).padStart(6)} ms`;
    for (const path of paths) {
      for (const limit of [ROWS + 1, 2]) {
        const viaPg = () => pg!.inTenantTransaction(TENANT, (tx) => (path.viaPg as (tx: unknown, after: string, limit: number) => Promise<unknown[]>)(tx, '', limit), { readOnly: true });
        const viaPrisma = () => prisma!.read(TENANT, path.operation, (tx) => (path.viaPrisma as (tx: unknown, after: string, limit: number) => Promise<unknown[]>)(tx, '', limit));
        // Same answer first (the equivalence the tests prove in detail), then the load.
        const [a, b] = await Promise.all([viaPg(), viaPrisma()]);
        if (JSON.stringify(a) !== JSON.stringify(b)) throw new Error(`${path.name}: pg and Prisma answers differ`);
        const pgResult = await runLoad(viaPg, concurrency, seconds * 1000, 500);
        const prismaResult = await runLoad(viaPrisma, concurrency, seconds * 1000, 500);
        lines.push(`  ${path.name}, page of ${limit - 1} (${(a as unknown[]).length} rows read):`);
        lines.push(line('pg', pgResult));
        lines.push(line('Prisma', prismaResult));
        lines.push(`    Prisma/pg throughput ${fmt(prismaResult.perSecond / pgResult.perSecond, 2)}`);
      }
    }
    console.log(`Prisma cold-path benchmark — ${machineLine()}`);
    console.log(`  ${concurrency} concurrent callers, ${seconds} s per measurement (after 0.5 s warm-up), pool of ${concurrency} for each client`);
    for (const l of lines) console.log(l);
  } finally {
    await prisma?.close();
    await pg?.close();
    await db.drop();
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
