import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { MigrationError } from './migration-error';

/** The SQL file inside each migration folder (the Prisma Migrate layout). */
export const MIGRATION_SQL_FILE = 'migration.sql';

/**
 * A migration whose first line is exactly this comment runs outside a transaction, one statement
 * at a time, because PostgreSQL refuses some commands (CREATE INDEX CONCURRENTLY, ALTER TYPE ...
 * ADD VALUE before 12, VACUUM) inside a transaction block — including the implicit block of a
 * multi-statement query string. See `applyMigrations` for what that costs.
 */
export const NO_TRANSACTION_DIRECTIVE = '-- kernel:no-transaction';

/** `<14-digit timestamp>_<name>`, as Prisma Migrate names its folders. */
const FOLDER_PATTERN = /^(\d{14})_([A-Za-z0-9][A-Za-z0-9_-]*)$/;

/** One migration folder on disk. */
export interface MigrationFile {
  /** The folder's timestamp, e.g. `20261126000000`; the ledger key, and the apply order. */
  readonly version: string;
  /** The folder name after the timestamp, e.g. `init`. */
  readonly name: string;
  /** The folder name, e.g. `20261126000000_init`. */
  readonly directory: string;
  /** Absolute path of the folder's `migration.sql`. */
  readonly path: string;
  /** The file's text (a leading byte-order mark removed, as PostgreSQL would reject it). */
  readonly sql: string;
  /** Lower-case hex SHA-256 of the file's bytes, exactly as on disk. */
  readonly checksum: string;
  /** False when the file starts with {@link NO_TRANSACTION_DIRECTIVE}. */
  readonly transactional: boolean;
}

/**
 * Reads every migration folder under `migrationsDir`, sorted by version. Plain files next to the
 * folders (Prisma's `migration_lock.toml`) and dot-entries are ignored; any other folder must be
 * named `<14-digit timestamp>_<name>` and hold a `migration.sql`, and no two may share a version —
 * otherwise a {@link MigrationError} (MIGRATION_NAME_INVALID, MIGRATION_SQL_MISSING,
 * MIGRATION_VERSION_DUPLICATE, MIGRATION_DIRECTORY_INVALID) is thrown, because silently skipping
 * a folder would skip a schema change.
 */
export function loadMigrations(migrationsDir: string): MigrationFile[] {
  const root = resolve(migrationsDir);
  let entries: string[];
  try {
    entries = readdirSync(root);
  } catch (error) {
    throw new MigrationError('MIGRATION_DIRECTORY_INVALID', `cannot read the migrations directory ${root}: ${(error as Error).message}`, { directory: root }, { cause: error });
  }
  const files: MigrationFile[] = [];
  for (const entry of entries) {
    if (entry.startsWith('.')) continue;
    const folder = join(root, entry);
    // statSync follows symlinks, so a linked migration folder counts as a folder.
    if (!statSync(folder).isDirectory()) continue;
    const match = FOLDER_PATTERN.exec(entry);
    if (!match) {
      throw new MigrationError(
        'MIGRATION_NAME_INVALID',
        `migration folder "${entry}" in ${root} is not named <14-digit timestamp>_<name> (e.g. 20261126000000_init)`,
        { directory: entry, path: folder },
      );
    }
    const path = join(folder, MIGRATION_SQL_FILE);
    let bytes: Buffer;
    try {
      bytes = readFileSync(path);
    } catch (error) {
      throw new MigrationError('MIGRATION_SQL_MISSING', `migration folder ${entry} has no readable ${MIGRATION_SQL_FILE}`, { directory: entry, path }, { cause: error });
    }
    const sql = bytes.toString('utf8').replace(/^\uFEFF/, '');
    files.push({
      version: match[1]!,
      name: match[2]!,
      directory: entry,
      path,
      sql,
      checksum: createHash('sha256').update(bytes).digest('hex'),
      transactional: !hasNoTransactionDirective(sql),
    });
  }
  return sortMigrations(files);
}

/**
 * A copy of `files` sorted by version; throws MIGRATION_VERSION_DUPLICATE when two share one,
 * since their relative order (and which one the ledger row belongs to) would be ambiguous.
 */
export function sortMigrations(files: readonly MigrationFile[]): MigrationFile[] {
  const sorted = [...files].sort((a, b) => (a.version < b.version ? -1 : a.version > b.version ? 1 : 0));
  for (let i = 1; i < sorted.length; i++) {
    const [previous, current] = [sorted[i - 1]!, sorted[i]!];
    if (previous.version === current.version) {
      throw new MigrationError(
        'MIGRATION_VERSION_DUPLICATE',
        `migrations ${previous.directory} and ${current.directory} share version ${current.version}`,
        { version: current.version, directory: previous.directory, otherDirectory: current.directory },
      );
    }
  }
  return sorted;
}

function hasNoTransactionDirective(sql: string): boolean {
  const firstLine = sql.split('\n', 1)[0]!.trimEnd();
  return firstLine === NO_TRANSACTION_DIRECTIVE;
}

/** One statement of a script, and where it starts in the script (to map error positions back). */
export interface SqlStatement {
  readonly text: string;
  readonly offset: number;
}

/**
 * Splits a script on its top-level semicolons, skipping those inside comments (nested block
 * comments too), quoted strings and identifiers, E'' strings with backslash escapes and
 * dollar-quoted bodies. Statements that are only whitespace and comments are dropped.
 *
 * Only needed for no-transaction migrations, which must be sent one statement at a time.
 * It does not understand SQL-standard function bodies (`BEGIN ATOMIC ... END`); such functions
 * belong in ordinary, transactional migrations.
 */
export function splitSqlStatements(sql: string): SqlStatement[] {
  const statements: SqlStatement[] = [];
  const length = sql.length;
  let start = 0;
  let hasCode = false;
  let i = 0;
  const push = (end: number) => {
    if (hasCode) statements.push({ text: sql.slice(start, end), offset: start });
    hasCode = false;
  };
  while (i < length) {
    const c = sql[i]!;
    const next = sql[i + 1];
    if (c === '-' && next === '-') {
      const newline = sql.indexOf('\n', i);
      i = newline === -1 ? length : newline + 1;
      continue;
    }
    if (c === '/' && next === '*') {
      let depth = 1;
      i += 2;
      while (i < length && depth > 0) {
        if (sql[i] === '/' && sql[i + 1] === '*') {
          depth++;
          i += 2;
        } else if (sql[i] === '*' && sql[i + 1] === '/') {
          depth--;
          i += 2;
        } else {
          i++;
        }
      }
      continue;
    }
    if (c === ';') {
      push(i);
      start = i + 1;
      i++;
      continue;
    }
    if (!/\s/.test(c)) hasCode = true;
    if (c === "'") {
      const backslashEscapes = i > 0 && (sql[i - 1] === 'E' || sql[i - 1] === 'e') && !(i > 1 && isIdentifierChar(sql[i - 2]!));
      i = skipQuoted(sql, i, "'", backslashEscapes);
      continue;
    }
    if (c === '"') {
      i = skipQuoted(sql, i, '"', false);
      continue;
    }
    // `$` continues an identifier (`a$b`) or is a parameter (`$1`) unless it opens a `$tag$`.
    if (c === '$' && !(i > 0 && isIdentifierChar(sql[i - 1]!))) {
      DOLLAR_TAG.lastIndex = i;
      const tag = DOLLAR_TAG.exec(sql);
      if (tag) {
        const close = sql.indexOf(tag[0], i + tag[0].length);
        i = close === -1 ? length : close + tag[0].length;
        continue;
      }
    }
    i++;
  }
  push(length);
  return statements;
}

const DOLLAR_TAG = /\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/y;

function isIdentifierChar(c: string): boolean {
  return /[A-Za-z0-9_$\u0080-\uffff]/.test(c);
}

/** Index just past the closing quote of the literal opening at `open` (doubled quotes stay inside). */
function skipQuoted(sql: string, open: number, quote: string, backslashEscapes: boolean): number {
  let i = open + 1;
  while (i < sql.length) {
    const c = sql[i];
    if (backslashEscapes && c === '\\') {
      i += 2;
      continue;
    }
    if (c === quote) {
      if (sql[i + 1] === quote) {
        i += 2;
        continue;
      }
      return i + 1;
    }
    i++;
  }
  return sql.length;
}
