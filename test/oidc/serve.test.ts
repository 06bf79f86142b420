/**
 * `sigil oidc serve` and `sigil oidc export` as real children of bin/sigil.js against a real
 * server and agent (issue 15): the discovery document and JWKS exactly as relying parties read
 * them, HTTP hygiene (Cache-Control, ETag/304, 404, 405, bounded requests), keys from the agent
 * (updated on every push) or from the admin socket, the last good keys served while the agent
 * is down (and /ready saying so), 503 rather than an empty key set, TLS files re-read on change,
 * config errors naming the key (exit 1), and the exported files.
 */
import test from 'ava';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLocalJWKSet, jwtVerify } from 'jose';
import type { Bundle } from '../../src/spiffe/bundle.js';
import { TrustDomain } from '../../src/spiffe/spiffe-id.js';
import { validateJwtSvid } from '../../src/client/validate-jwt-svid.js';
import { sigil, supervise } from '../process/support/under-test.js';
import { eventually, fetchUrl, readyJwks, startOidcStack, WORKLOAD_ID } from './support/oidc-stack.js';

test.serial('serve: discovery and JWKS exactly as documented, HTTP hygiene, iss in JWT-SVIDs the agent and the client library accept', async (t) => {
  const stack = await startOidcStack(t);
  const base = `https://localhost:${stack.port}`;
  const ca = stack.tls.ca;
  const oidc = await stack.serve(stack.writeConfig('oidc.yaml'));
  const jwks = await readyJwks(stack);

  // the keys are the trust domain's JWT keys, nothing else, each with kid/kty/alg and no use by default
  const agentBundle = (await stack.client.fetchJwtBundles()).getBundleForTrustDomain(TrustDomain.parse('example.org'));
  t.deepEqual(jwks.keys.map((k) => k.kid).sort(), [...(agentBundle?.jwtAuthorities.keys() ?? [])].sort());
  t.true(jwks.keys.length >= 1);
  for (const k of jwks.keys) {
    t.deepEqual(Object.keys(k).sort(), ['alg', 'crv', 'kid', 'kty', 'x', 'y'], JSON.stringify(k));
    t.is(k.alg, 'ES256');
    t.is(k.kty, 'EC');
    t.is(k.crv, 'P-256');
  }

  const disc = await fetchUrl(`${base}/.well-known/openid-configuration`, { ca });
  t.is(disc.status, 200);
  t.is(disc.headers['content-type'], 'application/json');
  t.is(disc.headers['cache-control'], 'public, max-age=60');
  t.deepEqual(JSON.parse(disc.body), {
    issuer: stack.issuer,
    jwks_uri: `${base}/keys`,
    response_types_supported: ['id_token'],
    subject_types_supported: ['public'],
    id_token_signing_alg_values_supported: ['ES256'],
  });

  // ETag and conditional requests
  const keys = await fetchUrl(`${base}/keys`, { ca });
  const etag = keys.headers.etag as string;
  t.regex(etag, /^"[A-Za-z0-9_-]+"$/);
  t.is(keys.headers['cache-control'], 'public, max-age=60');
  const again = await fetchUrl(`${base}/keys`, { ca, headers: { 'If-None-Match': etag } });
  t.is(again.status, 304);
  t.is(again.body, '');
  t.is((await fetchUrl(`${base}/keys`, { ca, headers: { 'If-None-Match': '"other"' } })).status, 200);
  const head = await fetchUrl(`${base}/keys`, { ca, method: 'HEAD' });
  t.is(head.status, 200);
  t.is(head.body, '');
  t.is(head.headers['content-length'], String(Buffer.byteLength(keys.body)));

  // nothing else is served
  for (const path of ['/', '/keys/', '/.well-known/', '/.well-known/openid-configuration/x', '/favicon.ico']) {
    t.is((await fetchUrl(`${base}${path}`, { ca })).status, 404, path);
  }
  for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH']) {
    const r = await fetchUrl(`${base}/keys`, { ca, method });
    t.is(r.status, 405, method);
    t.is(r.headers.allow, 'GET, HEAD');
  }
  t.is((await fetchUrl(`${base}/keys`, { ca, method: 'GET', body: 'x'.repeat(100), headers: { 'Content-Length': '100' } })).status, 413);
  t.is((await fetchUrl(`${base}/keys?${'a'.repeat(3000)}`, { ca })).status, 414);
  const huge = await fetchUrl(`${base}/keys`, { ca, headers: { 'X-Big': 'b'.repeat(20_000) } });
  t.is(huge.status, 431, 'an oversized header block is refused');

  // a JWT-SVID now carries iss; it verifies against the published keys, the agent validates it,
  // and so does the client library from the bundle
  const svid = await stack.jwtSvid('sts.amazonaws.com');
  t.is(svid.claims.iss, stack.issuer);
  const verified = await jwtVerify(svid.marshal(), createLocalJWKSet(JSON.parse(keys.body) as { keys: [] }), { issuer: stack.issuer, audience: 'sts.amazonaws.com' });
  t.is(verified.payload.sub, WORKLOAD_ID);
  const byAgent = await stack.client.validateJwtSvid(svid.marshal(), 'sts.amazonaws.com');
  t.is(byAgent.claims.iss, stack.issuer);
  const bundles = await stack.client.fetchJwtBundles();
  const byLibrary = await validateJwtSvid(svid.marshal(), 'sts.amazonaws.com', bundles);
  t.is(byLibrary.id.toString(), WORKLOAD_ID);

  // a new key is published on the agent's push, before it signs anything
  const before = jwks.keys.map((k) => k.kid);
  t.is((await stack.server.admin(['localauthority', 'jwt', 'prepare'])).code, 0);
  const grown = await eventually('the prepared key in the JWKS', async () => {
    const j = JSON.parse((await fetchUrl(`${base}/keys`, { ca })).body) as { keys: { kid: string }[] };
    return j.keys.length === before.length + 1 ? j : undefined;
  });
  t.true(before.every((k) => grown.keys.some((g) => g.kid === k)));
  t.not((await fetchUrl(`${base}/keys`, { ca })).headers.etag, etag, 'new keys, new ETag');

  // the agent goes away: the last good keys stay, /ready says why
  t.is(await stack.agentDaemon.stop(), 0);
  const notReady = await eventually('/ready to report the agent', async () => {
    const r = await fetchUrl(`${base}/ready`, { ca });
    return r.status === 503 ? r : undefined;
  });
  const state = JSON.parse(notReady.body) as { ready: boolean; healthy: boolean; keys: number; problem: string };
  t.false(state.ready);
  t.is(state.keys, before.length + 1);
  t.regex(state.problem, /agent/);
  const stale = await fetchUrl(`${base}/keys`, { ca });
  t.is(stale.status, 200);
  t.is((JSON.parse(stale.body) as { keys: unknown[] }).keys.length, before.length + 1);
  t.true(oidc.running);
  await stack.restartAgent();
  await readyJwks(stack);

  // logs carry no token
  t.false(oidc.output.includes(svid.marshal()));
  t.false(oidc.output.includes('PRIVATE KEY'));
  t.is(await oidc.stop(), 0, oidc.output.slice(-2000));
});

test.serial('serve: 503 rather than an empty key set; TLS files re-read on change; admin socket source; export; bad configs exit 1 naming the key', async (t) => {
  const stack = await startOidcStack(t);
  const base = `https://localhost:${stack.port}`;
  const ca = stack.tls.ca;

  // no agent there: every document is 503, never an empty JWKS
  const lonely = await stack.serve(stack.writeConfig('lonely.yaml', '', `issuer: ${stack.issuer}\ntrustDomain: example.org\nlisten: 127.0.0.1:${stack.port}\ntls:\n  certFile: ${stack.tls.certFile}\n  keyFile: ${stack.tls.keyFile}\nagentAddress: unix://${join(stack.dir, 'nobody.sock')}\n`));
  for (const path of ['/keys', '/.well-known/openid-configuration', '/ready']) t.is((await fetchUrl(`${base}${path}`, { ca })).status, 503, path);
  t.is(await lonely.stop(), 0);

  // keys from the server's admin socket
  const viaAdmin = await stack.serve(
    stack.writeConfig('admin.yaml', '', `issuer: ${stack.issuer}\ntrustDomain: example.org\nlisten: 127.0.0.1:${stack.port}\ntls:\n  certFile: ${stack.tls.certFile}\n  keyFile: ${stack.tls.keyFile}\nadminSocket: ${stack.server.adminSocket}\nadminPollInterval: 1s\nsetKeyUse: true\n`),
  );
  const adminKeys = await readyJwks(stack);
  t.true(adminKeys.keys.length >= 1);
  for (const k of adminKeys.keys) t.is(k.use, 'sig', 'setKeyUse marks every key');

  // the certificate is renewed on disk: new connections get the new one, without a restart
  const first = (await fetchUrl(`${base}/ready`, { ca })).certSerial;
  stack.tls.renew();
  await eventually('the renewed certificate', async () => ((await fetchUrl(`${base}/ready`, { ca })).certSerial !== first ? true : undefined));
  t.true(viaAdmin.running);
  t.is(await viaAdmin.stop(), 0);

  // export: once, then --watch across a key change
  const cfg = stack.writeConfig('oidc.yaml');
  const out = join(stack.dir, 'site');
  const once = await sigil(['oidc', 'export', '--config', cfg, '--dir', out]);
  t.is(once.code, 0, once.stderr);
  const disc = JSON.parse(readFileSync(join(out, '.well-known', 'openid-configuration'), 'utf8')) as { issuer: string; jwks_uri: string };
  t.is(disc.issuer, stack.issuer);
  t.is(disc.jwks_uri, `${base}/keys`);
  const exported = JSON.parse(readFileSync(join(out, 'keys'), 'utf8')) as { keys: { kid: string }[] };
  const bundle = (await stack.client.fetchJwtBundles()).getBundleForTrustDomain(TrustDomain.parse('example.org')) as Bundle;
  t.deepEqual(exported.keys.map((k) => k.kid).sort(), [...bundle.jwtAuthorities.keys()].sort());
  const watcher = supervise(['oidc', 'export', '--config', cfg, '--dir', out, '--watch']);
  stack.daemons.push(watcher);
  await watcher.until('the first export', () => watcher.stderr.includes('sigil oidc export: wrote'));
  t.is((await stack.server.admin(['localauthority', 'jwt', 'prepare'])).code, 0);
  await watcher.until('the export after the new key', () => (JSON.parse(readFileSync(join(out, 'keys'), 'utf8')) as { keys: unknown[] }).keys.length === exported.keys.length + 1);
  t.deepEqual(
    (JSON.parse(readFileSync(join(out, '.well-known', 'openid-configuration'), 'utf8')) as { id_token_signing_alg_values_supported: string[] }).id_token_signing_alg_values_supported,
    ['ES256'],
  );
  t.is(await watcher.stop(), 0);
  t.false(existsSync(join(out, 'keys.tmp')));

  // bad configs: exit 1 naming the key; no --config: usage, 2
  const bad: Array<[string, string]> = [
    [`issuer: http://localhost:1\ntrustDomain: example.org\ninsecureListen: 127.0.0.1:0\n`, 'issuer'],
    [`issuer: https://localhost:1/?q=1\ntrustDomain: example.org\ninsecureListen: 127.0.0.1:0\n`, 'issuer'],
    [`issuer: https://localhost:1#f\ntrustDomain: example.org\ninsecureListen: 127.0.0.1:0\n`, 'issuer'],
    [`issuer: https://localhost:1\ntrustDomain: example.org\ninsecureListen: 127.0.0.1:0\nbogus: 1\n`, 'bogus'],
    [`issuer: https://localhost:1\ntrustDomain: example.org\n`, 'listen'],
    [`issuer: https://localhost:1\ntrustDomain: example.org\nlisten: 127.0.0.1:0\n`, 'tls'],
    [`issuer: https://localhost:1\ntrustDomain: example.org\ninsecureListen: 127.0.0.1:0\ntls:\n  certFile: a\n  keyFile: b\n  extra: c\n`, 'tls.extra'],
    [`issuer: https://localhost:1\ntrustDomain: example.org\ninsecureListen: 127.0.0.1:0\nagentAddress: unix:///a\nadminSocket: /b\n`, 'adminSocket'],
    [`issuer: https://localhost:1\ntrustDomain: example.org\ninsecureListen: 127.0.0.1:0\njwksPath: /.well-known/openid-configuration\n`, 'jwksPath'],
    [`issuer: https://localhost:1\ntrustDomain: example.org\nlisten: 127.0.0.1:0\ntls:\n  certFile: a\n  keyFile: b\nacme:\n  directoryUrl: https://acme.example/dir\n  email: a@example.org\n  domain: oidc.example.org\n  cacheDir: c\n`, 'acme'],
    [`issuer: https://localhost:1\ntrustDomain: example.org\nlisten: 127.0.0.1:0\nacme:\n  directoryUrl: https://acme.example/dir\n  email: not-an-email\n  domain: Oidc.Example\n  cacheDir: c\n`, 'acme.domain'],
  ];
  for (const [yaml, key] of bad) {
    const r = await sigil(['oidc', 'serve', '--config', stack.writeConfig('bad.yaml', '', yaml)]);
    t.is(r.code, 1, `${yaml}: ${r.stderr}`);
    t.true(r.stderr.includes(key), `${key}: ${r.stderr}`);
    t.true(r.stderr.includes('ERR_CONFIG_INVALID'), r.stderr);
  }
  t.is((await sigil(['oidc', 'serve'])).code, 2);
  t.is((await sigil(['oidc', 'export', '--config', cfg])).code, 2);
});
