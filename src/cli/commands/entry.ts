/** `sigil entry create|show|list|update|delete|count`: registration entries over the admin API. */
import { parseDuration } from '../../common/duration.js';
import type { AdminEntryMessage } from '../../grpc/messages.js';
import type { CommandIo } from '../io.js';
import { durationSeconds, parseArgs, usageError, type ParsedArgs } from './args.js';
import type { AdminClient } from './admin-client.js';
import { isoSeconds, outputFormat, printFields, printJson, printTable, reportError, withAdmin } from './output.js';

type EntryMsg = AdminEntryMessage;

interface EntryResult {
  status: { code: number; message: string; sigil_code: string };
  entry: EntryMsg | null;
}

const USAGE = `usage: sigil entry <create|show|list|update|delete|count> [flags]

  create  --spiffe-id ID (--parent-id ID | --node) --selector type:value... [--x509-svid-ttl 1h]
          [--jwt-svid-ttl 5m] [--dns NAME...] [--federates-with TD...] [--hint H] [--admin]
          [--downstream] [--entry-id ID] [--expires-in 30d] [--allow-missing-bundle]
  show    <entry-id> | --entry-id ID        (or filters as for list)
  list    [--spiffe-id ID] [--parent-id ID] [--selector type:value...] [--match exact|subset|superset|any]
          [--federates-with TD] [--hint H]
  update  --entry-id ID and the fields of create (all replaced)
  delete  --entry-id ID...
  count   [filters as for list]

common: --socket PATH | --config server.yaml   --output table|json
`;

const ENTRY_FLAGS = {
  values: ['spiffe-id', 'parent-id', 'x509-svid-ttl', 'jwt-svid-ttl', 'hint', 'expires-in', 'match'],
  repeatable: ['selector', 'dns', 'federates-with', 'entry-id'],
  booleans: ['admin', 'downstream', 'node', 'allow-missing-bundle'],
};

/** A plain, stable JSON form of an entry for `--output json`. */
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
    expiresAt: Number(e.expires_at),
    revision: Number(e.revision),
    createdAt: Number(e.created_at),
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
  let expiresAt = 0;
  if (expiresIn !== undefined) {
    try {
      expiresAt = Math.floor((Date.now() + parseDuration(expiresIn)) / 1000);
    } catch {
      throw usageError(`--expires-in must be a duration, got ${JSON.stringify(expiresIn)}`);
    }
  }
  return {
    id,
    spiffe_id: spiffeId,
    parent_id: parentId,
    selectors,
    x509_svid_ttl_seconds: durationSeconds(args, 'x509-svid-ttl', '1h or 90s'),
    jwt_svid_ttl_seconds: durationSeconds(args, 'jwt-svid-ttl', '1h or 90s'),
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

/** Runs `sigil entry …`. */
export async function run(argv: string[], io: CommandIo): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    io.out(USAGE);
    return sub === undefined ? 2 : 0;
  }
  let args: ParsedArgs;
  try {
    args = parseArgs(rest, ENTRY_FLAGS);
  } catch (err) {
    return reportError(io, err);
  }
  if (args.has('help')) {
    io.out(USAGE);
    return 0;
  }
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
        const id = args.positionals[0] ?? args.all('entry-id')[0];
        if (id !== undefined) {
          const e = await client.call<EntryMsg>('Entries', 'GetEntry', { id });
          if (outputFormat(args) === 'json') printJson(io, { entries: [entryView(e)] });
          else printOne(io, args, e);
          return 0;
        }
        printEntries(io, args, await listAll(client, filterFromFlags(args)));
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
        else io.out(`${r.count} registration entries\n`);
        return 0;
      }
      default:
        throw usageError(`unknown entry subcommand ${JSON.stringify(sub)}; see "sigil entry --help"`);
    }
  });
}
