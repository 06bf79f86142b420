/** `sigil federation create|list|show|update|delete|refresh`: federation relationships with peer trust domains. */
import { readFile } from 'node:fs/promises';
import type { CommandIo } from '../io.js';
import { usageError, type ParsedArgs } from './args.js';
import { isoSeconds, outputFormat, printFields, printJson, printTable, withAdmin } from './output.js';

interface RelationshipMsg {
  trust_domain_id: string;
  bundle_endpoint_url: string;
  bundle_endpoint_profile: string;
  endpoint_spiffe_id: string;
  created_at: string;
  updated_at: string;
  last_attempt_at: string;
  last_success_at: string;
  last_error: string;
  last_sequence: string;
  consecutive_failures: string;
  next_refresh_at: string;
  has_bundle: boolean;
}

const never = (s: string): string => (Number(s) === 0 ? 'never' : isoSeconds(s));

function view(r: RelationshipMsg): Record<string, unknown> {
  return {
    trustDomain: r.trust_domain_id.replace(/^spiffe:\/\//, ''),
    bundleEndpointUrl: r.bundle_endpoint_url,
    bundleEndpointProfile: r.bundle_endpoint_profile,
    ...(r.endpoint_spiffe_id === '' ? {} : { endpointSpiffeId: r.endpoint_spiffe_id }),
    lastAttempt: Number(r.last_attempt_at) === 0 ? null : isoSeconds(r.last_attempt_at),
    lastSuccess: Number(r.last_success_at) === 0 ? null : isoSeconds(r.last_success_at),
    lastError: r.last_error === '' ? null : r.last_error,
    sequence: Number(r.last_sequence),
    consecutiveFailures: Number(r.consecutive_failures),
    nextRefresh: Number(r.next_refresh_at) === 0 ? null : isoSeconds(r.next_refresh_at),
    hasBundle: r.has_bundle,
  };
}

function printOne(io: CommandIo, args: ParsedArgs, r: RelationshipMsg): void {
  if (outputFormat(args) === 'json') {
    printJson(io, { relationship: view(r) });
    return;
  }
  printFields(io, [
    ['Trust domain', r.trust_domain_id.replace(/^spiffe:\/\//, '')],
    ['Bundle endpoint URL', r.bundle_endpoint_url],
    ['Bundle endpoint profile', r.bundle_endpoint_profile],
    ...(r.endpoint_spiffe_id === '' ? [] : ([['Endpoint SPIFFE ID', r.endpoint_spiffe_id]] as [string, string][])),
    ['Bundle stored', r.has_bundle ? 'yes' : 'no'],
    ['Sequence', String(r.last_sequence)],
    ['Last attempt', never(r.last_attempt_at)],
    ['Last success', never(r.last_success_at)],
    ['Last error', r.last_error === '' ? '-' : r.last_error],
    ['Next refresh', never(r.next_refresh_at)],
  ]);
}

async function request(args: ParsedArgs, td: string): Promise<Record<string, unknown>> {
  const url = args.get('bundle-endpoint-url');
  if (url === undefined) throw usageError('--bundle-endpoint-url is required');
  const profile = args.get('bundle-endpoint-profile') ?? 'https_spiffe';
  const endpointId = args.get('endpoint-spiffe-id');
  if (profile === 'https_spiffe' && endpointId === undefined) throw usageError('--endpoint-spiffe-id is required with --bundle-endpoint-profile https_spiffe');
  if (profile === 'https_web' && endpointId !== undefined) throw usageError('--endpoint-spiffe-id is only used with --bundle-endpoint-profile https_spiffe');
  const path = args.get('trust-domain-bundle-path');
  const format = args.get('trust-domain-bundle-format') ?? 'pem';
  if (path === undefined && args.get('trust-domain-bundle-format') !== undefined) throw usageError('--trust-domain-bundle-format needs --trust-domain-bundle-path');
  const bundle = path === undefined ? Buffer.alloc(0) : await readFile(path);
  return {
    trust_domain: td,
    bundle_endpoint_url: url,
    bundle_endpoint_profile: profile,
    endpoint_spiffe_id: endpointId ?? '',
    trust_domain_bundle: bundle,
    trust_domain_bundle_format: format,
  };
}

/** Runs `sigil federation <sub>`. */
export async function run(sub: string, args: ParsedArgs, io: CommandIo): Promise<number> {
  return withAdmin(io, args, async (client) => {
    const td = args.get('trust-domain');
    const needTd = (): string => {
      if (td === undefined) throw usageError('--trust-domain is required');
      return td;
    };
    switch (sub) {
      case 'create':
      case 'update': {
        const req = await request(args, needTd());
        const r = await client.call<RelationshipMsg>('Federation', sub === 'create' ? 'CreateFederationRelationship' : 'UpdateFederationRelationship', req);
        if (outputFormat(args) === 'json') printJson(io, { relationship: view(r) });
        else io.out(`federation relationship with ${r.trust_domain_id} ${sub === 'create' ? 'created' : 'updated'}\n`);
        return 0;
      }
      case 'list': {
        const { relationships } = await client.call<{ relationships: RelationshipMsg[] }>('Federation', 'ListFederationRelationships', {});
        if (outputFormat(args) === 'json') printJson(io, { relationships: relationships.map(view) });
        else
          printTable(
            io,
            ['TRUST DOMAIN', 'PROFILE', 'BUNDLE ENDPOINT URL', 'SEQUENCE', 'LAST SUCCESS', 'LAST ERROR'],
            relationships.map((r) => [r.trust_domain_id.replace(/^spiffe:\/\//, ''), r.bundle_endpoint_profile, r.bundle_endpoint_url, String(r.last_sequence), never(r.last_success_at), r.last_error === '' ? '-' : r.last_error]),
          );
        return 0;
      }
      case 'show':
        printOne(io, args, await client.call<RelationshipMsg>('Federation', 'GetFederationRelationship', { trust_domain: needTd() }));
        return 0;
      case 'refresh': {
        const r = await client.call<RelationshipMsg>('Federation', 'RefreshFederationRelationship', { trust_domain: needTd() });
        printOne(io, args, r);
        // a fetch that failed is a runtime failure of this command (the last good bundle stays)
        return r.last_error === '' ? 0 : 1;
      }
      case 'delete':
        await client.call('Federation', 'DeleteFederationRelationship', { trust_domain: needTd() });
        if (outputFormat(args) === 'json') printJson(io, { action: 'delete', relationship: { trustDomain: needTd().replace(/^spiffe:\/\//, '') } });
        else io.out(`federation relationship with ${needTd()} deleted\n`);
        return 0;
      default:
        throw new Error(`no federation subcommand ${sub}`);
    }
  });
}
