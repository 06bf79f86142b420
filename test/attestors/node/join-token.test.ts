import test from 'ava';
import { attestationReasonOf as reasonOf } from '../../server/support/rejection.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JoinTokenAgentAttestor } from '../../../attestors/node/join_token/agent.js';
import { JoinTokenServerAttestor } from '../../../attestors/node/join_token/server.js';
import { generateJoinToken, JOIN_TOKEN_AGENT_PATH_PREFIX } from '../../../attestors/node/join_token/token.js';
import { ManualClock } from '../../../src/common/clock.js';
import { SigilError } from '../../../src/common/errors.js';
import { Secret } from '../../../src/common/secret.js';
import { openSqliteDatastore } from '../../../src/datastore/sqlite/sqlite-datastore.js';
import { TrustDomain } from '../../../src/spiffe/spiffe-id.js';

const td = TrustDomain.parse('example.org');

async function setup(t: { teardown(fn: () => Promise<void>): void }) {
  const dir = await mkdtemp(join(tmpdir(), 'sigil-jt-'));
  const clock = new ManualClock();
  const ds = await openSqliteDatastore({ path: join(dir, 'db.sqlite3'), clock });
  t.teardown(async () => {
    await ds.close();
    await rm(dir, { recursive: true, force: true });
  });
  const server = new JoinTokenServerAttestor({ store: ds, clock });
  const issue = async (ttlMs = 600_000) => {
    const g = generateJoinToken(clock.nowMs(), ttlMs);
    await ds.createJoinToken({ tokenId: g.tokenId, tokenHash: g.tokenHash, expiresAt: g.expiresAt });
    return g;
  };
  return { clock, ds, server, issue };
}


test('a valid token names the agent by token ID (never the token) and hands itself back to spend', async (t) => {
  const { server, issue, ds } = await setup(t);
  const g = await issue();
  const agent = new JoinTokenAgentAttestor(g.token);
  const step = await server.begin(td).next(await agent.payload());
  if (step.kind !== 'done') return t.fail('expected done');
  t.is(step.result.agentId.toString(), `spiffe://example.org${JOIN_TOKEN_AGENT_PATH_PREFIX}${g.tokenId}`);
  t.false(step.result.agentId.toString().includes(g.token.reveal()));
  t.false(step.result.canReattest);
  t.deepEqual(step.result.selectors, [{ type: 'join_token', value: `id:${g.tokenId}` }]);
  // verifying spends nothing: the server spends it when it records the agent
  t.deepEqual(step.result.spends, { joinTokenHash: g.tokenHash, spentBy: '' });
  const key = 'c'.repeat(64);
  await ds.admitAttestedNode({
    node: { spiffeId: step.result.agentId.toString(), attestationType: 'join_token', certSerial: '01', certNotAfter: 1, newCertSerial: '', newCertNotAfter: 0, selectors: [...step.result.selectors], banned: false, canReattest: false },
    joinToken: { tokenHash: g.tokenHash, agentKey: key },
  });
  const again = await server.begin(td).next(await agent.payload());
  if (again.kind !== 'done') return t.fail('expected done');
  t.deepEqual(again.result.spends, { joinTokenHash: g.tokenHash, spentBy: key });
  await ds.deleteAttestedNode(step.result.agentId.toString());
  await ds.pruneJoinTokens(Number.MAX_SAFE_INTEGER);
  t.is(await reasonOf(server.begin(td).next(await agent.payload())), 'join-token-unknown');
});

test('expired, unknown and malformed tokens are refused with their reasons', async (t) => {
  const { server, issue, clock } = await setup(t);
  const g = await issue(1000);
  clock.advance(1000);
  t.is(await reasonOf(server.begin(td).next(Buffer.from(g.token.reveal()))), 'join-token-expired');
  t.is(await reasonOf(server.begin(td).next(Buffer.from('nope'))), 'join-token-unknown');
  t.is(await reasonOf(server.begin(td).next(Buffer.alloc(0))), 'join-token-malformed');
  await t.throwsAsync(new JoinTokenAgentAttestor(new Secret('x')).respond(), { instanceOf: SigilError });
});
