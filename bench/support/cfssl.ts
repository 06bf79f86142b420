/**
 * cfssl `serve` as benchmark 2's floor: a P-256 CA and a TLS certificate made with openssl
 * in a temp dir, the server on a free loopback port with TLS, its log discarded.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** A running cfssl serve. */
export interface Cfssl {
  readonly url: string;
  readonly tlsCertPem: string;
  readonly version: string;
  /** The cfssl serve process, for its CPU time. */
  readonly pid: number;
  close(): void;
}

/** Why cfssl cannot run here, or undefined when it can. */
export function cfsslMissing(): string | undefined {
  const r = spawnSync('cfssl', ['version'], { encoding: 'utf8' });
  if (r.error !== undefined) return `cfssl is not installed (${r.error.message}); bench/setup.sh installs Debian's golang-cfssl`;
  return r.status === 0 ? undefined : `cfssl version exited with ${r.status}`;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      s.close(() => (typeof addr === 'object' && addr !== null ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

function openssl(args: string[]): void {
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr}`);
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect(port, '127.0.0.1');
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

/** Starts cfssl serve with a fresh CA. */
export async function startCfssl(): Promise<Cfssl> {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-bench-cfssl-'));
  const p = (f: string): string => join(dir, f);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2'];
  openssl(['req', '-x509', ...ec, '-keyout', p('ca-key.pem'), '-out', p('ca.pem'), '-subj', '/CN=bench cfssl CA']);
  openssl(['req', '-x509', ...ec, '-keyout', p('tls-key.pem'), '-out', p('tls.pem'), '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1']);
  const port = await freePort();
  const child: ChildProcess = spawn(
    'cfssl',
    ['serve', '-ca', p('ca.pem'), '-ca-key', p('ca-key.pem'), '-address', '127.0.0.1', '-port', String(port), '-tls-cert', p('tls.pem'), '-tls-key', p('tls-key.pem')],
    { stdio: 'ignore' },
  );
  const close = (): void => {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  for (let i = 0; i < 100 && !(await listening(port)); i++) {
    if (child.exitCode !== null) break;
    await sleep(100);
  }
  if (!(await listening(port))) {
    close();
    throw new Error('cfssl serve did not start listening');
  }
  const version = (spawnSync('cfssl', ['version'], { encoding: 'utf8' }).stdout ?? '').split('\n').filter(Boolean).join(', ');
  return { url: `https://127.0.0.1:${port}`, tlsCertPem: readFileSync(p('tls.pem'), 'utf8'), version, pid: child.pid!, close };
}
