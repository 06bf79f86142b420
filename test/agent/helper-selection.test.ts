/**
 * Against a real agent: the Workload API lists a workload's X.509-SVIDs by SPIFFE ID then
 * entry ID, and `sigil helper` writes the SVID its config selects by `spiffeId` / `hint`;
 * with no match it logs `no-matching-svid` once, writes nothing, and writes as soon as a
 * matching entry arrives.
 */
import test from 'ava';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveHelperConfig } from '../../src/agent/helper/helper-config.js';
import { runHelper } from '../../src/agent/helper/svid-helper.js';
import { workloadApiHelperSource } from '../../src/cli/commands/helper.js';
import { WorkloadApiClient } from '../../src/client/workload-api-client.js';
import { isSigilError } from '../../src/common/errors.js';
import { memoryLogger } from '../../src/common/logger.js';
import { startTestServer } from '../helpers/server.js';
import { eventually, startTestAgent } from './support/agent-harness.js';

const UID = `unix:uid:${process.getuid?.() ?? 0}`;
const GID = `unix:gid:${process.getgid?.() ?? 0}`;

function writtenId(certDir: string): string {
  return new X509Certificate(readFileSync(join(certDir, 'svid.pem'))).subjectAltName ?? '';
}

test('helper config: spiffeId must be a SPIFFE ID; spiffeId and hint are kept', (t) => {
  const c = resolveHelperConfig({ certDir: '/c', spiffeId: 'spiffe://example.org/w/a', hint: 'internal' });
  t.is(c.spiffeId, 'spiffe://example.org/w/a');
  t.is(c.hint, 'internal');
  const err = t.throws(() => resolveHelperConfig({ certDir: '/c', spiffeId: 'example.org/w/a' }));
  t.true(isSigilError(err, 'ERR_CONFIG_INVALID'));
  t.true(err?.message.includes('spiffeId'));
});

test.serial('svids come by SPIFFE ID then entry ID; the helper writes the selected one and waits for a missing one', async (t) => {
  const server = await startTestServer();
  t.teardown(() => server.destroy());
  const a = await startTestAgent(t, server);
  const ids = new Map<string, string>();
  for (const [name, hint] of [['w/zeta', ''], ['w/alpha', 'internal'], ['w/mid', ''], ['w/alpha', 'external']] as const) {
    // The second alpha needs other selectors: the server refuses an exact duplicate.
    const selectors = hint === 'external' ? [UID, GID] : [UID];
    const id = await server.createEntry({ spiffeId: `spiffe://example.org/${name}`, parentId: a.agentId, selectors, hint });
    ids.set(`${name}/${hint}`, id);
  }
  const client = new WorkloadApiClient({ address: a.agent.address });
  t.teardown(() => client.close());
  const ctx = await eventually(async () => {
    const c = await client.fetchX509Context();
    return c.svids.length === 4 ? c : undefined;
  }, 15_000, 'four svids');
  const alphaFirst = (ids.get('w/alpha/internal') as string) < (ids.get('w/alpha/external') as string) ? 'internal' : 'external';
  t.deepEqual(
    ctx.svids.map((s) => `${s.id.toString()}|${s.hint}`),
    [`spiffe://example.org/w/alpha|${alphaFirst}`, `spiffe://example.org/w/alpha|${alphaFirst === 'internal' ? 'external' : 'internal'}`, 'spiffe://example.org/w/mid|', 'spiffe://example.org/w/zeta|'],
  );

  const dir = mkdtempSync(join(tmpdir(), 'sigil-helper-sel-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const source = workloadApiHelperSource(client);
  const run = async (sel: Record<string, string>, sub: string): Promise<{ certDir: string; lines: string[]; done: Promise<void> }> => {
    const config = resolveHelperConfig({ certDir: join(dir, sub), ...sel });
    const { logger, lines } = memoryLogger('debug');
    const stop = new AbortController();
    t.teardown(() => stop.abort());
    return { certDir: config.certDir, lines, done: runHelper({ config, source, logger, once: true }, stop.signal) };
  };

  const byId = await run({ spiffeId: 'spiffe://example.org/w/mid' }, 'by-id');
  await byId.done;
  t.is(writtenId(byId.certDir), 'URI:spiffe://example.org/w/mid');

  const byHint = await run({ hint: 'external' }, 'by-hint');
  await byHint.done;
  t.is(writtenId(byHint.certDir), 'URI:spiffe://example.org/w/alpha');
  const byBoth = await run({ spiffeId: 'spiffe://example.org/w/alpha', hint: 'internal' }, 'by-both');
  await byBoth.done;
  const internal = ctx.svids.find((s) => s.hint === 'internal');
  const leaf = (pem: string | Buffer): string => new X509Certificate(pem).fingerprint256;
  t.is(leaf(readFileSync(join(byBoth.certDir, 'svid.pem'))), leaf(internal?.toPem().certificates ?? ''));
  t.not(leaf(readFileSync(join(byHint.certDir, 'svid.pem'))), leaf(internal?.toPem().certificates ?? ''));

  const missing = await run({ spiffeId: 'spiffe://example.org/w/later' }, 'missing');
  const miss = await eventually(() => missing.lines.find((l) => l.includes('"reason":"no-matching-svid"')), 10_000, 'the miss logged');
  t.true(miss.includes('"level":50'), miss);
  t.false(existsSync(join(missing.certDir, 'svid.pem')));
  await server.createEntry({ spiffeId: 'spiffe://example.org/w/later', parentId: a.agentId, selectors: [UID] });
  await missing.done;
  t.is(writtenId(missing.certDir), 'URI:spiffe://example.org/w/later');
  t.is(missing.lines.filter((l) => l.includes('no-matching-svid')).length, 1, 'one error per distinct miss, not per retry');
});

function jwtSubject(file: string): string {
  const [, payload = ''] = readFileSync(file, 'utf8').trim().split('.');
  return (JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { sub: string }).sub;
}

test('helper config: a jwtSvids item follows its own spiffeId/hint, else the top-level selection', (t) => {
  const c = resolveHelperConfig({
    certDir: '/c',
    hint: 'greeter-server',
    jwtSvids: [
      { audience: ['a'], fileName: 'a.jwt' },
      { audience: ['b'], spiffeId: 'spiffe://example.org/greeter-client', fileName: 'b.jwt' },
      { audience: ['c'], hint: 'other', fileName: 'c.jwt' },
    ],
  });
  t.deepEqual(
    c.jwtSvids.map((j) => [j.fileName, j.spiffeId, j.hint]),
    [
      ['a.jwt', undefined, 'greeter-server'],
      ['b.jwt', 'spiffe://example.org/greeter-client', undefined],
      ['c.jwt', undefined, 'other'],
    ],
  );
  const none = resolveHelperConfig({ certDir: '/c', jwtSvids: [{ audience: ['a'], fileName: 'a.jwt' }] });
  t.deepEqual([none.jwtSvids[0]?.spiffeId, none.jwtSvids[0]?.hint], [undefined, undefined], 'no selection anywhere: the default identity');
  const bad = t.throws(() => resolveHelperConfig({ certDir: '/c', jwtSvids: [{ audience: ['a'], spiffeId: 'spiffe://Example.org/x', fileName: 'a.jwt' }] }));
  t.true(bad?.message.includes('jwtSvids.0.spiffeId'), bad?.message);
  t.true(bad?.message.includes('trust-domain-uppercase'), bad?.message);
});

test.serial('with hint greeter-server, the JWT-SVID files are for the identity each item selects, not svids[0]', async (t) => {
  const server = await startTestServer();
  t.teardown(() => server.destroy());
  const a = await startTestAgent(t, server);
  // greeter-client sorts first: it is the workload's default identity (svids[0])
  await server.createEntry({ spiffeId: 'spiffe://example.org/greeter-client', parentId: a.agentId, selectors: [UID], hint: 'greeter-client' });
  await server.createEntry({ spiffeId: 'spiffe://example.org/greeter-server', parentId: a.agentId, selectors: [UID], hint: 'greeter-server' });
  const client = new WorkloadApiClient({ address: a.agent.address });
  t.teardown(() => client.close());
  const ctx = await eventually(async () => {
    const c = await client.fetchX509Context();
    return c.svids.length === 2 ? c : undefined;
  }, 15_000, 'two svids');
  t.is(ctx.svids[0]?.id.toString(), 'spiffe://example.org/greeter-client');

  const dir = mkdtempSync(join(tmpdir(), 'sigil-helper-jwt-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const config = resolveHelperConfig({
    certDir: dir,
    hint: 'greeter-server',
    jwtSvids: [
      { audience: ['follows-top-level'], fileName: 'top.jwt' },
      { audience: ['by-id'], spiffeId: 'spiffe://example.org/greeter-client', fileName: 'by-id.jwt' },
      { audience: ['by-hint'], hint: 'greeter-client', fileName: 'by-hint.jwt' },
    ],
  });
  const { logger } = memoryLogger('debug');
  await runHelper({ config, source: workloadApiHelperSource(client), logger, once: true }, new AbortController().signal);
  t.is(writtenId(dir), 'URI:spiffe://example.org/greeter-server');
  t.is(jwtSubject(join(dir, 'top.jwt')), 'spiffe://example.org/greeter-server', 'an item without a selection follows the X.509 files');
  t.is(jwtSubject(join(dir, 'by-id.jwt')), 'spiffe://example.org/greeter-client');
  t.is(jwtSubject(join(dir, 'by-hint.jwt')), 'spiffe://example.org/greeter-client');
});
