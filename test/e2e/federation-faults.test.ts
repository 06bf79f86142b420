/**
 * A federating server facing faulty peers, nothing faked on our side: a real `sigil server run`
 * child (example.org), relationships created with the real `sigil federation create` against
 * its admin socket, and peer bundle endpoints this test serves itself over HTTPS (node:https).
 *
 * - https_web, verified against a test CA (`federation.httpsWebCaFile`) and the URL's host
 *   name: a good SPIFFE bundle document is fetched and stored; then the endpoint serves
 *   garbage, then a lower `spiffe_sequence` (with another root): each `federation refresh`
 *   fails (exit 1), `federation show` reports the error with the last success and sequence of
 *   the good fetch, and the stored bundle is unchanged; a certificate from a CA not among the
 *   web roots is reported as such (not as a network fault); a higher sequence is taken again.
 * - https_spiffe, the bootstrap bundle a test root: an endpoint SVID with the configured ID is
 *   accepted; one of the same root with another SPIFFE ID, or one with the configured ID from
 *   a root the peer's bundle does not hold, is refused and reported (the latter as a certificate
 *   that does not chain to the bundle held for the peer, not as a network fault), the last good
 *   bundle kept.
 */
import test from 'ava';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Daemon } from '../agent/support/processes.js';
import { createCa, createJwtKey, createLeaf, type TestCert } from '../helpers/pki.js';
import { makeServerDir, writeServerConfig } from '../helpers/server.js';
import { createWebPki, type WebPki } from '../helpers/web-pki.js';
import { freePort, sigil, supervise } from '../process/support/under-test.js';
import { secretLeaks } from './support/stack.js';

interface RelView {
  readonly trustDomain: string;
  readonly bundleEndpointProfile: string;
  readonly lastAttempt: string | null;
  readonly lastSuccess: string | null;
  readonly lastError: string | null;
  readonly sequence: number;
  readonly consecutiveFailures: number;
  readonly hasBundle: boolean;
}

interface Jwk {
  readonly use?: string;
  readonly kid?: string;
  readonly x5c?: readonly string[];
}

/** A peer's bundle endpoint served by this test: the answer and the certificate can be switched at any time. */
interface Peer {
  readonly server: Server;
  readonly port: number;
  answer: string;
  requests: number;
}

const dirs: string[] = [];
const peers: Server[] = [];
let server: Daemon | undefined;
let adminSocket = '';
let web: WebPki;

function admin(args: readonly string[]): ReturnType<typeof sigil> {
  return sigil([...args, '--socket', adminSocket], { timeoutMs: 60_000 });
}

/** A SPIFFE bundle document (JWKS): the roots as x509-svid keys, the JWT keys as jwt-svid keys. */
function bundleDoc(roots: readonly TestCert[], jwtKids: readonly string[], sequence: number): string {
  const keys: object[] = roots.map((r) => ({ ...r.x509.publicKey.export({ format: 'jwk' }), use: 'x509-svid', x5c: [Buffer.from(r.der).toString('base64')] }));
  for (const kid of jwtKids) keys.push({ ...createJwtKey('ES256', kid).publicKey.export({ format: 'jwk' }), use: 'jwt-svid', kid });
  return JSON.stringify({ keys, spiffe_sequence: sequence, spiffe_refresh_hint: 3600 });
}

async function servePeer(cert: string | Buffer, key: string | Buffer, answer: string): Promise<Peer> {
  const peer = { answer, requests: 0 } as Peer;
  const srv = createServer({ cert, key }, (_req, res) => {
    peer.requests++;
    res.writeHead(200, { 'content-type': 'application/json' }).end(peer.answer);
  });
  peers.push(srv);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return Object.assign(peer, { server: srv, port: (srv.address() as AddressInfo).port });
}

async function show(td: string): Promise<RelView> {
  const r = await admin(['federation', 'show', '--trust-domain', td, '--output', 'json']);
  if (r.code !== 0) throw new Error(`federation show: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { relationship: RelView }).relationship;
}

async function refresh(td: string): Promise<{ code: number | null; rel: RelView; stderr: string }> {
  const r = await admin(['federation', 'refresh', '--trust-domain', td, '--output', 'json']);
  return { code: r.code, rel: (JSON.parse(r.stdout) as { relationship: RelView }).relationship, stderr: r.stderr };
}

async function storedBundle(td: string): Promise<string> {
  const r = await admin(['bundle', 'show', '--trust-domain', td, '--format', 'spiffe']);
  if (r.code !== 0) throw new Error(`bundle show --trust-domain ${td}: ${r.stderr}`);
  return r.stdout;
}

function x5cOf(doc: string): string[] {
  return (JSON.parse(doc) as { keys: Jwk[] }).keys.filter((k) => k.use === 'x509-svid').map((k) => k.x5c?.[0] ?? '');
}

function kidsOf(doc: string): string[] {
  return (JSON.parse(doc) as { keys: Jwk[] }).keys.filter((k) => k.use === 'jwt-svid').map((k) => k.kid ?? '');
}

const b64 = (c: TestCert): string => Buffer.from(c.der).toString('base64');

async function eventually<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

test.before(async () => {
  const dir = await makeServerDir();
  dirs.push(dir);
  web = createWebPki(dir);
  const config = await writeServerConfig(dir, `federation:\n  httpsWebCaFile: ${web.caFile}\n`);
  adminSocket = join(dir, 'admin.sock');
  const agentPort = await freePort();
  server = supervise(['server', 'run', '--config', config, '--agent-address', `127.0.0.1:${agentPort}`]);
  await server.until('the server to serve', () => server!.stderr.includes('sigil server: serving'), 90_000);
});

test.after.always(async () => {
  await server?.stop();
  for (const s of peers) s.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

test.serial('https_web with a test CA: a good bundle is stored; garbage and an older sequence keep it and are reported', async (t) => {
  const root5 = await createCa({ id: 'spiffe://other.org', name: 'CN=other.org root 5' });
  const root4 = await createCa({ id: 'spiffe://other.org', name: 'CN=other.org root 4' });
  const root6 = await createCa({ id: 'spiffe://other.org', name: 'CN=other.org root 6' });
  const peer = await servePeer(readFileSync(web.certFile), readFileSync(web.keyFile), bundleDoc([root5], ['kid-5'], 5));
  // localhost: the certificate's host name is checked against the URL
  const created = await admin(['federation', 'create', '--trust-domain', 'other.org', '--bundle-endpoint-url', `https://localhost:${peer.port}/`, '--bundle-endpoint-profile', 'https_web']);
  t.is(created.code, 0, created.stderr);

  // the refresher fetches a new relationship at once; refresh fetches now
  await eventually('the first fetch of other.org', async () => ((await show('other.org')).lastSuccess !== null ? true : undefined));
  const good = await refresh('other.org');
  t.is(good.code, 0, good.stderr);
  t.is(good.rel.bundleEndpointProfile, 'https_web');
  t.is(good.rel.lastError, null);
  t.is(good.rel.sequence, 5);
  t.true(good.rel.hasBundle);
  t.truthy(good.rel.lastSuccess);
  const stored = await storedBundle('other.org');
  t.deepEqual(x5cOf(stored), [b64(root5)], 'the stored bundle is the served one');
  t.deepEqual(kidsOf(stored), ['kid-5']);
  const listed = await admin(['bundle', 'list']);
  t.is(listed.code, 0, listed.stderr);
  t.regex(listed.stdout, /spiffe:\/\/other\.org\s+1\s+5\s/);
  const lastSuccess = good.rel.lastSuccess;

  const faults = [
    ['garbage', '<html><body>502 Bad Gateway</body></html>', /no valid SPIFFE bundle of other\.org/],
    ['an older spiffe_sequence, with another root', bundleDoc([root4], ['kid-4'], 4), /served sequence 4, older than the stored 5/],
  ] as const;
  for (const [what, answer, pattern] of faults) {
    peer.answer = answer;
    const before = peer.requests;
    const r = await refresh('other.org');
    t.is(r.code, 1, `${what}: a failed fetch is a runtime failure`);
    t.true(peer.requests > before, `${what}: the endpoint was asked`);
    t.regex(r.rel.lastError ?? '', pattern, what);
    const shown = await show('other.org');
    t.regex(shown.lastError ?? '', pattern, `${what}: federation show reports it`);
    t.is(shown.sequence, 5, `${what}: the sequence of the last good bundle`);
    t.is(shown.lastSuccess, lastSuccess, `${what}: the last success is the good fetch`);
    t.true(shown.consecutiveFailures >= 1, what);
    t.true(shown.hasBundle, what);
    t.is(await storedBundle('other.org'), stored, `${what}: the last good bundle stays`);
    const text = await admin(['federation', 'show', '--trust-domain', 'other.org']);
    t.regex(text.stdout, /Last error:\s+.*(no valid SPIFFE bundle|older than the stored 5)/, what);
    t.regex(text.stdout, /Sequence:\s+5\b/, what);
  }

  // a certificate of another CA (a good bundle behind it): refused as untrusted, not as unreachable
  const stranger = createWebPki(dirs[0]!, 'stranger');
  peer.server.setSecureContext({ cert: readFileSync(stranger.certFile), key: readFileSync(stranger.keyFile) });
  peer.answer = bundleDoc([root6], ['kid-6'], 6);
  const untrusted = await refresh('other.org');
  t.is(untrusted.code, 1, 'an untrusted certificate is a runtime failure');
  const webPattern = /^the certificate of the bundle endpoint of other\.org at localhost:\d+ does not chain to the web roots \(federation\.httpsWebCaFile\)/;
  t.regex(untrusted.rel.lastError ?? '', webPattern);
  t.notRegex(untrusted.rel.lastError ?? '', /cannot reach/);
  const untrustedText = await admin(['federation', 'show', '--trust-domain', 'other.org']);
  t.regex(untrustedText.stdout, /Last error:\s+the certificate of the bundle endpoint of other\.org at localhost:\d+ does not chain to the web roots/);
  t.is(await storedBundle('other.org'), stored, 'untrusted certificate: the last good bundle stays');
  peer.server.setSecureContext({ cert: readFileSync(web.certFile), key: readFileSync(web.keyFile) });

  // a newer sequence is taken again, and the error clears
  const back = await refresh('other.org');
  t.is(back.code, 0, back.stderr);
  t.is(back.rel.lastError, null);
  t.is(back.rel.sequence, 6);
  t.is(back.rel.consecutiveFailures, 0);
  t.deepEqual(x5cOf(await storedBundle('other.org')), [b64(root6)]);
  t.true(server!.output.includes('keeping the last good bundle'), 'the failures are logged');
});

test.serial('https_spiffe: an endpoint SVID with the wrong SPIFFE ID, or from a root the bundle does not hold, is refused and reported', async (t) => {
  const endpointId = 'spiffe://third.org/bundle-endpoint';
  const root = await createCa({ id: 'spiffe://third.org', name: 'CN=third.org root' });
  const stranger = await createCa({ id: 'spiffe://third.org', name: 'CN=not in the bundle' });
  const right = await createLeaf({ issuer: root, id: endpointId, subject: 'CN=right' });
  const wrongId = await createLeaf({ issuer: root, id: 'spiffe://third.org/impostor', subject: 'CN=wrong id' });
  const wrongRoot = await createLeaf({ issuer: stranger, id: endpointId, subject: 'CN=wrong root' });
  // the bootstrap bundle: the root as PEM; the fetched bundle keeps it, so later fetches authenticate with it too
  const dir = dirs[0]!;
  const bootstrap = join(dir, 'third.pem');
  writeFileSync(bootstrap, root.pem);
  const peer = await servePeer(right.pem, right.key.pkcs8Pem, bundleDoc([root], ['kid-1'], 1));
  const created = await admin([
    'federation', 'create', '--trust-domain', 'third.org', '--bundle-endpoint-url', `https://127.0.0.1:${peer.port}/`,
    '--bundle-endpoint-profile', 'https_spiffe', '--endpoint-spiffe-id', endpointId, '--trust-domain-bundle-path', bootstrap, '--trust-domain-bundle-format', 'pem',
  ]);
  t.is(created.code, 0, created.stderr);
  await eventually('the first fetch of third.org', async () => ((await show('third.org')).lastSuccess !== null ? true : undefined));
  const good = await refresh('third.org');
  t.is(good.code, 0, good.stderr);
  t.is(good.rel.sequence, 1);
  t.is(good.rel.lastError, null);
  const stored = await storedBundle('third.org');
  t.deepEqual(x5cOf(stored), [b64(root)]);
  t.deepEqual(kidsOf(stored), ['kid-1'], 'the fetched bundle (with its JWT key) replaced the PEM bootstrap');
  const lastSuccess = good.rel.lastSuccess;
  t.truthy(lastSuccess);

  // the same root, another SPIFFE ID; then the configured ID from a root the bundle does not hold
  const faults = [
    ['the wrong SPIFFE ID', wrongId, /presented spiffe:\/\/third\.org\/impostor, not spiffe:\/\/third\.org\/bundle-endpoint/],
    ['a root not in the bundle', wrongRoot, /^the certificate of the bundle endpoint of third\.org at 127\.0\.0\.1:\d+ does not chain to the trust bundle held for third\.org/],
  ] as const;
  let seq = 1;
  for (const [what, leaf, pattern] of faults) {
    peer.server.setSecureContext({ cert: leaf.pem, key: leaf.key.pkcs8Pem });
    // a newer bundle with another JWT key: had it been taken, the stored bundle would show it
    peer.answer = bundleDoc([root], [`kid-${++seq}`], seq);
    const r = await refresh('third.org');
    t.is(r.code, 1, `${what}: refused`);
    t.regex(r.rel.lastError ?? '', pattern, what);
    t.log(`${what}: ${r.rel.lastError ?? ''}`);
    const shown = await show('third.org');
    t.regex(shown.lastError ?? '', pattern, `${what}: federation show reports it`);
    t.notRegex(shown.lastError ?? '', /cannot reach/, `${what}: not reported as a network fault`);
    const text = await admin(['federation', 'show', '--trust-domain', 'third.org']);
    t.regex(text.stdout, new RegExp(`Last error:\\s+.*${pattern.source.replace(/^\^/, '')}`), `${what}: the text output too`);
    t.is(shown.sequence, 1, what);
    t.is(shown.lastSuccess, lastSuccess, what);
    t.is(await storedBundle('third.org'), stored, `${what}: the last good bundle stays`);
  }

  // the right SVID again: the newer bundle is taken
  peer.server.setSecureContext({ cert: right.pem, key: right.key.pkcs8Pem });
  const back = await refresh('third.org');
  t.is(back.code, 0, back.stderr);
  t.is(back.rel.sequence, seq);
  t.is(back.rel.lastError, null);
  t.deepEqual(kidsOf(await storedBundle('third.org')), [`kid-${seq}`]);

  const list = await admin(['federation', 'list']);
  t.is(list.code, 0, list.stderr);
  t.regex(list.stdout, /other\.org\s+https_web/);
  t.regex(list.stdout, /third\.org\s+https_spiffe/);
  t.deepEqual(secretLeaks(server!.output, []), [], 'no secret in the logs');
});
