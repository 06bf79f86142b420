/**
 * BatchNewX509SVID for a caller that has gone (issue 20, item 1): nothing is signed after the
 * call is cancelled (queued signatures are dropped before they reach a signing thread), and
 * what a thread had already signed is audited as not delivered, never as issued. Real server
 * with its signing threads, driven by the agent's own client over mTLS.
 */
import test from 'ava';
import { JoinTokenAgentAttestor } from '../../attestors/node/join_token/agent.js';
import { generateKeyAndCsr } from '../../src/agent/csr.js';
import { SigilError } from '../../src/common/errors.js';
import { AgentServerClient } from '../../src/agent/server-client.js';
import { TrustDomain } from '../../src/spiffe/spiffe-id.js';
import { startTestServer } from '../helpers/server.js';

interface AuditLine {
  readonly action: string;
  readonly result: string;
  readonly reason?: string;
}

const BATCHES = 10;

/** Calls `fn` until it is not shed as overloaded (the cancelled work is still being dropped). */
async function afterBacklog<T>(fn: () => Promise<T>): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await fn();
    } catch (err) {
      if (i >= 50 || !(err instanceof SigilError) || err.reason !== 'signing-overloaded') throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
const PER_BATCH = 500;

test('cancelled batches: queued CSRs are never signed, and nothing undelivered is audited as issued', async (t) => {
  const s = await startTestServer();
  t.teardown(() => s.destroy());
  t.true(s.server.ca.signingThreads >= 1);
  const client = new AgentServerClient({ addresses: [s.agentTarget], trustDomain: TrustDomain.parse('example.org'), roots: s.server.x509Authorities() });
  t.teardown(() => client.close());
  const agentKey = await generateKeyAndCsr();
  const attested = await client.attest(new JoinTokenAgentAttestor((await s.createJoinToken()).token), agentKey.csrDer);
  client.setIdentity({ chainDer: attested.svid.cert_chain, keyPkcs8Der: agentKey.keyPkcs8Der });
  const entryId = await s.createEntry({ spiffeId: 'spiffe://example.org/w', parentId: attested.svid.spiffe_id, selectors: ['unix:uid:1'] });
  const { csrDer } = await generateKeyAndCsr();
  const items = Array.from({ length: PER_BATCH }, () => ({ entryId, csrDer }));
  const auditFrom = s.auditLines.length;

  // Ten full batches at once; as soon as one is answered the rest are cancelled.
  const ctl = new AbortController();
  const calls = Array.from({ length: BATCHES }, () => client.batchNewX509Svid(items, ctl.signal));
  // The first answered (a batch may also be shed as overloaded on a slow machine: that is no answer).
  await Promise.any(calls).catch(async () => {
    throw new Error(`no batch was answered: ${(await Promise.allSettled(calls)).map((o) => (o.status === 'rejected' ? String(o.reason) : 'ok')).join('; ')}`);
  });
  ctl.abort();
  const outcomes = await Promise.allSettled(calls);
  const delivered = outcomes.filter((o) => o.status === 'fulfilled').length;
  t.true(delivered >= 1 && delivered < BATCHES, `${delivered} of ${BATCHES} batches answered before the cancel`);

  // The signing threads are FIFO: once a later call is answered, all earlier work has settled.
  const after = await afterBacklog(() => client.batchNewX509Svid([{ entryId, csrDer }]));
  t.truthy(after[0]?.svid);

  const issued = s.auditLines
    .slice(auditFrom)
    .flatMap((l) => l.split('\n'))
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as AuditLine)
    .filter((a) => a.action === 'x509svid.issue');
  const ok = issued.filter((a) => a.result === 'ok').length;
  const undelivered = issued.filter((a) => a.reason?.startsWith('not-delivered') === true).length;
  // What the client holds is what is audited as issued (plus the one after).
  t.is(ok, delivered * PER_BATCH + 1);
  // Work for the cancelled calls stopped: far fewer signatures than they asked for.
  t.true(undelivered < (BATCHES - delivered) * PER_BATCH, `${undelivered} signatures for cancelled calls`);
});
