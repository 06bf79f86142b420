/** `sigil entry create|show|list|update|delete|count`: registration entries over the admin API. */
import { parseDuration } from '../../common/duration.js';
import type { AdminEntryMessage } from '../../grpc/messages.js';
import type { CommandIo } from '../io.js';
import { durationSeconds, usageError, type ParsedArgs } from './args.js';
import type { AdminClient } from './admin-client.js';
import { isoSeconds, outputFormat, printFields, printJson, printTable, rfc3339, withAdmin } from './output.js';

type EntryMsg = AdminEntryMessage;

interface EntryResult {
  status: { code: number; message: string; sigil_code: string };
  entry: EntryMsg | null;
}

/** The JSON form of an entry, the same in every command's `--output json` (times RFC 3339, null for never). */
export function entryView(e: EntryMsg): Record<string, unknown> {
  return {
    id: e.id,
    spiffeId: e.spiffe_id,
    parentId: e.parent_id,
    selectors: e.selectors.map((s) => `${s.type}:${s.value}`),
    x509SvidTtlSeconds: e.x509_svid_ttl_seconds,
    jwtSvidTtlSeconds: e.jwt_svid_ttl_seconds,
    dnsNames: e.dns_names,
    federatesWith: e.federates_with,
    admin: e.admin,
    downstream: e.downstream,
    hint: e.hint,
    expiresAt: rfc3339(e.expires_at),
    revision: Number(e.revision),
    createdAt: rfc3339(e.created_at),
    // present only for an entry the server never serves (a reserved SPIFFE ID from an older version)
    ...(e.refused_reason ? { refused: e.refused_reason } : {}),
  };
}

function selectorMsg(text: string): { type: string; value: string } {
  const i = text.indexOf(':');
  if (i <= 0 || i === text.length - 1) throw usageError(`invalid selector ${JSON.stringify(text)}: expected type:value`);
  return { type: text.slice(0, i), value: text.slice(i + 1) };
}

async function entryFromFlags(args: ParsedArgs, client: AdminClient, id: string): Promise<Record<string, unknown>> {
  const spiffeId = args.get('spiffe-id');
  if (spiffeId === undefined) throw usageError('--spiffe-id is required');
  let parentId = args.get('parent-id');
  if (args.has('node')) {
    if (parentId !== undefined) throw usageError('give --parent-id or --node, not both');
    const info = await client.call<{ trust_domain: string }>('Server', 'GetInfo');
    parentId = `spiffe://${info.trust_domain}/sigil/server`;
  }
  if (parentId === undefined) throw usageError('--parent-id (or --node) is required');
  const selectors = args.all('selector').map(selectorMsg);
  if (selectors.length === 0) throw usageError('at least one --selector is required');
  const expiresIn = args.get('expires-in');
  const expiresAt = expiresIn === undefined ? 0 : Math.floor((Date.now() + parseDuration(expiresIn)) / 1000);
  return {
    id,
    spiffe_id: spiffeId,
    parent_id: parentId,
    selectors,
    x509_svid_ttl_seconds: durationSeconds(args, 'x509-svid-ttl'),
    jwt_svid_ttl_seconds: durationSeconds(args, 'jwt-svid-ttl'),
    dns_names: args.all('dns'),
    federates_with: args.all('federates-with'),
    admin: args.has('admin'),
    downstream: args.has('downstream'),
    hint: args.get('hint') ?? '',
    expires_at: expiresAt,
  };
}

function filterFromFlags(args: ParsedArgs): Record<string, unknown> {
  return {
    spiffe_id: args.get('spiffe-id') ?? '',
    parent_id: args.get('parent-id') ?? '',
    selectors: args.all('selector').map(selectorMsg),
    selector_match: args.get('match') ?? '',
    federates_with: args.get('federates-with') ?? '',
    hint: args.get('hint') ?? '',
  };
}

function entryCount(n: number): string {
  return n === 1 ? '1 registration entry' : `${n} registration entries`;
}

/** The marker of an entry the server refuses to serve, in tables. */
const REFUSED_MARK = ' [REFUSED: reserved ID, never served; delete it]';

function printEntries(io: CommandIo, args: ParsedArgs, entries: EntryMsg[]): void {
  if (outputFormat(args) === 'json') {
    printJson(io, { entries: entries.map(entryView) });
    return;
  }
  for (const e of entries) if (e.refused_reason) io.err(`sigil: entry ${e.id} is never served or signed: ${e.refused_reason}\n`);
  printTable(
    io,
    ['ENTRY ID', 'SPIFFE ID', 'PARENT ID', 'SELECTORS', 'X509 TTL', 'REV'],
    entries.map((e) => [
      e.id,
      e.refused_reason ? `${e.spiffe_id}${REFUSED_MARK}` : e.spiffe_id,
      e.parent_id,
      e.selectors.map((s) => `${s.type}:${s.value}`).join(','),
      e.x509_svid_ttl_seconds === 0 ? 'default' : `${e.x509_svid_ttl_seconds}s`,
      String(e.revision),
    ]),
  );
}

function printOne(io: CommandIo, args: ParsedArgs, e: EntryMsg): void {
  if (outputFormat(args) === 'json') {
    printJson(io, { entry: entryView(e) });
    return;
  }
  printFields(io, [
    ['Entry ID', e.id],
    ['SPIFFE ID', e.spiffe_id],
    ...(e.refused_reason ? ([['Refused', `never served or signed: ${e.refused_reason}`]] as [string, string][]) : []),
    ['Parent ID', e.parent_id],
    ['Selectors', e.selectors.map((s) => `${s.type}:${s.value}`).join(', ')],
    ['X509-SVID TTL', e.x509_svid_ttl_seconds === 0 ? 'default' : `${e.x509_svid_ttl_seconds}s`],
    ['JWT-SVID TTL', e.jwt_svid_ttl_seconds === 0 ? 'default' : `${e.jwt_svid_ttl_seconds}s`],
    ['DNS names', e.dns_names.join(', ')],
    ['Federates with', e.federates_with.join(', ')],
    ['Admin', String(e.admin)],
    ['Downstream', String(e.downstream)],
    ['Hint', e.hint],
    ['Expires', isoSeconds(e.expires_at)],
    ['Created', isoSeconds(e.created_at)],
    ['Revision', String(e.revision)],
  ]);
}

function checkResults(io: CommandIo, results: EntryResult[]): number {
  let code = 0;
  for (const r of results) {
    if (r.status.code !== 0) {
      io.err(`sigil: ${r.status.message} (${r.status.sigil_code})\n`);
      code = 1;
    }
  }
  return code;
}

function listAll(client: AdminClient, filter: Record<string, unknown>): Promise<EntryMsg[]> {
  return client.listAll<EntryMsg>('Entries', 'ListEntries', 'entries', { filter, page_size: 500 });
}

/** Runs `sigil entry <sub>`. */
export async function run(sub: string, args: ParsedArgs, io: CommandIo): Promise<number> {
  return withAdmin(io, args, async (client) => {
    switch (sub) {
      case 'create': {
        const ids = args.all('entry-id');
        const entry = await entryFromFlags(args, client, ids[0] ?? '');
        const r = await client.call<{ results: EntryResult[] }>('Entries', 'BatchCreateEntry', {
          entries: [entry],
          allow_missing_federated_bundle: args.has('allow-missing-bundle'),
        });
        const code = checkResults(io, r.results);
        const created = r.results[0]?.entry;
        if (code === 0 && created) printOne(io, args, created);
        return code;
      }
      case 'update': {
        const id = args.all('entry-id')[0];
        if (id === undefined) throw usageError('--entry-id is required');
        const entry = await entryFromFlags(args, client, id);
        const r = await client.call<{ results: EntryResult[] }>('Entries', 'BatchUpdateEntry', {
          entries: [entry],
          allow_missing_federated_bundle: args.has('allow-missing-bundle'),
        });
        const code = checkResults(io, r.results);
        const updated = r.results[0]?.entry;
        if (code === 0 && updated) printOne(io, args, updated);
        return code;
      }
      case 'show': {
        // in full, one block per entry, as `create` prints it (`list` is the one-line view)
        const id = args.positionals[0] ?? args.get('entry-id');
        if (id !== undefined && args.positionals[0] !== undefined && args.get('entry-id') !== undefined) throw usageError('give the entry ID once: as the argument or with --entry-id');
        const entries = id !== undefined ? [await client.call<EntryMsg>('Entries', 'GetEntry', { id })] : await listAll(client, filterFromFlags(args));
        if (outputFormat(args) === 'json') printJson(io, { entries: entries.map(entryView) });
        else {
          for (const [i, e] of entries.entries()) {
            if (i > 0) io.out('\n');
            printOne(io, args, e);
          }
          if (id === undefined) io.out(`${entryCount(entries.length)}\n`);
        }
        return 0;
      }
      case 'list':
        printEntries(io, args, await listAll(client, filterFromFlags(args)));
        return 0;
      case 'delete': {
        const ids = [...args.all('entry-id'), ...args.positionals];
        if (ids.length === 0) throw usageError('--entry-id is required');
        const r = await client.call<{ results: { id: string; status: EntryResult['status'] }[] }>('Entries', 'BatchDeleteEntry', { ids });
        let code = 0;
        for (const res of r.results) {
          if (res.status.code !== 0) {
            io.err(`sigil: ${res.status.message} (${res.status.sigil_code})\n`);
            code = 1;
          } else if (outputFormat(args) === 'table') io.out(`deleted ${res.id}\n`);
        }
        if (outputFormat(args) === 'json') printJson(io, { results: r.results.map((x) => ({ id: x.id, code: x.status.sigil_code || 'OK' })) });
        return code;
      }
      case 'count': {
        const r = await client.call<{ count: string }>('Entries', 'CountEntries', { filter: filterFromFlags(args) });
        if (outputFormat(args) === 'json') printJson(io, { count: Number(r.count) });
        else io.out(`${entryCount(Number(r.count))}\n`);
        return 0;
      }
      default:
        throw new Error(`no entry subcommand ${sub}`);
    }
  });
}
