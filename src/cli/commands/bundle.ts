/** `sigil bundle show|list|set|delete`: the own trust bundle and federated bundles. */
import { readFile } from 'node:fs/promises';
import { toPem } from '../../common/x509.js';
import type { CommandIo } from '../io.js';
import { parseArgs, usageError, type ParsedArgs } from './args.js';
import type { AdminClient } from './admin-client.js';
import { isoSeconds, outputFormat, printJson, printTable, reportError, withAdmin } from './output.js';

interface BundleMsg {
  trust_domain_id: string;
  document: Buffer;
  x509_authorities: Buffer[];
  sequence: string;
  refresh_hint_seconds: string;
  updated_at: string;
}

const USAGE = `usage: sigil bundle <show|list|set|delete> [flags]

  show    [--trust-domain TD] [--format pem|spiffe]   own bundle (or a federated one)
  list                                                 federated bundles
  set     --trust-domain TD --path FILE [--format spiffe|pem] [--append]
  delete  --trust-domain TD

common: --socket PATH | --config server.yaml   --output table|json
`;

function printBundle(io: CommandIo, args: ParsedArgs, b: BundleMsg): void {
  const format = args.get('format') ?? 'pem';
  if (outputFormat(args) === 'json' || format === 'spiffe') {
    io.out(`${b.document.toString('utf8')}\n`);
    return;
  }
  if (format !== 'pem') throw usageError(`--format must be pem or spiffe, got ${JSON.stringify(format)}`);
  for (const der of b.x509_authorities) io.out(toPem(der, 'CERTIFICATE'));
}

function listAll(client: AdminClient): Promise<BundleMsg[]> {
  return client.listAll<BundleMsg>('Bundles', 'ListFederatedBundles', 'bundles', { page_size: 100 });
}

/** Runs `sigil bundle …`. */
export async function run(argv: string[], io: CommandIo): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    io.out(USAGE);
    return sub === undefined ? 2 : 0;
  }
  try {
    const args = parseArgs(rest, { values: ['trust-domain', 'format', 'path'], booleans: ['append'] });
    return await withAdmin(io, args, async (client) => {
      const td = args.get('trust-domain');
      switch (sub) {
        case 'show': {
          const b = td === undefined ? await client.call<BundleMsg>('Bundles', 'GetBundle') : await client.call<BundleMsg>('Bundles', 'GetFederatedBundle', { trust_domain: td });
          printBundle(io, args, b);
          return 0;
        }
        case 'list': {
          const all = await listAll(client);
          if (outputFormat(args) === 'json') {
            printJson(io, { bundles: all.map((b) => ({ trustDomainId: b.trust_domain_id, sequence: Number(b.sequence), document: JSON.parse(b.document.toString('utf8')) as unknown })) });
          } else {
            printTable(io, ['TRUST DOMAIN', 'X509 AUTHORITIES', 'SEQUENCE', 'UPDATED'], all.map((b) => [b.trust_domain_id, String(b.x509_authorities.length), String(b.sequence), isoSeconds(b.updated_at)]));
          }
          return 0;
        }
        case 'set': {
          const path = args.get('path');
          if (td === undefined || path === undefined) throw usageError('--trust-domain and --path are required');
          const document = await readFile(path);
          const b = await client.call<BundleMsg>('Bundles', 'SetFederatedBundle', { trust_domain: td, document, format: args.get('format') ?? 'spiffe', append: args.has('append') });
          if (outputFormat(args) === 'json') printJson(io, { trustDomainId: b.trust_domain_id, sequence: Number(b.sequence) });
          else io.out(`bundle for ${b.trust_domain_id} set (sequence ${b.sequence}, ${b.x509_authorities.length} X.509 authorities)\n`);
          return 0;
        }
        case 'delete': {
          if (td === undefined) throw usageError('--trust-domain is required');
          await client.call('Bundles', 'DeleteFederatedBundle', { trust_domain: td });
          if (outputFormat(args) === 'json') printJson(io, { deleted: td });
          else io.out(`bundle for ${td} deleted\n`);
          return 0;
        }
        default:
          throw usageError(`unknown bundle subcommand ${JSON.stringify(sub)}; see "sigil bundle --help"`);
      }
    });
  } catch (err) {
    return reportError(io, err);
  }
}
