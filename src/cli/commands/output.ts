/** Output helpers of the server-side commands: aligned tables by default, JSON with `--output json`, errors to stderr with exit codes. */
import { isSigilError } from '../../common/errors.js';
import type { CommandIo } from '../io.js';
import type { ParsedArgs } from './args.js';
import { AdminClient, DEFAULT_ADMIN_SOCKET } from './admin-client.js';
import { loadServerConfig } from '../../server/config.js';

/** Output format chosen with `--output`. */
export type OutputFormat = 'table' | 'json';

/** Reads `--output` (table or json). */
export function outputFormat(args: ParsedArgs): OutputFormat {
  const o = args.get('output') ?? 'table';
  if (o !== 'table' && o !== 'json') throw Object.assign(new Error(`--output must be table or json, got ${JSON.stringify(o)}`), { usage: true });
  return o;
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

/** The admin socket: `--socket`, else the config file's `adminApi.socketPath` (`--config`), else the default. */
export function adminSocket(args: ParsedArgs): string {
  const s = args.get('socket');
  if (s !== undefined) return s;
  const c = args.get('config');
  if (c !== undefined) return loadServerConfig(c).adminApi.socketPath;
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

/** Prints an error as `sigil: <message> (<code>)` and returns its exit code. */
export function reportError(io: CommandIo, err: unknown): number {
  if (isSigilError(err)) {
    io.err(`sigil: ${err.message} (${err.code})\n`);
    return err.reason === 'usage' ? 2 : 1;
  }
  if (err instanceof Error && (err as { usage?: boolean }).usage === true) {
    io.err(`sigil: ${err.message}\n`);
    return 2;
  }
  io.err(`sigil: ${err instanceof Error ? err.message : String(err)}\n`);
  return 1;
}

/** Formats epoch seconds (number or string) as ISO 8601, or `never` for 0. */
export function isoSeconds(s: number | string): string {
  const n = Number(s);
  return n === 0 ? 'never' : new Date(n * 1000).toISOString();
}
