import test from 'ava';
import { execFile, spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { ROOT, SIGIL, sigil } from '../helpers/cli.js';
import { makeServerDir, startTestServer, writeServerConfig } from '../helpers/server.js';

test('entry create then entry show --output json, token, bundle, agent list, mint (child processes)', async (t) => {
  const s = await startTestServer();
  t.teardown(() => s.destroy());
  const sock = ['--socket', s.server.adminSocketPath];

  const created = await sigil(['entry', 'create', ...sock, '--spiffe-id', 'spiffe://example.org/web', '--parent-id', 'spiffe://example.org/sigil/agent/join_token/abc', '--selector', 'unix:uid:1000', '--x509-svid-ttl', '10m', '--output', 'json']);
  t.is(created.code, 0, created.stderr);
  const entry = (JSON.parse(created.stdout) as { entry: { id: string } }).entry;
  const shown = await sigil(['entry', 'show', entry.id, ...sock, '--output', 'json']);
  t.is(shown.code, 0, shown.stderr);
  const got = JSON.parse(shown.stdout) as { entries: { id: string; spiffeId: string; selectors: string[]; x509SvidTtlSeconds: number }[] };
  t.is(got.entries[0]?.id, entry.id);
  t.is(got.entries[0]?.spiffeId, 'spiffe://example.org/web');
  t.deepEqual(got.entries[0]?.selectors, ['unix:uid:1000']);
  t.is(got.entries[0]?.x509SvidTtlSeconds, 600);

  const table = await sigil(['entry', 'list', ...sock]);
  t.is(table.code, 0);
  t.regex(table.stdout, /^ENTRY ID\s+SPIFFE ID/);
  t.true(table.stdout.includes(entry.id));

  const dup = await sigil(['entry', 'create', ...sock, '--spiffe-id', 'spiffe://example.org/web', '--parent-id', 'spiffe://example.org/sigil/agent/join_token/abc', '--selector', 'unix:uid:1000']);
  t.is(dup.code, 1);
  t.true(dup.stderr.includes('ERR_ALREADY_EXISTS'));
  // refused before anything is sent, with the value types' reason
  const badId = await sigil(['entry', 'create', ...sock, '--spiffe-id', 'spiffe://Example.org/x', '--parent-id', 'spiffe://example.org/a', '--selector', 'unix:uid:1']);
  t.is(badId.code, 2);
  t.true(badId.stderr.includes('spiffe://Example.org/x'));
  t.true(badId.stderr.includes('trust-domain-uppercase: trust domain must be lowercase'), badId.stderr);
  const usage = await sigil(['entry', 'create', ...sock, '--bogus']);
  t.is(usage.code, 2);
  const missing = await sigil(['entry', 'show', 'no-such-entry', ...sock]);
  t.is(missing.code, 1);
  t.true(missing.stderr.includes('ERR_NOT_FOUND'));

  const count = await sigil(['entry', 'count', ...sock, '--output', 'json']);
  t.deepEqual(JSON.parse(count.stdout), { count: 1 });

  const tok = await sigil(['token', 'generate', ...sock, '--output', 'json']);
  t.is(tok.code, 0);
  const tokJson = (JSON.parse(tok.stdout) as { joinToken: { token: string; agentId: string } }).joinToken;
  t.true(tokJson.agentId.startsWith('spiffe://example.org/sigil/agent/join_token/'));

  const bundle = await sigil(['bundle', 'show', ...sock]);
  t.is(bundle.code, 0);
  t.true(bundle.stdout.includes('BEGIN CERTIFICATE'));

  const agents = await sigil(['agent', 'list', ...sock, '--output', 'json']);
  t.deepEqual(JSON.parse(agents.stdout), { agents: [] });

  const out = join(s.dir, 'minted');
  const mint = await sigil(['x509', 'mint', ...sock, '--spiffe-id', 'spiffe://example.org/minted', '--write', out, '--output', 'json']);
  t.is(mint.code, 0, mint.stderr);
  t.is((await stat(join(out, 'key.pem'))).mode & 0o777, 0o600);
  const leaf = new X509Certificate(await readFile(join(out, 'svid.pem')));
  t.is(leaf.subjectAltName, 'URI:spiffe://example.org/minted');
  // openssl verify of the minted SVID against the bundle
  const v = await promisify(execFile)('openssl', ['verify', '-CAfile', join(out, 'bundle.pem'), join(out, 'svid.pem')]);
  t.regex(v.stdout, /OK/);

  const jwt = await sigil(['jwt', 'mint', ...sock, '--spiffe-id', 'spiffe://example.org/minted', '--audience', 'test', '--write', join(out, 'jwt')]);
  t.is(jwt.code, 0, jwt.stderr);
  t.true((await readFile(join(out, 'jwt'), 'utf8')).startsWith('eyJ'));

  const la = await sigil(['localauthority', 'show', ...sock, '--output', 'json']);
  t.is(la.code, 0, la.stderr);
  const laJson = JSON.parse(la.stdout) as { authorities: { kind: string; phase: string }[] };
  t.true(laJson.authorities.some((a) => a.kind === 'x509' && a.phase === 'active'));

  const hc = await sigil(['server', 'healthcheck', ...sock]);
  t.is(hc.code, 0);

  const all = [...s.logLines, ...s.auditLines].join('\n');
  t.false(all.includes('PRIVATE KEY'));
  t.false(all.includes('eyJ'));
  t.false(all.includes(tokJson.token));
});

test('admin commands accept a relative --socket path (resolved against the current folder)', async (t) => {
  const s = await startTestServer();
  t.teardown(() => s.destroy());
  const rel = relative(ROOT, s.server.adminSocketPath);
  t.false(rel.startsWith('/'));
  const r = await sigil(['entry', 'count', '--socket', rel]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /0/);
});

test('sigil server run as a child process serves, answers healthcheck, and stops on SIGTERM', async (t) => {
  const dir = await makeServerDir();
  const config = await writeServerConfig(dir, 'health:\n  address: 127.0.0.1:0\n');
  const child = spawn(process.execPath, [SIGIL, 'server', 'run', '--config', config], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => child.kill('SIGKILL'));
  let stdout = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('server did not start')), 20_000);
    child.stderr.on('data', (d: Buffer) => {
      if (d.toString().includes('sigil server: serving')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('exit', () => reject(new Error(`server exited: ${stdout}`)));
  });
  const hc = await sigil(['server', 'healthcheck', '--config', config]);
  t.is(hc.code, 0, hc.stderr);
  child.kill('SIGTERM');
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  t.is(code, 0);
  t.false(stdout.includes('PRIVATE KEY'));
});

test('a bad config file is refused with every bad key named', async (t) => {
  const dir = await makeServerDir();
  const config = await writeServerConfig(dir, 'bogusKey: 1\nsvid:\n  defaultX509Ttl: soon\n');
  const r = await sigil(['server', 'run', '--config', config]);
  t.is(r.code, 1);
  t.true(r.stderr.includes('bogusKey'));
  t.true(r.stderr.includes('svid.defaultX509Ttl'));
  t.true(r.stderr.includes('ERR_CONFIG_INVALID'));
});
