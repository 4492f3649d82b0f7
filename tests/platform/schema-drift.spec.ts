import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Client } from 'pg';
import { applyMigrations, loadMigrations } from '../../services/platform/migrations/migration-runner';
import { parsePrismaSchema, PrismaSchemaError } from '../../services/platform/migrations/prisma-schema';
import { detectSchemaDrift, readPrismaSchemaSource, type DriftReport } from '../../services/platform/migrations/schema-drift';
import { checkTenantRowLevelSecurity } from '../../services/platform/migrations/tenant-rls-governance';
import { createTestDatabase, type TestDatabase } from '../support/test-database';

const repoRoot = resolve(__dirname, '../..');
const schemaPath = join(repoRoot, 'prisma/schema');

function parseError(source: string): PrismaSchemaError {
  try {
    parsePrismaSchema(source);
  } catch (error) {
    expect(error).toBeInstanceOf(PrismaSchemaError);
    return error as PrismaSchemaError;
  }
  throw new Error('expected a PrismaSchemaError, but the schema parsed');
}

describe('parsePrismaSchema', () => {
  const source = `
// plain comment
generator client {
  provider = "prisma-client"
  output   = "../gen/prisma"
}

datasource db {
  provider = "postgresql"
}

/// A parent.
model Parent {
  tenantId  String   @map("tenant_id") // trailing comment
  parentId  String   @map("parent_id")
  label     String?  @unique
  seen      DateTime @default(now()) @map("seen_at") @db.Timestamptz(6)
  day       DateTime @db.Date
  txid      Unsupported("xid8") @default(dbgenerated("pg_current_xact_id()"))
  tags      String[]
  amount    Decimal  @db.Decimal(10, 2)
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

  it('reads tables, db column names, types, keys and indexes, leaving out relation fields', () => {
    const { tables } = parsePrismaSchema(source);
    expect(tables.map((table) => [table.model, table.name])).toEqual([
      ['Parent', 'parent'],
      ['Child', 'Child'],
    ]);
    const [parent, child] = tables;
    expect(parent!.columns.map((column) => column.name)).toEqual(['tenant_id', 'parent_id', 'label', 'seen_at', 'day', 'txid', 'tags', 'amount']);
    expect(parent!.columns.find((column) => column.name === 'label')).toMatchObject({ prismaType: 'String', nullable: true, list: false });
    expect(parent!.columns.find((column) => column.name === 'seen_at')).toMatchObject({ field: 'seen', prismaType: 'DateTime', nullable: false, dbType: { name: 'Timestamptz', args: [6] } });
    expect(parent!.columns.find((column) => column.name === 'day')?.dbType).toEqual({ name: 'Date', args: [] });
    expect(parent!.columns.find((column) => column.name === 'txid')).toMatchObject({ prismaType: 'Unsupported', unsupportedType: 'xid8' });
    expect(parent!.columns.find((column) => column.name === 'tags')).toMatchObject({ prismaType: 'String', list: true });
    expect(parent!.columns.find((column) => column.name === 'amount')?.dbType).toEqual({ name: 'Decimal', args: [10, 2] });
    expect(parent!.primaryKey).toEqual(['tenant_id', 'parent_id']);
    expect(parent!.uniques).toEqual([['label']]);
    expect(parent!.indexes).toEqual([['tenant_id', 'seen_at']]);

    expect(child!.columns.map((column) => column.name)).toEqual(['id', 'tenant_id', 'parent_id', 'payload', 'flag']);
    expect(child!.primaryKey).toEqual(['id']);
    expect(child!.uniques).toEqual([['tenant_id', 'parent_id']]);
    expect(child!.indexes).toEqual([]);
  });

  it('parses the repository schema', async () => {
    const { tables } = parsePrismaSchema(await readPrismaSchemaSource(schemaPath));
    expect(tables.map((table) => table.name)).toContain('sequence_series');
  });

  it.each([
    ['an unknown type (enums are not understood)', 'model A {\n  id Int @id\n  kind Kind\n}\n', 'PRISMA_SCHEMA_INVALID'],
    ['an enum block', 'enum Kind {\n  A\n  B\n}\n', 'PRISMA_SCHEMA_UNSUPPORTED'],
    ['an unknown field attribute', 'model A {\n  id Int @id @ignore\n}\n', 'PRISMA_SCHEMA_UNSUPPORTED'],
    ['index sort arguments', 'model A {\n  id Int @id\n  b Int\n  @@index([b(sort: Desc)])\n}\n', 'PRISMA_SCHEMA_UNSUPPORTED'],
    ['a missing closing brace', 'model A {\n  id Int @id\n', 'PRISMA_SCHEMA_SYNTAX'],
    ['two fields on one line', 'model A {\n  id Int @id b Int\n}\n', 'PRISMA_SCHEMA_SYNTAX'],
    ['a field without a type', 'model A {\n  id\n  b Int\n}\n', 'PRISMA_SCHEMA_SYNTAX'],
    ['a stray character', 'model A {\n  id Int @id;\n}\n', 'PRISMA_SCHEMA_SYNTAX'],
    ['@@id naming an unknown field', 'model A {\n  a Int\n  @@id([a, b])\n}\n', 'PRISMA_SCHEMA_INVALID'],
    ['a native type on the wrong scalar', 'model A {\n  id String @id @db.Date\n}\n', 'PRISMA_SCHEMA_INVALID'],
    ['a native type outside the subset', 'model A {\n  id String @id @db.Inet\n}\n', 'PRISMA_SCHEMA_UNSUPPORTED'],
  ])('refuses %s', (_label, schema, reason) => {
    expect(parseError(schema).reason).toBe(reason);
  });

  it('reports where the problem is', () => {
    const error = parseError('model A {\n  id Int @id\n  kind Kind\n}\n');
    expect(error.line).toBe(3);
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
    const path = join(tempDir, 'schema.prisma');
    writeFileSync(path, `${await readPrismaSchemaSource(schemaPath)}\nmodel Ghost {\n  id Int @id\n  @@map("ghost")\n}\n`);
    const report = await detectSchemaDrift(client, path);
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
