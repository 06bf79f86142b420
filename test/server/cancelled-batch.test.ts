/**
 * BatchNewX509SVID for a caller that has gone (issue 20, item 1): nothing is signed after the
 * call is cancelled (queued signatures are dropped before they reach a signing thread), and
 * what a thread had already signed is audited as not delivered, never as issued. The server is
 * a real `sigil server run` child with its signing threads, so it has an event loop of its own
 * and sees the cancel when the network brings it, not when this process's loop lets it run; it
 * is driven by the agent's own client over mTLS, and the audit file it writes is read back.
 *
 * One round, no rerun. In-process, a loaded machine could let the server answer every batch
 * before its shared loop ran the cancel. Now the cancel has to outrun only the signing of the
 * nine batches still queued (4,500 signatures on the server's threads) against one client turn
 * and one frame on loopback; with twice as many CPU-bound processes as cores beside it, every
 * run still had the cancel land while work was queued.
 */
import test from 'ava';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { JoinTokenAgentAttestor } from '../../attestors/node/join_token/agent.js';
import { generateKeyAndCsr } from '../../src/agent/csr.js';
import { Secret } from '../../src/common/secret.js';
import { pemBlocks } from '../../src/common/x509.js';
import { AgentServerClient } from '../../src/agent/server-client.js';
import { TrustDomain } from '../../src/spiffe/spiffe-id.js';
import { serverHome } from '../process/support/under-test.js';
import { untilNotShed } from '../helpers/agent-client.js';
import { x509IssueRecords } from '../helpers/audit.js';

const BATCHES = 10;
const PER_BATCH = 500;

test('cancelled batches: queued CSRs are never signed, and nothing undelivered is audited as issued', async (t) => {
  const home = await serverHome();
  const server = await home.start();
  t.teardown(async () => {
    await server.stop();
    rmSync(home.dir, { recursive: true, force: true });
  });
  const auditPath = join(home.dataDir, 'audit.log');

  // what an operator and a new agent do: the bundle, a join token, attestation, an entry
  const bundle = await home.admin(['bundle', 'show']);
  t.is(bundle.code, 0, bundle.stderr);
  const tok = await home.admin(['token', 'generate', '--ttl', '10m', '--output', 'json']);
  t.is(tok.code, 0, tok.stderr);
  const { token } = (JSON.parse(tok.stdout) as { joinToken: { token: string } }).joinToken;
  const client = new AgentServerClient({ addresses: [`127.0.0.1:${home.port}`], trustDomain: TrustDomain.parse('example.org'), roots: pemBlocks(bundle.stdout, 'CERTIFICATE') });
  t.teardown(() => client.close());
  const agentKey = await generateKeyAndCsr();
  const attested = await client.attest(new JoinTokenAgentAttestor(new Secret(token)), agentKey.csrDer);
  client.setIdentity({ chainDer: attested.svid.cert_chain, keyPkcs8Der: agentKey.keyPkcs8Der });
  const created = await home.admin(['entry', 'create', '--spiffe-id', 'spiffe://example.org/w', '--parent-id', attested.svid.spiffe_id, '--selector', 'unix:uid:1', '--output', 'json']);
  t.is(created.code, 0, created.stderr);
  const entryId = (JSON.parse(created.stdout) as { entry: { id: string } }).entry.id;

  const { csrDer } = await generateKeyAndCsr();
  const items = Array.from({ length: PER_BATCH }, () => ({ entryId, csrDer }));
  const auditFrom = readFileSync(auditPath).length;
  const ctl = new AbortController();
  const calls = Array.from({ length: BATCHES }, () => client.batchNewX509Svid(items, ctl.signal));
  // The first answered (a batch may also be shed as overloaded on a slow machine: that is no answer).
  await Promise.any(calls).catch(async () => {
    throw new Error(`no batch was answered: ${(await Promise.allSettled(calls)).map((o) => (o.status === 'rejected' ? String(o.reason) : 'ok')).join('; ')}`);
  });
  ctl.abort();
  const outcomes = await Promise.allSettled(calls);
  const delivered = outcomes.filter((o) => o.status === 'fulfilled').length;
  // The signing threads are FIFO: once a later call is answered, all earlier work has settled,
  // and its audit lines are in the file (SVID records are written before the caller is answered).
  const after = (await untilNotShed(() => client.batchNewX509Svid([{ entryId, csrDer }]))).value;
  t.truthy(after[0]?.svid, 'the call after the cancelled ones gets its SVID');
  const issued = x509IssueRecords(readFileSync(auditPath).subarray(auditFrom).toString('utf8'));
  const ok = issued.filter((a) => a.result === 'ok').length - 1;
  const undelivered = issued.filter((a) => a.reason?.startsWith('not-delivered') === true).length;

  t.log(`${delivered} batches delivered, ${ok} SVIDs audited as issued, ${undelivered} as not delivered`);
  t.true(delivered >= 1 && delivered < BATCHES, `${delivered} of ${BATCHES} batches answered before the cancel`);
  // Audited as issued in whole batches only: a batch whose caller left mid-signing has none of its
  // SVIDs audited ok. At least every batch the client holds; more only for batches the server
  // answered whose answer the client dropped at the cancel (it cannot tell those apart).
  t.is(ok % PER_BATCH, 0, `${ok} SVIDs audited as issued: not whole batches`);
  t.true(ok >= delivered * PER_BATCH, `${ok} audited as issued for ${delivered} delivered batches`);
  // The cancel reached the server while work was queued, and that work stopped: far fewer
  // signatures than the cancelled calls asked for.
  t.true(ok < BATCHES * PER_BATCH, `the server answered all ${BATCHES} batches before it saw the cancel`);
  const answered = ok / PER_BATCH;
  t.true(undelivered < (BATCHES - answered) * PER_BATCH, `${undelivered} signatures for cancelled calls`);
  // nothing secret in what the server wrote
  const written = server.output + readFileSync(auditPath, 'utf8');
  for (const secret of ['PRIVATE KEY', 'eyJ', token]) t.false(written.includes(secret), `the server's logs and audit file hold no ${secret === token ? 'join token' : secret}`);
});
