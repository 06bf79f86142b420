/**
 * `sigil agent run` as a real child process, and `sigil api …` as real child processes
 * talking to it: fetch x509 --write (files, modes, openssl verify), fetch jwt, validate jwt,
 * fetch bundles; `sigil api watch` prints every update until interrupted; the agent's own
 * output carries no key, token or JWT.
 */
import test from 'ava';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { opensslVerify } from '../helpers/openssl.js';
import { startTestServer } from '../helpers/server.js';
import { eventually, startTestAgent, writeBootstrapBundle } from './support/agent-harness.js';
import { Daemon, runSigil, SIGIL_BIN } from './support/processes.js';

const AS_ROOT = process.getuid?.() === 0;
const rootOnly = AS_ROOT ? test.serial : test.serial.skip;

test.serial('sigil agent run refuses a join token on the command line', async (t) => {
  const r = await runSigil(['agent', 'run', '--join-token', 'not-a-real-token']);
  t.is(r.code, 2);
  t.regex(r.stderr, /join-token-file/);
  t.false(r.stderr.includes('not-a-real-token'));
});

rootOnly('sigil agent run serves workloads; sigil api fetches, writes, validates', async (t) => {
  const server = await startTestServer();
  t.teardown(() => server.destroy());
  const dir = mkdtempSync(join(tmpdir(), 'sigil-agent-cli-'));
  chmodSync(dir, 0o755);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeBootstrapBundle(server, join(dir, 'bootstrap.pem'));
  const token = await server.createJoinToken(600);
  writeFileSync(join(dir, 'token'), token.token.reveal(), { mode: 0o600 });
  const socket = join(dir, 'agent.sock');
  writeFileSync(
    join(dir, 'agent.yaml'),
    `trustDomain: example.org\nserverAddress: ${server.agentTarget}\ntrustBundleFile: bootstrap.pem\ndataDir: data\nsocketPath: ${socket}\nnodeAttestor:\n  joinToken:\n    tokenFile: token\nlogLevel: debug\n`,
  );
  const agent = new Daemon(process.execPath, [SIGIL_BIN, 'agent', 'run', '--config', join(dir, 'agent.yaml')]);
  t.teardown(() => agent.stop());
  await eventually(() => (agent.stderr.includes('serving the Workload API') ? true : undefined), 20_000, 'the agent to start').catch((err: unknown) => {
    throw new Error(`${String(err)}: ${agent.stderr}${agent.stdout.slice(-2000)}`);
  });
  t.is(statSync(join(dir, 'data', 'agent-key.pem')).mode & 0o777, 0o600);
  t.is(statSync(join(dir, 'data')).mode & 0o777, 0o700);
  await server.createEntry({ spiffeId: 'spiffe://example.org/w/cli', parentId: token.agentId, selectors: ['unix:uid:0'] });

  const out = join(dir, 'out');
  const fetched = await eventually(async () => {
    const r = await runSigil(['api', 'fetch', 'x509', '--socket', socket, '--write', out, '--output', 'json']);
    return r.code === 0 ? r : undefined;
  }, 20_000, 'sigil api fetch x509');
  const summary = JSON.parse(fetched.stdout) as { svids: { spiffeId: string }[]; written: string[] };
  t.is(summary.svids[0]?.spiffeId, 'spiffe://example.org/w/cli');
  t.is(statSync(join(out, 'svid.0.key')).mode & 0o777, 0o600);
  const verified = await opensslVerify({ roots: [readFileSync(join(out, 'bundle.0.pem'), 'utf8')], leaf: readFileSync(join(out, 'svid.0.pem'), 'utf8') });
  t.true(verified.ok, verified.output);

  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', SPIFFE_ENDPOINT_SOCKET: `unix://${socket}` };
  const jwt = await runSigil(['api', 'fetch', 'jwt', '--audience', 'svc', '--output', 'json'], { env });
  t.is(jwt.code, 0, jwt.stderr);
  const [minted] = (JSON.parse(jwt.stdout) as { svids: { spiffeId: string; token: string }[] }).svids;
  t.is(minted?.spiffeId, 'spiffe://example.org/w/cli');
  writeFileSync(join(dir, 'jwt'), minted?.token ?? '', { mode: 0o600 });
  const valid = await runSigil(['api', 'validate', 'jwt', '--audience', 'svc', '--token-file', join(dir, 'jwt')], { env });
  t.is(valid.code, 0, valid.stderr);
  t.regex(valid.stdout, /^valid: spiffe:\/\/example\.org\/w\/cli/);
  const invalid = await runSigil(['api', 'validate', 'jwt', '--audience', 'other', '--token-file', join(dir, 'jwt')], { env });
  t.is(invalid.code, 1);
  const bundles = await runSigil(['api', 'fetch', 'bundles', '--output', 'json'], { env });
  t.is(bundles.code, 0, bundles.stderr);
  t.is((JSON.parse(bundles.stdout) as { bundles: { trustDomain: string }[] }).bundles[0]?.trustDomain, 'example.org');
  const usage = await runSigil(['api', 'fetch', 'jwt'], { env });
  t.is(usage.code, 2);

  t.is(await agent.stop('SIGTERM'), 0);
  t.false(existsSync(socket), 'the socket is removed on shutdown');
  const logs = agent.stdout + agent.stderr;
  t.true(logs.includes('"msg":"X509-SVID cached"'));
  for (const secret of ['PRIVATE KEY', 'eyJ', token.token.reveal(), minted?.token ?? 'x']) t.false(logs.includes(secret), `agent output holds ${secret.slice(0, 12)}…`);
});

test.serial('sigil api watch prints the X.509 context and every update until SIGTERM', async (t) => {
  const server = await startTestServer();
  t.teardown(() => server.destroy());
  const a = await startTestAgent(t, server);
  const selector = `unix:uid:${process.getuid?.() ?? 0}`;
  await server.createEntry({ spiffeId: 'spiffe://example.org/w/watched', parentId: a.agentId, selectors: [selector] });
  const watch = new Daemon(process.execPath, [SIGIL_BIN, 'api', 'watch', '--socket', a.agent.address, '--output', 'json']);
  t.teardown(() => watch.stop());
  type Line = { svids: { spiffeId: string }[] };
  const updates = (): Line[] => watch.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Line);
  await eventually(() => (updates().length > 0 ? true : undefined), 15_000, 'the first update').catch((err: unknown) => {
    throw new Error(`${String(err)}: ${watch.stderr}`);
  });
  t.deepEqual(updates()[0]?.svids.map((s) => s.spiffeId), ['spiffe://example.org/w/watched']);

  // A second identity for the same workload reaches the running watch.
  await server.createEntry({ spiffeId: 'spiffe://example.org/w/watched-too', parentId: a.agentId, selectors: [selector] });
  const second = await eventually(() => updates().find((u) => u.svids.length === 2), 15_000, 'the pushed update');
  t.deepEqual(second.svids.map((s) => s.spiffeId).sort(), ['spiffe://example.org/w/watched', 'spiffe://example.org/w/watched-too']);
  t.is(await watch.stop('SIGTERM'), 0);
  t.false(watch.stdout.includes('PRIVATE KEY'));
});
