/**
 * Federation relationships on real servers: A (example.org) federates with B (other.org) over
 * https_spiffe through the admin API and the real `sigil federation` CLI, fetches B's bundle
 * on its own and on `refresh`, follows B's CA changes, and keeps the last good bundle (and
 * reports why) when the peer goes down, serves garbage, serves an older sequence or an empty
 * bundle, or presents the wrong SPIFFE ID. Relationships declared in the config are applied.
 */
import test from 'ava';
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { toPem } from '../../../src/common/x509.js';
import { Bundle } from '../../../src/spiffe/bundle.js';
import { TrustDomain } from '../../../src/spiffe/spiffe-id.js';
import { eventually } from '../../agent/support/agent-harness.js';
import { runSigil } from '../../agent/support/processes.js';
import { makeServerDir, startTestServer, type TestServer } from '../../helpers/server.js';
import { createWebPki } from '../../helpers/web-pki.js';
import { rejectionOf } from '../support/rejection.js';

const OTHER = TrustDomain.parse('other.org');

interface RelMsg {
  trust_domain_id: string;
  last_sequence: string;
  last_error: string;
  last_success_at: string;
  consecutive_failures: string;
  has_bundle: boolean;
  bundle_endpoint_profile: string;
}

async function peerBundle(s: TestServer): Promise<Bundle> {
  const rec = await s.server.datastore.getBundle('spiffe://other.org');
  if (rec === undefined) throw new Error('no bundle of other.org');
  return Bundle.parseJwks(OTHER, rec.document);
}

async function startB(): Promise<TestServer> {
  return startTestServer({ trustDomain: 'other.org', config: { bundleRefreshHint: '5s', federation: { bundleEndpoint: { address: '127.0.0.1:0', profile: 'https_spiffe' } } } });
}

test('https_spiffe both through the CLI: create with a bootstrap bundle, automatic fetch, CA changes followed, refresh, failures keep the last good bundle', async (t) => {
  const b = await startB();
  t.teardown(() => b.destroy());
  const a = await startTestServer();
  t.teardown(() => a.destroy());
  const bootstrap = join(a.dir, 'other.pem');
  writeFileSync(bootstrap, b.server.x509Authorities().map((d) => toPem(d, 'CERTIFICATE')).join(''));
  const url = `https://127.0.0.1:${b.server.bundleEndpoint!.port}/`;
  const sock = ['--socket', a.server.adminSocketPath];

  // SPIRE's spelling works too
  const created = await runSigil(['federation', 'create', '-trustDomain', 'other.org', '-bundleEndpointURL', url, '-bundleEndpointProfile', 'https_spiffe', '-endpointSpiffeID', 'spiffe://other.org/sigil/server', '-trustDomainBundlePath', bootstrap, ...sock]);
  t.is(created.code, 0, created.stderr);
  t.true(a.auditLines.some((l) => l.includes('"federation.create"')));

  // the refresher fetches a new relationship at once: the stored bundle becomes B's whole bundle (JWT keys included)
  const own = Bundle.parseJwks(OTHER, (await b.server.bundles.own()).document);
  await eventually(async () => ((await peerBundle(a)).jwtAuthorities.size > 0 ? true : undefined), 20_000, 'first fetch');
  t.true((await peerBundle(a)).sameAuthorities(own));
  const shown = await runSigil(['federation', 'show', '--trust-domain', 'other.org', '--output', 'json', ...sock]);
  t.is(shown.code, 0, shown.stderr);
  const view = (JSON.parse(shown.stdout) as { relationship: { sequence: number; lastError: string | null; lastSuccess: string | null; hasBundle: boolean } }).relationship;
  t.is(view.sequence, own.sequenceNumber ?? -1);
  t.is(view.lastError, null);
  t.truthy(view.lastSuccess);
  t.true(view.hasBundle);

  // a prepared authority in B reaches A on B's hint (5s), with no command
  await b.admin.call('LocalAuthority', 'Prepare', { kind: 'x509' });
  await b.server.bundles.settled();
  const twoRoots = await eventually(async () => {
    const p = await peerBundle(a);
    return p.x509Authorities.length === 2 ? p : undefined;
  }, 30_000, 'the prepared root reaches A');
  t.is(twoRoots.sequenceNumber, (own.sequenceNumber ?? 0) + 1);

  // refresh now, through the CLI
  await b.admin.call('LocalAuthority', 'Prepare', { kind: 'jwt' });
  await b.server.bundles.settled();
  const refreshed = await runSigil(['federation', 'refresh', '--trust-domain', 'other.org', ...sock]);
  t.is(refreshed.code, 0, refreshed.stderr);
  t.is((await peerBundle(a)).jwtAuthorities.size, own.jwtAuthorities.size + 1);

  // the wrong endpoint ID: refused, reported, last good bundle kept
  const before = (await a.server.datastore.getBundle('spiffe://other.org'))!.document;
  const upd = await runSigil(['federation', 'update', '--trust-domain', 'other.org', '--bundle-endpoint-url', url, '--endpoint-spiffe-id', 'spiffe://other.org/spire/server', ...sock]);
  t.is(upd.code, 0, upd.stderr);
  const wrong = await runSigil(['federation', 'refresh', '--trust-domain', 'other.org', '--output', 'json', ...sock]);
  t.is(wrong.code, 1, 'a failed fetch is a runtime failure');
  t.regex(wrong.stdout, /sigil\/server/, 'the error names the ID presented');
  t.is((await a.server.datastore.getBundle('spiffe://other.org'))!.document, before);

  // the peer goes down: reported, kept
  await runSigil(['federation', 'update', '--trust-domain', 'other.org', '--bundle-endpoint-url', url, '--endpoint-spiffe-id', 'spiffe://other.org/sigil/server', ...sock]);
  await b.stop();
  const down = await a.admin.call<RelMsg>('Federation', 'RefreshFederationRelationship', { trust_domain: 'other.org' });
  t.regex(down.last_error, /cannot reach/);
  t.true(Number(down.consecutive_failures) >= 1);
  t.is((await a.server.datastore.getBundle('spiffe://other.org'))!.document, before);
  const list = await runSigil(['federation', 'list', ...sock]);
  t.is(list.code, 0, list.stderr);
  t.regex(list.stdout, /other\.org\s+https_spiffe/);

  // delete keeps the bundle until bundle delete
  t.is((await runSigil(['federation', 'delete', '--trust-domain', 'other.org', ...sock])).code, 0);
  t.is((await a.admin.call<{ relationships: RelMsg[] }>('Federation', 'ListFederationRelationships', {})).relationships.length, 0);
  t.truthy(await a.server.datastore.getBundle('spiffe://other.org'));
  t.is((await rejectionOf(a.admin.call('Federation', 'GetFederationRelationship', { trust_domain: 'other.org' }))).code, 'ERR_NOT_FOUND');
});

test('admin API refusals: own trust domain, https_spiffe without a bundle, bad URL, duplicate', async (t) => {
  const a = await startTestServer();
  t.teardown(() => a.destroy());
  const base = { trust_domain: 'other.org', bundle_endpoint_url: 'https://127.0.0.1:1/', bundle_endpoint_profile: 'https_spiffe', endpoint_spiffe_id: 'spiffe://other.org/sigil/server', trust_domain_bundle: Buffer.alloc(0), trust_domain_bundle_format: '' };
  const code = async (req: object): Promise<string> => (await rejectionOf(a.admin.call('Federation', 'CreateFederationRelationship', { ...base, ...req }))).code;
  // a PEM file that holds a private key (made now) where the bootstrap bundle's certificates belong
  const keyNotBundle = Buffer.from(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
  t.is(await code({ trust_domain: 'example.org', endpoint_spiffe_id: 'spiffe://example.org/sigil/server' }), 'ERR_INVALID_ARGUMENT');
  t.is(await code({}), 'ERR_INVALID_ARGUMENT', 'https_spiffe needs a bundle');
  t.is(await code({ bundle_endpoint_profile: 'https_web', endpoint_spiffe_id: '', bundle_endpoint_url: 'http://x/' }), 'ERR_INVALID_ARGUMENT');
  t.is(await code({ bundle_endpoint_profile: 'https_web', endpoint_spiffe_id: '', trust_domain_bundle: keyNotBundle, trust_domain_bundle_format: 'pem' }), 'ERR_INVALID_BUNDLE');
  await a.admin.call('Federation', 'CreateFederationRelationship', { ...base, bundle_endpoint_profile: 'https_web', endpoint_spiffe_id: '' });
  t.is(await code({ bundle_endpoint_profile: 'https_web', endpoint_spiffe_id: '' }), 'ERR_ALREADY_EXISTS');
  t.is((await rejectionOf(a.admin.call('Federation', 'RefreshFederationRelationship', { trust_domain: 'third.org' }))).code, 'ERR_NOT_FOUND');
});

test('https_web from the config: garbage, an older sequence and an empty bundle keep the last good one and are reported', async (t) => {
  const dir = await makeServerDir();
  const web = createWebPki(dir);
  let answer = JSON.stringify({ keys: [], spiffe_sequence: 1 });
  const peer = await (await import('../../helpers/pki.js')).createCa({ id: 'spiffe://third.org' });
  const good = (seq: number): string => Bundle.create(TrustDomain.parse('third.org'), { x509Authorities: [peer.der], sequenceNumber: seq, refreshHintSeconds: 300 }).toJwks();
  answer = good(5);
  const srv = createServer({ cert: await import('node:fs').then((f) => f.readFileSync(web.certFile)), key: await import('node:fs').then((f) => f.readFileSync(web.keyFile)) }, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' }).end(answer);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => srv.close());
  const port = (srv.address() as AddressInfo).port;
  const a = await startTestServer({
    dir,
    config: { federation: { httpsWebCaFile: web.caFile, federatesWith: { 'third.org': { bundleEndpointUrl: `https://localhost:${port}/`, bundleEndpointProfile: 'https_web' } } } },
  });
  t.teardown(() => a.destroy());
  const rel = await a.admin.call<RelMsg>('Federation', 'GetFederationRelationship', { trust_domain: 'third.org' });
  t.is(rel.bundle_endpoint_profile, 'https_web');
  const accepted = await a.admin.call<RelMsg>('Federation', 'RefreshFederationRelationship', { trust_domain: 'third.org' });
  t.is(accepted.last_error, '');
  t.is(accepted.last_sequence, '5');
  const stored = (await a.server.datastore.getBundle('spiffe://third.org'))!.document;
  for (const [bad, pattern] of [
    ['<html>not a bundle</html>', /no valid SPIFFE bundle/],
    [good(4), /older than the stored 5/],
    [JSON.stringify({ keys: [], spiffe_sequence: 9 }), /without keys/],
    [JSON.stringify({ keys: [{ kty: 'EC', use: 'x509-svid', x5c: ['AAAA'] }], spiffe_sequence: 9 }), /no valid SPIFFE bundle/],
    [JSON.stringify({ keys: [], spiffe_sequence: 9, pad: 'x'.repeat(1024 * 1024) }), /larger than 1048576 bytes/],
  ] as const) {
    answer = bad;
    const r = await a.admin.call<RelMsg>('Federation', 'RefreshFederationRelationship', { trust_domain: 'third.org' });
    t.regex(r.last_error, pattern);
    t.is(r.last_sequence, '5');
    t.is((await a.server.datastore.getBundle('spiffe://third.org'))!.document, stored, 'the last good bundle stays');
  }
  // unknown members and unknown key types are ignored, the rest is taken
  const doc = JSON.parse(good(6)) as { keys: object[] };
  doc.keys.push({ kty: 'OKP', crv: 'X448', use: 'x509-svid', x: 'AA' });
  answer = JSON.stringify({ ...doc, spiffe_sequence: 6, extra: true });
  const ok = await a.admin.call<RelMsg>('Federation', 'RefreshFederationRelationship', { trust_domain: 'third.org' });
  t.is(ok.last_error, '', ok.last_error);
  t.is(ok.last_sequence, '6');
});

test('config: federatesWith entries are checked and name their keys', async (t) => {
  const { resolveServerConfig } = await import('../../../src/server/config.js');
  const base = { trustDomain: 'example.org', dataDir: '/x', keyManager: { type: 'memory' } };
  const err = t.throws(() =>
    resolveServerConfig({
      ...base,
      federation: {
        federatesWith: {
          'example.org': { bundleEndpointUrl: 'https://a/', bundleEndpointProfile: 'https_web' },
          'b.org': { bundleEndpointUrl: 'http://b/', bundleEndpointProfile: 'https_web' },
          'c.org': { bundleEndpointUrl: 'https://c/', bundleEndpointProfile: 'https_spiffe' },
          'd.org': { bundleEndpointUrl: 'https://d/', bundleEndpointProfile: 'https_web', endpointSpiffeId: 'spiffe://d.org/x' },
          'e.org': { bundleEndpointUrl: 'https://e/', bundleEndpointProfile: 'https_spiffe', endpointSpiffeId: 'spiffe://x.org/s', trustDomainBundlePath: 'e.pem' },
        },
      },
    }),
  );
  for (const key of [
    'federation.federatesWith.example.org',
    'federation.federatesWith.b.org.bundleEndpointUrl',
    'federation.federatesWith.c.org.endpointSpiffeId',
    'federation.federatesWith.c.org.trustDomainBundlePath',
    'federation.federatesWith.d.org.endpointSpiffeId',
    'federation.federatesWith.e.org.endpointSpiffeId',
  ]) t.true(err?.message.includes(key), key);
});

test('https_web between two Sigil servers: B publishes with a test CA certificate, A trusts that CA through httpsWebCaFile', async (t) => {
  const bdir = await makeServerDir();
  const web = createWebPki(bdir);
  const b = await startTestServer({ dir: bdir, trustDomain: 'other.org', config: { federation: { bundleEndpoint: { address: '127.0.0.1:0', profile: 'https_web', tls: { certFile: web.certFile, keyFile: web.keyFile } } } } });
  t.teardown(() => b.destroy());
  const url = `https://localhost:${b.server.bundleEndpoint!.port}/`;
  const adir = await makeServerDir();
  writeFileSync(join(adir, 'web-ca.pem'), web.caPem);
  const a = await startTestServer({ dir: adir, config: { federation: { httpsWebCaFile: join(adir, 'web-ca.pem'), federatesWith: { 'other.org': { bundleEndpointUrl: url, bundleEndpointProfile: 'https_web' } } } } });
  t.teardown(() => a.destroy());
  // no bootstrap bundle: WebPKI authenticates the endpoint, the first fetch brings the bundle
  const r = await a.admin.call<RelMsg>('Federation', 'RefreshFederationRelationship', { trust_domain: 'other.org' });
  t.is(r.last_error, '', r.last_error);
  t.true(r.has_bundle);
  t.true((await peerBundle(a)).sameAuthorities(Bundle.parseJwks(OTHER, (await b.server.bundles.own()).document)));
  // a server without the test CA (system CAs) refuses the same endpoint
  const c = await startTestServer({ config: { federation: { federatesWith: { 'other.org': { bundleEndpointUrl: url, bundleEndpointProfile: 'https_web' } } } } });
  t.teardown(() => c.destroy());
  const refused = await c.admin.call<RelMsg>('Federation', 'RefreshFederationRelationship', { trust_domain: 'other.org' });
  t.regex(refused.last_error, /^the certificate of the bundle endpoint of other\.org at localhost:\d+ does not chain to the web roots \(the system CAs\)/);
  t.notRegex(refused.last_error, /cannot reach/, 'an untrusted certificate is not a network fault');
  t.false(refused.has_bundle);
});
