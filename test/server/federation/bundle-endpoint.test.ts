/**
 * The bundle endpoint with real HTTPS clients: https_spiffe authenticated as go-spiffe and
 * SPIRE do (the endpoint's X.509-SVID for the configured endpoint SPIFFE ID, against the peer
 * bundle, no host name), https_web through WebPKI with a test CA made by openssl. It serves the
 * current bundle document and nothing else.
 */
import test from 'ava';
import { get, request } from 'node:https';
import type { PeerCertificate } from 'node:tls';
import { SigilError } from '../../../src/common/errors.js';
import { toPem } from '../../../src/common/x509.js';
import { resolveServerConfig } from '../../../src/server/config.js';
import { fetchBundle } from '../../../src/server/federation/bundle-fetch.js';
import { Bundle } from '../../../src/spiffe/bundle.js';
import { SpiffeId, TrustDomain } from '../../../src/spiffe/spiffe-id.js';
import { createCa } from '../../helpers/pki.js';
import { startTestServer, makeServerDir } from '../../helpers/server.js';
import { createWebPki } from '../../helpers/web-pki.js';

const TD = TrustDomain.parse('example.org');
const SERVER_ID = SpiffeId.parse('spiffe://example.org/sigil/server');
const BASE = { trustDomain: 'example.org', dataDir: '/var/lib/sigil', keyManager: { type: 'memory' } };

function rawGet(port: number, path: string, opts: { ca: string; method?: string; host?: string; checkId?: string }): Promise<{ status: number; body: string; headers: Record<string, unknown>; uri?: string }> {
  return new Promise((resolve, reject) => {
    let uri: string | undefined;
    const req = request(
      {
        host: opts.host ?? '127.0.0.1',
        port,
        path,
        method: opts.method ?? 'GET',
        ca: opts.ca,
        agent: false,
        ...(opts.checkId === undefined
          ? {}
          : {
              checkServerIdentity: (_h: string, cert: PeerCertificate) => {
                uri = cert.subjectaltname;
                return cert.subjectaltname === `URI:${opts.checkId}` ? undefined : new Error(`wrong SAN ${cert.subjectaltname}`);
              },
            }),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers, ...(uri === undefined ? {} : { uri }) }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

test('config: the bundle endpoint block is checked and every problem names its key', (t) => {
  const bad = (federation: unknown): string => {
    const err = t.throws(() => resolveServerConfig({ ...BASE, federation }), { instanceOf: SigilError });
    t.is(err?.code, 'ERR_CONFIG_INVALID');
    return err?.message ?? '';
  };
  t.true(bad({ bundleEndpoint: { address: '0.0.0.0:8443', profile: 'https_web' } }).includes('federation.bundleEndpoint.tls'));
  t.true(bad({ bundleEndpoint: { address: '0.0.0.0:8443', profile: 'https_spiffe', tls: { certFile: 'a', keyFile: 'b' } } }).includes('federation.bundleEndpoint.tls'));
  t.true(bad({ bundleEndpoint: { address: '0.0.0.0:8443', profile: 'spiffe' } }).includes('federation.bundleEndpoint.profile'));
  t.true(bad({ bundleEndpoint: { address: 'nohost', profile: 'https_spiffe' } }).includes('federation.bundleEndpoint.address'));
  t.true(bad({ bundleEndpoint: { address: '0.0.0.0:8443', profile: 'https_spiffe', port: 1 } }).includes('federation.bundleEndpoint.port'));
  const c = resolveServerConfig({ ...BASE, federation: { bundleEndpoint: { address: '127.0.0.1:8443', profile: 'https_web', tls: { certFile: 'c.pem', keyFile: 'k.pem' } } } }, {}, '/etc/sigil');
  t.deepEqual(c.federation.bundleEndpoint, { host: '127.0.0.1', port: 8443, profile: 'https_web', tls: { certFile: '/etc/sigil/c.pem', keyFile: '/etc/sigil/k.pem' } });
  t.deepEqual(resolveServerConfig(BASE).federation, { relationships: [] });
});

test('https_spiffe: the endpoint presents the server SVID, serves the current bundle and nothing else, and follows changes', async (t) => {
  const s = await startTestServer({ config: { bundleRefreshHint: '2m', federation: { bundleEndpoint: { address: '127.0.0.1:0', profile: 'https_spiffe' } } } });
  t.teardown(() => s.destroy());
  const ep = s.server.bundleEndpoint;
  t.truthy(ep);
  const port = ep!.port;
  const own = (): Bundle => Bundle.create(TD, { x509Authorities: s.server.x509Authorities() });
  const ca = s.server.x509Authorities().map((d) => toPem(d, 'CERTIFICATE')).join('');

  // a plain HTTPS client that authenticates the SVID's URI SAN, not a host name
  const r = await rawGet(port, '/', { ca, checkId: SERVER_ID.toString() });
  t.is(r.status, 200);
  t.is(r.uri, `URI:${SERVER_ID.toString()}`);
  t.is(r.headers['content-type'], 'application/json');
  const doc = JSON.parse(r.body) as { keys: { use: string; d?: unknown }[]; spiffe_sequence: number; spiffe_refresh_hint: number };
  t.is(doc.spiffe_refresh_hint, 120);
  t.true(Number.isSafeInteger(doc.spiffe_sequence) && doc.spiffe_sequence >= 1);
  t.deepEqual([...new Set(doc.keys.map((k) => k.use))].sort(), ['jwt-svid', 'x509-svid']);
  t.false(doc.keys.some((k) => 'd' in k));
  t.is(r.body, (await s.server.bundles.own()).document);

  // nothing else is served: any path (the peer writes the URL) answers the same bundle, other methods are refused
  const other = await rawGet(port, '/spiffe-bundle?x=1', { ca, checkId: SERVER_ID.toString() });
  t.is(other.status, 200);
  t.is(other.body, r.body);
  t.is((await rawGet(port, '/', { ca, checkId: SERVER_ID.toString(), method: 'POST' })).status, 405);
  const head = await rawGet(port, '/', { ca, checkId: SERVER_ID.toString(), method: 'HEAD' });
  t.is(head.status, 200);
  t.is(head.body, '');

  // the fetcher the refresher uses: SPIFFE authentication for the endpoint ID against the bundle
  const fetched = await fetchBundle({ url: `https://127.0.0.1:${port}/`, trustDomain: TD, auth: { profile: 'https_spiffe', endpointSpiffeId: SERVER_ID, bundle: own() }, now: () => new Date() });
  t.is(fetched.sequenceNumber, doc.spiffe_sequence);
  t.is(fetched.refreshHintSeconds, 120);
  t.true(fetched.sameAuthorities(Bundle.parseJwks(TD, r.body)));

  // the wrong endpoint ID, or a bundle that does not hold the endpoint's root, is refused
  const wrongId = await t.throwsAsync(
    fetchBundle({ url: `https://127.0.0.1:${port}/`, trustDomain: TD, auth: { profile: 'https_spiffe', endpointSpiffeId: SpiffeId.parse('spiffe://example.org/spire/server'), bundle: own() }, now: () => new Date() }),
    { instanceOf: SigilError },
  );
  t.is(wrongId?.reason, 'federation-wrong-id');
  const stranger = await createCa({ id: 'spiffe://example.org' });
  const untrusted = await t.throwsAsync(
    fetchBundle({ url: `https://127.0.0.1:${port}/`, trustDomain: TD, auth: { profile: 'https_spiffe', endpointSpiffeId: SERVER_ID, bundle: Bundle.create(TD, { x509Authorities: [stranger.der] }) }, now: () => new Date() }),
    { instanceOf: SigilError },
  );
  t.is(untrusted?.code, 'ERR_UNAVAILABLE');
  // a plain WebPKI client with the system CAs does not accept the SVID
  await t.throwsAsync(new Promise((resolve, reject) => get({ host: '127.0.0.1', port, path: '/', agent: false }, resolve).on('error', reject)));

  // a new authority bumps the sequence the endpoint serves
  await s.admin.call('LocalAuthority', 'Prepare', { kind: 'x509' });
  await s.server.bundles.settled();
  const after = await fetchBundle({ url: `https://127.0.0.1:${port}/`, trustDomain: TD, auth: { profile: 'https_spiffe', endpointSpiffeId: SERVER_ID, bundle: own() }, now: () => new Date() });
  t.is(after.sequenceNumber, doc.spiffe_sequence + 1);
  t.is(after.x509Authorities.length, fetched.x509Authorities.length + 1);

  // a rotated server SVID is what new connections see
  const before = s.server.serverSvid.current?.serial;
  await s.server.serverSvid.rotate();
  t.not(s.server.serverSvid.current?.serial, before);
  const serial = await new Promise<string>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/', ca: own().x509Authorities.map((a) => toPem(a.der, 'CERTIFICATE')).join(''), agent: false, checkServerIdentity: () => undefined }, (res) => {
      const cert = (res.socket as unknown as { getPeerCertificate(): PeerCertificate }).getPeerCertificate();
      res.resume();
      resolve(cert.serialNumber.toLowerCase());
    });
    req.on('error', reject);
    req.end();
  });
  t.is(serial.replace(/^0+/, ''), (s.server.serverSvid.current?.serial ?? '').toLowerCase().replace(/^0+/, ''));
});

test('https_web: the endpoint presents the operator certificate and a WebPKI client with the CA gets the bundle', async (t) => {
  const dir = await makeServerDir();
  const web = createWebPki(dir);
  const s = await startTestServer({ dir, config: { federation: { bundleEndpoint: { address: '127.0.0.1:0', profile: 'https_web', tls: { certFile: web.certFile, keyFile: web.keyFile } } } } });
  t.teardown(() => s.destroy());
  const port = s.server.bundleEndpoint!.port;
  // host name checked: localhost is in the certificate
  const r = await rawGet(port, '/', { ca: web.caPem, host: 'localhost' });
  t.is(r.status, 200);
  t.is(r.body, (await s.server.bundles.own()).document);
  const b = await fetchBundle({ url: `https://localhost:${port}/`, trustDomain: TD, auth: { profile: 'https_web', caPem: web.caPem }, now: () => new Date() });
  t.false(b.isEmpty);
  // without the test CA (system CAs) the certificate is refused
  const err = await t.throwsAsync(fetchBundle({ url: `https://localhost:${port}/`, trustDomain: TD, auth: { profile: 'https_web' }, now: () => new Date() }), { instanceOf: SigilError });
  t.is(err?.reason, 'federation-untrusted-certificate');
  t.regex(err?.message ?? '', /does not chain to the web roots \(the system CAs\)$/);
  // nothing listening: a network fault, told apart
  const closed = await t.throwsAsync(fetchBundle({ url: 'https://127.0.0.1:1/', trustDomain: TD, auth: { profile: 'https_web', caPem: web.caPem }, now: () => new Date() }), { instanceOf: SigilError });
  t.is(closed?.reason, 'federation-unreachable');
  t.regex(closed?.message ?? '', /^cannot reach/);
});

test('https_web: an unreadable certificate file fails the start with a config error', async (t) => {
  const dir = await makeServerDir();
  const err = await t.throwsAsync(startTestServer({ dir, config: { federation: { bundleEndpoint: { address: '127.0.0.1:0', profile: 'https_web', tls: { certFile: `${dir}/missing.pem`, keyFile: `${dir}/missing.key` } } } } }));
  t.is((err as SigilError).code, 'ERR_CONFIG_INVALID');
});
