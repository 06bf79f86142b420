/**
 * `sigil server run` with its keys in a real SoftHSM2 token (issue 19), as real children with a
 * real agent: in `sign` mode the CA key never leaves the token and the workload's SVID verifies
 * with openssl; in `wrap` mode the keys move KEK file → token → KEK file with `rewrap-keys
 * --to-config` and the trust domain stays the same throughout. Neither the server's data dir nor
 * any log carries private key material or the PIN.
 */
import test from 'ava';
import { readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Daemon } from '../agent/support/processes.js';
import { generateKekFile } from '../../src/ca/key-manager/kek.js';
import { opensslVerify } from '../helpers/openssl.js';
import { makeServerDir } from '../helpers/server.js';
import { SOFTHSM_MODULE, softHsm, type SoftHsm } from '../helpers/softhsm.js';
import { agentHome, freePort, plainEnv, sigil, supervise, UID, type ServerHome } from './support/under-test.js';

const WORKLOAD_ID = 'spiffe://example.org/p11/workload';

function keyManagerYaml(kind: 'file' | 'wrap' | 'sign', h: SoftHsm, kekFile: string): string {
  if (kind === 'file') return `keyManager:\n  type: disk\n  kekFile: ${kekFile}\n`;
  return `keyManager:\n  type: pkcs11\n  module: ${SOFTHSM_MODULE}\n  tokenLabel: ${h.label}\n  pinFile: ${h.pinFile}\n  mode: ${kind}\n`;
}

interface Home extends ServerHome {
  readonly logs: string[];
  configFor(kind: 'file' | 'wrap' | 'sign', kekFile?: string): string;
}

async function home(h: SoftHsm, kind: 'file' | 'wrap' | 'sign', extra = ''): Promise<Home> {
  const dir = await makeServerDir();
  const port = await freePort();
  const env = plainEnv(h.env);
  const logs: string[] = [];
  const configFor = (k: 'file' | 'wrap' | 'sign', kekFile = join(dir, 'kek')): string => {
    const path = join(dir, `server-${k}-${kekFile.split('/').pop() as string}.yaml`);
    writeFileSync(
      path,
      `trustDomain: example.org\ndataDir: ${join(dir, 'data')}\nagentApi:\n  address: 127.0.0.1:${port}\nadminApi:\n  socketPath: ${join(dir, 'admin.sock')}\n` +
        keyManagerYaml(k, h, kekFile) +
        extra,
    );
    return path;
  };
  let config = configFor(kind);
  const hm: Home = {
    dir,
    port,
    adminSocket: join(dir, 'admin.sock'),
    dataDir: join(dir, 'data'),
    logs,
    configFor,
    get config() {
      return config;
    },
    set config(c: string) {
      config = c;
    },
    async start() {
      const d = supervise(['server', 'run', '--config', config], env);
      d.closed.then(() => logs.push(d.output), () => undefined);
      await d.until('the server to serve', () => d.stderr.includes('sigil server: serving') || !d.running, 60_000);
      if (!d.running) throw new Error(`server ended: ${d.output.slice(-3000)}`);
      return d;
    },
    admin: (args) => sigil([...args, '--config', config], { env }),
  } as Home;
  return hm;
}

async function terminate(d: Daemon): Promise<number | null> {
  d.child.kill('SIGTERM');
  return (await d.closed).code;
}

/** Fetches the workload's SVID into `out` through the agent, retrying until the entry has reached the agent. */
async function fetchInto(socket: string, out: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  let last = '';
  while (Date.now() < deadline) {
    const r = await sigil(['api', 'fetch', 'x509', '--socket', socket, '--write', out, '--timeout', '5s']);
    if (r.code === 0) return;
    last = r.stderr;
    await new Promise((res) => setTimeout(res, 250));
  }
  throw new Error(`fetch never succeeded: ${last}`);
}

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...filesUnder(p));
    else out.push(p);
  }
  return out;
}

/** No PEM private key, no JWK private member, no PKCS#8 header for an EC key and not the PIN, anywhere in the server's data dir or the logs. */
function assertNoSecrets(t: { false(v: boolean, m?: string): void }, h: SoftHsm, dataDir: string, logs: readonly string[]): void {
  const pkcs8Ec = Buffer.from('308187020100301306072a8648ce3d020106082a8648ce3d030107046d306b0201010420', 'hex');
  for (const f of filesUnder(dataDir)) {
    if (f.endsWith('.sock')) continue;
    const bytes = readFileSync(f);
    const text = bytes.toString('latin1');
    t.false(text.includes('PRIVATE KEY'), f);
    t.false(/"d"\s*:/.test(text), f);
    t.false(bytes.includes(pkcs8Ec), f);
    t.false(text.includes(h.pin), f);
  }
  t.false(logs.filter((l) => l.includes('"level"')).length < 2, 'the scan saw the server and agent logs');
  for (const log of logs) {
    t.false(log.includes('PRIVATE KEY'), 'log');
    t.false(log.includes(h.pin), 'log');
    t.false(log.includes('eyJ'), 'log');
  }
}

async function agentServes(t: { is(a: unknown, b: unknown, m?: string): void; regex(s: string, r: RegExp, m?: string): void; teardown(fn: () => unknown): void }, hm: Home, running: Daemon[]): Promise<void> {
  const agent = await agentHome(hm);
  t.teardown(() => rmSync(agent.dir, { recursive: true, force: true }));
  const entry = await hm.admin(['entry', 'create', '--parent-id', agent.agentId, '--spiffe-id', WORKLOAD_ID, '--selector', `unix:uid:${UID}`]);
  t.is(entry.code, 0, entry.stderr);
  const a = agent.start();
  running.push(a);
  await a.until('the agent to serve', () => a.stderr.includes('serving the Workload API'), 60_000);
  const out = join(agent.dir, 'out');
  await fetchInto(agent.socket, out);
  const r = await opensslVerify({ roots: [readFileSync(join(out, 'bundle.0.pem'), 'utf8')], leaf: readFileSync(join(out, 'svid.0.pem'), 'utf8'), flags: ['-x509_strict'] });
  t.is(r.ok, true, r.output);
  t.regex(readFileSync(join(out, 'svid.0.pem'), 'utf8'), /BEGIN CERTIFICATE/);
  t.is(await terminate(a), 0);
  hm.logs.push(a.output);
}

test.serial('sign mode: the CA key is generated and used in the token; an agent gets an SVID that openssl verifies; nothing secret in the data dir or logs', async (t) => {
  const h = await softHsm();
  const hm = await home(h, 'sign');
  const running: Daemon[] = [];
  t.teardown(async () => {
    for (const d of running) if (d.running) d.child.kill('SIGKILL');
    await Promise.all(running.map((d) => d.closed));
    rmSync(hm.dir, { recursive: true, force: true });
    await h.remove();
  });
  const server = await hm.start();
  running.push(server);
  await agentServes(t, hm, running);
  // no key files at all: the keys are only in the token
  t.deepEqual(readdirSync(hm.dataDir).filter((f) => f === 'keys' && readdirSync(join(hm.dataDir, f)).length > 0), []);
  const bundle = (await hm.admin(['bundle', 'show'])).stdout;
  t.is(await terminate(server), 0);
  // a restart finds the same CA in the token
  const again = await hm.start();
  running.push(again);
  t.is((await hm.admin(['bundle', 'show'])).stdout, bundle);
  t.is(await terminate(again), 0);
  await new Promise((res) => setImmediate(res));
  assertNoSecrets(t, h, hm.dataDir, hm.logs);
});

test.serial('wrap mode: KEK file → token → KEK file with rewrap-keys --to-config, the same CA throughout; an agent is served under the token KEK', async (t) => {
  const h = await softHsm();
  const hm = await home(h, 'file');
  const running: Daemon[] = [];
  t.teardown(async () => {
    for (const d of running) if (d.running) d.child.kill('SIGKILL');
    await Promise.all(running.map((d) => d.closed));
    rmSync(hm.dir, { recursive: true, force: true });
    await h.remove();
  });
  const env = plainEnv(h.env);
  const fileConfig = hm.config;
  let server = await hm.start();
  running.push(server);
  const bundle = (await hm.admin(['bundle', 'show'])).stdout;
  t.is(await terminate(server), 0);

  // to the token
  const tokenConfig = hm.configFor('wrap');
  let r = await sigil(['server', 'rewrap-keys', '--config', fileConfig, '--to-config', tokenConfig, '--output', 'json'], { env });
  t.is(r.code, 0, r.stderr);
  t.true((JSON.parse(r.stdout) as { rewrapped: number }).rewrapped >= 2);
  // the KEK file alone no longer opens the keys
  const stale = await sigil(['server', 'run', '--config', fileConfig], { env, timeoutMs: 60_000 });
  t.is(stale.code, 1);
  t.regex(stale.stderr, /different kek/);
  (hm as { config: string }).config = tokenConfig;
  server = await hm.start();
  running.push(server);
  t.is((await hm.admin(['bundle', 'show'])).stdout, bundle, 'same CA under the token KEK');
  await agentServes(t, hm, running);
  t.is(await terminate(server), 0);

  // and back to a new KEK file
  const kek2 = join(hm.dir, 'kek2');
  await generateKekFile(kek2);
  const backConfig = hm.configFor('file', kek2);
  r = await sigil(['server', 'rewrap-keys', '--config', tokenConfig, '--to-config', backConfig], { env });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /re-wrapped \d+ keys/);
  (hm as { config: string }).config = backConfig;
  server = await hm.start();
  running.push(server);
  t.is((await hm.admin(['bundle', 'show'])).stdout, bundle, 'same CA back under a KEK file');
  t.is(await terminate(server), 0);
  await new Promise((res) => setImmediate(res));
  assertNoSecrets(t, h, hm.dataDir, [...hm.logs, r.stdout, r.stderr, stale.stderr, stale.stdout]);
});

test.serial('a wrong pin, token label or module stops the server with exit 1 and a message naming which, never the pin', async (t) => {
  const h = await softHsm();
  const hm = await home(h, 'wrap');
  t.teardown(async () => {
    rmSync(hm.dir, { recursive: true, force: true });
    await h.remove();
  });
  const env = plainEnv(h.env);
  const good = readFileSync(hm.config, 'utf8');
  const badPin = join(hm.dir, 'bad-pin');
  writeFileSync(badPin, 'wrong-pin-000\n', { mode: 0o600 });
  const cases: Array<[string, string, RegExp]> = [
    ['pin', good.replace(h.pinFile, badPin), /the pin in .*bad-pin is wrong for token "sigil-test"/],
    ['label', good.replace(`tokenLabel: ${h.label}`, 'tokenLabel: nope'), /no initialised pkcs11 token labelled "nope"/],
    ['module', good.replace(SOFTHSM_MODULE, '/nonexistent/libp11.so'), /pkcs11 module \/nonexistent\/libp11\.so cannot be loaded/],
  ];
  for (const [what, yaml, message] of cases) {
    writeFileSync(hm.config, yaml);
    const r = await sigil(['server', 'run', '--config', hm.config], { env, timeoutMs: 60_000 });
    t.is(r.code, 1, `${what}: ${r.stderr}`);
    t.regex(r.stderr, message, what);
    t.false(r.stderr.includes(h.pin) || r.stdout.includes(h.pin), what);
    t.false(r.stderr.includes('wrong-pin-000') || r.stdout.includes('wrong-pin-000'), what);
  }
});

test.serial('the token removed mid-run (sign mode): the agent keeps serving its SVID, signing fails Unavailable, /ready says keyManager false; back, it signs and /ready is 200 again', async (t) => {
  const h = await softHsm();
  const healthPort = await freePort();
  const hm = await home(h, 'sign', `health:\n  address: 127.0.0.1:${healthPort}\n`);
  const running: Daemon[] = [];
  let moved = '';
  t.teardown(async () => {
    for (const d of running) if (d.running) d.child.kill('SIGKILL');
    await Promise.all(running.map((d) => d.closed));
    rmSync(hm.dir, { recursive: true, force: true });
    await h.remove();
  });
  const ready = async (): Promise<{ status: number; body: { checks?: Record<string, boolean> } }> => {
    const res = await fetch(`http://127.0.0.1:${healthPort}/ready`);
    return { status: res.status, body: (await res.json()) as { checks?: Record<string, boolean> } };
  };
  const server = await hm.start();
  running.push(server);
  t.deepEqual(await ready(), { status: 200, body: { ready: true, checks: { serving: true, datastore: true, keyManager: true } } } as never);
  const agent = await agentHome(hm);
  t.teardown(() => rmSync(agent.dir, { recursive: true, force: true }));
  t.is((await hm.admin(['entry', 'create', '--parent-id', agent.agentId, '--spiffe-id', WORKLOAD_ID, '--selector', `unix:uid:${UID}`])).code, 0);
  const a = agent.start();
  running.push(a);
  await a.until('the agent to serve', () => a.stderr.includes('serving the Workload API'), 60_000);
  await fetchInto(agent.socket, join(agent.dir, 'before'));

  // the token goes away: its store leaves SoftHSM's token directory
  const [store] = readdirSync(h.tokenDir);
  moved = join(h.dir, 'token-away');
  renameSync(join(h.tokenDir, store as string), moved);
  const mint = await hm.admin(['x509', 'mint', '--spiffe-id', 'spiffe://example.org/p11/minted', '--write', join(hm.dir, 'minted')]);
  t.is(mint.code, 1, mint.stderr);
  t.regex(mint.stderr, /unavailable/i);
  const down = await ready();
  t.is(down.status, 503);
  t.deepEqual(down.body.checks, { serving: true, datastore: true, keyManager: false });
  // cached state keeps being served: the agent's SVID and the bundle
  await fetchInto(agent.socket, join(agent.dir, 'during'));
  t.is(readFileSync(join(agent.dir, 'during', 'svid.0.pem'), 'utf8'), readFileSync(join(agent.dir, 'before', 'svid.0.pem'), 'utf8'));
  t.is((await hm.admin(['bundle', 'show'])).code, 0);
  await server.until('the outage logged', () => server.stdout.includes('pkcs11 token unavailable'), 30_000);

  // back: /ready recovers on its own, and signing works again
  renameSync(moved, join(h.tokenDir, store as string));
  const deadline = Date.now() + 30_000;
  let up = await ready();
  while (up.status !== 200 && Date.now() < deadline) {
    await new Promise((res) => setTimeout(res, 200));
    up = await ready();
  }
  t.deepEqual(up.body.checks, { serving: true, datastore: true, keyManager: true });
  const again = await hm.admin(['x509', 'mint', '--spiffe-id', 'spiffe://example.org/p11/minted', '--write', join(hm.dir, 'minted')]);
  t.is(again.code, 0, again.stderr);
  t.is(await terminate(a), 0);
  t.is(await terminate(server), 0);
});
