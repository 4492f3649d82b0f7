/**
 * A deliberately small parser for the part of the Prisma schema language this repository uses
 * (docs/platform-contract.md#migrations, schema governance). It exists so that the drift check can compare `prisma/schema/`
 * with the live database without a Prisma engine — `prisma migrate` does not run here.
 *
 * Understood: `generator` and `datasource` blocks (skipped), `model` blocks with scalar fields
 * (String, Int, BigInt, Float, Boolean, DateTime, Bytes, Json, Decimal, `Unsupported("...")`),
 * optional `?` and list `[]` modifiers, relation fields (typed by another model; they are not
 * columns), the field attributes `@id`, `@unique`, `@map`, `@default`, `@db.<NativeType>`,
 * `@relation`, `@updatedAt`, and the block attributes `@@id`, `@@unique`, `@@index`, `@@map`.
 * `//` and `///` comments are ignored.
 *
 * Everything else — enums, views, composite types, `@ignore`, index sort/length arguments,
 * `@@schema` and so on — is refused with a {@link PrismaSchemaError}: a guess would make the drift
 * check report (or hide) differences that are not real.
 */

/** The Prisma scalar types a column may have. */
export type PrismaScalarType = 'String' | 'Int' | 'BigInt' | 'Float' | 'Boolean' | 'DateTime' | 'Bytes' | 'Json' | 'Decimal';

/** A `@db.<Name>(<args>)` attribute, e.g. `{ name: 'Timestamptz', args: [6] }`. */
export interface PrismaNativeType {
  readonly name: string;
  readonly args: readonly number[];
}

/** One database column of a model. */
export interface PrismaColumn {
  /** The Prisma field name, e.g. `tenantId`. */
  readonly field: string;
  /** The database column name (`@map`, else the field name), e.g. `tenant_id`. */
  readonly name: string;
  /** The scalar type, or `Unsupported` for `Unsupported("...")`. */
  readonly prismaType: PrismaScalarType | 'Unsupported';
  /** The raw database type of an `Unsupported("...")` field, e.g. `xid8`. */
  readonly unsupportedType?: string;
  /** True for an optional (`?`) field. */
  readonly nullable: boolean;
  /** True for a scalar list (`[]`), an array column. */
  readonly list: boolean;
  /** The `@db.*` hint, when given. */
  readonly dbType?: PrismaNativeType;
}

/** One model, as the table it maps to. */
export interface PrismaTable {
  /** The model name, e.g. `SequenceSeries`. */
  readonly model: string;
  /** The table name (`@@map`, else the model name). */
  readonly name: string;
  /** The columns, in declaration order (relation fields excluded). */
  readonly columns: readonly PrismaColumn[];
  /** Primary-key column names (database names) in key order; empty when the model has none. */
  readonly primaryKey: readonly string[];
  /** Column lists (database names) of `@unique` / `@@unique`. */
  readonly uniques: ReadonlyArray<readonly string[]>;
  /** Column lists (database names) of `@@index`. */
  readonly indexes: ReadonlyArray<readonly string[]>;
}

/** The parsed schema: its models in declaration order. */
export interface PrismaSchema {
  readonly tables: readonly PrismaTable[];
}

/**
 * Why a schema could not be parsed. `reason` is stable for callers and tests:
 * `PRISMA_SCHEMA_SYNTAX` (not Prisma schema language as this parser reads it),
 * `PRISMA_SCHEMA_UNSUPPORTED` (valid Prisma, but outside the subset this parser understands),
 * `PRISMA_SCHEMA_INVALID` (well-formed but inconsistent, e.g. an unknown type or field).
 */
export class PrismaSchemaError extends Error {
  override readonly name = 'PrismaSchemaError';

  constructor(
    readonly reason: 'PRISMA_SCHEMA_SYNTAX' | 'PRISMA_SCHEMA_UNSUPPORTED' | 'PRISMA_SCHEMA_INVALID',
    message: string,
    /** 1-based position of the offending token, when known. */
    readonly line?: number,
    readonly column?: number,
  ) {
    super(line === undefined ? message : `${message} (line ${line}, column ${column ?? 1})`);
  }
}

const SCALAR_TYPES: ReadonlySet<string> = new Set<PrismaScalarType>(['String', 'Int', 'BigInt', 'Float', 'Boolean', 'DateTime', 'Bytes', 'Json', 'Decimal']);

/**
 * The `@db.*` native types accepted, with the scalar type each belongs to and how many numeric
 * arguments it may take. Prisma rejects a native type on the wrong scalar, so this does too.
 */
const NATIVE_TYPES: Readonly<Record<string, { scalar: PrismaScalarType; arities: readonly number[] }>> = {
  Timestamptz: { scalar: 'DateTime', arities: [0, 1] },
  Timestamp: { scalar: 'DateTime', arities: [0, 1] },
  Date: { scalar: 'DateTime', arities: [0] },
  Time: { scalar: 'DateTime', arities: [0, 1] },
  Timetz: { scalar: 'DateTime', arities: [0, 1] },
  Text: { scalar: 'String', arities: [0] },
  VarChar: { scalar: 'String', arities: [0, 1] },
  Char: { scalar: 'String', arities: [0, 1] },
  Uuid: { scalar: 'String', arities: [0] },
  Integer: { scalar: 'Int', arities: [0] },
  SmallInt: { scalar: 'Int', arities: [0] },
  BigInt: { scalar: 'BigInt', arities: [0] },
  Boolean: { scalar: 'Boolean', arities: [0] },
  ByteA: { scalar: 'Bytes', arities: [0] },
  JsonB: { scalar: 'Json', arities: [0] },
  Json: { scalar: 'Json', arities: [0] },
  Decimal: { scalar: 'Decimal', arities: [0, 2] },
  DoublePrecision: { scalar: 'Float', arities: [0] },
  Real: { scalar: 'Float', arities: [0] },
};

/** Functions `@default(...)` may call. */
const DEFAULT_FUNCTIONS: ReadonlySet<string> = new Set(['autoincrement', 'now', 'dbgenerated', 'uuid', 'cuid', 'nanoid', 'ulid']);

/**
 * Parses Prisma schema source into tables. Throws {@link PrismaSchemaError} for anything outside
 * the supported subset (see the module comment) rather than skipping it.
 */
export function parsePrismaSchema(source: string): PrismaSchema {
  const models = new Parser(tokenize(source)).parseSchema();
  return { tables: resolveModels(models) };
}

// ------------------------------------------------------------------------------------------------
// Tokens

type TokenKind = 'ident' | 'string' | 'number' | 'punct' | 'eof';

interface Token {
  readonly kind: TokenKind;
  readonly text: string;
  /** The decoded value of a string token. */
  readonly value: string;
  readonly line: number;
  readonly column: number;
}

const PUNCTUATION = new Set(['{', '}', '(', ')', '[', ']', ',', ':', '=', '?', '.']);

function tokenize(source: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  let line = 1;
  let lineStart = 0;
  const push = (kind: TokenKind, start: number, end: number, value?: string) =>
    tokens.push({ kind, text: source.slice(start, end), value: value ?? source.slice(start, end), line, column: start - lineStart + 1 });
  while (i < source.length) {
    const c = source[i]!;
    if (c === '\n') {
      i++;
      line++;
      lineStart = i;
      continue;
    }
    if (c === ' ' || c === '\t' || c === '\r' || c === '\uFEFF') {
      i++;
      continue;
    }
    // `//` and `///` alike: documentation comments carry nothing the database sees.
    if (c === '/' && source[i + 1] === '/') {
      const newline = source.indexOf('\n', i);
      i = newline === -1 ? source.length : newline;
      continue;
    }
    if (/[A-Za-z_]/.test(c)) {
      const start = i;
      while (i < source.length && /[A-Za-z0-9_]/.test(source[i]!)) i++;
      push('ident', start, i);
      continue;
    }
    if (/[0-9]/.test(c) || (c === '-' && /[0-9]/.test(source[i + 1] ?? ''))) {
      const start = i;
      i++;
      while (i < source.length && /[0-9.]/.test(source[i]!)) i++;
      push('number', start, i);
      continue;
    }
    if (c === '"') {
      const start = i;
      let value = '';
      i++;
      for (;;) {
        const d = source[i];
        if (d === undefined || d === '\n') throw new PrismaSchemaError('PRISMA_SCHEMA_SYNTAX', 'unterminated string', line, start - lineStart + 1);
        if (d === '"') break;
        if (d === '\\') {
          const escaped = source[i + 1];
          if (escaped === undefined || escaped === '\n') throw new PrismaSchemaError('PRISMA_SCHEMA_SYNTAX', 'unterminated string', line, start - lineStart + 1);
          value += escaped === 'n' ? '\n' : escaped === 't' ? '\t' : escaped;
          i += 2;
          continue;
        }
        value += d;
        i++;
      }
      i++;
      push('string', start, i, value);
      continue;
    }
    if (c === '@') {
      const start = i;
      i += source[i + 1] === '@' ? 2 : 1;
      push('punct', start, i);
      continue;
    }
    if (PUNCTUATION.has(c)) {
      push('punct', i, i + 1);
      i++;
      continue;
    }
    throw new PrismaSchemaError('PRISMA_SCHEMA_SYNTAX', `unexpected character ${JSON.stringify(c)}`, line, i - lineStart + 1);
  }
  tokens.push({ kind: 'eof', text: '', value: '', line, column: i - lineStart + 1 });
  return tokens;
}

// ------------------------------------------------------------------------------------------------
// Syntax

/** An attribute argument value. */
type Value =
  | { kind: 'string'; value: string; token: Token }
  | { kind: 'number'; value: number; token: Token }
  | { kind: 'ident'; name: string; token: Token }
  | { kind: 'call'; name: string; args: Arg[]; token: Token }
  | { kind: 'array'; items: Value[]; token: Token };

interface Arg {
  readonly label?: string;
  readonly value: Value;
}

interface Attribute {
  /** Without the `@`/`@@`; native types keep their `db.` prefix, e.g. `db.Timestamptz`. */
  readonly name: string;
  readonly args: Arg[];
  readonly token: Token;
}

interface FieldSyntax {
  readonly name: string;
  readonly type: string;
  readonly unsupportedType?: string;
  readonly optional: boolean;
  readonly list: boolean;
  readonly attributes: Attribute[];
  readonly token: Token;
  readonly typeToken: Token;
}

interface ModelSyntax {
  readonly name: string;
  readonly fields: FieldSyntax[];
  readonly attributes: Attribute[];
  readonly token: Token;
}

class Parser {
  private position = 0;

  constructor(private readonly tokens: Token[]) {}

  parseSchema(): ModelSyntax[] {
    const models: ModelSyntax[] = [];
    while (this.peek().kind !== 'eof') {
      const keyword = this.expectKind('ident', 'a block keyword (model, generator, datasource)');
      switch (keyword.text) {
        case 'model':
          models.push(this.parseModel(keyword));
          break;
        case 'generator':
        case 'datasource':
          // Their settings configure Prisma tooling, not tables.
          this.expectKind('ident', `a ${keyword.text} name`);
          this.skipBlock();
          break;
        case 'enum':
        case 'view':
        case 'type':
          throw this.unsupported(keyword, `"${keyword.text}" blocks are not supported by this parser`);
        default:
          throw this.syntax(keyword, `unexpected "${keyword.text}" at the top level`);
      }
    }
    return models;
  }

  private parseModel(keyword: Token): ModelSyntax {
    const name = this.expectKind('ident', 'a model name');
    this.expectPunct('{');
    const fields: FieldSyntax[] = [];
    const attributes: Attribute[] = [];
    for (;;) {
      const next = this.peek();
      if (next.kind === 'punct' && next.text === '}') {
        this.position++;
        break;
      }
      if (next.kind === 'punct' && next.text === '@@') {
        this.position++;
        attributes.push(this.parseAttribute(next));
      } else if (next.kind === 'ident') {
        fields.push(this.parseField());
      } else {
        throw this.syntax(next, `expected a field, a block attribute or "}" in model ${name.text}, found ${describe(next)}`);
      }
      this.expectLineEnd();
    }
    return { name: name.text, fields, attributes, token: keyword };
  }

  private parseField(): FieldSyntax {
    const name = this.expectKind('ident', 'a field name');
    const typeToken = this.peek();
    if (typeToken.kind !== 'ident' || typeToken.line !== name.line) {
      throw this.syntax(typeToken, `field ${name.text} needs a type on the same line`);
    }
    this.position++;
    let unsupportedType: string | undefined;
    if (typeToken.text === 'Unsupported') {
      this.expectPunct('(');
      unsupportedType = this.expectKind('string', 'the quoted database type of Unsupported(...)').value;
      this.expectPunct(')');
    }
    let optional = false;
    let list = false;
    if (this.acceptPunct('?')) {
      optional = true;
    } else if (this.acceptPunct('[')) {
      this.expectPunct(']');
      list = true;
      if (this.peek().text === '?') throw this.syntax(this.peek(), 'a list field cannot also be optional');
    }
    const attributes: Attribute[] = [];
    while (this.peek().kind === 'punct' && this.peek().text === '@') {
      attributes.push(this.parseAttribute(this.tokens[this.position++]!));
    }
    return { name: name.text, type: typeToken.text, unsupportedType, optional, list, attributes, token: name, typeToken };
  }

  /** After `@` or `@@`: `name`, `db.Name`, then optional `(args)`. */
  private parseAttribute(at: Token): Attribute {
    const first = this.expectKind('ident', 'an attribute name');
    if (first.line !== at.line || first.column !== at.column + at.text.length) throw this.syntax(first, 'an attribute name must follow "@" directly');
    let name = first.text;
    while (this.peek().text === '.' && this.peek().kind === 'punct') {
      this.position++;
      name += `.${this.expectKind('ident', 'an attribute name part').text}`;
    }
    const args = this.peek().kind === 'punct' && this.peek().text === '(' ? this.parseArgs() : [];
    return { name, args, token: at };
  }

  private parseArgs(): Arg[] {
    this.expectPunct('(');
    const args: Arg[] = [];
    if (this.acceptPunct(')')) return args;
    for (;;) {
      let label: string | undefined;
      if (this.peek().kind === 'ident' && this.tokens[this.position + 1]?.text === ':') {
        label = this.tokens[this.position]!.text;
        this.position += 2;
      }
      args.push({ label, value: this.parseValue() });
      if (this.acceptPunct(')')) return args;
      this.expectPunct(',');
    }
  }

  private parseValue(): Value {
    const token = this.tokens[this.position++]!;
    if (token.kind === 'string') return { kind: 'string', value: token.value, token };
    if (token.kind === 'number') {
      const value = Number(token.text);
      if (!Number.isFinite(value)) throw this.syntax(token, `malformed number ${token.text}`);
      return { kind: 'number', value, token };
    }
    if (token.kind === 'ident') {
      if (this.peek().kind === 'punct' && this.peek().text === '(') return { kind: 'call', name: token.text, args: this.parseArgs(), token };
      return { kind: 'ident', name: token.text, token };
    }
    if (token.kind === 'punct' && token.text === '[') {
      const items: Value[] = [];
      if (this.acceptPunct(']')) return { kind: 'array', items, token };
      for (;;) {
        items.push(this.parseValue());
        if (this.acceptPunct(']')) return { kind: 'array', items, token };
        this.expectPunct(',');
      }
    }
    throw this.syntax(token, `expected a value, found ${describe(token)}`);
  }

  /** Skips a `{ ... }` block, nested braces included. */
  private skipBlock(): void {
    this.expectPunct('{');
    let depth = 1;
    while (depth > 0) {
      const token = this.tokens[this.position++]!;
      if (token.kind === 'eof') throw this.syntax(token, 'unterminated block');
      if (token.kind === 'punct' && token.text === '{') depth++;
      if (token.kind === 'punct' && token.text === '}') depth--;
    }
  }

  /** Prisma puts one field or block attribute per line; anything after it on the line is an error. */
  private expectLineEnd(): void {
    const previous = this.tokens[this.position - 1]!;
    const next = this.peek();
    if (next.kind === 'eof') throw this.syntax(next, 'unterminated model block (missing "}")');
    if (next.line === previous.line && !(next.kind === 'punct' && next.text === '}')) {
      throw this.syntax(next, `unexpected ${describe(next)}; each field or block attribute goes on its own line`);
    }
  }

  private peek(): Token {
    return this.tokens[this.position]!;
  }

  private acceptPunct(text: string): boolean {
    const token = this.peek();
    if (token.kind === 'punct' && token.text === text) {
      this.position++;
      return true;
    }
    return false;
  }

  private expectPunct(text: string): Token {
    const token = this.peek();
    if (token.kind !== 'punct' || token.text !== text) throw this.syntax(token, `expected "${text}", found ${describe(token)}`);
    this.position++;
    return token;
  }

  private expectKind(kind: TokenKind, what: string): Token {
    const token = this.peek();
    if (token.kind !== kind) throw this.syntax(token, `expected ${what}, found ${describe(token)}`);
    this.position++;
    return token;
  }

  private syntax(token: Token, message: string): PrismaSchemaError {
    return new PrismaSchemaError('PRISMA_SCHEMA_SYNTAX', message, token.line, token.column);
  }

  private unsupported(token: Token, message: string): PrismaSchemaError {
    return new PrismaSchemaError('PRISMA_SCHEMA_UNSUPPORTED', message, token.line, token.column);
  }
}

function describe(token: Token): string {
  return token.kind === 'eof' ? 'the end of the schema' : `"${token.text}"`;
}

// ------------------------------------------------------------------------------------------------
// Meaning

function resolveModels(models: ModelSyntax[]): PrismaTable[] {
  const modelNames = new Set<string>();
  for (const model of models) {
    if (modelNames.has(model.name)) throw invalid(model.token, `model ${model.name} is declared twice`);
    modelNames.add(model.name);
  }
  const tables = models.map((model) => resolveModel(model, modelNames));
  const byTable = new Map<string, string>();
  for (const table of tables) {
    const other = byTable.get(table.name);
    if (other) throw new PrismaSchemaError('PRISMA_SCHEMA_INVALID', `models ${other} and ${table.model} both map to table ${table.name}`);
    byTable.set(table.name, table.model);
  }
  return tables;
}

function resolveModel(model: ModelSyntax, modelNames: ReadonlySet<string>): PrismaTable {
  const columns: PrismaColumn[] = [];
  /** Field name → column name, for the block attributes' field lists. */
  const columnOf = new Map<string, string>();
  const relationFields = new Set<string>();
  const seenFields = new Set<string>();
  let primaryKey: string[] | undefined;
  const uniques: string[][] = [];
  const indexes: string[][] = [];

  for (const field of model.fields) {
    if (seenFields.has(field.name)) throw invalid(field.token, `field ${model.name}.${field.name} is declared twice`);
    seenFields.add(field.name);
    const where = `${model.name}.${field.name}`;

    if (field.unsupportedType === undefined && !SCALAR_TYPES.has(field.type)) {
      if (!modelNames.has(field.type)) {
        throw invalid(field.typeToken, `field ${where} has unknown type ${field.type} (only scalar types, Unsupported("...") and models are understood; enums and composite types are not)`);
      }
      for (const attribute of field.attributes) {
        if (attribute.name !== 'relation') throw invalid(attribute.token, `relation field ${where} cannot carry @${attribute.name}`);
        checkLabels(attribute, ['name', 'fields', 'references', 'onDelete', 'onUpdate', 'map']);
      }
      relationFields.add(field.name);
      continue;
    }

    const prismaType = field.unsupportedType === undefined ? (field.type as PrismaScalarType) : 'Unsupported';
    let name = field.name;
    let dbType: PrismaNativeType | undefined;
    for (const attribute of field.attributes) {
      switch (attribute.name) {
        case 'map':
          name = stringArg(attribute, 'name');
          break;
        case 'id':
          checkLabels(attribute, ['map']);
          if (field.optional || field.list) throw invalid(attribute.token, `primary-key field ${where} cannot be optional or a list`);
          if (primaryKey) throw invalid(attribute.token, `model ${model.name} declares more than one primary key`);
          primaryKey = [field.name];
          break;
        case 'unique':
          checkLabels(attribute, ['map']);
          uniques.push([field.name]);
          break;
        case 'default':
          checkDefault(attribute);
          break;
        case 'updatedAt':
          if (prismaType !== 'DateTime' || attribute.args.length > 0) throw invalid(attribute.token, `@updatedAt belongs on a DateTime field without arguments (${where})`);
          break;
        case 'relation':
          throw invalid(attribute.token, `@relation belongs on a relation field, not on scalar field ${where}`);
        default:
          if (attribute.name.startsWith('db.')) {
            if (dbType) throw invalid(attribute.token, `field ${where} has more than one @db attribute`);
            dbType = nativeType(attribute, prismaType, where);
            break;
          }
          throw new PrismaSchemaError('PRISMA_SCHEMA_UNSUPPORTED', `field attribute @${attribute.name} (${where}) is not supported by this parser`, attribute.token.line, attribute.token.column);
      }
    }
    columnOf.set(field.name, name);
    columns.push({
      field: field.name,
      name,
      prismaType,
      ...(field.unsupportedType === undefined ? {} : { unsupportedType: field.unsupportedType }),
      nullable: field.optional,
      list: field.list,
      ...(dbType ? { dbType } : {}),
    });
  }

  let tableName = model.name;
  for (const attribute of model.attributes) {
    switch (attribute.name) {
      case 'map':
        tableName = stringArg(attribute, 'name');
        break;
      case 'id':
        if (primaryKey) throw invalid(attribute.token, `model ${model.name} declares more than one primary key`);
        primaryKey = fieldList(attribute, ['name', 'map']);
        break;
      case 'unique':
        uniques.push(fieldList(attribute, ['name', 'map']));
        break;
      case 'index':
        indexes.push(fieldList(attribute, ['name', 'map']));
        break;
      default:
        throw new PrismaSchemaError('PRISMA_SCHEMA_UNSUPPORTED', `block attribute @@${attribute.name} (model ${model.name}) is not supported by this parser`, attribute.token.line, attribute.token.column);
    }
  }
  if (columnOf.size !== new Set(columnOf.values()).size) {
    throw invalid(model.token, `two fields of model ${model.name} map to the same column`);
  }

  const toColumns = (fields: string[], attribute: string): string[] =>
    fields.map((fieldName) => {
      const column = columnOf.get(fieldName);
      if (column === undefined) {
        throw new PrismaSchemaError(
          'PRISMA_SCHEMA_INVALID',
          relationFields.has(fieldName)
            ? `${attribute} of model ${model.name} names relation field ${fieldName}; list its scalar fields instead`
            : `${attribute} of model ${model.name} names unknown field ${fieldName}`,
          model.token.line,
          model.token.column,
        );
      }
      return column;
    });

  return {
    model: model.name,
    name: tableName,
    columns,
    primaryKey: primaryKey ? toColumns(primaryKey, '@@id') : [],
    uniques: uniques.map((fields) => toColumns(fields, '@@unique')),
    indexes: indexes.map((fields) => toColumns(fields, '@@index')),
  };
}

function invalid(token: Token, message: string): PrismaSchemaError {
  return new PrismaSchemaError('PRISMA_SCHEMA_INVALID', message, token.line, token.column);
}

function unsupportedArg(attribute: Attribute, message: string): PrismaSchemaError {
  return new PrismaSchemaError('PRISMA_SCHEMA_UNSUPPORTED', message, attribute.token.line, attribute.token.column);
}

/** Refuses labelled arguments outside `allowed` (e.g. `sort:`, `clustered:`), which this parser ignores. */
function checkLabels(attribute: Attribute, allowed: readonly string[], positional = 0): void {
  let positionalSeen = 0;
  for (const arg of attribute.args) {
    if (arg.label === undefined) {
      if (++positionalSeen > positional) throw unsupportedArg(attribute, `@${attribute.name} takes no further unnamed arguments here`);
    } else if (!allowed.includes(arg.label)) {
      throw unsupportedArg(attribute, `argument "${arg.label}" of @${attribute.name} is not supported by this parser`);
    }
  }
}

/** The single string argument (positional or labelled `label`) of `@map` / `@@map`. */
function stringArg(attribute: Attribute, label: string): string {
  const [arg, ...rest] = attribute.args;
  if (!arg || rest.length > 0 || (arg.label !== undefined && arg.label !== label) || arg.value.kind !== 'string' || arg.value.value === '') {
    throw invalid(attribute.token, `@${attribute.name} takes exactly one non-empty string`);
  }
  return arg.value.value;
}

/** The field names of `@@id([...])`, `@@unique([...])`, `@@index([...])` (positional or `fields:`). */
function fieldList(attribute: Attribute, allowedLabels: readonly string[]): string[] {
  const fieldsArg = attribute.args.find((arg, index) => (arg.label === undefined && index === 0) || arg.label === 'fields');
  if (!fieldsArg || fieldsArg.value.kind !== 'array' || fieldsArg.value.items.length === 0) {
    throw invalid(attribute.token, `@@${attribute.name} needs a non-empty list of fields`);
  }
  for (const arg of attribute.args) {
    if (arg === fieldsArg) continue;
    if (arg.label === undefined || !allowedLabels.includes(arg.label)) {
      throw unsupportedArg(attribute, `argument ${arg.label ?? '(unnamed)'} of @@${attribute.name} is not supported by this parser`);
    }
  }
  return fieldsArg.value.items.map((item) => {
    if (item.kind === 'ident') return item.name;
    if (item.kind === 'call') throw unsupportedArg(attribute, `per-field arguments in @@${attribute.name} (${item.name}(...)) are not supported by this parser`);
    throw invalid(attribute.token, `@@${attribute.name} lists fields by name`);
  });
}

/** Accepts literal defaults and the known generator functions; a default does not change the column's shape. */
function checkDefault(attribute: Attribute): void {
  checkLabels(attribute, ['map'], 1);
  const value = attribute.args.find((arg) => arg.label === undefined)?.value;
  if (!value) throw invalid(attribute.token, '@default needs a value');
  const check = (v: Value): void => {
    switch (v.kind) {
      case 'string':
      case 'number':
        return;
      case 'ident':
        if (v.name === 'true' || v.name === 'false') return;
        throw new PrismaSchemaError('PRISMA_SCHEMA_UNSUPPORTED', `default value ${v.name} is not supported by this parser (enums are not)`, v.token.line, v.token.column);
      case 'array':
        v.items.forEach(check);
        return;
      case 'call':
        if (!DEFAULT_FUNCTIONS.has(v.name)) {
          throw new PrismaSchemaError('PRISMA_SCHEMA_UNSUPPORTED', `default function ${v.name}() is not supported by this parser`, v.token.line, v.token.column);
        }
        if (v.name === 'dbgenerated' && v.args.some((arg) => arg.value.kind !== 'string')) {
          throw invalid(v.token, 'dbgenerated() takes a string');
        }
        return;
    }
  };
  check(value);
}

function nativeType(attribute: Attribute, prismaType: PrismaScalarType | 'Unsupported', where: string): PrismaNativeType {
  const name = attribute.name.slice('db.'.length);
  const spec = NATIVE_TYPES[name];
  if (!spec || name.includes('.')) {
    throw new PrismaSchemaError('PRISMA_SCHEMA_UNSUPPORTED', `native type @${attribute.name} (${where}) is not supported by this parser`, attribute.token.line, attribute.token.column);
  }
  if (spec.scalar !== prismaType) throw invalid(attribute.token, `@${attribute.name} does not apply to ${prismaType} field ${where}`);
  const args = attribute.args.map((arg) => {
    if (arg.label !== undefined || arg.value.kind !== 'number' || !Number.isInteger(arg.value.value) || arg.value.value < 0) {
      throw invalid(attribute.token, `@${attribute.name} takes non-negative integer arguments (${where})`);
    }
    return arg.value.value;
  });
  if (!spec.arities.includes(args.length)) throw invalid(attribute.token, `@${attribute.name} takes ${spec.arities.join(' or ')} argument(s) (${where})`);
  return { name, args };
}
