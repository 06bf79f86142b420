import test from 'ava';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { X509PopAgentAttestor } from '../../attestors/node/x509pop/agent.js';
import { rejectionOf as codeOf } from './support/rejection.js';
import { toPem } from '../../src/common/x509.js';
import { Bundle } from '../../src/spiffe/bundle.js';
import { parseAndValidateJwtSvid } from '../../src/spiffe/jwt-svid.js';
import { TrustDomain } from '../../src/spiffe/spiffe-id.js';
import { verifyX509SvidChain } from '../../src/spiffe/x509-svid-verify.js';
import { generateKeyAndCsr } from '../../src/server/server-svid.js';
import { makeServerDir, startTestServer } from '../helpers/server.js';
import { agentClient, attest, itemCodes, type SyncMessage } from '../helpers/agent-client.js';
import { createCa, createLeaf, generateKeyPair } from '../helpers/pki.js';
import { opensslVerify } from '../helpers/openssl.js';


test('x509pop: success, refusals, ban; node alias authorisation; SVIDs pass src/spiffe and openssl verification', async (t) => {
  const dir = await makeServerDir();
  const nodeCa = await createCa({ name: 'CN=Node CA', id: null });
  await writeFile(join(dir, 'node-ca.pem'), nodeCa.pem);
  const s = await startTestServer({ dir, config: { nodeAttestors: { x509pop: { caBundleFile: join(dir, 'node-ca.pem') } } } });
  t.teardown(() => s.destroy());
  const roots = s.server.x509Authorities();
  const td = 'example.org';

  const node = await createLeaf({ issuer: nodeCa, subject: 'CN=node-1', uris: [], dns: ['node-1.example'] });
  const agentAttestor = new X509PopAgentAttestor({ certificates: [node.der], privateKey: node.key.privateKey });
  const id = await attest(s.agentTarget, roots, td, agentAttestor);
  t.regex(id.spiffeId, /^spiffe:\/\/example\.org\/sigil\/agent\/x509pop\/[0-9a-f]{64}$/);

  // untrusted CA
  const otherCa = await createCa({ name: 'CN=Other CA', id: null });
  const stranger = await createLeaf({ issuer: otherCa, subject: 'CN=node-2', uris: [] });
  const untrusted = await codeOf(attest(s.agentTarget, roots, td, new X509PopAgentAttestor({ certificates: [stranger.der], privateKey: stranger.key.privateKey })));
  t.is(untrusted.code, 'ERR_ATTESTATION_FAILED');
  // wrong proof: the right certificate, another key
  const wrongKey = await generateKeyPair();
  const wrong = await codeOf(attest(s.agentTarget, roots, td, new X509PopAgentAttestor({ certificates: [node.der], privateKey: wrongKey.privateKey })));
  t.is(wrong.code, 'ERR_ATTESTATION_FAILED');
  t.true(s.auditLines.some((l) => l.includes('x509pop-bad-proof')));
  t.true(s.auditLines.some((l) => l.includes('x509pop-untrusted')));

  // node alias: its selectors match this agent's node selectors
  const aliasId = 'spiffe://example.org/cluster/nodes';
  await s.createEntry({ spiffeId: aliasId, parentId: 'spiffe://example.org/sigil/server', selectors: ['x509pop:subject:cn:node-1'] });
  const workload = await s.createEntry({ spiffeId: 'spiffe://example.org/svc/api', parentId: aliasId, selectors: ['unix:uid:1000'], dnsNames: ['api.example'] });
  const notMine = await s.createEntry({ spiffeId: 'spiffe://example.org/svc/other', parentId: 'spiffe://example.org/cluster/elsewhere', selectors: ['unix:uid:1000'] });

  const client = agentClient(s.agentTarget, roots, td, id);
  t.teardown(() => client.close());
  const stream = client.syncEntries(1);
  const first = await new Promise<SyncMessage[]>((resolve, reject) => {
    const got: SyncMessage[] = [];
    stream.on('data', (m: SyncMessage) => {
      got.push(m);
      if (m.batch_complete) resolve(got);
    });
    stream.on('error', reject);
  });
  stream.cancel();
  stream.on('error', () => undefined);
  const ids = first.flatMap((m) => m.entries.map((e) => e.id));
  t.deepEqual(ids, [workload]);
  t.truthy(first[0]?.bundle);

  const { csr } = await generateKeyAndCsr();
  const res = await client.batchNewX509Svid([
    { entryId: workload, csrDer: csr },
    { entryId: notMine, csrDer: csr },
  ]);
  t.deepEqual(itemCodes(res), ['', 'ERR_PERMISSION_DENIED']);

  // the minted SVID passes src/spiffe validation and openssl verify against the published bundle
  const b = await client.getBundle();
  const bundle = Bundle.parseJwks(TrustDomain.parse(td), b.bundle?.document ?? Buffer.alloc(0));
  const chain = res[0]?.svid?.cert_chain ?? [];
  const verified = verifyX509SvidChain(chain, bundle, new Date());
  t.is(verified.id.toString(), 'spiffe://example.org/svc/api');
  const ov = await opensslVerify({
    roots: bundle.x509Authorities.map((c) => toPem(c.der, 'CERTIFICATE')),
    untrusted: chain.slice(1).map((c) => toPem(c, 'CERTIFICATE')),
    leaf: toPem(chain[0] as Buffer, 'CERTIFICATE'),
    flags: ['-x509_strict'],
  });
  t.true(ov.ok, ov.output);
  const jwt = await client.newJwtSvid(workload, ['sts']);
  const validated = await parseAndValidateJwtSvid(jwt.token, bundle, 'sts', { now: s.clock.now() });
  t.is(validated.id.toString(), 'spiffe://example.org/svc/api');
  // the agent SVID verifies too
  t.is(verifyX509SvidChain(id.chain, bundle, new Date()).id.toString(), id.spiffeId);

  // x509pop may re-attest; once banned it may not
  const again = await attest(s.agentTarget, roots, td, agentAttestor);
  t.is(again.spiffeId, id.spiffeId);
  await s.admin.call('Agents', 'BanAgent', { spiffe_id: id.spiffeId });
  const banned = await codeOf(attest(s.agentTarget, roots, td, agentAttestor));
  t.is(banned.code, 'ERR_PERMISSION_DENIED');
  t.is(banned.reason, 'agent-banned'); // the reason crosses the wire to Sigil clients (src/grpc/status.ts)
  // evicted: the SVID is no longer accepted
  await s.admin.call('Agents', 'UnbanAgent', { spiffe_id: id.spiffeId });
  const third = await attest(s.agentTarget, roots, td, agentAttestor);
  const c3 = agentClient(s.agentTarget, roots, td, third);
  t.teardown(() => c3.close());
  await c3.getBundle();
  await s.admin.call('Agents', 'EvictAgent', { spiffe_id: id.spiffeId });
  t.is((await codeOf(c3.getBundle())).code, 'ERR_PERMISSION_DENIED');

  const all = [...s.logLines, ...s.auditLines].join('\n');
  t.false(all.includes('PRIVATE KEY'));
  t.false(all.includes('eyJ'));
});
