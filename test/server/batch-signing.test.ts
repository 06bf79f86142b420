/**
 * BatchNewX509SVID with the server's default signing threads: every signature of a batch is
 * started before any is awaited, yet results and audit records keep the request's order,
 * with refusals, denials, repeats and successes mixed; the leaves verify with openssl.
 */
import test from 'ava';
import { X509Certificate } from 'node:crypto';
import { JoinTokenAgentAttestor } from '../../attestors/node/join_token/agent.js';
import type { WireX509Svid } from '../../src/agent/server-client.js';
import { toPem } from '../../src/common/x509.js';
import { generateKeyAndCsr } from '../../src/server/server-svid.js';
import { agentClient, attest, itemCodes } from '../helpers/agent-client.js';
import { x509IssueRecords } from '../helpers/audit.js';
import { opensslVerify } from '../helpers/openssl.js';
import { startTestServer } from '../helpers/server.js';


test('a mixed batch on the signing threads: results and audit in request order, leaves verify', async (t) => {
  const s = await startTestServer();
  t.teardown(() => s.destroy());
  t.true(s.server.ca.signingThreads >= 1, 'the server signs on threads by default');
  const roots = s.server.x509Authorities();
  const td = 'example.org';
  const tok = await s.createJoinToken();
  const id = await attest(s.agentTarget, roots, td, new JoinTokenAgentAttestor(tok.token));
  const other = await attest(s.agentTarget, roots, td, new JoinTokenAgentAttestor((await s.createJoinToken()).token));
  const a = await s.createEntry({ spiffeId: 'spiffe://example.org/a', parentId: id.spiffeId, selectors: ['unix:uid:1'], dnsNames: ['a.example.org'] });
  const c = await s.createEntry({ spiffeId: 'spiffe://example.org/c', parentId: 'spiffe://example.org/a', selectors: ['unix:uid:2'] });
  const b = await s.createEntry({ spiffeId: 'spiffe://example.org/b', parentId: other.spiffeId, selectors: ['unix:uid:3'] });
  const client = agentClient(s.agentTarget, roots, td, id);
  t.teardown(() => client.close());

  const csrs = await Promise.all(Array.from({ length: 3 }, async () => (await generateKeyAndCsr()).csr));
  const badCsr = Buffer.from(csrs[0] as Buffer);
  badCsr[badCsr.length - 4] = (badCsr[badCsr.length - 4] as number) ^ 0x01;
  const auditBefore = s.auditLines.length;
  const [csr0, csr1, csr2] = csrs as [Buffer, Buffer, Buffer];
  const res = await client.batchNewX509Svid([
    { entryId: a, csrDer: csr0 },
    { entryId: b, csrDer: csr1 },
    { entryId: '', csrDer: csr1 },
    { entryId: c, csrDer: csr1 },
    { entryId: a, csrDer: csr2 },
    { entryId: a, csrDer: badCsr },
  ]);
  const codes = itemCodes(res);
  t.deepEqual(
    res.map((r, i) => [r.entryId, codes[i]]),
    [
      [a, ''],
      [b, 'ERR_PERMISSION_DENIED'],
      ['', 'ERR_INVALID_ARGUMENT'],
      [c, ''],
      [a, ''],
      [a, 'ERR_INVALID_ARGUMENT'],
    ],
  );
  const ok = [res[0], res[3], res[4]].map((r) => r?.svid) as WireX509Svid[];
  const sans = ['URI:spiffe://example.org/a, DNS:a.example.org', 'URI:spiffe://example.org/c', 'URI:spiffe://example.org/a, DNS:a.example.org'];
  for (const [i, svid] of ok.entries()) {
    const chain = svid.cert_chain;
    t.is(new X509Certificate(chain[0] as Buffer).subjectAltName, sans[i]);
    const v = await opensslVerify({ roots: roots.map((r) => toPem(r, 'CERTIFICATE')), untrusted: chain.slice(1).map((c) => toPem(c, 'CERTIFICATE')), leaf: toPem(chain[0] as Buffer, 'CERTIFICATE'), flags: ['-x509_strict'] });
    t.true(v.ok, v.output);
  }
  t.is(new Set(ok.map((svid) => svid.serial)).size, 3);

  const lines = x509IssueRecords(s.auditLines.slice(auditBefore));
  t.deepEqual(
    lines.map((l) => [l.entryId, l.result]),
    [
      [a, 'ok'],
      [b, 'denied'],
      [c, 'ok'],
      [a, 'ok'],
      [a, 'error'],
    ],
  );
  t.deepEqual([lines[0]?.serial, lines[2]?.serial, lines[3]?.serial], ok.map((svid) => svid.serial));
  t.is(lines[4]?.reason, 'csr-signature');
});
