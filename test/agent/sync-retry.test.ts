/**
 * The agent's entry sync after its server goes away (issue 20, item 4): the first stream
 * failure is logged and waits its backoff like every later one; only a new agent SVID reopens
 * a stream at once. Real server, real agent, real gRPC; the check is the order of the agent's
 * own log lines, not timings.
 */
import test from 'ava';
import { startTestServer } from '../helpers/server.js';
import { eventually, startTestAgent } from './support/agent-harness.js';

function message(line: string): string {
  return (JSON.parse(line) as { msg?: string }).msg ?? '';
}

test('after the server stops, every reopened entry sync stream follows a logged failure', async (t) => {
  const server = await startTestServer();
  t.teardown(() => server.destroy());
  const a = await startTestAgent(t, server, { config: { sync: { retryInitial: '200ms', retryMax: '400ms' } } });
  await eventually(() => (a.agent.sync.connected ? true : undefined), 10_000, 'the first full sync');
  const from = a.lines.length;
  await server.stop();

  const opened = (): string[] => a.lines.slice(from).map(message).filter((m) => m === 'entry sync stream opening');
  await eventually(() => (opened().length >= 3 ? true : undefined), 20_000, 'three attempts to reopen entry sync');
  await a.stop();

  // Between the stream that broke and each reopening there must be the line saying why and when.
  const said = new Set(['entry sync failed; retrying', 'entry sync stream ended; reopening']);
  let sinceLastOpen: string[] = [];
  let reopenings = 0;
  for (const m of a.lines.slice(from).map(message)) {
    if (m === 'entry sync stream opening') {
      t.true(sinceLastOpen.some((x) => said.has(x)), `a stream reopened without a logged failure and delay; lines since the last attempt: ${JSON.stringify(sinceLastOpen)}`);
      reopenings++;
      sinceLastOpen = [];
    } else sinceLastOpen.push(m);
  }
  t.true(reopenings >= 3);
});
