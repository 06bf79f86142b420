import test from 'ava';
import { execFile } from 'node:child_process';
import { chmod, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { JoinTokenAgentAttestor } from '../../attestors/node/join_token/agent.js';
import { pemBlocks, toPem } from '../../src/common/x509.js';
import { generateKeyAndCsr } from '../../src/server/server-svid.js';
import { Bundle } from '../../src/spiffe/bundle.js';
import { TrustDomain } from '../../src/spiffe/spiffe-id.js';
import { verifyX509SvidChain } from '../../src/spiffe/x509-svid-verify.js';
import { makeServerDir, startTestServer } from '../helpers/server.js';
import { agentClient, attest, itemCodes } from '../helpers/agent-client.js';
import { rejectionOf } from './support/rejection.js';

const run = promisify(execFile);

/** An operator's CA made with the openssl command line: root.pem and root.key (0600). */
async function opensslRootCa(dir: string, name: string): Promise<{ cert: string; key: string }> {
  const cert = join(dir, `${name}.pem`);
  const key = join(dir, `${name}.key`);
  await run('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert,
    '-subj', `/O=Operator/CN=${name}`, '-days', '2',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  await chmod(key, 0o600);
  return { cert, key };
}

test('upstream authority from PEM files: the signing CA is an intermediate, the bundle holds the upstream root, SVIDs verify with openssl', async (t) => {
  const dir = await makeServerDir();
  const root = await opensslRootCa(dir, 'upstream-root');
  t.is((await stat(root.key)).mode & 0o777, 0o600);
  // the default clock is real time, so the CA's notBefore comes after the root's
  const s = await startTestServer({ dir, config: { ca: { upstream: { certFile: root.cert, keyFile: root.key } } } });
  t.teardown(() => s.destroy());
  const rootDer = pemBlocks(await readFile(root.cert, 'utf8'), 'CERTIFICATE');
  t.deepEqual(s.server.x509Authorities(), rootDer);

  const bundleReply = await s.admin.call<{ document: Buffer; x509_authorities: Buffer[] }>('Bundles', 'GetBundle');
  t.deepEqual(bundleReply.x509_authorities, rootDer);
  const bundle = Bundle.parseJwks(TrustDomain.parse('example.org'), bundleReply.document);
  t.deepEqual(bundle.x509AuthoritiesDer().map((d) => Buffer.from(d)), rootDer);

  // an agent attests over TLS trusting only the upstream root, and gets an SVID for its entry
  const roots = s.server.x509Authorities();
  const tok = await s.createJoinToken();
  const agent = await attest(s.agentTarget, roots, 'example.org', new JoinTokenAgentAttestor(tok.token));
  const entryId = await s.createEntry({ spiffeId: 'spiffe://example.org/svc/web', parentId: agent.spiffeId, selectors: ['unix:uid:1000'] });
  const client = agentClient(s.agentTarget, roots, 'example.org', agent);
  t.teardown(() => client.close());
  const { csr } = await generateKeyAndCsr();
  const res = await client.batchNewX509Svid([{ entryId, csrDer: csr }]);
  t.deepEqual(itemCodes(res), ['']);
  const chain = res[0]?.svid?.cert_chain ?? [];
  t.is(chain.length, 2, 'leaf and the server CA, without the root');
  t.false(chain.some((c) => rootDer.some((r) => r.equals(c))));

  const leafPath = join(dir, 'leaf.pem');
  const intermediatePath = join(dir, 'intermediate.pem');
  await writeFile(leafPath, toPem(chain[0] as Buffer, 'CERTIFICATE'));
  await writeFile(intermediatePath, chain.slice(1).map((c) => toPem(c, 'CERTIFICATE')).join(''));
  const verified = await run('openssl', ['verify', '-CAfile', root.cert, '-untrusted', intermediatePath, leafPath]);
  t.regex(verified.stdout, /leaf\.pem: OK/);
  // without the intermediate the leaf does not chain: the server CA really sits between
  await t.throwsAsync(run('openssl', ['verify', '-CAfile', root.cert, leafPath]));
  t.is(verifyX509SvidChain(chain, bundle, new Date()).id.toString(), 'spiffe://example.org/svc/web');
  // the agent's own SVID chains the same way
  t.is(verifyX509SvidChain(agent.chain, bundle, new Date()).id.toString(), agent.spiffeId);

  // admin minting too
  const minted = await s.admin.call<{ cert_chain: Buffer[]; x509_authorities: Buffer[] }>('Mint', 'MintX509Svid', { spiffe_id: 'spiffe://example.org/minted', csr, ttl_seconds: 60 });
  t.deepEqual(minted.x509_authorities, rootDer);
  t.is(verifyX509SvidChain(minted.cert_chain, bundle, new Date()).id.toString(), 'spiffe://example.org/minted');

  const all = [...s.logLines, ...s.auditLines].join('\n');
  t.false(all.includes('PRIVATE KEY'));

  // a restart keeps the upstream-signed CA and the bundle
  await s.stop();
  const again = await startTestServer({ dir, config: { ca: { upstream: { certFile: root.cert, keyFile: root.key } } } });
  t.teardown(() => again.destroy());
  t.deepEqual(again.server.x509Authorities(), rootDer);
  const reminted = await again.admin.call<{ cert_chain: Buffer[] }>('Mint', 'MintX509Svid', { spiffe_id: 'spiffe://example.org/minted', csr, ttl_seconds: 60 });
  t.deepEqual(reminted.cert_chain[1], chain[1]);
});

/** An operator intermediate under `root`, made with openssl x509 -req: returns its cert and key paths. */
async function opensslIntermediate(dir: string, root: { cert: string; key: string }): Promise<{ cert: string; key: string }> {
  const key = join(dir, 'operator-intermediate.key');
  const csr = join(dir, 'operator-intermediate.csr');
  const cert = join(dir, 'operator-intermediate.pem');
  const ext = join(dir, 'ext.cnf');
  await run('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', csr, '-subj', '/O=Operator/CN=Operator Intermediate']);
  await chmod(key, 0o600);
  await writeFile(ext, 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n');
  await run('openssl', ['x509', '-req', '-in', csr, '-CA', root.cert, '-CAkey', root.key, '-CAcreateserial', '-days', '2', '-extfile', ext, '-out', cert]);
  return { cert, key };
}

for (const withBundleFile of [false, true]) {
  test(`upstream intermediate (${withBundleFile ? 'root in a bundle file' : 'root in the certificate file'}): SVID chains carry it, openssl verifies to the root`, async (t) => {
    const dir = await makeServerDir();
    const root = await opensslRootCa(dir, 'upstream-root');
    const inter = await opensslIntermediate(dir, root);
    const chainFile = join(dir, 'upstream-chain.pem');
    const rootPem = await readFile(root.cert, 'utf8');
    const interPem = await readFile(inter.cert, 'utf8');
    await writeFile(chainFile, withBundleFile ? interPem : interPem + rootPem);
    const upstream = { certFile: chainFile, keyFile: inter.key, ...(withBundleFile ? { bundleFile: root.cert } : {}) };
    const s = await startTestServer({ dir, config: { ca: { upstream } } });
    t.teardown(() => s.destroy());
    const rootDer = pemBlocks(rootPem, 'CERTIFICATE');
    t.deepEqual(s.server.x509Authorities(), rootDer);

    const roots = s.server.x509Authorities();
    const tok = await s.createJoinToken();
    const agent = await attest(s.agentTarget, roots, 'example.org', new JoinTokenAgentAttestor(tok.token));
    const entryId = await s.createEntry({ spiffeId: 'spiffe://example.org/svc/db', parentId: agent.spiffeId, selectors: ['unix:uid:1000'] });
    const client = agentClient(s.agentTarget, roots, 'example.org', agent);
    t.teardown(() => client.close());
    const { csr } = await generateKeyAndCsr();
    const res = await client.batchNewX509Svid([{ entryId, csrDer: csr }]);
    const chain = res[0]?.svid?.cert_chain ?? [];
    t.is(chain.length, 3, 'leaf, server CA, operator intermediate');
    t.deepEqual(chain[2], pemBlocks(interPem, 'CERTIFICATE')[0]);
    const leafPath = join(dir, 'leaf.pem');
    const intermediatePath = join(dir, 'intermediate.pem');
    await writeFile(leafPath, toPem(chain[0] as Buffer, 'CERTIFICATE'));
    await writeFile(intermediatePath, chain.slice(1).map((c) => toPem(c, 'CERTIFICATE')).join(''));
    const verified = await run('openssl', ['verify', '-CAfile', root.cert, '-untrusted', intermediatePath, leafPath]);
    t.regex(verified.stdout, /leaf\.pem: OK/);
    const bundle = Bundle.parseJwks(TrustDomain.parse('example.org'), (await s.admin.call<{ document: Buffer }>('Bundles', 'GetBundle')).document);
    t.is(verifyX509SvidChain(chain, bundle, new Date()).id.toString(), 'spiffe://example.org/svc/db');
  });
}

test('upstream key files must be 0600 or stricter, and match the certificate', async (t) => {
  const dir = await makeServerDir();
  const root = await opensslRootCa(dir, 'root');
  const other = await opensslRootCa(dir, 'other');
  await chmod(root.key, 0o644);
  const loose = await rejectionOf(startTestServer({ dir, config: { ca: { upstream: { certFile: root.cert, keyFile: root.key } } } }));
  t.is(loose.code, 'ERR_CONFIG_INVALID');
  await chmod(root.key, 0o600);
  const mismatch = await rejectionOf(startTestServer({ dir, config: { ca: { upstream: { certFile: root.cert, keyFile: other.key } } } }));
  t.is(mismatch.code, 'ERR_CONFIG_INVALID');
  t.is(mismatch.reason, 'upstream-key-mismatch');
  const missing = await rejectionOf(startTestServer({ dir, config: { ca: { upstream: { certFile: join(dir, 'nope.pem'), keyFile: root.key } } } }));
  t.is(missing.reason, 'upstream-file-unreadable');
});
