/**
 * The agent's health endpoint: `/live` while the process runs (even while it still waits to
 * attest), `/ready` 503 naming the checks that fail until it is attested, has applied its
 * first entry sync and listens on the Workload API socket, then 200; closed with the agent.
 */
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAgent } from '../../src/agent/agent.js';
import { memoryLogger } from '../../src/common/logger.js';
import { startProbeServer } from '../../src/common/health-http.js';
import { startTestServer } from '../helpers/server.js';
import { agentConfigFor, eventually, startTestAgent, writeBootstrapBundle } from './support/agent-harness.js';

interface Probe {
  readonly status: number;
  readonly body: { live?: boolean; ready?: boolean; checks?: Record<string, boolean> };
}

async function probe(port: number, path: string): Promise<Probe> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: (await res.json()) as Probe['body'] };
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

test.serial('a running agent is live and ready; the endpoint closes with the agent', async (t) => {
  const server = await startTestServer();
  t.teardown(() => server.destroy());
  const a = await startTestAgent(t, server, { config: { health: { address: '127.0.0.1:0' } } });
  const port = a.agent.healthAddress?.port;
  if (port === undefined) return t.fail('no health address');
  t.deepEqual(await probe(port, '/live'), { status: 200, body: { live: true } });
  const ready = await eventually(async () => {
    const r = await probe(port, '/ready');
    return r.status === 200 ? r : undefined;
  }, 10_000, 'ready');
  t.deepEqual(ready.body, { ready: true, checks: { attested: true, entriesSynced: true, workloadApiListening: true } });
  t.is((await fetch(`http://127.0.0.1:${port}/metrics`)).status, 404);
  t.is((await fetch(`http://127.0.0.1:${port}/live`, { method: 'POST' })).status, 405);
  await a.stop();
  await t.throwsAsync(fetch(`http://127.0.0.1:${port}/live`));
});

test.serial('an agent that cannot reach its server is live but not ready, and says it is not attested', async (t) => {
  const server = await startTestServer();
  t.teardown(() => server.destroy());
  const dir = mkdtempSync(join(tmpdir(), 'sigil-agent-health-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeBootstrapBundle(server, join(dir, 'bootstrap.pem'));
  const tokenFile = join(dir, 'join-token');
  writeFileSync(tokenFile, 'not-a-real-token\n', { mode: 0o600 });
  const port = await freePort();
  const unreachable = await freePort();
  const config = agentConfigFor(server, dir, tokenFile, { serverAddress: `127.0.0.1:${unreachable}`, health: { address: `127.0.0.1:${port}` } });
  const { logger } = memoryLogger('debug');
  const abort = new AbortController();
  const starting = startAgent(config, { logger }, abort.signal);
  const settled = starting.then(
    (agent) => agent.stop(),
    () => undefined,
  );
  t.teardown(async () => {
    abort.abort();
    await settled;
  });
  const live = await eventually(async () => {
    try {
      return await probe(port, '/live');
    } catch {
      return undefined;
    }
  }, 5000, 'live');
  t.is(live.status, 200);
  const notReady = await probe(port, '/ready');
  t.is(notReady.status, 503);
  t.deepEqual(notReady.body, { ready: false, checks: { attested: false, entriesSynced: false, workloadApiListening: false } });
});

test('a readiness check that throws answers 503; unknown paths 404', async (t) => {
  const s = await startProbeServer({
    host: '127.0.0.1',
    port: 0,
    readiness: () => {
      throw new Error('boom');
    },
  });
  t.teardown(() => s.close());
  t.deepEqual(await probe(s.port, '/ready'), { status: 503, body: { ready: false } });
  t.is((await fetch(`http://127.0.0.1:${s.port}/nope`)).status, 404);
});
