/** `sigil bundle show|list|set|delete`: the own trust bundle and federated bundles. */
import { readFile } from 'node:fs/promises';
import { toPem } from '../../common/x509.js';
import type { CommandIo } from '../io.js';
import { usageError, type ParsedArgs } from './args.js';
import type { AdminClient } from './admin-client.js';
import { isoSeconds, outputFormat, printJson, printTable, withAdmin } from './output.js';
import { bundleView, jwtKeysOf } from './views.js';

interface BundleMsg {
  trust_domain_id: string;
  document: Buffer;
  x509_authorities: Buffer[];
  sequence: string;
  refresh_hint_seconds: string;
  updated_at: string;
}

/** The JSON form of a bundle of the admin API (views.ts bundleView). */
function view(b: BundleMsg): Record<string, unknown> {
  return bundleView({
    trustDomain: b.trust_domain_id,
    x509Pem: b.x509_authorities.map((der) => toPem(der, 'CERTIFICATE')).join(''),
    jwtKeys: jwtKeysOf(b.document.toString('utf8')),
    sequence: b.sequence,
    refreshHintSeconds: b.refresh_hint_seconds,
    updatedAt: b.updated_at,
  });
}

/**
 * The bundle file's text in the format `set` sends, refused here with the hint a mixed-up
 * format needs: SPIRE's default (and ours) is PEM; a SPIFFE bundle document is JSON.
 */
function checkFormat(text: string, format: 'pem' | 'spiffe', path: string): void {
  const looksJson = text.trimStart().startsWith('{');
  const looksPem = text.includes('-----BEGIN ');
  if (format === 'pem' && !looksPem) {
    throw usageError(`${path} holds no PEM certificate${looksJson ? ' (it looks like a SPIFFE bundle document: pass --format spiffe)' : ''}`);
  }
  if (format === 'spiffe' && !looksJson) {
    throw usageError(`${path} is not a SPIFFE bundle document (JSON)${looksPem ? ' (it holds PEM: pass --format pem, the default)' : ''}`);
  }
}

function printBundle(io: CommandIo, args: ParsedArgs, b: BundleMsg): void {
  if (outputFormat(args) === 'json') printJson(io, { bundle: view(b) });
  else if (args.get('format') === 'spiffe') io.out(`${b.document.toString('utf8')}\n`);
  else for (const der of b.x509_authorities) io.out(toPem(der, 'CERTIFICATE'));
}

function listAll(client: AdminClient): Promise<BundleMsg[]> {
  return client.listAll<BundleMsg>('Bundles', 'ListFederatedBundles', 'bundles', { page_size: 100 });
}

/** Runs `sigil bundle <sub>`. */
export async function run(sub: string, args: ParsedArgs, io: CommandIo): Promise<number> {
  return withAdmin(io, args, async (client) => {
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
            printJson(io, { bundles: all.map(view) });
          } else {
            printTable(io, ['TRUST DOMAIN', 'X509 AUTHORITIES', 'SEQUENCE', 'UPDATED'], all.map((b) => [b.trust_domain_id, String(b.x509_authorities.length), String(b.sequence), isoSeconds(b.updated_at)]));
          }
          return 0;
        }
        case 'set': {
          const path = args.get('path');
          if (td === undefined || path === undefined) throw usageError('--trust-domain and --path are required');
          const format = args.get('format') === 'spiffe' ? 'spiffe' : 'pem';
          const document = await readFile(path);
          checkFormat(document.toString('utf8'), format, path);
          const b = await client.call<BundleMsg>('Bundles', 'SetFederatedBundle', { trust_domain: td, document, format, append: args.has('append') });
          if (outputFormat(args) === 'json') printJson(io, { bundle: view(b) });
          else io.out(`bundle for ${b.trust_domain_id} set (sequence ${b.sequence}, ${b.x509_authorities.length} X.509 authorities)\n`);
          return 0;
        }
        case 'delete': {
          if (td === undefined) throw usageError('--trust-domain is required');
          await client.call('Bundles', 'DeleteFederatedBundle', { trust_domain: td });
          if (outputFormat(args) === 'json') printJson(io, { action: 'delete', bundle: { trustDomain: td.replace(/^spiffe:\/\//, '') } });
          else io.out(`bundle for ${td} deleted\n`);
          return 0;
        }
        default:
          throw new Error(`no bundle subcommand ${sub}`);
      }
  });
}
