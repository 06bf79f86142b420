/**
 * What a command's `run` receives once the command line is parsed (src/cli/parser.ts, with
 * commander, against the definitions in src/cli/definitions.ts): flag values by long name,
 * already checked for their kind (durations, SPIFFE IDs, choices), and the positional
 * arguments. The commands only check what depends on several flags together.
 */
import { parseDuration } from '../../common/duration.js';
import { SigilError } from '../../common/errors.js';

/** Parsed flags and positional arguments. */
export interface ParsedArgs {
  readonly positionals: readonly string[];
  /** The value of a flag (by its long name, e.g. `spiffe-id`), or undefined. */
  get(name: string): string | undefined;
  /** Every value of a repeatable flag. */
  all(name: string): string[];
  /** Whether a switch (a flag without a value) was given. */
  has(name: string): boolean;
}

let commandPath: readonly string[] = [];

/** Sets the command being run (`['entry', 'create']`), named in the hint of a usage error; the parser does. */
export function setCommandPath(path: readonly string[]): void {
  commandPath = path;
}

/** The hint after a usage error: `see "sigil entry create --help"`. */
export function usageHint(): string {
  return `see "${['sigil', ...commandPath].join(' ')} --help"`;
}

/** A usage error: the command prints it and exits with code 2. */
export function usageError(message: string): SigilError {
  return new SigilError('ERR_INVALID_ARGUMENT', message, { reason: 'usage' });
}

/** commander's key of a long flag name: `spiffe-id` → `spiffeId`. */
export function optionKey(name: string): string {
  return name.replace(/-([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

/** ParsedArgs over commander's option values (keyed as optionKey gives) and the positionals. */
export function parsedArgs(values: Readonly<Record<string, unknown>>, positionals: readonly string[]): ParsedArgs {
  const value = (name: string): unknown => values[optionKey(name)];
  return {
    positionals,
    get: (n) => {
      const v = value(n);
      if (Array.isArray(v)) return v[0] as string | undefined;
      return typeof v === 'string' ? v : undefined;
    },
    all: (n) => {
      const v = value(n);
      if (Array.isArray(v)) return [...(v as string[])];
      return typeof v === 'string' ? [v] : [];
    },
    has: (n) => value(n) === true,
  };
}

/** A duration flag in whole seconds, 0 when absent (the flag's kind was checked while parsing). */
export function durationSeconds(args: ParsedArgs, name: string): number {
  const v = args.get(name);
  return v === undefined ? 0 : Math.round(parseDuration(v) / 1000);
}

/** A duration flag in milliseconds, `fallbackMs` when absent. */
export function durationMs(args: ParsedArgs, name: string, fallbackMs: number): number {
  const v = args.get(name);
  return v === undefined ? fallbackMs : parseDuration(v);
}
