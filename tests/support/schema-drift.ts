/**
 * Schema drift detection (docs/platform-contract.md#migrations, schema governance): does `prisma/schema/` still describe the
 * database that the SQL migrations produce? The migrations are the source of truth and Prisma
 * Client is generated from the schema, so a silent difference between them means queries built
 * for columns, types or keys that the database does not have.
 *
 * The schema side is read by Prisma itself: `getDMMF` from `@prisma/internals` (the schema
 * engine compiled to WebAssembly, `@prisma/prisma-schema-wasm`; no native engine, no download),
 * the same validation and model `prisma generate` uses. A schema Prisma refuses is refused here
 * with Prisma's own diagnostic; nothing is guessed. It is a dev dependency, which is why this
 * checker lives with the tests and not in services/ (the kernel never runs it).
 *
 * The live side is read from pg_catalog (not information_schema, which hides tables the
 * connecting role has no privilege on and loses index column order). Compared per table: columns
 * (presence, type, nullability), the primary key (columns in order) and plain indexes (column
 * lists). Not compared: defaults, foreign keys, CHECK constraints, triggers, functions, RLS —
 * Prisma Client does not depend on them, or another check owns them
 * (services/platform/migrations/tenant-rls-governance.ts). `Unsupported("…")` fields are not in
 * Prisma's DMMF, so a column declared that way would be reported COLUMN_EXTRA; the schema has none.
 * See docs/prisma.md.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { getDMMF } from '@prisma/internals';
import type { ClientBase } from 'pg';
import { MIGRATION_LEDGER_TABLE } from '../../services/platform/migrations/migration-runner';

/** The kinds of difference {@link detectSchemaDrift} reports. */
export type DriftKind =
  | 'TABLE_MISSING'
  | 'TABLE_EXTRA'
  | 'COLUMN_MISSING'
  | 'COLUMN_EXTRA'
  | 'TYPE_MISMATCH'
  | 'NULLABILITY_MISMATCH'
  | 'PRIMARY_KEY_MISMATCH'
  | 'INDEX_MISSING'
  | 'INDEX_EXTRA'
  | 'UNIQUE_MISSING'
  | 'UNIQUE_EXTRA';

/**
 * One difference. `*_MISSING` means in the Prisma schema but not in the database, `*_EXTRA` the
 * reverse. `expected` describes the Prisma side and `actual` the database side, as PostgreSQL
 * spells types (`timestamp(6) with time zone`), `NOT NULL`/`NULL`, or comma-separated column lists.
 */
export interface DriftDifference {
  kind: DriftKind;
  table: string;
  column?: string;
  expected?: string;
  actual?: string;
}

/** The outcome of {@link detectSchemaDrift}; `clean` exactly when `differences` is empty. */
export interface DriftReport {
  clean: boolean;
  differences: DriftDifference[];
}

/** Options of {@link detectSchemaDrift}. */
export interface DetectSchemaDriftOptions {
  /** The PostgreSQL schema holding the tables. Default `public`. */
  schema?: string;
}

/** One column of a model, as Prisma's DMMF describes it. */
export interface PrismaColumn {
  /** The Prisma field name, e.g. `tenantId`. */
  readonly field: string;
  /** The database column name (`@map`, else the field name), e.g. `tenant_id`. */
  readonly name: string;
  /** The scalar type (`String`, `DateTime`, …), or the enum's name when `isEnum`. */
  readonly prismaType: string;
  /** For an enum field: the PostgreSQL type the enum maps to (`@@map`, else its name). */
  readonly enumType?: string;
  readonly nullable: boolean;
  /** A scalar list (`[]`), an array column. */
  readonly list: boolean;
  /** The `@db.*` native type and its arguments, e.g. `{ name: 'Timestamptz', args: ['6'] }`. */
  readonly nativeType?: { readonly name: string; readonly args: readonly string[] };
}

/** One model, as the table it maps to. */
export interface PrismaTable {
  readonly model: string;
  /** The table name (`@@map`, else the model name). */
  readonly name: string;
  /** Database columns in declaration order (relation fields are not columns). */
  readonly columns: readonly PrismaColumn[];
  /** Primary-key columns in key order; empty when the model has none. */
  readonly primaryKey: readonly string[];
  /** Column lists of `@unique` / `@@unique`. */
  readonly uniques: ReadonlyArray<readonly string[]>;
  /** Column lists of `@@index`. */
  readonly indexes: ReadonlyArray<readonly string[]>;
}

/** The models of a schema, as tables. */
export interface PrismaSchema {
  readonly tables: readonly PrismaTable[];
}

type Datamodel = Awaited<ReturnType<typeof getDMMF>>['datamodel'];

/**
 * Compares the Prisma schema at `schemaPrismaPath` (a `.prisma` file, or a folder of them as
 * Prisma's multi-file schema) with the tables of the connected database.
 * The migration ledger (`kernel_schema_migrations`) and partitions (they mirror their parent) are
 * ignored. Read-only; works inside or outside a transaction (inside, it sees the transaction's
 * own uncommitted DDL). Rejects with Prisma's validation error (code P1012, file and line) when
 * Prisma refuses the schema.
 */
export async function detectSchemaDrift(client: ClientBase, schemaPrismaPath: string, options: DetectSchemaDriftOptions = {}): Promise<DriftReport> {
  return compareSchemaWithDatabase(client, await loadPrismaSchema(schemaPrismaPath), options);
}

/** The schema file, or every `.prisma` file of a schema folder (name order), as `[path, text]` pairs. */
export async function readPrismaSchemaFiles(schemaPath: string): Promise<Array<[string, string]>> {
  if (!(await stat(schemaPath)).isDirectory()) return [[schemaPath, await readFile(schemaPath, 'utf8')]];
  const files = (await readdir(schemaPath)).filter((f) => f.endsWith('.prisma')).sort();
  return Promise.all(files.map(async (f): Promise<[string, string]> => [path.join(schemaPath, f), await readFile(path.join(schemaPath, f), 'utf8')]));
}

/** Reads a schema file or folder through Prisma's DMMF. */
export async function loadPrismaSchema(schemaPath: string): Promise<PrismaSchema> {
  return parsePrismaSchema(await readPrismaSchemaFiles(schemaPath));
}

/** Schema source (one text, or `[path, text]` pairs of a multi-file schema) through Prisma's DMMF. */
export async function parsePrismaSchema(source: string | Array<[string, string]>): Promise<PrismaSchema> {
  const { datamodel } = await getDMMF({ datamodel: source });
  return { tables: tablesOf(datamodel) };
}

function tablesOf(datamodel: Datamodel): PrismaTable[] {
  const enumTypes = new Map(datamodel.enums.map((e) => [e.name, e.dbName ?? e.name]));
  return datamodel.models.map((model) => {
    const columnOf = new Map<string, string>();
    const columns: PrismaColumn[] = [];
    for (const field of model.fields) {
      // `object` fields are relations (no column); `unsupported` ones never reach the DMMF.
      if (field.kind !== 'scalar' && field.kind !== 'enum') continue;
      const name = field.dbName ?? field.name;
      columnOf.set(field.name, name);
      const native = field.nativeType as [string, string[]] | null | undefined;
      columns.push({
        field: field.name,
        name,
        prismaType: field.type,
        ...(field.kind === 'enum' ? { enumType: enumTypes.get(field.type) ?? field.type } : {}),
        nullable: !field.isRequired,
        list: field.isList,
        ...(native ? { nativeType: { name: native[0], args: native[1] } } : {}),
      });
    }
    const toColumns = (fields: ReadonlyArray<{ name: string }>) => fields.map((f) => columnOf.get(f.name) ?? f.name);
    const indexes = datamodel.indexes.filter((index) => index.model === model.name);
    return {
      model: model.name,
      name: model.dbName ?? model.name,
      columns,
      primaryKey: toColumns(indexes.find((index) => index.type === 'id')?.fields ?? []),
      uniques: indexes.filter((index) => index.type === 'unique').map((index) => toColumns(index.fields)),
      indexes: indexes.filter((index) => index.type === 'normal').map((index) => toColumns(index.fields)),
    };
  });
}

/** {@link detectSchemaDrift} for an already loaded schema. */
export async function compareSchemaWithDatabase(client: ClientBase, schema: PrismaSchema, options: DetectSchemaDriftOptions = {}): Promise<DriftReport> {
  const live = await readLiveSchema(client, options.schema ?? 'public');
  const differences: DriftDifference[] = [];
  const expectedTables = new Map(schema.tables.map((table) => [table.name, table]));
  const tableNames = [...new Set([...expectedTables.keys(), ...live.keys()])].sort();

  for (const tableName of tableNames) {
    const expected = expectedTables.get(tableName);
    const actual = live.get(tableName);
    if (!expected) {
      differences.push({ kind: 'TABLE_EXTRA', table: tableName });
      continue;
    }
    if (!actual) {
      differences.push({ kind: 'TABLE_MISSING', table: tableName });
      continue;
    }

    for (const column of expected.columns) {
      const liveColumn = actual.columns.get(column.name);
      if (!liveColumn) {
        differences.push({ kind: 'COLUMN_MISSING', table: tableName, column: column.name, expected: describeExpectedType(column) });
        continue;
      }
      if (!typeMatches(column, liveColumn)) {
        differences.push({ kind: 'TYPE_MISMATCH', table: tableName, column: column.name, expected: describeExpectedType(column), actual: liveColumn.fullType });
      }
      // Prisma migrate itself creates scalar-list columns nullable while Prisma Client treats them
      // as never null, so either declaration is a faithful mirror; only scalars are compared.
      if (!column.list && column.nullable === liveColumn.notNull) {
        differences.push({
          kind: 'NULLABILITY_MISMATCH',
          table: tableName,
          column: column.name,
          expected: column.nullable ? 'NULL' : 'NOT NULL',
          actual: liveColumn.notNull ? 'NOT NULL' : 'NULL',
        });
      }
    }
    const declared = new Set(expected.columns.map((column) => column.name));
    for (const [name, liveColumn] of actual.columns) {
      if (!declared.has(name)) differences.push({ kind: 'COLUMN_EXTRA', table: tableName, column: name, actual: liveColumn.fullType });
    }

    if (!sameColumns(expected.primaryKey, actual.primaryKey ?? [])) {
      differences.push({ kind: 'PRIMARY_KEY_MISMATCH', table: tableName, expected: describeColumns(expected.primaryKey), actual: describeColumns(actual.primaryKey ?? []) });
    }

    differences.push(...compareIndexes(tableName, expected.uniques, expected.indexes, actual.indexes));
  }
  return { clean: differences.length === 0, differences };
}

/**
 * The PostgreSQL type a column must have, as `format_type` spells it: `base` without type
 * modifiers, and `exact` (with modifiers) when they are pinned — by `@db.Timestamptz(6)` and the
 * like, or by Prisma's own PostgreSQL default for the scalar (`DateTime` is `timestamp(3)`,
 * `Decimal` is `numeric(65,30)`: what `prisma migrate` would create).
 */
export function expectedPostgresType(column: PrismaColumn): { base: string; exact?: string } {
  const suffix = column.list ? '[]' : '';
  if (column.enumType !== undefined) return { base: quoteIdentIfNeeded(column.enumType) + suffix };
  const native = column.nativeType ?? SCALAR_DEFAULT_NATIVE[column.prismaType];
  if (!native) throw new Error(`no PostgreSQL type known for Prisma type ${column.prismaType} (column ${column.name})`);
  const [first, second] = native.args;
  const withArgs = (base: string, spelled: () => string): { base: string; exact?: string } =>
    native.args.length === 0 ? { base: base + suffix } : { base: base + suffix, exact: spelled() + suffix };
  switch (native.name) {
    case 'Timestamptz':
      return withArgs('timestamp with time zone', () => `timestamp(${first}) with time zone`);
    case 'Timestamp':
      return withArgs('timestamp without time zone', () => `timestamp(${first}) without time zone`);
    case 'Time':
      return withArgs('time without time zone', () => `time(${first}) without time zone`);
    case 'Timetz':
      return withArgs('time with time zone', () => `time(${first}) with time zone`);
    case 'VarChar':
      return withArgs('character varying', () => `character varying(${first})`);
    case 'Char':
      return withArgs('character', () => `character(${first})`);
    case 'Bit':
      return withArgs('bit', () => `bit(${first})`);
    case 'VarBit':
      return withArgs('bit varying', () => `bit varying(${first})`);
    case 'Decimal':
      return withArgs('numeric', () => `numeric(${first},${second})`);
    default: {
      const base = NATIVE_BASE_TYPES[native.name];
      if (!base) throw new Error(`no PostgreSQL spelling known for @db.${native.name} (column ${column.name})`);
      return { base: base + suffix };
    }
  }
}

/** Prisma's PostgreSQL native type for a scalar without `@db.*`. */
const SCALAR_DEFAULT_NATIVE: Readonly<Record<string, { name: string; args: string[] }>> = {
  String: { name: 'Text', args: [] },
  Int: { name: 'Integer', args: [] },
  BigInt: { name: 'BigInt', args: [] },
  Float: { name: 'DoublePrecision', args: [] },
  Boolean: { name: 'Boolean', args: [] },
  DateTime: { name: 'Timestamp', args: ['3'] },
  Bytes: { name: 'ByteA', args: [] },
  Json: { name: 'JsonB', args: [] },
  Decimal: { name: 'Decimal', args: ['65', '30'] },
};

/** `format_type` spellings of Prisma's PostgreSQL native types without modifiers. */
const NATIVE_BASE_TYPES: Readonly<Record<string, string>> = {
  Text: 'text',
  Uuid: 'uuid',
  Integer: 'integer',
  SmallInt: 'smallint',
  BigInt: 'bigint',
  Oid: 'oid',
  Boolean: 'boolean',
  ByteA: 'bytea',
  JsonB: 'jsonb',
  Json: 'json',
  Xml: 'xml',
  Inet: 'inet',
  Citext: 'citext',
  Money: 'money',
  Date: 'date',
  DoublePrecision: 'double precision',
  Real: 'real',
};

function quoteIdentIfNeeded(name: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
}

function typeMatches(column: PrismaColumn, live: LiveColumn): boolean {
  const expected = expectedPostgresType(column);
  return expected.exact !== undefined ? expected.exact === live.fullType : expected.base === live.baseType;
}

function describeExpectedType(column: PrismaColumn): string {
  const expected = expectedPostgresType(column);
  return expected.exact ?? expected.base;
}

function describeColumns(columns: readonly string[]): string {
  return columns.length === 0 ? '(none)' : columns.join(', ');
}

function sameColumns(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((column, index) => column === b[index]);
}

/**
 * Pairs declared uniques and indexes with live indexes by column list. A declared `@@index` is
 * also satisfied by a unique index on the same columns (it serves the same lookups), but a
 * `@@unique` only by a unique one. Live indexes left over are reported as extra.
 */
function compareIndexes(table: string, uniques: ReadonlyArray<readonly string[]>, indexes: ReadonlyArray<readonly string[]>, live: LiveIndex[]): DriftDifference[] {
  const differences: DriftDifference[] = [];
  const unmatched = [...live];
  const take = (columns: readonly string[], accept: (index: LiveIndex) => boolean): boolean => {
    const position = unmatched.findIndex((index) => accept(index) && sameColumns(index.columns, columns));
    if (position === -1) return false;
    unmatched.splice(position, 1);
    return true;
  };
  for (const columns of uniques) {
    if (!take(columns, (index) => index.unique)) differences.push({ kind: 'UNIQUE_MISSING', table, expected: describeColumns(columns) });
  }
  for (const columns of indexes) {
    if (!take(columns, (index) => !index.unique) && !take(columns, (index) => index.unique)) {
      differences.push({ kind: 'INDEX_MISSING', table, expected: describeColumns(columns) });
    }
  }
  for (const index of unmatched) {
    differences.push({ kind: index.unique ? 'UNIQUE_EXTRA' : 'INDEX_EXTRA', table, actual: `${index.name} (${describeColumns(index.columns)})` });
  }
  return differences;
}

// ------------------------------------------------------------------------------------------------
// The live database

interface LiveColumn {
  /** `format_type` with modifiers, e.g. `timestamp(6) with time zone`. */
  fullType: string;
  /** `format_type` without modifiers, e.g. `timestamp with time zone`. */
  baseType: string;
  notNull: boolean;
}

interface LiveIndex {
  name: string;
  unique: boolean;
  columns: string[];
}

interface LiveTable {
  columns: Map<string, LiveColumn>;
  primaryKey?: string[];
  /** Plain, valid, non-primary indexes: what a Prisma `@@index` / `@@unique` can describe. */
  indexes: LiveIndex[];
}

/** The relations compared: ordinary and partitioned tables, not partitions, not the ledger. */
const TABLE_FILTER = `n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relname <> $2`;

async function readLiveSchema(client: ClientBase, schema: string): Promise<Map<string, LiveTable>> {
  const params = [schema, MIGRATION_LEDGER_TABLE];
  const tables = await client.query<{ table_name: string }>(
    `SELECT c.relname::text AS table_name
       FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE ${TABLE_FILTER}`,
    params,
  );
  const columns = await client.query<{ table_name: string; column_name: string; full_type: string; base_type: string; not_null: boolean }>(
    `SELECT c.relname::text AS table_name, a.attname::text AS column_name,
            pg_catalog.format_type(a.atttypid, a.atttypmod) AS full_type,
            pg_catalog.format_type(a.atttypid, NULL) AS base_type,
            a.attnotnull AS not_null
       FROM pg_catalog.pg_attribute a
       JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE ${TABLE_FILTER} AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY c.relname, a.attnum`,
    params,
  );
  // Key columns only (INCLUDE columns are payload, not part of what the index is on).
  // Expression and partial indexes, exclusion-constraint indexes and INVALID indexes (left behind
  // by a failed CREATE INDEX CONCURRENTLY) are left out: Prisma cannot describe the former, and
  // the latter enforces and speeds up nothing, so a declared index it shadows must count as missing.
  const indexes = await client.query<{ table_name: string; index_name: string; is_primary: boolean; is_unique: boolean; columns: string[] }>(
    `SELECT c.relname::text AS table_name, i.relname::text AS index_name,
            x.indisprimary AS is_primary, x.indisunique AS is_unique,
            ARRAY(SELECT a.attname::text
                    FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                    JOIN pg_catalog.pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
                   WHERE k.ord <= x.indnkeyatts
                   ORDER BY k.ord) AS columns
       FROM pg_catalog.pg_index x
       JOIN pg_catalog.pg_class c ON c.oid = x.indrelid
       JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE ${TABLE_FILTER}
        AND x.indisvalid AND x.indpred IS NULL AND x.indexprs IS NULL
        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.conindid = x.indexrelid AND k.contype = 'x')
      ORDER BY c.relname, i.relname`,
    params,
  );

  const live = new Map<string, LiveTable>();
  for (const row of tables.rows) live.set(row.table_name, { columns: new Map(), indexes: [] });
  for (const row of columns.rows) {
    live.get(row.table_name)?.columns.set(row.column_name, { fullType: row.full_type, baseType: row.base_type, notNull: row.not_null });
  }
  for (const row of indexes.rows) {
    const table = live.get(row.table_name);
    if (!table) continue;
    if (row.is_primary) table.primaryKey = row.columns;
    else table.indexes.push({ name: row.index_name, unique: row.is_unique, columns: row.columns });
  }
  return live;
}
