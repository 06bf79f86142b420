/** Upstream mode: Sigil's CA is an intermediate under an operator's CA read from PEM files; chains verify with openssl. */
import test from 'ava';
import { X509Certificate } from 'node:crypto';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isSigilError } from '../../src/common/errors.js';
import { ManualClock } from '../../src/common/clock.js';
import { x509 } from '../../src/common/x509.js';
import { loadUpstreamAuthority } from '../../src/ca/upstream-authority.js';
import { makeCa, makeCsr, openssl, opensslVerify, tempDir, TD } from './helpers.js';

const H = 3_600_000;

function reasonOf(err: unknown): string | undefined {
  return (err as { reason?: string } | undefined)?.reason;
}

/** An upstream root (and optionally an intermediate under it) made by openssl in `dir`. */
async function makeUpstream(dir: string, opts: { intermediate?: boolean; rootDays?: number; keyType?: 'ec' | 'rsa' } = {}): Promise<{ certPath: string; keyPath: string; rootPem: string }> {
  const root = join(dir, 'root');
  const newkey = opts.keyType === 'rsa' ? ['-newkey', 'rsa:2048'] : ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384'];
  await openssl([
    'req', '-x509', ...newkey, '-nodes', '-keyout', `${root}.key`, '-out', `${root}.pem`, '-days', String(opts.rootDays ?? 30),
    '-subj', '/O=Upstream Corp/CN=Upstream Root CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  await chmod(`${root}.key`, 0o600);
  if (opts.intermediate !== true) return { certPath: `${root}.pem`, keyPath: `${root}.key`, rootPem: `${root}.pem` };
  const int = join(dir, 'int');
  await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${int}.key`, '-out', `${int}.csr`, '-subj', '/O=Upstream Corp/CN=Upstream Issuing CA']);
  await writeFile(`${int}.ext`, '[v3]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n');
  await openssl(['x509', '-req', '-in', `${int}.csr`, '-CA', `${root}.pem`, '-CAkey', `${root}.key`, '-set_serial', '4660', '-days', '20', '-extfile', `${int}.ext`, '-extensions', 'v3', '-out', `${int}.pem`]);
  await chmod(`${int}.key`, 0o600);
  const chainPath = join(dir, 'chain.pem');
  await writeFile(chainPath, (await readFile(`${int}.pem`, 'utf8')) + (await readFile(`${root}.pem`, 'utf8')));
  return { certPath: chainPath, keyPath: `${int}.key`, rootPem: `${root}.pem` };
}

test('upstream root on disk: the bundle holds the upstream root and SVID chains verify with openssl', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const files = await makeUpstream(dir);
  const upstream = await loadUpstreamAuthority(files);
  const clock = new ManualClock(Date.now());
  const { ca } = await makeCa({ upstream, clock });
  const roots = ca.x509Authorities();
  t.is(roots.length, 1);
  t.deepEqual(roots[0], upstream.roots[0]);
  t.true(ca.status().x509[0]?.upstream);

  const { csr } = await makeCsr();
  const svid = await ca.signX509SvidFromCsr({ csr, spiffeId: TD.id('w') });
  t.is(svid.chain.length, 2);
  const sigilCa = new x509.X509Certificate(svid.chain[1] as Buffer);
  t.true(sigilCa.getExtension(x509.BasicConstraintsExtension)?.ca);
  t.regex(sigilCa.issuer, /CN=Upstream Root CA/);
  t.deepEqual(sigilCa.getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON(), [{ type: 'url', value: 'spiffe://example.org' }]);
  t.regex(await opensslVerify(dir, svid.chain, roots, clock.nowMs() + 1000), /: OK/);
  // The upstream root is in the bundle even across a rotation; no Sigil certificate is.
  await ca.prepare('x509');
  await ca.activate('x509');
  t.deepEqual(ca.x509Authorities(), roots);
  const next = await ca.signX509SvidFromCsr({ csr, spiffeId: TD.id('w') });
  t.regex(await opensslVerify(dir, next.chain, roots, clock.nowMs() + 1000), /: OK/);
  t.regex(await opensslVerify(dir, svid.chain, roots, clock.nowMs() + 1000), /: OK/);
  // Revoking an upstream-signed authority cannot remove trust: refused.
  const old = ca.status().x509.find((x) => x.phase === 'old')?.id as string;
  await ca.taint('x509', old);
  t.is(reasonOf(await t.throwsAsync(ca.revoke('x509', old))), 'upstream-signed');
});

test('upstream intermediate + root: SVID chains carry both intermediates and verify against the root', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const files = await makeUpstream(dir, { intermediate: true });
  const upstream = await loadUpstreamAuthority(files);
  t.is(upstream.roots.length, 1);
  t.is(upstream.intermediates.length, 1);
  const clock = new ManualClock(Date.now());
  const { ca } = await makeCa({ upstream, clock, x509CaKeyType: 'ec-p384' });
  const { csr } = await makeCsr('rsa-2048');
  const svid = await ca.signX509SvidFromCsr({ csr, spiffeId: TD.id('w') });
  t.is(svid.chain.length, 3);
  t.deepEqual(svid.chain[2], upstream.intermediates[0]);
  t.regex(await opensslVerify(dir, svid.chain, ca.x509Authorities(), clock.nowMs() + 1000), /: OK/);
  t.true(new X509Certificate(svid.chain[1] as Buffer).checkIssued(new X509Certificate(svid.chain[2] as Buffer)));
});

test('an RSA upstream signs the intermediate with sha256WithRSAEncryption', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const upstream = await loadUpstreamAuthority(await makeUpstream(dir, { keyType: 'rsa' }));
  const clock = new ManualClock(Date.now());
  const { ca } = await makeCa({ upstream, clock });
  const { publicKey } = await makeCsr();
  const svid = await ca.signX509Svid({ publicKey, spiffeId: TD.id('w') });
  t.regex(await opensslVerify(dir, svid.chain, ca.x509Authorities(), clock.nowMs() + 1000), /: OK/);
});

test("Sigil's CA never outlives the upstream certificate", async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const upstream = await loadUpstreamAuthority(await makeUpstream(dir, { rootDays: 1 }));
  const upNotAfter = new X509Certificate(upstream.certChain[0] as Buffer).validTo;
  const clock = new ManualClock(Date.now() + 20 * H);
  const { ca } = await makeCa({ upstream, clock });
  const info = ca.status().x509[0];
  t.is(info?.notAfter.getTime(), new Date(upNotAfter).getTime());
  const { publicKey } = await makeCsr();
  const svid = await ca.signX509Svid({ publicKey, spiffeId: TD.id('w'), ttlMs: 10 * H });
  t.is(svid.notAfter.getTime(), new Date(upNotAfter).getTime());
});

test('upstream files are checked: key mode, key/cert mismatch, not a CA', async (t) => {
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const files = await makeUpstream(dir);
  await chmod(files.keyPath, 0o644);
  let err = await t.throwsAsync(loadUpstreamAuthority(files));
  t.true(isSigilError(err, 'ERR_CONFIG_INVALID'));
  t.is(reasonOf(err), 'insecure-upstream-key-file');
  t.true(err?.message.includes(files.keyPath));
  await chmod(files.keyPath, 0o600);

  // A key from another CA.
  const { dir: dir2, cleanup: c2 } = await tempDir();
  t.teardown(c2);
  const files2 = await makeUpstream(dir2);
  err = await t.throwsAsync(loadUpstreamAuthority({ certPath: files.certPath, keyPath: files2.keyPath }));
  t.is(reasonOf(err), 'upstream-key-mismatch');

  // A leaf certificate is no upstream CA.
  const leafKey = join(dir2, 'leaf.key');
  await openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', leafKey, '-out', join(dir2, 'leaf.pem'), '-days', '2', '-subj', '/CN=leaf', '-addext', 'basicConstraints=critical,CA:FALSE']);
  await chmod(leafKey, 0o600);
  err = await t.throwsAsync(loadUpstreamAuthority({ certPath: join(dir2, 'leaf.pem'), keyPath: leafKey }));
  t.is(reasonOf(err), 'upstream-not-ca');

  await writeFile(join(dir2, 'empty.pem'), 'nothing here');
  t.is(reasonOf(await t.throwsAsync(loadUpstreamAuthority({ certPath: join(dir2, 'empty.pem'), keyPath: leafKey }))), 'upstream-no-certificate');
});
