import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { Client } from 'pg';
import { applyMigrations, loadMigrations } from '../../services/platform/migrations/migration-runner';
import { detectSchemaDrift, expectedPostgresType, loadPrismaSchema, parsePrismaSchema, readPrismaSchemaFiles, type DriftReport } from '../support/schema-drift';
import { checkTenantRowLevelSecurity } from '../../services/platform/migrations/tenant-rls-governance';
import { createTestDatabase, type TestDatabase } from '../support/test-database';

const repoRoot = resolve(__dirname, '../..');
const schemaPath = join(repoRoot, 'prisma/schema');

/** Prisma's schema engine (WebAssembly) reads the schema; these pin what the checker takes from it. */
describe('the Prisma schema as Prisma reads it (getDMMF)', () => {
  const source = `
// plain comment
generator client {
  provider = "prisma-client"
  output   = "../gen/prisma"
}

datasource db {
  provider = "postgresql"
}

enum Colour {
  RED
  BLUE
  @@map("colour")
}

/// A parent.
model Parent {
  tenantId  String   @map("tenant_id") // trailing comment
  parentId  String   @map("parent_id")
  label     String?  @unique
  seen      DateTime @default(now()) @map("seen_at") @db.Timestamptz(6)
  day       DateTime @db.Date
  plain     DateTime
  tags      String[]
  amount    Decimal  @db.Decimal(10, 2)
  colour    Colour   @default(RED)
  children  Child[]

  @@id([tenantId, parentId])
  @@index([tenantId, seen])
  @@map("parent")
}

model Child {
  id       BigInt  @id @default(autoincrement())
  tenantId String  @map("tenant_id")
  parentId String  @map("parent_id")
  payload  Json    @default("{}")
  flag     Boolean @default(false)
  parent   Parent  @relation(fields: [tenantId, parentId], references: [tenantId, parentId])

  @@unique([tenantId, parentId], map: "child_parent_key")
}
`;

  it('reads tables, db column names, types, keys and indexes, leaving out relation fields', async () => {
    const { tables } = await parsePrismaSchema(source);
    expect(tables.map((table) => [table.model, table.name])).toEqual([
      ['Parent', 'parent'],
      ['Child', 'Child'],
    ]);
    const [parent, child] = tables;
    const column = (name: string) => parent!.columns.find((c) => c.name === name)!;
    expect(parent!.columns.map((c) => c.name)).toEqual(['tenant_id', 'parent_id', 'label', 'seen_at', 'day', 'plain', 'tags', 'amount', 'colour']);
    expect(column('label')).toMatchObject({ prismaType: 'String', nullable: true, list: false });
    expect(column('seen_at')).toMatchObject({ field: 'seen', prismaType: 'DateTime', nullable: false, nativeType: { name: 'Timestamptz', args: ['6'] } });
    expect(column('tags')).toMatchObject({ prismaType: 'String', list: true });
    expect(parent!.primaryKey).toEqual(['tenant_id', 'parent_id']);
    expect(parent!.uniques).toEqual([['label']]);
    expect(parent!.indexes).toEqual([['tenant_id', 'seen_at']]);
    expect(child!.columns.map((c) => c.name)).toEqual(['id', 'tenant_id', 'parent_id', 'payload', 'flag']);
    expect(child!.primaryKey).toEqual(['id']);
    expect(child!.uniques).toEqual([['tenant_id', 'parent_id']]);
    expect(child!.indexes).toEqual([]);

    // The PostgreSQL types they stand for, as format_type spells them (Prisma's defaults where no @db is given).
    expect(['seen_at', 'day', 'plain', 'tags', 'amount', 'colour', 'label'].map((name) => expectedPostgresType(column(name)))).toEqual([
      { base: 'timestamp with time zone', exact: 'timestamp(6) with time zone' },
      { base: 'date' },
      { base: 'timestamp without time zone', exact: 'timestamp(3) without time zone' },
      { base: 'text[]' },
      { base: 'numeric', exact: 'numeric(10,2)' },
      { base: 'colour' },
      { base: 'text' },
    ]);
  });

  it('reads the repository schema (every file of prisma/schema/)', async () => {
    const { tables } = await loadPrismaSchema(schemaPath);
    expect(tables.map((table) => table.name)).toEqual(expect.arrayContaining(['sequence_series', 'kernel_audit_event', 'scheduler_job', 'secret']));
  });

  it.each([
    ['an unknown type', 'model A {\n  id Int @id\n  kind Kind\n}\n', /Type "Kind" is neither a built-in type/],
    ['a missing closing brace', 'model A {\n  id Int @id\n', /P1012/],
    ['a native type on the wrong scalar', 'datasource db {\n  provider = "postgresql"\n}\nmodel A {\n  id String @id @db.Date\n}\n', /Native type Date is not compatible with declared field type String/],
  ])('refuses %s with Prisma’s own diagnostic', async (_label, schema, message) => {
    await expect(parsePrismaSchema(schema)).rejects.toThrow(message);
  });
});

describe('schema governance against the migrated database', () => {
  let database: TestDatabase;
  let client: Client;
  let tempDir: string;

  beforeAll(async () => {
    database = await createTestDatabase('axis_drift');
    client = new Client({ connectionString: database.url });
    await client.connect();
    await applyMigrations(client, loadMigrations(join(repoRoot, 'prisma/migrations')));
    tempDir = mkdtempSync(join(tmpdir(), 'axis-drift-'));
  });

  afterAll(async () => {
    await client?.end().catch(() => undefined);
    await database?.drop();
    if (tempDir) rmSync(tempDir, { recursive: true, force: true });
  });

  /** Runs `ddl` in a transaction, hands the altered database to `check`, then rolls the DDL back. */
  async function withChange<T>(ddl: string, check: () => Promise<T>): Promise<T> {
    await client.query('BEGIN');
    try {
      await client.query(ddl);
      return await check();
    } finally {
      await client.query('ROLLBACK');
    }
  }

  const drift = () => detectSchemaDrift(client, schemaPath);
  const kinds = (report: DriftReport) => report.differences.map(({ kind, table, column }) => ({ kind, table, ...(column ? { column } : {}) }));

  it('finds prisma/schema/ and the migrations in agreement', async () => {
    const report = await drift();
    expect(report.differences).toEqual([]);
    expect(report.clean).toBe(true);
  });

  it('finds every tenant table isolated', async () => {
    const { rows } = await client.query<{ n: number }>(
      `SELECT count(DISTINCT table_name)::int AS n FROM information_schema.columns WHERE table_schema = 'public' AND column_name = 'tenant_id'`,
    );
    expect(rows[0]!.n).toBeGreaterThanOrEqual(7); // the check had something to look at
    expect(await checkTenantRowLevelSecurity(client)).toEqual([]);
  });

  it('reports a column added outside the schema as COLUMN_EXTRA', async () => {
    const report = await withChange('ALTER TABLE sequence_series ADD COLUMN rogue text', drift);
    expect(report.clean).toBe(false);
    expect(kinds(report)).toEqual([{ kind: 'COLUMN_EXTRA', table: 'sequence_series', column: 'rogue' }]);
  });

  it('reports a dropped index as INDEX_MISSING', async () => {
    const report = await withChange('DROP INDEX sequence_number_tenant_id_series_id_status_idx', drift);
    expect(report.differences).toEqual([{ kind: 'INDEX_MISSING', table: 'sequence_number', expected: 'tenant_id, series_id, status' }]);
  });

  it('reports a dropped unique index as UNIQUE_MISSING and an undeclared index as INDEX_EXTRA', async () => {
    const report = await withChange(
      'DROP INDEX kernel_audit_sequence_tenant_id_event_id_key; CREATE INDEX sequence_series_pattern_idx ON sequence_series (pattern)',
      drift,
    );
    expect(kinds(report)).toEqual([
      { kind: 'UNIQUE_MISSING', table: 'kernel_audit_sequence' },
      { kind: 'INDEX_EXTRA', table: 'sequence_series' },
    ]);
  });

  it('reports a changed column type as TYPE_MISMATCH', async () => {
    const report = await withChange('ALTER TABLE sequence_series ALTER COLUMN display_name TYPE varchar(200)', drift);
    expect(report.differences).toEqual([
      { kind: 'TYPE_MISMATCH', table: 'sequence_series', column: 'display_name', expected: 'text', actual: 'character varying(200)' },
    ]);
  });

  it('compares timestamp precision and date columns', async () => {
    const report = await withChange(
      'ALTER TABLE sequence_number ALTER COLUMN issue_time TYPE timestamptz(3), ALTER COLUMN document_date TYPE timestamptz(6)',
      drift,
    );
    expect(report.differences).toEqual([
      { kind: 'TYPE_MISMATCH', table: 'sequence_number', column: 'document_date', expected: 'date', actual: 'timestamp(6) with time zone' },
      { kind: 'TYPE_MISMATCH', table: 'sequence_number', column: 'issue_time', expected: 'timestamp(6) with time zone', actual: 'timestamp(3) with time zone' },
    ]);
  });

  it('reports nullability, missing columns, primary keys and tables', async () => {
    const report = await withChange(
      `ALTER TABLE kernel_audit_event ALTER COLUMN idempotency_key SET NOT NULL, ALTER COLUMN trace_id DROP NOT NULL;
       ALTER TABLE sequence_series DROP COLUMN time_zone;
       ALTER TABLE kernel_audit_policy DROP CONSTRAINT kernel_audit_policy_pkey, ADD PRIMARY KEY (legal_hold, tenant_id);
       DROP TABLE sequence_number;
       CREATE TABLE stray (id int)`,
      drift,
    );
    expect(kinds(report)).toEqual([
      { kind: 'NULLABILITY_MISMATCH', table: 'kernel_audit_event', column: 'trace_id' },
      { kind: 'NULLABILITY_MISMATCH', table: 'kernel_audit_event', column: 'idempotency_key' },
      { kind: 'PRIMARY_KEY_MISMATCH', table: 'kernel_audit_policy' },
      { kind: 'TABLE_MISSING', table: 'sequence_number' },
      { kind: 'COLUMN_MISSING', table: 'sequence_series', column: 'time_zone' },
      { kind: 'TABLE_EXTRA', table: 'stray' },
    ]);
    expect(report.differences.find((d) => d.kind === 'PRIMARY_KEY_MISMATCH')).toMatchObject({ expected: 'tenant_id', actual: 'legal_hold, tenant_id' });
  });

  it('reports a schema-side model without a table as TABLE_MISSING', async () => {
    // A multi-file schema with one more file: Prisma reads them as one schema.
    const files = await readPrismaSchemaFiles(schemaPath);
    for (const [file, text] of files) writeFileSync(join(tempDir, basename(file)), text);
    writeFileSync(join(tempDir, 'ghost.prisma'), 'model Ghost {\n  id Int @id\n  @@map("ghost")\n}\n');
    const report = await detectSchemaDrift(client, tempDir);
    expect(kinds(report)).toEqual([{ kind: 'TABLE_MISSING', table: 'ghost' }]);
  });

  it('reports a tenant table whose RLS is no longer forced as RLS_NOT_FORCED', async () => {
    const findings = await withChange('ALTER TABLE sequence_series NO FORCE ROW LEVEL SECURITY', () => checkTenantRowLevelSecurity(client));
    expect(findings).toEqual([{ table: 'sequence_series', problem: 'RLS_NOT_FORCED' }]);
  });

  it('reports a new tenant table without RLS as RLS_DISABLED', async () => {
    const findings = await withChange('CREATE TABLE t (tenant_id text, x int)', () => checkTenantRowLevelSecurity(client));
    expect(findings).toEqual(
      expect.arrayContaining([
        { table: 't', problem: 'RLS_DISABLED' },
        { table: 't', problem: 'RLS_NOT_FORCED' },
        { table: 't', problem: 'NO_POLICY' },
        { table: 't', problem: 'TENANT_ID_NOT_LEADING_KEY' },
      ]),
    );
    expect(findings.every((finding) => finding.table === 't')).toBe(true);
  });

  it('reports a dropped policy as NO_POLICY and a key not led by tenant_id', async () => {
    const findings = await withChange(
      `DROP POLICY tenant_isolation ON sequence_counter;
       ALTER TABLE kernel_audit_policy DROP CONSTRAINT kernel_audit_policy_pkey, ADD PRIMARY KEY (legal_hold, tenant_id)`,
      () => checkTenantRowLevelSecurity(client),
    );
    expect(findings).toEqual([
      { table: 'kernel_audit_policy', problem: 'TENANT_ID_NOT_LEADING_KEY' },
      { table: 'sequence_counter', problem: 'NO_POLICY' },
    ]);
  });
});

/**
 * The same checks on a database that really drifted: changes committed (no rollback) in a scratch
 * database of this test's own, which is dropped afterwards.
 */
describe('a scratch database that drifted for real', () => {
  let database: TestDatabase;
  let client: Client;

  beforeAll(async () => {
    database = await createTestDatabase('axis_drift_scratch');
    client = new Client({ connectionString: database.url });
    await client.connect();
    await applyMigrations(client, loadMigrations(join(repoRoot, 'prisma/migrations')));
    await client.query(
      `ALTER TABLE secret ALTER COLUMN description TYPE varchar(64), ALTER COLUMN description DROP NOT NULL;
       DROP TABLE kernel_audit_checkpoint;
       CREATE TABLE rogue_tenant_note (tenant_id text NOT NULL, note_id text NOT NULL, body text, PRIMARY KEY (tenant_id, note_id));
       ALTER TABLE rogue_tenant_note ENABLE ROW LEVEL SECURITY;
       CREATE POLICY tenant_isolation ON rogue_tenant_note USING (tenant_id = current_setting('axis.tenant_id', true))`,
    );
  });

  afterAll(async () => {
    await client?.end().catch(() => undefined);
    await database?.drop();
  });

  it('reports the altered column, the dropped table and the new table, and nothing else', async () => {
    const report = await detectSchemaDrift(client, schemaPath);
    expect(report.clean).toBe(false);
    expect(report.differences).toEqual([
      { kind: 'TABLE_MISSING', table: 'kernel_audit_checkpoint' },
      { kind: 'TABLE_EXTRA', table: 'rogue_tenant_note' },
      { kind: 'TYPE_MISMATCH', table: 'secret', column: 'description', expected: 'text', actual: 'character varying(64)' },
      { kind: 'NULLABILITY_MISMATCH', table: 'secret', column: 'description', expected: 'NOT NULL', actual: 'NULL' },
    ]);
  });

  it('reports the new tenant table whose RLS is enabled but not forced, and nothing else', async () => {
    expect(await checkTenantRowLevelSecurity(client)).toEqual([{ table: 'rogue_tenant_note', problem: 'RLS_NOT_FORCED' }]);
  });
});
