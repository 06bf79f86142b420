import test from 'ava';
import { stat, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ManualClock } from '../../src/common/clock.js';
import { AuditLog, fileAuditSink } from '../../src/server/audit-log.js';
import { makeServerDir, startTestServer } from '../helpers/server.js';
import { attest } from '../helpers/agent-client.js';
import { JoinTokenAgentAttestor } from '../../attestors/node/join_token/agent.js';

test('health endpoints answer and metrics expose issuance, entries and CA expiry', async (t) => {
  const s = await startTestServer({ config: { health: { address: '127.0.0.1:0' } } });
  t.teardown(() => s.destroy());
  const addr = s.server.healthAddress;
  if (addr === undefined) return t.fail('health not started');
  const base = `http://127.0.0.1:${addr.port}`;
  t.is((await fetch(`${base}/live`)).status, 200);
  await s.createEntry({ spiffeId: 'spiffe://example.org/m', parentId: 'spiffe://example.org/p', selectors: ['unix:uid:1'] });
  const ready = await fetch(`${base}/ready`);
  t.is(ready.status, 200);
  t.deepEqual(await ready.json(), { ready: true, checks: { serving: true, datastore: true, keyManager: true } });
  // One agent attests: its SVID is the labelled sample the counter must show.
  const tok = await s.createJoinToken();
  await attest(s.agentTarget, s.server.x509Authorities(), 'example.org', new JoinTokenAgentAttestor(tok.token));
  const metrics = await (await fetch(`${base}/metrics`)).text();
  t.regex(metrics, /sigil_server_entries 1/);
  t.regex(metrics, /^sigil_server_svids_issued_total\{kind="agent",result="ok"\} [1-9]\d*$/m);
  t.regex(metrics, /^sigil_server_node_attestations_total\{attestor="join_token",result="ok"\} 1$/m);
  t.regex(metrics, /sigil_server_ca_expiry_timestamp_seconds \d{10}/);
  t.is((await fetch(`${base}/nope`)).status, 404);
});

test('the audit file is created 0600 and holds one JSON object per line', async (t) => {
  const dir = await makeServerDir();
  const path = join(dir, 'audit', 'audit.log');
  const log = new AuditLog(fileAuditSink(path), new ManualClock());
  log.record({ who: 'admin', action: 'entry.create', result: 'ok', entryId: 'e1', spiffeId: 'spiffe://example.org/x' });
  log.record({ who: 'spiffe://example.org/sigil/agent/x', action: 'x509svid.issue', result: 'denied', entryId: 'e2', reason: 'entry-not-authorized' });
  // a batch goes out in one write, still one object per line, in order
  log.recordAll([
    { who: 'spiffe://example.org/sigil/agent/x', action: 'x509svid.issue', result: 'ok', entryId: 'e3', serial: '1a' },
    { who: 'spiffe://example.org/sigil/agent/x', action: 'x509svid.issue', result: 'error', entryId: 'e4', reason: 'csr-signature' },
  ]);
  log.recordAll([]);
  log.close();
  t.is((await stat(path)).mode & 0o777, 0o600);
  const lines = (await readFile(path, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  t.is(lines.length, 4);
  t.is(lines[1]?.result, 'denied');
  t.deepEqual(lines.map((l) => l['entryId']), ['e1', 'e2', 'e3', 'e4']);
  t.is(typeof lines[0]?.time, 'string');
});

test('the audit file is flushed off the event loop, and closing while flushes run closes it after them', async (t) => {
  const dir = await makeServerDir();
  const path = join(dir, 'audit.log');
  const sink = fileAuditSink(path);
  sink.write('{"n":1}\n');
  const first = sink.flush?.();
  sink.writeMany?.(['{"n":2}\n', '{"n":3}\n']);
  const second = sink.flush?.();
  sink.close();
  // both complete (an fsync on a descriptor closed under it would fail with EBADF)
  await t.notThrowsAsync(Promise.all([first, second]));
  sink.write('{"n":4}\n'); // after close: dropped, not thrown
  await t.notThrowsAsync(sink.flush?.() ?? Promise.resolve());
  t.deepEqual((await readFile(path, 'utf8')).trim().split('\n'), ['{"n":1}', '{"n":2}', '{"n":3}']);
});
