/**
 * A small flag parser for the server-side commands: `--name value`, `--name=value`,
 * repeatable flags, boolean switches. Unknown flags are usage errors (exit code 2).
 */
import { parseDuration } from '../../common/duration.js';
import { SigilError } from '../../common/errors.js';

/** How a command's flags are declared. */
export interface FlagSpec {
  /** Flags that take a value; listed in `repeatable` too when they may repeat. */
  readonly values?: readonly string[];
  readonly repeatable?: readonly string[];
  readonly booleans?: readonly string[];
}

/** Parsed flags and positional arguments. */
export interface ParsedArgs {
  readonly flags: ReadonlyMap<string, string[]>;
  readonly switches: ReadonlySet<string>;
  readonly positionals: readonly string[];
  /** The single value of a flag, or undefined. */
  get(name: string): string | undefined;
  /** Every value of a repeatable flag. */
  all(name: string): string[];
  has(name: string): boolean;
}

/** A usage error: the command prints it and exits with code 2. */
export function usageError(message: string): SigilError {
  return new SigilError('ERR_INVALID_ARGUMENT', message, { reason: 'usage' });
}

/** Parses `args` against `spec`; throws a usage error naming the bad flag. */
export function parseArgs(args: readonly string[], spec: FlagSpec): ParsedArgs {
  const values = new Set([...(spec.values ?? []), ...(spec.repeatable ?? []), 'socket', 'output', 'config']);
  const repeatable = new Set(spec.repeatable ?? []);
  const booleans = new Set([...(spec.booleans ?? []), 'help']);
  const flags = new Map<string, string[]>();
  const switches = new Set<string>();
  const positionals: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (a === '--') {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (a === '-h') {
      switches.add('help');
      continue;
    }
    if (!a.startsWith('--')) {
      positionals.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = eq === -1 ? a.slice(2) : a.slice(2, eq);
    if (booleans.has(name)) {
      if (eq !== -1) throw usageError(`flag --${name} takes no value`);
      switches.add(name);
      continue;
    }
    if (!values.has(name)) throw usageError(`unknown flag --${name}`);
    let value: string;
    if (eq !== -1) value = a.slice(eq + 1);
    else {
      const next = args[i + 1];
      if (next === undefined) throw usageError(`flag --${name} needs a value`);
      value = next;
      i++;
    }
    const list = flags.get(name) ?? [];
    if (list.length > 0 && !repeatable.has(name)) throw usageError(`flag --${name} given more than once`);
    list.push(value);
    flags.set(name, list);
  }
  return {
    flags,
    switches,
    positionals,
    get: (n) => flags.get(n)?.[0],
    all: (n) => flags.get(n) ?? [],
    has: (n) => switches.has(n),
  };
}

/** Parses a whole non-negative number flag. */
export function intFlag(args: ParsedArgs, name: string, fallback = 0): number {
  const v = args.get(name);
  if (v === undefined) return fallback;
  if (!/^\d+$/.test(v)) throw usageError(`--${name} must be a whole number, got ${JSON.stringify(v)}`);
  return Number(v);
}

/** A duration flag in whole seconds, 0 when absent; a usage error citing `example` (e.g. `5m`) otherwise. */
export function durationSeconds(args: ParsedArgs, name: string, example: string): number {
  const v = args.get(name);
  if (v === undefined) return 0;
  try {
    return Math.round(parseDuration(v) / 1000);
  } catch {
    throw usageError(`--${name} must be a duration such as ${example}, got ${JSON.stringify(v)}`);
  }
}
