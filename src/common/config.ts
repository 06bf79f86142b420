/**
 * The pieces every binary's config loader shares: zod field schemas (durations, log levels,
 * host:port, trust domains), the one way a zod failure becomes "key: problem" messages
 * (unknown keys named), the ERR_CONFIG_INVALID error, path resolution, freezing and YAML
 * file reading. Each binary keeps its own schema and resolution; only the plumbing is here.
 */
import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { TrustDomain } from '../spiffe/spiffe-id.js';
import { parseDuration } from './duration.js';
import { SigilError } from './errors.js';

/** The log levels every binary accepts (pino's, plus silent). */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

/** One of LOG_LEVELS. */
export type LogLevel = (typeof LOG_LEVELS)[number];

/** A zod schema for a log level. */
export const logLevelSchema = z.enum(LOG_LEVELS);

/** A zod schema for a positive duration string (`90s`, `1h30m`); `examples` goes into the message. */
export function durationSchema(examples = '90s, 5m, 1h30m'): z.ZodString {
  return z.string().refine(
    (s) => {
      try {
        return parseDuration(s) > 0;
      } catch {
        return false;
      }
    },
    { message: `must be a positive duration such as ${examples}` },
  );
}

/**
 * A zod schema for `host:port` (IPv6 hosts in brackets); `example` goes into the message.
 * The port must be 0 to 65535 (0: any free port, for an address to listen on) or, with
 * `dial`, 1 to 65535 (an address to connect to), so a typo such as `127.0.0.1:99999` is a
 * config error naming the key rather than a raw error from the socket layer at start.
 */
export function hostPortSchema(example: string, options: { readonly dial?: boolean } = {}): z.ZodString {
  const min = options.dial === true ? 1 : 0;
  return z
    .string()
    .regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, `must be host:port, e.g. ${example}`)
    .refine(
      (s) => {
        const m = /:(\d{1,5})$/.exec(s);
        // a string the regex refused has its message already
        if (m === null) return true;
        const port = Number(m[1]);
        return port >= min && port <= 65535;
      },
      { error: (issue) => `port ${/:(\d+)$/.exec(String(issue.input))?.[1] ?? '?'} is out of range: must be ${min} to 65535, e.g. ${example}` },
    );
}

/** A zod schema for a trust domain name, checked by TrustDomain.parse. */
export const trustDomainSchema = z.string().refine(
  (s) => {
    try {
      TrustDomain.parse(s);
      return true;
    } catch {
      return false;
    }
  },
  { message: 'must be a valid trust domain name such as example.org' },
);

/** ERR_CONFIG_INVALID for `<what>` (server, agent, helper) listing every problem at once. */
export function configError(what: string, problems: readonly string[]): SigilError {
  return new SigilError('ERR_CONFIG_INVALID', `invalid ${what} configuration: ${problems.join('; ')}`, { reason: 'config' });
}

/**
 * What to do about a required key that is missing, by dotted key: the choices, such as
 * `set nodeAttestor.joinToken.tokenFile or pass --join-token-file`. A missing key without
 * an entry reads `<key>: required: set <key>`.
 */
export type RequiredKeyHints = Readonly<Record<string, string>>;

/** Turns zod issues into "dotted.key: problem" lines, unknown keys named with their full path, missing ones with what to set. */
export function formatConfigIssues(issues: readonly z.core.$ZodIssue[], hints: RequiredKeyHints = {}): string[] {
  return issues.map((issue) => {
    const where = issue.path.length === 0 ? '(top level)' : issue.path.map(String).join('.');
    if (issue.code === 'unrecognized_keys') {
      const prefix = issue.path.length === 0 ? '' : `${where}.`;
      return `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => prefix + k).join(', ')}`;
    }
    if (issue.code === 'invalid_type' && /received undefined$/.test(issue.message)) return `${where}: required: ${hints[where] ?? `set ${where}`}`;
    return `${where}: ${issue.message}`;
  });
}

/** The raw config as a mapping (absent means empty); throws configError for anything else. */
export function requireConfigMapping(raw: unknown, what: string): object {
  if (raw === null || raw === undefined) return {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw configError(what, ['the file must hold a YAML mapping']);
  return raw;
}

/** Parses `value` with `schema`, throwing one configError that names every problem (and, for a missing key, what to set). */
export function parseConfig<S extends z.ZodType>(schema: S, value: unknown, what: string, hints: RequiredKeyHints = {}): z.output<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw configError(what, formatConfigIssues(parsed.error.issues, hints));
  return parsed.data;
}

/** A resolver of config paths: absolute ones stay, relative ones are taken from `baseDir`. */
export function pathResolver(baseDir: string): (path: string) => string {
  return (p) => (isAbsolute(p) ? p : resolve(baseDir, p));
}

/** What a binary's resolver works from once its schema has accepted the config. */
export interface ParsedConfig<T> {
  /** The parsed config (schema defaults applied). */
  readonly c: T;
  /** Resolves a path of the config against its base folder (see pathResolver). */
  readonly abs: (path: string) => string;
  /** Where the resolver collects the problems found past the schema, for one configError. */
  readonly problems: string[];
}

/**
 * The start every binary's resolver shares: `raw` must be a mapping (absent: empty); `flags`
 * writes the command-line flags into a copy of it (flags win); the copy is parsed with
 * `schema` (one configError naming every problem, `hints` for missing keys).
 */
export function parseRawConfig<S extends z.ZodType>(
  what: string,
  schema: S,
  raw: unknown,
  options: { readonly baseDir: string; readonly hints?: RequiredKeyHints; readonly flags?: (merged: Record<string, unknown>) => void },
): ParsedConfig<z.output<S>> {
  const merged = structuredClone(requireConfigMapping(raw, what)) as Record<string, unknown>;
  options.flags?.(merged);
  return { c: parseConfig(schema, merged, what, options.hints), abs: pathResolver(options.baseDir), problems: [] };
}

/**
 * Reads the YAML config file at `path` and resolves it with `resolveRaw`, relative paths taken
 * from the file's folder; without a file, resolves an empty config (paths from the working
 * directory).
 */
export function loadConfigFile<T>(path: string | undefined, what: string, resolveRaw: (raw: unknown, baseDir: string) => T): T {
  if (path === undefined) return resolveRaw({}, process.cwd());
  return resolveRaw(readYamlConfigFile(path, what), resolve(path, '..'));
}

/**
 * Freezes plain objects and arrays all the way down; class instances (value types such as
 * TrustDomain, immutable by their own API) are left as they are.
 */
export function deepFreezeConfig<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    const proto: unknown = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== Array.prototype && proto !== null) return value;
    for (const v of Object.values(value)) deepFreezeConfig(v);
    Object.freeze(value);
  }
  return value;
}

/** Reads and parses a YAML config file; ERR_CONFIG_INVALID with reason config-file or config-yaml. */
export function readYamlConfigFile(path: string, what: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new SigilError('ERR_CONFIG_INVALID', `cannot read ${what} configuration ${JSON.stringify(path)}`, { reason: 'config-file', cause: err });
  }
  try {
    return parseYaml(text);
  } catch (err) {
    throw new SigilError('ERR_CONFIG_INVALID', `${what} configuration ${JSON.stringify(path)} is not valid YAML`, { reason: 'config-yaml', cause: err });
  }
}
