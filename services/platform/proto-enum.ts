import { z } from 'zod';

/** The reason of a required enum field left UNSPECIFIED (or set to a value the kernel does not know). */
export const ENUM_UNSPECIFIED = 'ENUM_UNSPECIFIED';

/**
 * One proto enum ⇄ the names a capability uses inside (the database's, the use cases'), built
 * from ONE table of name → proto value, so the two directions cannot disagree. UNSPECIFIED (0)
 * and values the kernel does not know (ts-proto's UNRECOGNIZED, -1, or a number from a newer
 * client) have no name: `required` refuses them, `filter` reads UNSPECIFIED as "no filter".
 *
 *   const overlapPolicies = protoEnum({ SKIP: OverlapPolicy.OVERLAP_POLICY_SKIP, … });
 *   overlapPolicies.toProto('SKIP')            // → OverlapPolicy.OVERLAP_POLICY_SKIP
 *   overlapPolicies.fromProto(request.policy)  // → 'SKIP' | undefined
 *   z.object({ overlapPolicy: overlapPolicies.required() })   // parses to the name
 */
export interface ProtoEnum<Name extends string, Value extends number> {
  /** The proto value of a name. */
  toProto(name: Name): Value;
  /** The name of a proto value; undefined for UNSPECIFIED and unknown values. */
  fromProto(value: number): Name | undefined;
  /** Whether the value has a name (neither UNSPECIFIED nor unknown). */
  has(value: number): boolean;
  /** The names in table order. */
  readonly names: readonly Name[];
  /**
   * A Zod schema for a required enum field: a named value parses to its name; UNSPECIFIED and
   * unknown values are refused with `reason` (default ENUM_UNSPECIFIED) and "must be A, B or C".
   */
  required(reason?: string): z.ZodType<Name, number>;
  /**
   * A Zod schema for an optional filter: UNSPECIFIED parses to undefined (no filter), a named
   * value to its name; an unknown value is refused with `reason` (default FIELD_INVALID).
   */
  filter(reason?: string): z.ZodType<Name | undefined, number>;
}

export function protoEnum<Name extends string, Value extends number>(table: Readonly<Record<Name, Value>>): ProtoEnum<Name, Value> {
  const names = Object.keys(table) as Name[];
  const byValue = new Map<number, Name>();
  for (const name of names) {
    const value = table[name];
    if (value === 0) throw new Error(`${name}: the UNSPECIFIED value (0) has no name`);
    if (byValue.has(value)) throw new Error(`${name} and ${byValue.get(value)} share the proto value ${value}`);
    byValue.set(value, name);
  }
  const mustBe = `must be ${names.length > 1 ? `${names.slice(0, -1).join(', ')} or ${names[names.length - 1]}` : names[0]}`;
  const fromProto = (value: number) => byValue.get(value);
  return {
    names,
    toProto: (name) => table[name],
    fromProto,
    has: (value) => byValue.has(value),
    required: (reason = ENUM_UNSPECIFIED) =>
      z
        .number()
        .refine((v) => byValue.has(v), { message: mustBe, params: { reason } })
        .transform((v) => byValue.get(v)!),
    filter: (reason = 'FIELD_INVALID') =>
      z
        .number()
        .refine((v) => v === 0 || byValue.has(v), { message: `${mustBe} (or unspecified)`, params: { reason } })
        .transform((v) => byValue.get(v)),
  };
}
