/**
 * The hand-built leaf must be what a general X.509 stack would build: each leaf is parsed
 * by @peculiar/x509, Node's X509Certificate and `openssl x509 -text`, and its chain checked
 * with `openssl verify -x509_strict` against the bundle.
 */
import test, { type ExecutionContext } from 'ava';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { isSigilError } from '../../src/common/errors.js';
import { x509 } from '../../src/common/x509.js';
import { Tag, children, contentOf, readWhole, type DerNode } from '../../src/ca/der.js';
import type { KeyType } from '../../src/plugin/key-manager.js';
import { SpiffeId } from '../../src/spiffe/spiffe-id.js';
import { TD, makeCa, makeCsr, openssl, opensslVerify, tempDir, writePemCerts, type LeafKeyKind } from './helpers.js';

const CA_TYPES: KeyType[] = ['ec-p256', 'ec-p384', 'rsa-2048'];
const LEAF_TYPES: LeafKeyKind[] = ['ec-p256', 'ec-p384', 'rsa-2048', 'ed25519'];

function check(t: ExecutionContext, leafDer: Buffer, caDer: Buffer, spiffeId: string, dnsNames: string[], rsaLeaf: boolean): void {
  const leaf = new x509.X509Certificate(leafDer);
  const ca = new x509.X509Certificate(caDer);
  // Exactly one URI SAN, then the DNS names; nothing from the CSR.
  const san = leaf.getExtension(x509.SubjectAlternativeNameExtension);
  t.truthy(san);
  const names = san?.names.toJSON() ?? [];
  t.deepEqual(names.filter((n) => n.type === 'url').map((n) => n.value), [spiffeId]);
  t.deepEqual(names.filter((n) => n.type === 'dns').map((n) => n.value), dnsNames);
  t.is(names.length, 1 + dnsNames.length);
  const bc = leaf.getExtension(x509.BasicConstraintsExtension);
  t.true(bc?.critical);
  t.false(bc?.ca);
  const ku = leaf.getExtension(x509.KeyUsagesExtension);
  t.true(ku?.critical);
  const wantKu = rsaLeaf ? x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment : x509.KeyUsageFlags.digitalSignature;
  t.is(ku?.usages, wantKu);
  const eku = leaf.getExtension(x509.ExtendedKeyUsageExtension);
  t.deepEqual([...(eku?.usages ?? [])].sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
  const ski = leaf.getExtension(x509.SubjectKeyIdentifierExtension);
  const aki = leaf.getExtension(x509.AuthorityKeyIdentifierExtension);
  const caSki = ca.getExtension(x509.SubjectKeyIdentifierExtension);
  t.truthy(ski?.keyId);
  t.is(aki?.keyId, caSki?.keyId);
  t.is(leaf.issuer, ca.subject);
  t.regex(leaf.subject, /O=Sigil/);
  // Serial: a positive, minimally encoded INTEGER of at most 128 bits of magnitude.
  const tbs = children(leafDer, readWhole(leafDer))[0] as DerNode;
  const serialNode = children(leafDer, tbs)[1] as DerNode;
  const serial = contentOf(leafDer, serialNode);
  t.is(serialNode.tag, Tag.integer);
  t.true((serial[0] as number) < 0x80);
  t.false(serial[0] === 0 && serial.length > 1 && (serial[1] as number) < 0x80);
  t.true(serial.length <= 17);

  const node = new X509Certificate(leafDer);
  t.false(node.ca);
  t.true(node.checkIssued(new X509Certificate(caDer)));
  t.true(node.verify(new X509Certificate(caDer).publicKey));
  t.is(node.subjectAltName?.split(', ').filter((n) => n.startsWith('URI:')).length, 1);
}

for (const caType of CA_TYPES) {
  test(`leaves from a ${caType} CA parse everywhere and verify with openssl, for every leaf key type`, async (t) => {
    const { ca, clock } = await makeCa({ x509CaKeyType: caType });
    const { dir, cleanup } = await tempDir();
    t.teardown(cleanup);
    const caDer = ca.x509Authorities()[0] as Buffer;
    const caCert = new x509.X509Certificate(caDer);
    t.true(caCert.getExtension(x509.BasicConstraintsExtension)?.ca);
    t.is(caCert.getExtension(x509.KeyUsagesExtension)?.usages, x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
    t.deepEqual(caCert.getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON(), [{ type: 'url', value: 'spiffe://example.org' }]);
    t.true(await caCert.verify({ signatureOnly: true }));
    for (const kind of LEAF_TYPES) {
      const { csr } = await makeCsr(kind);
      const id = TD.id('ns', 'prod', 'sa', kind);
      const dns = kind === 'ec-p256' ? ['web.example.org', '*.web.example.org'] : [];
      const svid = await ca.signX509SvidFromCsr({ csr, spiffeId: id, dnsNames: dns });
      t.is(svid.chain.length, 1);
      t.true(svid.spiffeId.equals(id));
      check(t, svid.chain[0] as Buffer, caDer, id.toString(), dns, kind === 'rsa-2048');
      t.true(await new x509.X509Certificate(svid.chain[0] as Buffer).verify({ publicKey: caCert, signatureOnly: true }), kind);
      const out = await opensslVerify(dir, svid.chain, ca.x509Authorities(), clock.nowMs() + 1000);
      t.regex(out, /: OK/, kind);
    }
  });
}

test('openssl -text shows the X509-SVID profile on a leaf', async (t) => {
  const { ca } = await makeCa();
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const { csr } = await makeCsr('ec-p256');
  const svid = await ca.signX509SvidFromCsr({ csr, spiffeId: TD.id('web'), dnsNames: ['web.example.org'] });
  const pem = join(dir, 'leaf.pem');
  await writePemCerts(pem, svid.chain);
  const text = await openssl(['x509', '-in', pem, '-text', '-noout']);
  t.regex(text, /X509v3 Key Usage: critical\s+Digital Signature\n/);
  t.regex(text, /X509v3 Basic Constraints: critical\s+CA:FALSE/);
  t.regex(text, /TLS Web Server Authentication, TLS Web Client Authentication/);
  t.regex(text, /URI:spiffe:\/\/example\.org\/web, DNS:web\.example\.org/);
  t.regex(text, /Subject: C ?= ?US, O ?= ?Sigil, CN ?= ?web\.example\.org/);
  t.regex(text, /X509v3 Subject Key Identifier/);
  t.regex(text, /X509v3 Authority Key Identifier/);
  t.notRegex(text, /evil/i);
  t.is(text.match(/URI:/g)?.length, 1);
  const serialLine = /Serial Number:\s*\n\s*([0-9a-f:]+)/.exec(text)?.[1]?.replace(/:/g, '');
  t.is(BigInt(`0x${serialLine ?? ''}`), BigInt(`0x${svid.serial}`));
});

test('the leaf key from signX509Svid is the one given, and the leaf matches the CSR path', async (t) => {
  const { ca } = await makeCa();
  for (const kind of LEAF_TYPES) {
    const { publicKey } = await makeCsr(kind);
    const svid = await ca.signX509Svid({ publicKey, spiffeId: TD.id('k', kind) });
    const cert = new X509Certificate(svid.chain[0] as Buffer);
    t.true(cert.publicKey.equals(publicKey), kind);
    check(t, svid.chain[0] as Buffer, ca.x509Authorities()[0] as Buffer, TD.id('k', kind).toString(), [], kind === 'rsa-2048');
  }
});

test('serials are distinct and printed as lowercase hex', async (t) => {
  const { ca } = await makeCa();
  const { publicKey } = await makeCsr();
  const serials = new Set<string>();
  for (let i = 0; i < 50; i++) {
    const svid = await ca.signX509Svid({ publicKey, spiffeId: TD.id('w') });
    t.regex(svid.serial, /^[1-9a-f][0-9a-f]*$/);
    t.is(BigInt(`0x${new X509Certificate(svid.chain[0] as Buffer).serialNumber}`), BigInt(`0x${svid.serial}`));
    serials.add(svid.serial);
  }
  t.is(serials.size, 50);
});

test('a CSR whose signature does not verify is refused', async (t) => {
  const { ca } = await makeCa();
  const { csr } = await makeCsr();
  const bad = Buffer.from(csr);
  bad[bad.length - 5] = (bad[bad.length - 5] as number) ^ 0x01;
  const err = await t.throwsAsync(ca.signX509SvidFromCsr({ csr: bad, spiffeId: TD.id('w') }));
  t.true(isSigilError(err, 'ERR_INVALID_ARGUMENT'));
  t.is((err as { reason?: string }).reason, 'csr-signature');
});

test('a CSR signed by another key than the one it carries is refused', async (t) => {
  const { ca } = await makeCa();
  const a = await makeCsr();
  const b = await makeCsr();
  // Splice b's SPKI into a's request: the signature no longer matches the key.
  const aSpki = a.publicKey.export({ format: 'der', type: 'spki' });
  const bSpki = b.publicKey.export({ format: 'der', type: 'spki' });
  const at = a.csr.indexOf(aSpki);
  t.true(at > 0);
  const forged = Buffer.concat([a.csr.subarray(0, at), bSpki, a.csr.subarray(at + aSpki.length)]);
  const err = await t.throwsAsync(ca.signX509SvidFromCsr({ csr: forged, spiffeId: TD.id('w') }));
  t.is((err as { reason?: string }).reason, 'csr-signature');
});

test('garbage and truncated CSRs are refused as bad-csr', async (t) => {
  const { ca } = await makeCa();
  const { csr } = await makeCsr();
  for (const bytes of [Buffer.alloc(0), Buffer.from('hello'), csr.subarray(0, csr.length - 3), Buffer.concat([csr, Buffer.from([0])])]) {
    const err = await t.throwsAsync(ca.signX509SvidFromCsr({ csr: bytes, spiffeId: TD.id('w') }));
    t.true(isSigilError(err, 'ERR_INVALID_ARGUMENT'));
    t.is((err as { reason?: string }).reason, 'bad-csr');
  }
});

test('requests outside the profile are refused with a reason', async (t) => {
  const { ca } = await makeCa();
  const { csr, publicKey } = await makeCsr();
  const cases: Array<[Promise<unknown>, string]> = [
    [ca.signX509SvidFromCsr({ csr, spiffeId: SpiffeId.parse('spiffe://other.org/w') }), 'wrong-trust-domain'],
    [ca.signX509SvidFromCsr({ csr, spiffeId: TD.toSpiffeId() }), 'not-leaf-id'],
    [ca.signX509Svid({ publicKey, spiffeId: TD.id('w'), dnsNames: ['bad name'] }), 'bad-dns-name'],
    [ca.signX509Svid({ publicKey, spiffeId: TD.id('w'), dnsNames: ['-x.example.org'] }), 'bad-dns-name'],
    [ca.signX509Svid({ publicKey, spiffeId: TD.id('w'), ttlMs: -5 }), 'bad-ttl'],
    [ca.mintJwtSvid({ spiffeId: TD.id('w'), audience: [] }), 'bad-audience'],
  ];
  for (const [p, reason] of cases) {
    const err = await t.throwsAsync(p);
    t.true(isSigilError(err, 'ERR_INVALID_ARGUMENT'), reason);
    t.is((err as { reason?: string }).reason, reason);
  }
});
