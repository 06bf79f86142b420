/** Test helper: lists the leaf keys of a zod object schema with their defaults, for the docs tests. */
import type { z } from 'zod';

/** One leaf key of a config schema. */
export interface SchemaKey {
  /** Dotted path, e.g. `agentApi.address`. */
  readonly key: string;
  /** The zod type of the leaf: string, enum, number, boolean, … */
  readonly type: string;
  /** The default the schema applies (own or from a parent object's default), if any. */
  readonly default: unknown;
  /** True when the file may leave the key out without getting a default (it or a parent is optional). */
  readonly optional: boolean;
  /** The allowed values of an enum. */
  readonly options: readonly string[];
}

interface Def {
  type: string;
  innerType?: z.ZodType;
  in?: z.ZodType;
  defaultValue?: unknown;
  shape?: Record<string, z.ZodType>;
  entries?: Record<string, string>;
}

const defOf = (s: z.ZodType): Def => (s as unknown as { _zod: { def: Def } })._zod.def;

/** Walks a schema's nested objects down to their leaves. */
export function schemaKeys(schema: z.ZodType): SchemaKey[] {
  const out: SchemaKey[] = [];
  const walk = (s: z.ZodType, path: string[], inherited: unknown, parentOptional: boolean): void => {
    let def = defOf(s);
    let dflt: unknown;
    let optional = false;
    for (;;) {
      if (def.type === 'default') dflt ??= def.defaultValue;
      else if (def.type === 'optional') optional = true;
      else if (def.type !== 'pipe') break;
      s = (def.innerType ?? def.in) as z.ZodType;
      def = defOf(s);
    }
    if (dflt === undefined) dflt = inherited;
    const isOptional = dflt === undefined && (optional || parentOptional);
    if (def.type === 'object' && def.shape !== undefined) {
      for (const [k, v] of Object.entries(def.shape)) walk(v, [...path, k], (dflt as Record<string, unknown> | undefined)?.[k], isOptional);
      return;
    }
    out.push({ key: path.join('.'), type: def.type, default: dflt, optional: isOptional, options: def.type === 'enum' ? Object.values(def.entries ?? {}) : [] });
  };
  walk(schema, [], undefined, false);
  return out;
}
