/**
 * BatchNewX509SVID with the server's default signing threads: every signature of a batch is
 * started before any is awaited, yet results and audit records keep the request's order,
 * with refusals, denials, repeats and successes mixed; the leaves verify with openssl.
 */
import test from 'ava';
import { X509Certificate } from 'node:crypto';
import { JoinTokenAgentAttestor } from '../../attestors/node/join_token/agent.js';
import { toPem } from '../../src/common/x509.js';
import { generateKeyAndCsr } from '../../src/server/server-svid.js';
import { AgentApiClient, attest } from '../helpers/agent-client.js';
import { opensslVerify } from '../helpers/openssl.js';
import { startTestServer } from '../helpers/server.js';

interface BatchResult {
  readonly entry_id: string;
  readonly status: { readonly code: number; readonly sigil_code: string };
  readonly svid: { readonly cert_chain: Buffer[]; readonly spiffe_id: string; readonly serial: string } | null;
}

interface AuditLine {
  readonly action: string;
  readonly result: string;
  readonly entryId?: string;
  readonly serial?: string;
  readonly reason?: string;
}

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
  const client = new AgentApiClient(s.agentTarget, roots, td, id);
  t.teardown(() => client.close());

  const csrs = await Promise.all(Array.from({ length: 3 }, async () => (await generateKeyAndCsr()).csr));
  const badCsr = Buffer.from(csrs[0] as Buffer);
  badCsr[badCsr.length - 4] = (badCsr[badCsr.length - 4] as number) ^ 0x01;
  const auditBefore = s.auditLines.length;
  const res = await client.call<{ results: BatchResult[] }>('BatchNewX509SVID', {
    params: [
      { entry_id: a, csr: csrs[0] },
      { entry_id: b, csr: csrs[1] },
      { entry_id: '', csr: csrs[1] },
      { entry_id: c, csr: csrs[1] },
      { entry_id: a, csr: csrs[2] },
      { entry_id: a, csr: badCsr },
    ],
  });
  t.deepEqual(
    res.results.map((r) => [r.entry_id, r.status.sigil_code]),
    [
      [a, ''],
      [b, 'ERR_PERMISSION_DENIED'],
      ['', 'ERR_INVALID_ARGUMENT'],
      [c, ''],
      [a, ''],
      [a, 'ERR_INVALID_ARGUMENT'],
    ],
  );
  const ok = [res.results[0], res.results[3], res.results[4]].map((r) => r?.svid) as NonNullable<BatchResult['svid']>[];
  const sans = ['URI:spiffe://example.org/a, DNS:a.example.org', 'URI:spiffe://example.org/c', 'URI:spiffe://example.org/a, DNS:a.example.org'];
  for (const [i, svid] of ok.entries()) {
    const chain = svid.cert_chain;
    t.is(new X509Certificate(chain[0] as Buffer).subjectAltName, sans[i]);
    const v = await opensslVerify({ roots: roots.map((r) => toPem(r, 'CERTIFICATE')), untrusted: chain.slice(1).map((c) => toPem(c, 'CERTIFICATE')), leaf: toPem(chain[0] as Buffer, 'CERTIFICATE'), flags: ['-x509_strict'] });
    t.true(v.ok, v.output);
  }
  t.is(new Set(ok.map((svid) => svid.serial)).size, 3);

  const lines = s.auditLines.slice(auditBefore).map((l) => JSON.parse(l) as AuditLine).filter((l) => l.action === 'x509svid.issue');
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
