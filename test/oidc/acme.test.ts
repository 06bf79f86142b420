/**
 * `sigil oidc serve` with an `acme` block against Debian's pebble (issue 15): the provider
 * answers pebble's http-01 challenge on its `httpListen`, obtains a certificate for its domain,
 * caches it (key 0600) and serves HTTPS with it; a restart reuses the cached certificate. DNS
 * for the test domain comes from pebble-challtestsrv (every name is 127.0.0.1).
 */
import test from 'ava';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { Daemon } from '../agent/support/processes.js';
import { freePort } from '../process/support/under-test.js';
import { eventually, fetchUrl, startOidcStack } from './support/oidc-stack.js';

const DOMAIN = 'oidc.sigil.test';

function get(port: number, path: string, ca: Buffer): Promise<{ status: number; body: string; cert: X509Certificate }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, servername: DOMAIN, ca, agent: false, headers: { Host: DOMAIN } }, (res) => {
      const sock = res.socket as unknown as { getPeerX509Certificate(): X509Certificate };
      const cert = sock.getPeerX509Certificate();
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), cert }));
    });
    req.on('error', reject);
    req.end();
  });
}

test.serial('acme: a certificate from pebble through http-01, served and cached', async (t) => {
  const stack = await startOidcStack(t);
  const [dnsPort, pebblePort, mgmtPort, httpPort, oidcPort] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
  const dns = new Daemon('pebble-challtestsrv', ['-defaultIPv6', '', '-defaultIPv4', '127.0.0.1', '-dns01', `127.0.0.1:${dnsPort}`, '-http01', '', '-https01', '', '-tlsalpn01', '', '-management', `127.0.0.1:${await freePort()}`]);
  stack.daemons.push(dns);
  await dns.until('pebble-challtestsrv to serve DNS', () => dns.output.includes(`127.0.0.1:${dnsPort}`));
  const pebbleConfig = join(stack.dir, 'pebble.json');
  const cfg = { pebble: { listenAddress: `127.0.0.1:${pebblePort}`, managementListenAddress: `127.0.0.1:${mgmtPort}`, certificate: stack.tls.certFile, privateKey: stack.tls.keyFile, httpPort, tlsPort: await freePort(), ocspResponderURL: '', externalAccountBindingRequired: false } };
  writeFileSync(pebbleConfig, JSON.stringify(cfg));
  const pebble = new Daemon('pebble', ['-config', pebbleConfig, '-dnsserver', `127.0.0.1:${dnsPort}`], { PATH: process.env.PATH ?? '/usr/bin:/bin', PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0' });
  stack.daemons.push(pebble);
  await eventually('pebble to answer', async () => ((await fetchUrl(`https://localhost:${pebblePort}/dir`, { ca: stack.tls.ca })).status === 200 ? true : undefined));

  const cache = join(stack.dir, 'acme-cache');
  const config = stack.writeConfig(
    'acme.yaml',
    '',
    `issuer: ${stack.issuer}\ntrustDomain: example.org\nlisten: 127.0.0.1:${oidcPort}\nacme:\n  directoryUrl: https://localhost:${pebblePort}/dir\n  email: ops@example.org\n  domain: ${DOMAIN}\n  cacheDir: ${cache}\n  caFile: ${stack.tls.caFile}\n  httpListen: 127.0.0.1:${httpPort}\nagentAddress: unix://${stack.agent.socket}\n`,
  );
  const oidc = await stack.serve(config);
  const root = Buffer.from((await fetchUrl(`https://localhost:${mgmtPort}/roots/0`, { ca: stack.tls.ca })).body);
  const ready = await eventually('the provider over the ACME certificate', async () => {
    const r = await get(oidcPort, '/ready', root);
    return r.status === 200 ? r : undefined;
  });
  t.true(ready.cert.checkHost(DOMAIN) === DOMAIN, 'the certificate names the domain');
  t.is(new X509Certificate(readFileSync(join(cache, 'cert.pem'))).serialNumber, ready.cert.serialNumber, 'the served certificate is the cached one');
  t.is(statSync(join(cache, 'key.pem')).mode & 0o777, 0o600);
  t.is(statSync(join(cache, 'account-key.pem')).mode & 0o777, 0o600);
  const keys = await get(oidcPort, '/keys', root);
  t.is(keys.status, 200);
  t.is(await oidc.stop(), 0);

  // a restart serves the cached certificate without a new order (pebble is gone)
  await pebble.stop();
  t.false(pebble.running);
  const again = await stack.serve(config);
  const r2 = await get(oidcPort, '/ready', root);
  t.is(r2.cert.serialNumber, ready.cert.serialNumber);
  t.is(await again.stop(), 0);
});
