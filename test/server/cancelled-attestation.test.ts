/**
 * A join token is not spent by an attestation its caller gave up on (issue 20, item 2). The
 * server spends the token in the transaction that records the agent, checked against the call
 * just before commit; an answer lost after the commit lets the same agent key finish again.
 *
 * The cancelled case runs on PostgreSQL so it can be held at the one point that matters, without
 * timing: a second connection locks `attested_nodes`, the server's admission blocks inside its
 * transaction (seen in pg_stat_activity), the client cancels, the lock is released, and the
 * server must roll back. The real agent (in process) then attests with the same token.
 */
import test, { type ExecutionContext } from 'ava';
import { connect, createServer, type Socket } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { JoinTokenAgentAttestor } from '../../attestors/node/join_token/agent.js';
import { generateKeyAndCsr } from '../../src/agent/csr.js';
import { AgentServerClient } from '../../src/agent/server-client.js';
import { SigilError } from '../../src/common/errors.js';
import { TrustDomain } from '../../src/spiffe/spiffe-id.js';
import { eventually, startTestAgent } from '../agent/support/agent-harness.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { POSTGRES_URL, testSchemaPrefix } from '../helpers/postgres.js';

const URL = POSTGRES_URL;
const RUN = testSchemaPrefix('sigil_catt');

/**
 * A server (on PostgreSQL in `schema` when given, else on its SQLite file), a join token, and
 * the agent's own client of the agent API (no identity yet); all closed after the test.
 */
async function serverWithToken(
  t: ExecutionContext,
  schema?: string,
): Promise<{ s: TestServer; token: Awaited<ReturnType<TestServer['createJoinToken']>>; client: AgentServerClient }> {
  const s = await startTestServer(schema === undefined ? {} : { config: { datastore: { type: 'postgres', connectionString: URL, schema, maxConnections: 4 } } });
  t.teardown(() => s.destroy());
  const token = await s.createJoinToken(600);
  const client = new AgentServerClient({ addresses: [s.agentTarget], trustDomain: TrustDomain.parse('example.org'), roots: s.server.x509Authorities() });
  t.teardown(() => client.close());
  return { s, token, client };
}

/** A connected PostgreSQL client of its own (to hold locks, or to watch from outside them), ended after the test. */
async function pgClient(t: ExecutionContext): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: URL });
  await c.connect();
  t.teardown(() => c.end());
  return c;
}

interface AuditLine {
  readonly action: string;
  readonly result: string;
  readonly reason?: string;
}

const audits = (lines: readonly string[], action: string): AuditLine[] =>
  lines
    .flatMap((l) => l.split('\n'))
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as AuditLine)
    .filter((a) => a.action === action);

test('an attestation cancelled inside its admission spends nothing; the real agent then attests with the token', async (t) => {
  const schema = `${RUN}_a`;
  const { s, token, client } = await serverWithToken(t, schema);
  const locker = await pgClient(t);
  // EXCLUSIVE lets reads through and holds every write to the table: the admission waits inside its transaction
  await locker.query(`BEGIN; LOCK TABLE ${schema}.attested_nodes IN EXCLUSIVE MODE`);
  // watched from outside the locker's transaction, which would keep one snapshot of pg_stat_activity
  const watcher = await pgClient(t);

  const key = await generateKeyAndCsr();
  const ctl = new AbortController();
  const attempt = client.attest(new JoinTokenAgentAttestor(token.token), key.csrDer, ctl.signal);
  attempt.catch(() => undefined);
  await eventually(
    async () => {
      const r = await watcher.query<{ n: string }>(
        `SELECT COUNT(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE 'INSERT INTO attested_nodes%'`,
      );
      return Number(r.rows[0]?.n) > 0 ? true : undefined;
    },
    30_000,
    'the admission to wait on the table lock',
  );
  ctl.abort(new SigilError('ERR_CANCELLED', 'the agent gave up', { reason: 'gave-up' }));
  const refused = await t.throwsAsync(attempt, { instanceOf: SigilError });
  t.is(refused?.reason, 'gave-up');
  await eventually(() => (s.logLines.some((l) => l.includes('attestation caller gone')) ? true : undefined), 30_000, 'the server to see the cancel');
  await locker.query('COMMIT');
  await eventually(() => (audits(s.auditLines, 'agent.attest').length > 0 ? true : undefined), 30_000, 'the attestation to be audited');

  // rolled back: the token is unspent and no agent is recorded
  t.deepEqual(
    audits(s.auditLines, 'agent.attest').map((a) => [a.result, a.reason]),
    [['denied', 'caller-cancelled']],
  );
  const tokens = await locker.query<{ spent_by: string }>(`SELECT spent_by FROM ${schema}.join_tokens`);
  t.deepEqual(tokens.rows, [{ spent_by: '' }]);
  const nodes = await locker.query<{ n: string }>(`SELECT COUNT(*) AS n FROM ${schema}.attested_nodes`);
  t.is(Number(nodes.rows[0]?.n), 0);

  // the real agent, with a key of its own, attests with the very same token
  const tokenFile = join(s.dir, 'join-token');
  writeFileSync(tokenFile, `${token.token.reveal()}\n`, { mode: 0o600 });
  const agent = await startTestAgent(t, s, { reuse: { agentId: token.agentId, tokenFile, secrets: [token.token.reveal()] } });
  t.is(agent.agent.identity.current?.spiffeId, token.agentId);
  t.deepEqual(
    audits(s.auditLines, 'agent.attest').map((a) => a.result),
    ['denied', 'ok'],
  );
  const spent = await locker.query<{ spent_by: string }>(`SELECT spent_by FROM ${schema}.join_tokens`);
  t.regex(spent.rows[0]?.spent_by ?? '', /^[0-9a-f]{64}$/);
});

test('an attestation admitted after its caller left is audited as not delivered, and the same key finishes it', async (t) => {
  const schema = `${RUN}_b`;
  const { s, token, client } = await serverWithToken(t, schema);
  const locker = await pgClient(t);
  const watcher = await pgClient(t);
  // the bundle is read after the admission commits: holding it holds the answer
  await locker.query(`BEGIN; LOCK TABLE ${schema}.bundles IN ACCESS EXCLUSIVE MODE`);
  const key = await generateKeyAndCsr();
  const ctl = new AbortController();
  const attempt = client.attest(new JoinTokenAgentAttestor(token.token), key.csrDer, ctl.signal);
  attempt.catch(() => undefined);
  // admitted (the token is spent, committed), and its answer held behind the bundle lock
  // (the lock was taken first, so the answer cannot have passed it)
  await eventually(
    async () => {
      const spent = await watcher.query<{ spent_by: string }>(`SELECT spent_by FROM ${schema}.join_tokens`);
      return spent.rows[0]?.spent_by === '' ? undefined : true;
    },
    30_000,
    'the admission to commit',
  );
  ctl.abort(new SigilError('ERR_CANCELLED', 'the agent gave up', { reason: 'gave-up' }));
  await t.throwsAsync(attempt, { instanceOf: SigilError });
  await eventually(() => (s.logLines.some((l) => l.includes('attestation caller gone')) ? true : undefined), 30_000, 'the server to see the cancel');
  await locker.query('COMMIT');
  await eventually(() => (audits(s.auditLines, 'agent.attest').length > 1 ? true : undefined), 30_000, 'the attestation to be audited');
  // the admission committed with its record; its answer was not delivered
  t.deepEqual(
    audits(s.auditLines, 'agent.attest').map((a) => [a.result, a.reason]),
    [
      ['ok', undefined],
      ['error', 'not-delivered:caller-cancelled'],
    ],
  );
  // committed: spent, bound to that key; the agent's retry with its key finishes, another key cannot
  const spent = await locker.query<{ spent_by: string }>(`SELECT spent_by FROM ${schema}.join_tokens`);
  t.regex(spent.rows[0]?.spent_by ?? '', /^[0-9a-f]{64}$/);
  const other = await generateKeyAndCsr();
  const stolen = await t.throwsAsync(client.attest(new JoinTokenAgentAttestor(token.token), other.csrDer), { instanceOf: SigilError });
  t.is(stolen?.reason, 'join-token-unknown');
  const finished = await client.attest(new JoinTokenAgentAttestor(token.token), key.csrDer);
  t.is(finished.svid.spiffe_id, token.agentId);
});

test('the real agent whose attestation answer was lost retries with the same key and is admitted', async (t) => {
  const schema = `${RUN}_c`;
  const { s, token } = await serverWithToken(t, schema);
  // a plain TCP relay between the agent and the server, so the test can cut the agent's connection
  const pairs = new Set<Socket>();
  const relay = createServer((down) => {
    const up = connect(s.server.agentAddress.port, '127.0.0.1');
    for (const sock of [down, up]) {
      pairs.add(sock);
      sock.on('error', () => undefined);
      sock.on('close', () => pairs.delete(sock));
    }
    down.pipe(up).pipe(down);
  });
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', () => resolve()));
  t.teardown(() => {
    relay.close();
    for (const sock of pairs) sock.destroy();
  });
  const relayPort = (relay.address() as { port: number }).port;
  const locker = await pgClient(t);
  const watcher = await pgClient(t);
  await locker.query(`BEGIN; LOCK TABLE ${schema}.bundles IN ACCESS EXCLUSIVE MODE`);

  const tokenFile = join(s.dir, 'join-token');
  writeFileSync(tokenFile, `${token.token.reveal()}\n`, { mode: 0o600 });
  const starting = startTestAgent(t, s, {
    reuse: { agentId: token.agentId, tokenFile, secrets: [token.token.reveal()] },
    config: { serverAddress: `127.0.0.1:${relayPort}` },
  });
  starting.catch(() => undefined);
  // admitted (the token is spent, committed), and its answer held behind the bundle lock
  // (the lock was taken first, so the answer cannot have passed it)
  await eventually(
    async () => {
      const spent = await watcher.query<{ spent_by: string }>(`SELECT spent_by FROM ${schema}.join_tokens`);
      return spent.rows[0]?.spent_by === '' ? undefined : true;
    },
    30_000,
    'the admission to commit',
  );
  for (const sock of [...pairs]) sock.destroy();
  await eventually(() => (s.logLines.some((l) => l.includes('attestation caller gone')) ? true : undefined), 30_000, 'the server to see the connection go');
  await locker.query('COMMIT');
  const agent = await starting;
  t.is(agent.agent.identity.current?.spiffeId, token.agentId);
  t.true(agent.lines.some((l) => l.includes('server unreachable for node attestation; retrying')), 'the agent saw its first attempt fail');
  t.deepEqual(
    audits(s.auditLines, 'agent.attest').map((a) => [a.result, a.reason ?? '']),
    // the first admission committed (its record commits with the node), its answer was not
    // delivered (said on the direct path), then the retry with the same key was admitted
    [
      ['ok', ''],
      ['error', 'not-delivered:caller-cancelled'],
      ['ok', ''],
    ],
  );
});

test('an attestation whose answer was lost after the commit: only the same key finishes it, and not once evicted', async (t) => {
  const { s, token, client } = await serverWithToken(t);
  const key = await generateKeyAndCsr();
  const attestor = new JoinTokenAgentAttestor(token.token);
  // the first answer is the one "lost": the server committed it, the agent never saw it
  const first = await client.attest(attestor, key.csrDer);
  const again = await client.attest(attestor, key.csrDer);
  t.is(again.svid.spiffe_id, token.agentId);
  t.not(again.svid.serial, first.svid.serial);

  const other = await generateKeyAndCsr();
  const stolen = await t.throwsAsync(client.attest(attestor, other.csrDer), { instanceOf: SigilError });
  t.is(stolen?.reason, 'join-token-unknown');

  // the finished attestation is the agent's identity: its SVID works, the lost one's does not
  client.setIdentity({ chainDer: again.svid.cert_chain, keyPkcs8Der: key.keyPkcs8Der });
  await client.getBundle();

  await s.admin.call('Agents', 'EvictAgent', { spiffe_id: token.agentId });
  const evicted = await t.throwsAsync(client.attest(attestor, key.csrDer), { instanceOf: SigilError });
  t.is(evicted?.reason, 'join-token-unknown');
  t.deepEqual(
    audits(s.auditLines, 'agent.attest').map((a) => [a.result, a.reason ?? '']),
    [
      ['ok', ''],
      ['ok', ''],
      ['denied', 'join-token-unknown'],
      ['denied', 'join-token-unknown'],
    ],
  );
});
