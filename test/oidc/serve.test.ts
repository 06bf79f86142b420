/**
 * `sigil oidc serve` and `sigil oidc export` as real children of bin/sigil.js against a real
 * server and agent (issue 15): the discovery document and JWKS exactly as relying parties read
 * them, HTTP hygiene (Cache-Control, ETag/304, 404, 405, bounded requests), keys from the agent
 * (updated on every push) or from the admin socket, the last good keys served while the agent
 * is down (and /ready saying so with a reason kind, never a local path or error text), 503 rather
 * than an empty key set (no keys yet, or a trust domain whose bundle holds none), `use: sig` by
 * default and off with `setKeyUse: false`, TLS files re-read on change, config errors naming the
 * key (exit 1), and the exported files.
 */
import test from 'ava';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLocalJWKSet, jwtVerify } from 'jose';
import type { Bundle } from '../../src/spiffe/bundle.js';
import { TrustDomain } from '../../src/spiffe/spiffe-id.js';
import { validateJwtSvid } from '../../src/client/validate-jwt-svid.js';
import { createCa } from '../helpers/pki.js';
import { sigil, supervise, UID } from '../process/support/under-test.js';
import { eventually, fetchUrl, readyJwks, startOidcStack, WORKLOAD_ID } from './support/oidc-stack.js';

test.serial('serve: discovery and JWKS exactly as documented, HTTP hygiene, iss in JWT-SVIDs the agent and the client library accept', async (t) => {
  const stack = await startOidcStack(t);
  const base = `https://localhost:${stack.port}`;
  const ca = stack.tls.ca;
  const oidc = await stack.serve(stack.writeConfig('oidc.yaml'));
  const jwks = await readyJwks(stack);

  // the keys are the trust domain's JWT keys, nothing else, each with kid/kty/alg and use: sig by default
  const agentBundle = (await stack.client.fetchJwtBundles()).getBundleForTrustDomain(TrustDomain.parse('example.org'));
  t.deepEqual(jwks.keys.map((k) => k.kid).sort(), [...(agentBundle?.jwtAuthorities.keys() ?? [])].sort());
  t.true(jwks.keys.length >= 1);
  for (const k of jwks.keys) {
    t.deepEqual(Object.keys(k).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y'], JSON.stringify(k));
    t.is(k.use, 'sig');
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

  // the agent goes away: the last good keys stay, /ready says not ready with a reason kind only
  // (it is public: no socket path, no error text); the detail is in the log
  t.is(await stack.agentDaemon.stop(), 0);
  const notReady = await eventually('/ready to report the agent', async () => {
    const r = await fetchUrl(`${base}/ready`, { ca });
    return r.status === 503 ? r : undefined;
  });
  const state = JSON.parse(notReady.body) as Record<string, unknown>;
  t.deepEqual(Object.keys(state).sort(), ['keys', 'ready', 'reason', 'updatedAt'], notReady.body);
  t.false(state.ready);
  t.is(state.reason, 'source-unavailable');
  t.is(state.keys, before.length + 1);
  t.false(notReady.body.includes(stack.agent.socket), 'no socket path in the public answer');
  t.false(notReady.body.includes('/'), `no path at all: ${notReady.body}`);
  await oidc.until('the detail in the log', () => oidc.output.includes('JWT key source unhealthy') && oidc.output.includes('the agent is unreachable'));
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

  // no agent there: every document is 503, never an empty JWKS; /ready names no path
  const nobody = join(stack.dir, 'nobody.sock');
  const lonely = await stack.serve(stack.writeConfig('lonely.yaml', '', `issuer: ${stack.issuer}\ntrustDomain: example.org\nlisten: 127.0.0.1:${stack.port}\ntls:\n  certFile: ${stack.tls.certFile}\n  keyFile: ${stack.tls.keyFile}\nagentAddress: unix://${nobody}\n`));
  for (const path of ['/keys', '/.well-known/openid-configuration', '/ready']) t.is((await fetchUrl(`${base}${path}`, { ca })).status, 503, path);
  const lonelyReady = await eventually('/ready to report the missing agent', async () => {
    const r = JSON.parse((await fetchUrl(`${base}/ready`, { ca })).body) as Record<string, unknown>;
    return r.reason === 'source-unavailable' ? r : undefined;
  });
  t.deepEqual(lonelyReady, { ready: false, reason: 'source-unavailable', keys: 0 });
  t.false(JSON.stringify(lonelyReady).includes('nobody.sock'));
  await lonely.until('the missing socket in the log', () => lonely.output.includes('JWT key source unhealthy'));
  t.is(await lonely.stop(), 0);

  // keys from the server's admin socket
  const viaAdmin = await stack.serve(
    stack.writeConfig('admin.yaml', '', `issuer: ${stack.issuer}\ntrustDomain: example.org\nlisten: 127.0.0.1:${stack.port}\ntls:\n  certFile: ${stack.tls.certFile}\n  keyFile: ${stack.tls.keyFile}\nadminSocket: ${stack.server.adminSocket}\nadminPollInterval: 1s\nsetKeyUse: false\n`),
  );
  const adminKeys = await readyJwks(stack);
  t.true(adminKeys.keys.length >= 1);
  for (const k of adminKeys.keys) t.false('use' in k, 'setKeyUse: false leaves use out');

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

  // a trust domain whose bundle (as the agent hands it out) holds no JWT key: 503 for both
  // documents, not {"keys":[]}, and /ready not ready with reason no-keys
  const other = await createCa({ id: 'spiffe://other.org', name: 'CN=other.org root' });
  const otherPem = join(stack.dir, 'other.pem');
  writeFileSync(otherPem, other.pem);
  t.is((await stack.server.admin(['bundle', 'set', '--trust-domain', 'other.org', '--path', otherPem])).code, 0);
  const fed = await stack.server.admin(['entry', 'create', '--parent-id', stack.agent.agentId, '--spiffe-id', 'spiffe://example.org/oidc/federated', '--selector', `unix:uid:${UID}`, '--federates-with', 'other.org']);
  t.is(fed.code, 0, fed.stderr);
  const otherBundle = await eventually('the agent to hand out the bundle of other.org', async () => (await stack.client.fetchJwtBundles()).getBundleForTrustDomain(TrustDomain.parse('other.org')));
  t.is(otherBundle.jwtAuthorities.size, 0, 'the agent hands out a bundle with no JWT key');
  const keyless = await stack.serve(stack.writeConfig('keyless.yaml', '', `issuer: ${stack.issuer}\ntrustDomain: other.org\nlisten: 127.0.0.1:${stack.port}\ntls:\n  certFile: ${stack.tls.certFile}\n  keyFile: ${stack.tls.keyFile}\nagentAddress: unix://${stack.agent.socket}\n`));
  const keylessReady = await eventually('/ready to report no keys', async () => {
    const r = await fetchUrl(`${base}/ready`, { ca });
    const body = JSON.parse(r.body) as Record<string, unknown>;
    return body.reason === 'no-keys' ? { status: r.status, body } : undefined;
  });
  t.deepEqual(keylessReady, { status: 503, body: { ready: false, reason: 'no-keys', keys: 0 } });
  for (const path of ['/keys', '/.well-known/openid-configuration']) {
    const r = await fetchUrl(`${base}${path}`, { ca });
    t.is(r.status, 503, path);
    t.is(r.headers['retry-after'], '5', path);
    t.false(r.body.includes('"keys"'), `${path}: no key set, not even an empty one`);
  }
  t.true(keyless.output.includes('holds no JWT keys'), 'the detail is logged');
  t.is(await keyless.stop(), 0);

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
