import test from 'ava';
import { chmod, mkdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { status, type ServiceError } from '@grpc/grpc-js';
import { JoinTokenAgentAttestor } from '../../attestors/node/join_token/agent.js';
import { SigilError } from '../../src/common/errors.js';
import { Secret } from '../../src/common/secret.js';
import type { NodeAttestorAgent } from '../../src/plugin/node-attestor.js';
import { fileAuditSink } from '../../src/server/audit-log.js';
import { generateKeyAndCsr } from '../../src/server/server-svid.js';
import { GRPC_MESSAGE_LIMITS } from '../../src/server/server.js';
import { makeServerDir, startTestServer } from '../helpers/server.js';
import { agentClient, attest, itemCodes } from '../helpers/agent-client.js';
import { rejectionOf } from './support/rejection.js';

/** The gRPC status behind a rejection (Sigil's client maps unknown statuses to ERR_INTERNAL and keeps the original as cause). */
async function grpcStatusOf(p: Promise<unknown>): Promise<number | undefined> {
  try {
    await p;
  } catch (err) {
    if (err instanceof SigilError) return (err.cause as Partial<ServiceError> | undefined)?.code;
    throw err;
  }
  throw new Error('expected a rejection');
}

/** An attestor that sends whatever it is given (a misbehaving or hostile agent). */
function rawAttestor(name: string, payload: Uint8Array): NodeAttestorAgent {
  return { name, payload: async () => payload, respond: async () => new Uint8Array() };
}

test('agent API: oversize messages refused before handling, and every field of a request checked with a reason', async (t) => {
  const s = await startTestServer();
  t.teardown(() => s.destroy());
  const roots = s.server.x509Authorities();
  const td = 'example.org';

  const huge = Buffer.alloc(GRPC_MESSAGE_LIMITS.receiveBytes + 1024, 0x41);
  t.is(await grpcStatusOf(attest(s.agentTarget, roots, td, rawAttestor('join_token', huge))), status.RESOURCE_EXHAUSTED);
  const big = await rejectionOf(attest(s.agentTarget, roots, td, rawAttestor('join_token', Buffer.alloc(65 * 1024, 0x41))));
  t.deepEqual(big, { code: 'ERR_ATTESTATION_FAILED', reason: 'attestation-too-large' });
  const badName = await rejectionOf(attest(s.agentTarget, roots, td, rawAttestor('Join-Token!', Buffer.from('x'))));
  t.deepEqual(badName, { code: 'ERR_INVALID_ARGUMENT', reason: 'unknown-attestor' });
  const unknown = await rejectionOf(attest(s.agentTarget, roots, td, rawAttestor('tpm', Buffer.from('x'))));
  t.deepEqual(unknown, { code: 'ERR_INVALID_ARGUMENT', reason: 'unknown-attestor' });

  const tok = await s.createJoinToken();
  const id = await attest(s.agentTarget, roots, td, new JoinTokenAgentAttestor(tok.token));
  const entryId = await s.createEntry({ spiffeId: 'spiffe://example.org/w', parentId: id.spiffeId, selectors: ['unix:uid:1'] });
  const client = agentClient(s.agentTarget, roots, td, id);
  t.teardown(() => client.close());

  t.deepEqual(await rejectionOf(client.renew(Buffer.alloc(17 * 1024, 1))), { code: 'ERR_INVALID_ARGUMENT', reason: 'csr-too-large' });
  t.deepEqual(await rejectionOf(client.renew(Buffer.alloc(0))), { code: 'ERR_INVALID_ARGUMENT', reason: 'no-csr' });
  t.is(await grpcStatusOf(client.renew(huge)), status.RESOURCE_EXHAUSTED);

  const tooMany = Array.from({ length: 33 }, (_, i) => `aud${i}`);
  t.deepEqual(await rejectionOf(client.newJwtSvid(entryId, tooMany)), { code: 'ERR_INVALID_ARGUMENT', reason: 'no-audience' });
  t.deepEqual(await rejectionOf(client.newJwtSvid(entryId, ['a\nb'])), { code: 'ERR_INVALID_ARGUMENT', reason: 'invalid-audience' });
  t.deepEqual(await rejectionOf(client.newJwtSvid('x'.repeat(300), ['a'])), { code: 'ERR_INVALID_ARGUMENT', reason: 'invalid-entry-id' });

  const { csr } = await generateKeyAndCsr();
  const batch = await client.batchNewX509Svid([
    { entryId: 'x'.repeat(300), csrDer: csr },
    { entryId, csrDer: Buffer.alloc(17 * 1024) },
    { entryId, csrDer: csr },
  ]);
  t.deepEqual(itemCodes(batch), ['ERR_INVALID_ARGUMENT', 'ERR_INVALID_ARGUMENT', '']);
  t.is(batch[0]?.entryId, '');
  t.false(s.logLines.join('\n').includes('x'.repeat(300)));
});

test('admin API: oversize messages refused, entry fields bounded', async (t) => {
  const s = await startTestServer();
  t.teardown(() => s.destroy());
  const huge = Buffer.alloc(GRPC_MESSAGE_LIMITS.receiveBytes + 1024, 0x41);
  t.is(await grpcStatusOf(s.admin.call('Bundles', 'SetFederatedBundle', { trust_domain: 'other.org', document: huge })), status.RESOURCE_EXHAUSTED);
  const entry = (extra: Record<string, unknown>): Record<string, unknown> => ({
    spiffe_id: 'spiffe://example.org/w', parent_id: 'spiffe://example.org/sigil/agent/x', selectors: [{ type: 'unix', value: 'uid:1' }], ...extra,
  });
  const res = await s.admin.call<{ results: { status: { sigil_code: string; message: string } }[] }>('Entries', 'BatchCreateEntry', {
    entries: [
      entry({ selectors: Array.from({ length: 65 }, (_, i) => ({ type: 'unix', value: `uid:${i}` })) }),
      entry({ dns_names: Array.from({ length: 65 }, (_, i) => `h${i}.example`) }),
      entry({ expires_at: -1 }),
      entry({ expires_at: 253_402_300_800 }),
      entry({}),
    ],
  });
  t.deepEqual(res.results.map((r) => r.status.sigil_code), ['ERR_INVALID_ARGUMENT', 'ERR_INVALID_ARGUMENT', 'ERR_INVALID_ARGUMENT', 'ERR_INVALID_ARGUMENT', '']);
  const mint = await rejectionOf(s.admin.call('Mint', 'MintX509Svid', { spiffe_id: 'spiffe://example.org/m', csr: Buffer.alloc(17 * 1024) }));
  t.deepEqual(mint, { code: 'ERR_INVALID_ARGUMENT', reason: 'csr-too-large' });
  const jwt = await rejectionOf(s.admin.call('Mint', 'MintJwtSvid', { spiffe_id: 'spiffe://example.org/m', audience: [] }));
  t.is(jwt.code, 'ERR_INVALID_ARGUMENT');
});

test('files: data dir brought to 0700, audit log to 0600, unreadable or malformed x509pop bundles refused by name', async (t) => {
  const dir = await makeServerDir();
  await mkdir(join(dir, 'data'), { mode: 0o755 });
  await chmod(join(dir, 'data'), 0o755);
  const s = await startTestServer({ dir });
  t.is((await stat(join(dir, 'data'))).mode & 0o777, 0o700);
  await s.destroy();

  const other = await makeServerDir();
  const auditPath = join(other, 'audit.log');
  await writeFile(auditPath, '', { mode: 0o644 });
  await chmod(auditPath, 0o644);
  const sink = fileAuditSink(auditPath);
  sink.close();
  t.is((await stat(auditPath)).mode & 0o777, 0o600);
  const noDir = await rejectionOf((async () => fileAuditSink(join(auditPath, 'nested', 'audit.log')))());
  t.deepEqual(noDir, { code: 'ERR_CONFIG_INVALID', reason: 'audit-log' });

  const missing = await rejectionOf(startTestServer({ dir: other, config: { nodeAttestors: { x509pop: { caBundleFile: join(other, 'missing.pem') } } } }));
  t.deepEqual(missing, { code: 'ERR_CONFIG_INVALID', reason: 'x509pop-ca-bundle' });
  await writeFile(join(other, 'bad.pem'), '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
  const bad = await rejectionOf(startTestServer({ dir: other, config: { nodeAttestors: { x509pop: { caBundleFile: join(other, 'bad.pem') } } } }));
  t.deepEqual(bad, { code: 'ERR_CONFIG_INVALID', reason: 'x509pop-ca-bundle' });
});

test('no secret reaches a log or audit line: refused tokens, malformed evidence, minted JWTs', async (t) => {
  const srv = await startTestServer();
  t.teardown(() => srv.destroy());
  const roots = srv.server.x509Authorities();
  const marker = 'S3CRET-MARKER-0123456789abcdef';
  await rejectionOf(attest(srv.agentTarget, roots, 'example.org', new JoinTokenAgentAttestor(new Secret(marker))));
  await rejectionOf(attest(srv.agentTarget, roots, 'example.org', rawAttestor('join_token', Buffer.from(`{"token":"${marker}"`))));
  const good = await srv.createJoinToken();
  const id = await attest(srv.agentTarget, roots, 'example.org', new JoinTokenAgentAttestor(good.token));
  const entryId = await srv.createEntry({ spiffeId: 'spiffe://example.org/w', parentId: id.spiffeId, selectors: ['unix:uid:1'] });
  const client = agentClient(srv.agentTarget, roots, 'example.org', id);
  t.teardown(() => client.close());
  const jwt = { svid: await client.newJwtSvid(entryId, ['sts']) };
  const minted = await srv.admin.call<{ token: string }>('Mint', 'MintJwtSvid', { spiffe_id: 'spiffe://example.org/m', audience: ['x'] });
  const all = [...srv.logLines, ...srv.auditLines].join('\n');
  for (const secret of [marker, good.token.reveal(), jwt.svid.token, minted.token, 'PRIVATE KEY', 'eyJ']) t.false(all.includes(secret), secret.slice(0, 12));
  t.true(srv.auditLines.some((l) => l.includes('"jti"')));
});
