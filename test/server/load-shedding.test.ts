/**
 * Load shedding end to end: a BatchNewX509SVID whose signing backlog estimate outlasts the call's
 * deadline is refused at once (ERR_UNAVAILABLE `signing-overloaded`) and nothing is signed for it.
 * A real server with one signing thread, flooded by the agent's own client with concurrent full
 * batches on a short deadline. Every call's CSRs are for an entry of its own, so the audit log says
 * which call each signature was for. Only counts are asserted: how many calls are shed depends on
 * the machine's speed, that each call ends in one of three ways and is audited so does not.
 */
import test from 'ava';
import { JoinTokenAgentAttestor } from '../../attestors/node/join_token/agent.js';
import { AgentServerClient, type X509SvidItemResult } from '../../src/agent/server-client.js';
import { SigilError } from '../../src/common/errors.js';
import { Secret } from '../../src/common/secret.js';
import { generateKeyAndCsr } from '../../src/server/server-svid.js';
import { TrustDomain } from '../../src/spiffe/spiffe-id.js';
import { attest, untilNotShed } from '../helpers/agent-client.js';
import { x509IssueRecords } from '../helpers/audit.js';
import { startTestServer, type TestServer } from '../helpers/server.js';


const CALLS = 40;
const PER_CALL = 500;
/** Warm-up batches: the pool trusts its rate only after 256 measured signatures (a thread's first reply is not measured). */
const WARM_BATCHES = 3;

type Outcome = 'ok' | 'shed' | 'deadline';

function outcomeOf(o: PromiseSettledResult<X509SvidItemResult[]>): Outcome | string {
  if (o.status === 'fulfilled') {
    const got = o.value.filter((r) => r.svid !== undefined).length;
    return got === PER_CALL && o.value.length === PER_CALL ? 'ok' : `answered with ${got} of ${PER_CALL} SVIDs`;
  }
  const err: unknown = o.reason;
  if (err instanceof SigilError && err.code === 'ERR_UNAVAILABLE' && err.reason === 'signing-overloaded') return 'shed';
  if (err instanceof SigilError && err.code === 'ERR_DEADLINE_EXCEEDED') return 'deadline';
  return `failed otherwise: ${String(err)}`;
}

/** The server's count of X.509-SVIDs signed (`sigil_server_svids_issued_total{kind="x509",result="ok"}`). */
async function issuedCount(s: TestServer, result: string): Promise<number> {
  const m = await s.server.metrics.svidsIssued.get();
  return m.values.filter((v) => v.labels['kind'] === 'x509' && v.labels['result'] === result).reduce((n, v) => n + v.value, 0);
}

const signedCount = (s: TestServer): Promise<number> => issuedCount(s, 'ok');

test('a flood of batches on a short deadline: later ones are shed unsigned, the rest succeed whole or are audited as not delivered', async (t) => {
  const s = await startTestServer({ config: { ca: { signingThreads: 1 } } });
  t.teardown(() => s.destroy());
  t.is(s.server.ca.signingThreads, 1);
  const roots = s.server.x509Authorities();
  const td = TrustDomain.parse('example.org');
  const agent = await attest(s.agentTarget, roots, td.name, new JoinTokenAgentAttestor((await s.createJoinToken()).token));
  const identity = { chainDer: agent.chain, keyPkcs8Der: new Secret(agent.keyPkcs8) };
  const entry = (name: string, uid: number): Promise<string> =>
    s.createEntry({ spiffeId: `spiffe://example.org/${name}`, parentId: agent.spiffeId, selectors: [`unix:uid:${uid}`] });
  const warmEntry = await entry('warm', 1);
  const afterEntry = await entry('after', 2);
  const floodEntries: string[] = [];
  for (let i = 0; i < CALLS; i++) floodEntries.push(await entry(`flood/${i}`, 100 + i));
  // CSRs reused from a small pool: the server verifies each one anyway
  const csrs = await Promise.all(Array.from({ length: 8 }, async () => (await generateKeyAndCsr()).csr));
  const batchFor = (entryId: string): { entryId: string; csrDer: Buffer }[] =>
    Array.from({ length: PER_CALL }, (_, i) => ({ entryId, csrDer: csrs[i % csrs.length] as Buffer }));

  // Warm the pool with the default deadline, so its rate is measured and shedding can start.
  const normal = new AgentServerClient({ addresses: [s.agentTarget], trustDomain: td, roots });
  normal.setIdentity(identity);
  t.teardown(() => normal.close());
  let batchMs = 0;
  for (let i = 0; i < WARM_BATCHES; i++) {
    const started = Date.now();
    const warm = await normal.batchNewX509Svid(batchFor(warmEntry));
    batchMs = Date.now() - started;
    t.is(warm.filter((r) => r.svid !== undefined).length, PER_CALL, 'warm-up batch signed whole');
  }
  // Room for a few batches, never for all of them: the deadline only sets how many are admitted.
  const deadlineMs = Math.max(300, 4 * batchMs);
  t.log(`one batch of ${PER_CALL} took ${batchMs} ms warm; flood deadline ${deadlineMs} ms`);

  const flood = new AgentServerClient({ addresses: [s.agentTarget], trustDomain: td, roots, unaryDeadlineMs: deadlineMs });
  flood.setIdentity(identity);
  t.teardown(() => flood.close());
  const signedBefore = await signedCount(s);
  const shedBefore = await issuedCount(s, 'shed');
  const auditFrom = s.auditLines.length;
  const outcomes = (await Promise.allSettled(floodEntries.map((e) => flood.batchNewX509Svid(batchFor(e))))).map(outcomeOf);

  // After the flood a normal call succeeds. The pool's single thread is FIFO: once this call is
  // answered, everything admitted before it has been signed or dropped, and audited.
  const after = await untilNotShed(() => normal.batchNewX509Svid([{ entryId: afterEntry, csrDer: csrs[0] as Buffer }]));
  t.truthy(after.value[0]?.svid, 'the call after the flood got its SVID');
  const signed = (await signedCount(s)) - signedBefore - 1;
  const floodIds = new Set(floodEntries);
  const audit = x509IssueRecords(s.auditLines.slice(auditFrom)).filter((a) => a.entryId !== undefined && floodIds.has(a.entryId));

  const count = (o: Outcome): number => outcomes.filter((x) => x === o).length;
  t.log(`${count('ok')} succeeded, ${count('shed')} shed, ${count('deadline')} hit their deadline; ${signed} signed; the call after was shed ${after.shed} times first`);
  t.deepEqual(
    outcomes.filter((o) => o !== 'ok' && o !== 'shed' && o !== 'deadline'),
    [],
    'every call succeeded whole, was shed, or hit its deadline',
  );
  t.true(count('shed') >= 1, 'at least one call was shed as signing-overloaded');
  // the metric counts shed CSRs apart from failed ones: every CSR of every shed call, nothing else
  t.is((await issuedCount(s, 'shed')) - shedBefore, count('shed') * PER_CALL + after.shed, 'shed CSRs in sigil_server_svids_issued_total{result="shed"}');

  let withSerial = 0;
  let received = 0;
  let lostInFlight = 0;
  for (const [i, entryId] of floodEntries.entries()) {
    const mine = audit.filter((a) => a.entryId === entryId);
    withSerial += mine.filter((a) => a.serial !== undefined).length;
    const ok = mine.filter((a) => a.result === 'ok').length;
    const outcome = outcomes[i];
    if (outcome === 'shed') {
      // refused before anything was signed or recorded for it
      t.is(mine.length, 0, `shed call ${i}: ${mine.length} audit records`);
    } else if (outcome === 'ok') {
      received += PER_CALL;
      t.is(ok, PER_CALL, `call ${i} succeeded: ${ok} audited as issued`);
      t.is(mine.length, PER_CALL, `call ${i} succeeded: ${mine.length} audit records`);
    } else if (ok === PER_CALL && mine.length === PER_CALL) {
      // the server answered as the client's deadline passed (its own is a little later)
      lostInFlight++;
    } else {
      // what was signed before the deadline is audited as not delivered; nothing as issued
      t.is(ok, 0, `call ${i} hit its deadline: ${ok} audited as issued`);
      t.deepEqual(
        mine.filter((a) => a.result !== 'error' || a.reason?.startsWith('not-delivered:') !== true || a.serial === undefined),
        [],
        `call ${i} hit its deadline: every record is a signature not delivered`,
      );
    }
  }
  if (lostInFlight > 0) t.log(`${lostInFlight} answers were sent as their client gave up`);
  // every signature of the flood is audited once with its serial, issued or not delivered; and
  // what the clients received is exactly what was audited as issued to them
  t.is(signed, withSerial, 'signatures counted by the server = audit records with a serial');
  t.is(audit.filter((a) => a.result === 'ok').length, received + lostInFlight * PER_CALL);
});
