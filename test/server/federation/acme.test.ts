/**
 * The https_web bundle endpoint with a certificate from ACME: Debian's pebble (a real ACME CA
 * for tests) validates our http-01 answer and issues the certificate; a WebPKI client that
 * trusts pebble's root then fetches the bundle, and one that does not is refused.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { request } from 'node:https';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SigilError } from '../../../src/common/errors.js';
import { fetchBundle } from '../../../src/server/federation/bundle-fetch.js';
import { TrustDomain } from '../../../src/spiffe/spiffe-id.js';
import { freePort } from '../../process/support/under-test.js';
import { makeServerDir, startTestServer } from '../../helpers/server.js';
import { createWebPki } from '../../helpers/web-pki.js';

function get(url: string, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`HTTP ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end();
  });
}

test('https_web through ACME: pebble validates http-01 and issues the certificate the endpoint presents', async (t) => {
  const dir = await makeServerDir();
  const tls = createWebPki(dir, 'pebble');
  const [acmePort, mgmtPort, httpPort] = [await freePort(), await freePort(), await freePort()];
  writeFileSync(
    join(dir, 'pebble.json'),
    JSON.stringify({ pebble: { listenAddress: `127.0.0.1:${acmePort}`, managementListenAddress: `127.0.0.1:${mgmtPort}`, certificate: tls.certFile, privateKey: tls.keyFile, httpPort, tlsPort: await freePort(), ocspResponderURL: '', externalAccountBindingRequired: false } }),
  );
  const pebble = spawn('pebble', ['-config', join(dir, 'pebble.json')], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', PEBBLE_VA_NOSLEEP: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  pebble.stdout.setEncoding('utf8').on('data', (d: string) => (log += d));
  pebble.stderr.setEncoding('utf8').on('data', (d: string) => (log += d));
  const exited = new Promise((r) => pebble.once('exit', r));
  t.teardown(async () => {
    pebble.kill('SIGTERM');
    await exited;
  });
  for (let i = 0; i < 200 && !log.includes('ACME directory available'); i++) await new Promise((r) => setTimeout(r, 50));
  t.true(log.includes('ACME directory available'), log);

  const s = await startTestServer({
    dir,
    trustDomain: 'other.org',
    config: {
      federation: {
        bundleEndpoint: {
          address: '127.0.0.1:0',
          profile: 'https_web',
          acme: { directoryUrl: `https://127.0.0.1:${acmePort}/dir`, domainName: 'localhost', caFile: tls.caFile, challengeAddress: `127.0.0.1:${httpPort}`, tosAccepted: true },
        },
      },
    },
  });
  t.teardown(() => s.destroy());
  t.regex(log, /set VALID by completed challenge/, 'pebble validated our http-01 answer');
  const root = await get(`https://127.0.0.1:${mgmtPort}/roots/0`, tls.caPem);
  const url = `https://localhost:${s.server.bundleEndpoint!.port}/`;
  const b = await fetchBundle({ url, trustDomain: TrustDomain.parse('other.org'), auth: { profile: 'https_web', caPem: root }, now: () => new Date() });
  t.true(b.sameAuthorities(s.server.bundles.parse(await s.server.bundles.own())));
  // our openssl test CA (pebble's own TLS) did not sign the endpoint certificate: refused
  const err = await t.throwsAsync(fetchBundle({ url, trustDomain: TrustDomain.parse('other.org'), auth: { profile: 'https_web', caPem: tls.caPem }, now: () => new Date() }), { instanceOf: SigilError });
  t.is(err?.reason, 'federation-untrusted-certificate');
  t.true(s.logLines.some((l) => l.includes('bundle endpoint certificate obtained through ACME')));
  t.false(s.logLines.some((l) => l.includes('PRIVATE KEY')));
});

test('config: acme only with https_web, not with tls, and the terms of service must be accepted', async (t) => {
  const { resolveServerConfig } = await import('../../../src/server/config.js');
  const base = { trustDomain: 'example.org', dataDir: '/x', keyManager: { type: 'memory' } };
  const acme = { directoryUrl: 'https://acme.example/dir', domainName: 'bundle.example.org', tosAccepted: true };
  const bad = (bundleEndpoint: object): string => t.throws(() => resolveServerConfig({ ...base, federation: { bundleEndpoint } }))?.message ?? '';
  t.true(bad({ address: '0.0.0.0:443', profile: 'https_spiffe', acme }).includes('federation.bundleEndpoint.acme'));
  t.true(bad({ address: '0.0.0.0:443', profile: 'https_web', acme, tls: { certFile: 'a', keyFile: 'b' } }).includes('federation.bundleEndpoint.acme'));
  t.true(bad({ address: '0.0.0.0:443', profile: 'https_web', acme: { ...acme, tosAccepted: false } }).includes('federation.bundleEndpoint.acme.tosAccepted'));
  t.true(bad({ address: '0.0.0.0:443', profile: 'https_web', acme: { ...acme, domainName: 'Not A Name' } }).includes('federation.bundleEndpoint.acme.domainName'));
  const ok = resolveServerConfig({ ...base, federation: { bundleEndpoint: { address: '0.0.0.0:443', profile: 'https_web', acme } } });
  t.like(ok.federation.bundleEndpoint?.acme, { domainName: 'bundle.example.org', challengeHost: '0.0.0.0', challengePort: 80 });
});
