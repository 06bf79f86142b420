/** Output helpers of the server-side commands: aligned tables by default, JSON with `--output json`, errors to stderr with exit codes. */
import { isSigilError } from '../../common/errors.js';
import type { CommandIo } from '../io.js';
import { usageHint, type ParsedArgs } from './args.js';
import { AdminClient, DEFAULT_ADMIN_SOCKET } from './admin-client.js';
import { loadServerConfig } from '../../server/config.js';

/** Output format chosen with `--output`. */
export type OutputFormat = 'table' | 'json';

/** Reads `--output` (table or json; the parser checked the choice). */
export function outputFormat(args: ParsedArgs): OutputFormat {
  return args.get('output') === 'json' ? 'json' : 'table';
}

/** Prints rows as a table with a header line. */
export function printTable(io: CommandIo, header: readonly string[], rows: readonly (readonly string[])[]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd();
  io.out(`${line(header)}\n`);
  for (const r of rows) io.out(`${line(r)}\n`);
}

/** Prints a value as indented JSON. */
export function printJson(io: CommandIo, value: unknown): void {
  io.out(`${JSON.stringify(value, (_k, v: unknown) => (Buffer.isBuffer(v) ? v.toString('base64') : v), 2)}\n`);
}

/** Prints key/value pairs, one per line. */
export function printFields(io: CommandIo, fields: readonly [string, string][]): void {
  const w = Math.max(...fields.map(([k]) => k.length));
  for (const [k, v] of fields) io.out(`${`${k}:`.padEnd(w + 2)}${v}\n`);
}

/** The environment variable naming the admin socket when no flag does. */
export const ADMIN_SOCKET_ENV = 'SIGIL_ADMIN_SOCKET';

/**
 * The admin socket, found where the server puts it: `--socket`, else the `adminApi.socketPath`
 * of the server's config (`--config`; its default is `<dataDir>/admin.sock`), else
 * $SIGIL_ADMIN_SOCKET, else the deploy default.
 */
export function adminSocket(args: ParsedArgs, env: NodeJS.ProcessEnv = process.env): string {
  const s = args.get('socket');
  if (s !== undefined) return s;
  const c = args.get('config');
  if (c !== undefined) return loadServerConfig(c).adminApi.socketPath;
  const e = env[ADMIN_SOCKET_ENV];
  if (e !== undefined && e !== '') return e;
  return DEFAULT_ADMIN_SOCKET;
}

/** Runs a command body against the admin API, printing errors and mapping them to exit codes (1 failure, 2 usage). */
export async function withAdmin(io: CommandIo, args: ParsedArgs, body: (client: AdminClient) => Promise<number>): Promise<number> {
  let client: AdminClient | undefined;
  try {
    client = new AdminClient(adminSocket(args));
    return await body(client);
  } catch (err) {
    return reportError(io, err);
  } finally {
    client?.close();
  }
}

/** Failures whose message is already one plain sentence for people (the connection to a daemon): no code is added. */
const PLAIN_REASONS = new Set(['no-server', 'no-agent', 'admin-socket-permission', 'agent-socket-permission', 'admin-timeout']);

/**
 * Prints an error as one line and returns its exit code: a usage error (exit 2) as
 * `sigil: <message>; see "sigil <command> --help"`, any other (exit 1) as `sigil: <message> (<code>)`.
 */
export function reportError(io: CommandIo, err: unknown): number {
  if (isSigilError(err)) {
    if (err.reason === 'usage') {
      io.err(`sigil: ${err.message}; ${usageHint()}\n`);
      return 2;
    }
    io.err(PLAIN_REASONS.has(err.reason ?? '') ? `sigil: ${err.message}\n` : `sigil: ${err.message} (${err.code})\n`);
    return 1;
  }
  io.err(`sigil: ${err instanceof Error ? err.message : String(err)}\n`);
  return 1;
}

/** Formats epoch seconds (number or string) as RFC 3339 (UTC), or `never` for 0: for tables. */
export function isoSeconds(s: number | string): string {
  const n = Number(s);
  return n === 0 ? 'never' : new Date(n * 1000).toISOString();
}

/** Epoch seconds as RFC 3339 (UTC), or null for 0 (never): every time in `--output json`. */
export function rfc3339(s: number | string): string | null {
  const n = Number(s);
  return n === 0 ? null : new Date(n * 1000).toISOString();
}

/** The one form of a certificate serial in output: lowercase hex, no colons or leading zeros. */
export function serialForm(serial: string): string {
  const s = serial.replace(/:/g, '').toLowerCase().replace(/^0+/, '');
  return s === '' ? '0' : s;
}
