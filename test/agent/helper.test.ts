/**
 * `sigil helper` with a real nginx serving mTLS from the files the helper writes: after the
 * agent rotates the SVID (4 s TTL), the helper rewrites the files atomically and sends
 * SIGHUP through nginx's pid file; a new `openssl s_client` handshake then sees the new
 * serial, and nginx's master process is the same one (no restart).
 */
import test from 'ava';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveHelperConfig } from '../../src/agent/helper/helper-config.js';
import { isSigilError } from '../../src/common/errors.js';
import { startTestServer } from '../helpers/server.js';
import { eventually, startTestAgent } from './support/agent-harness.js';
import { Daemon, runCommand, SIGIL_BIN } from './support/processes.js';

/** The uid and gid this test runs as (the helper and nginx run as them too; no root needed). */
const UID = process.getuid?.() ?? 0;
const GID = process.getgid?.() ?? 0;
const NGINX = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => existsSync(p));
const withNginx = NGINX !== undefined ? test.serial : test.serial.skip;
// A missing nginx is a failure that names the package, never a silent skip.
if (NGINX === undefined) {
  test('nginx is installed (scripts/ci-prepare.sh installs Debian\'s nginx package)', (t) => {
    t.fail('nginx not found at /usr/sbin/nginx or /usr/bin/nginx: the helper + nginx rotation test cannot run; install Debian\'s nginx package');
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** The serial (uppercase hex, as openssl prints it) of the first certificate in `pem`. */
async function serialOf(pem: string): Promise<string> {
  const r = await runCommand('openssl', ['x509', '-noout', '-serial'], { input: pem });
  return r.stdout.trim().replace(/^serial=/, '');
}

/** A fresh mTLS handshake with nginx; resolves to the serial of the certificate nginx presented. */
async function handshakeSerial(port: number, certDir: string): Promise<string> {
  const r = await runCommand(
    'openssl',
    ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', '-cert', join(certDir, 'svid.pem'), '-key', join(certDir, 'svid_key.pem'), '-CAfile', join(certDir, 'bundle.pem'), '-verify_return_error'],
    { input: 'GET / HTTP/1.0\r\n\r\n', timeoutMs: 10_000 },
  );
  const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/.exec(r.stdout)?.[0];
  if (pem === undefined || !r.stdout.includes('Verify return code: 0 (ok)')) throw new Error(`handshake failed: ${r.stdout.slice(-500)}${r.stderr.slice(-500)}`);
  return serialOf(pem);
}

test('helper config: unknown keys named, one reload kind, file names not paths, frozen', (t) => {
  const c = resolveHelperConfig({ certDir: 'certs', reload: { pidFile: 'nginx.pid' } }, '/srv');
  t.is(c.certDir, '/srv/certs');
  t.deepEqual(c.reload, { kind: 'signal', pidFile: '/srv/nginx.pid', signal: 'SIGHUP', timeoutMs: 30_000 });
  t.is(c.svidKeyFileName, 'svid_key.pem');
  t.true(Object.isFrozen(c));
  const err = t.throws(() => resolveHelperConfig({ certDir: 'c', certDirectory: 'x', svidFileName: '../etc/passwd', reload: { pidFile: 'p', command: ['true'] } }));
  t.true(isSigilError(err, 'ERR_CONFIG_INVALID'));
  t.true(err?.message.includes('unknown key certDirectory'));
  t.true(err?.message.includes('svidFileName'));
  t.throws(() => resolveHelperConfig({ certDir: 'c', reload: { pidFile: 'p', command: ['true'] } }));
});

withNginx('helper + nginx: a rotation reaches a new handshake without restarting nginx', async (t) => {
  const server = await startTestServer();
  t.teardown(() => server.destroy());
  const a = await startTestAgent(t, server);
  await server.createEntry({ spiffeId: 'spiffe://example.org/web/nginx', parentId: a.agentId, selectors: [`unix:uid:${UID}`], x509SvidTtlSeconds: 10, dnsNames: ['localhost'] });
  // Short-lived too: the helper writes svids[0], which is this one (SPIFFE IDs order the list).
  await server.createEntry({ spiffeId: 'spiffe://example.org/db-client', parentId: a.agentId, selectors: [`unix:uid:${UID}`, `unix:gid:${GID}`], x509SvidTtlSeconds: 10 });

  const dir = mkdtempSync(join(tmpdir(), 'sigil-helper-'));
  chmodSync(dir, 0o755);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const certDir = join(dir, 'certs');
  const port = await freePort();
  writeFileSync(
    join(dir, 'helper.yaml'),
    `agentAddress: unix://${a.socketPath}\ncertDir: certs\nreload:\n  pidFile: ${join(dir, 'nginx.pid')}\n  signal: SIGHUP\njwtSvids:\n  - audience: [db]\n    spiffeId: spiffe://example.org/db-client\n    fileName: db.jwt\nlogLevel: debug\n`,
  );
  const helper = new Daemon(process.execPath, [SIGIL_BIN, 'helper', '--config', join(dir, 'helper.yaml')]);
  t.teardown(() => helper.stop());
  await eventually(() => (existsSync(join(certDir, 'svid.pem')) && existsSync(join(certDir, 'db.jwt')) ? true : undefined), 20_000, 'the helper files').catch((err: unknown) => {
    throw new Error(`${String(err)}: ${helper.stdout.slice(-1500)}${helper.stderr}`);
  });
  t.is(statSync(join(certDir, 'svid_key.pem')).mode & 0o777, 0o600);
  t.is(statSync(join(certDir, 'db.jwt')).mode & 0o777, 0o600);

  mkdirSync(join(dir, 'tmp'), { mode: 0o755 });
  writeFileSync(
    join(dir, 'nginx.conf'),
    `worker_processes 1;\npid ${join(dir, 'nginx.pid')};\nerror_log ${join(dir, 'error.log')} info;\nevents { worker_connections 64; }\nhttp {\n  access_log off;\n  client_body_temp_path ${join(dir, 'tmp')};\n  proxy_temp_path ${join(dir, 'tmp')};\n  fastcgi_temp_path ${join(dir, 'tmp')};\n  uwsgi_temp_path ${join(dir, 'tmp')};\n  scgi_temp_path ${join(dir, 'tmp')};\n  server {\n    listen 127.0.0.1:${port} ssl;\n    ssl_certificate ${join(certDir, 'svid.pem')};\n    ssl_certificate_key ${join(certDir, 'svid_key.pem')};\n    ssl_client_certificate ${join(certDir, 'bundle.pem')};\n    ssl_verify_client on;\n    location / { return 200 "ok\\n"; }\n  }\n}\n`,
  );
  const nginx = new Daemon(NGINX as string, ['-e', join(dir, 'error.log'), '-p', dir, '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;']);
  t.teardown(() => nginx.stop('SIGQUIT'));
  const first = await eventually(async () => {
    try {
      return await handshakeSerial(port, certDir);
    } catch {
      return undefined;
    }
  }, 10_000, 'nginx to serve').catch((err: unknown) => {
    throw new Error(`${String(err)}: ${nginx.stderr}${existsSync(join(dir, 'error.log')) ? readFileSync(join(dir, 'error.log'), 'utf8').slice(-1500) : ''}`);
  });
  const masterPid = readFileSync(join(dir, 'nginx.pid'), 'utf8').trim();
  t.is(Number(masterPid), nginx.child.pid ?? -1);

  // Rotation: the file changes, nginx is told, and a new handshake shows the new certificate.
  const rotated = await eventually(async () => {
    const onDisk = await serialOf(readFileSync(join(certDir, 'svid.pem'), 'utf8'));
    if (onDisk === first) return undefined;
    const seen = await handshakeSerial(port, certDir).catch(() => undefined);
    return seen !== undefined && seen !== first ? seen : undefined;
  }, 45_000, 'a rotated certificate in a new handshake');
  t.not(rotated, first);
  t.is(readFileSync(join(dir, 'nginx.pid'), 'utf8').trim(), masterPid, 'nginx was reloaded, not restarted');
  t.is(nginx.child.exitCode, null);

  await helper.stop();
  const logs = helper.stdout + helper.stderr;
  t.true(logs.includes('"msg":"reload sent"'));
  t.false(logs.includes('PRIVATE KEY') || logs.includes('eyJ'), 'helper output holds a secret');
});
