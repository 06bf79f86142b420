/**
 * `sigil server run` and `sigil agent run` as a supervisor runs them (issue 11): real children,
 * real signals, the real SQLite file and sockets. An agent that starts before its server stays
 * up retrying and attests once the server is there; SIGTERM ends each daemon with 0 and leaves
 * no socket, no SQLite side file and no temporary file; after kill -9 each resumes from its
 * stored state (the agent with the same SPIFFE ID and no new attestation); an agent whose join
 * token is spent exits 1 (so Restart=on-failure retries it); SIGTERM while the agent still waits
 * for its server is a requested stop, 0, and each of its retries meanwhile is one log line without a
 * stack trace.
 *
 * SIGIL_TEST_BIN runs these against another build (test/process/support/under-test.ts).
 */
import test from 'ava';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Daemon } from '../agent/support/processes.js';
import { agentHome, filesIn, serverHome, sigil, stillWaiting, UID, type ServerHome } from './support/under-test.js';

const WORKLOAD_ID = 'spiffe://example.org/proc/workload';
/** What the agent logs for each failed try to reach its server. */
const AGENT_RETRY = /server unreachable for node attestation; retrying/;

/** The SQLite side files only exist while a connection is open: a closed datastore leaves none. */
function sqliteSideFiles(home: ServerHome): string[] {
  return filesIn(home.dataDir).filter((f) => f.endsWith('-wal') || f.endsWith('-shm') || f.endsWith('-journal'));
}

/** Ends `d` with SIGTERM; resolves to how it ended. */
async function terminate(d: Daemon): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  d.child.kill('SIGTERM');
  const timer = setTimeout(() => d.child.kill('SIGKILL'), 30_000);
  const ending = await d.closed;
  clearTimeout(timer);
  return ending;
}

/** Audit lines of the server's file for successful node attestations of `agentId`. */
function attestations(home: ServerHome, agentId: string): number {
  return readFileSync(join(home.dataDir, 'audit.log'), 'utf8')
    .split('\n')
    .filter((l) => l.includes('"action":"agent.attest"') && l.includes('"result":"ok"') && l.includes(agentId)).length;
}

/** Fetches the workload's X.509-SVID through the agent's socket with `sigil api fetch x509`, retrying until the entry has reached the agent. */
async function fetchedId(socket: string): Promise<string> {
  const deadline = Date.now() + 60_000;
  let last = '';
  while (Date.now() < deadline) {
    const r = await sigil(['api', 'fetch', 'x509', '--socket', socket, '--output', 'json', '--timeout', '5s']);
    if (r.code === 0) return (JSON.parse(r.stdout) as { svids: { spiffeId: string }[] }).svids[0]?.spiffeId ?? '';
    last = `${String(r.code)} ${r.stderr}`;
    await new Promise((res) => setTimeout(res, 250));
  }
  throw new Error(`sigil api fetch x509 never succeeded: ${last}`);
}

test.serial('agent before server: stays up retrying, attests once the server appears; SIGTERM cleans up; kill -9 resumes with the stored identity', async (t) => {
  const home = await serverHome();
  const running: Daemon[] = [];
  t.teardown(async () => {
    for (const d of running) if (d.running) d.child.kill('SIGKILL');
    await Promise.all(running.map((d) => d.closed));
    rmSync(home.dir, { recursive: true, force: true });
  });

  // The operator's setup: token, bundle and an entry, then the server goes down.
  let server = await home.start();
  running.push(server);
  const agent = await agentHome(home);
  t.teardown(() => rmSync(agent.dir, { recursive: true, force: true }));
  const entry = await home.admin(['entry', 'create', '--parent-id', agent.agentId, '--spiffe-id', WORKLOAD_ID, '--selector', `unix:uid:${UID}`]);
  t.is(entry.code, 0, entry.stderr);
  t.deepEqual(await terminate(server), { code: 0, signal: null }, server.output.slice(-2000));
  t.false(existsSync(home.adminSocket), 'the admin socket is removed at stop');
  t.deepEqual(sqliteSideFiles(home), [], 'the datastore was closed');

  // The node boots before its server: the agent waits, as long as it takes.
  let a = agent.start();
  running.push(a);
  await stillWaiting(a, AGENT_RETRY, 3, 2000);
  t.false(existsSync(agent.socket), 'no Workload API before the agent has an identity');

  server = await home.start();
  running.push(server);
  await a.until('the agent to serve', () => a.stderr.includes('serving the Workload API'), 60_000);
  t.true(a.stderr.includes(agent.agentId), a.stderr);
  t.is(await fetchedId(agent.socket), WORKLOAD_ID);
  t.is(attestations(home, agent.agentId), 1);

  // Crash: the agent comes back with its stored SVID (its join token is spent: a new
  // attestation could not succeed) and serves the same workload again.
  a.child.kill('SIGKILL');
  t.deepEqual(await a.closed, { code: null, signal: 'SIGKILL' });
  a = agent.start();
  running.push(a);
  await a.until('the restarted agent to serve', () => a.stderr.includes('serving the Workload API'), 60_000);
  t.true(a.stderr.includes(`sigil agent: ${agent.agentId} serving`), a.stderr);
  // Log lines (stdout) may reach the pipe after the stderr line: wait for the one that says how it started.
  await a.until('the log line of the stored SVID', () => a.stdout.includes('agent SVID loaded from data dir') || a.stdout.includes('"msg":"agent attested"'), 30_000);
  t.true(a.stdout.includes('agent SVID loaded from data dir'), `resumed from its data dir; stdout: ${a.stdout.slice(-1500)}`);
  t.false(a.stdout.includes('"msg":"agent attested"'), 'no new attestation');
  t.is(await fetchedId(agent.socket), WORKLOAD_ID);
  t.is(attestations(home, agent.agentId), 1);

  // The server crashes too and comes back on the same data: same trust domain, same agent.
  const bundleBefore = (await home.admin(['bundle', 'show'])).stdout;
  server.child.kill('SIGKILL');
  await server.closed;
  server = await home.start();
  running.push(server);
  t.is((await home.admin(['bundle', 'show'])).stdout, bundleBefore, 'the restarted server has the same CA');
  const listed = await home.admin(['agent', 'show', agent.agentId, '--output', 'json']);
  t.is(listed.code, 0, listed.stderr);

  // A requested stop: exit 0, no socket, nothing half-written in the data dir.
  t.deepEqual(await terminate(a), { code: 0, signal: null }, a.output.slice(-2000));
  t.false(existsSync(agent.socket), 'the Workload API socket is removed at stop');
  t.deepEqual(filesIn(agent.dataDir), ['agent-key.pem', 'agent-state.json', 'agent-svid.pem', 'bundle.json', 'bundle.pem']);
  t.false(a.stderr.includes('still open'), a.stderr);
  t.deepEqual(await terminate(server), { code: 0, signal: null }, server.output.slice(-2000));
  t.false(existsSync(home.adminSocket));
  t.deepEqual(sqliteSideFiles(home), []);
  t.false(filesIn(home.dataDir).some((f) => f.endsWith('.tmp')), filesIn(home.dataDir).join(' '));
  t.false(server.stderr.includes('still open'), server.stderr);
});

test.serial('an agent whose join token is spent and that has no stored identity exits 1, saying why', async (t) => {
  const home = await serverHome();
  const server = await home.start();
  t.teardown(async () => {
    await server.stop('SIGKILL');
    rmSync(home.dir, { recursive: true, force: true });
  });
  const agent = await agentHome(home);
  t.teardown(() => rmSync(agent.dir, { recursive: true, force: true }));
  const first = agent.start();
  t.teardown(() => first.stop('SIGKILL'));
  await first.until('the agent to serve', () => first.stderr.includes('serving the Workload API'), 60_000);
  t.is(await first.stop('SIGTERM'), 0);

  // The same token on a node with an empty data dir: refused, a runtime failure.
  rmSync(agent.dataDir, { recursive: true, force: true });
  const second = agent.start();
  t.teardown(() => second.stop('SIGKILL'));
  const ending = await second.closed;
  t.deepEqual(ending, { code: 1, signal: null }, second.output.slice(-3000));
  t.regex(second.stderr, /^sigil: .*\(ERR_[A-Z_]+\)$/m);
  t.false(second.output.includes(agent.token), 'the token is not printed');
});

test.serial('SIGTERM while the agent still waits for its server is a requested stop: exit 0, no socket; each retry is one log line without a stack', async (t) => {
  const home = await serverHome();
  const server = await home.start();
  const agent = await agentHome(home);
  t.teardown(() => {
    rmSync(home.dir, { recursive: true, force: true });
    rmSync(agent.dir, { recursive: true, force: true });
  });
  t.is(await server.stop('SIGTERM'), 0);
  const a = agent.start();
  t.teardown(() => a.stop('SIGKILL'));
  await stillWaiting(a, AGENT_RETRY, 2, 1000);
  t.deepEqual(await terminate(a), { code: 0, signal: null }, a.output.slice(-3000));
  t.false(existsSync(agent.socket));
  t.regex(a.stderr, /SIGTERM received; stopping/);
  t.false(/^sigil: /m.test(a.stderr), 'a requested stop is no error');

  // What an operator reads while the server is down (the agent logs at debug here): one line per
  // attempt saying what failed and when it tries again, and no stack trace anywhere.
  const retries = a.stdout
    .split('\n')
    .filter((l) => AGENT_RETRY.test(l))
    .map((l) => JSON.parse(l) as { level: number; code?: string; grpcStatus?: string; error?: string; retryInMs?: number; err?: unknown });
  t.true(retries.length >= 2, a.stdout.slice(-3000));
  for (const r of retries) {
    t.is(r.level, 40);
    t.is(r.code, 'ERR_UNAVAILABLE');
    t.is(r.grpcStatus, 'UNAVAILABLE');
    t.is(typeof r.error, 'string');
    t.is(typeof r.retryInMs, 'number');
    t.false('err' in r, 'no serialised error (with its stack) in a retry line');
  }
  t.false(a.output.includes('    at '), `a stack trace in the output: ${a.output.slice(-3000)}`);
});
