/**
 * X509-SVID parsing (leaf rules of the X509-SVID standard) and chain verification (RFC 5280
 * path validation), each rule with a passing and a failing case asserted by code+reason.
 * Chains we accept, and chains we reject for signature/validity/path reasons, are
 * cross-checked with the real `openssl verify`.
 */
import test from 'ava';
import { inspect } from 'node:util';
import { createCa, createLeaf, EKU, generateKeyPair, KU, rawExtension, type LeafOptions, type TestCert } from '../helpers/pki.js';
import { opensslVerify } from '../helpers/openssl.js';
import { X509Svid, type X509ChainInput } from '../../src/spiffe/x509-svid.js';
import { verifyX509SvidChain } from '../../src/spiffe/x509-svid-verify.js';
import { Bundle } from '../../src/spiffe/bundle.js';
import { BundleSet } from '../../src/spiffe/bundle-set.js';
import { TrustDomain } from '../../src/spiffe/spiffe-id.js';
import { SigilError } from '../../src/spiffe/errors.js';

const TD = TrustDomain.parse('example.org');
const HOUR = 3600_000;
// Whole seconds, so openssl's -attime sees the same instant.
const NOW = new Date(Math.floor(Date.now() / 1000) * 1000);

function reasonOf(fn: () => unknown, code = 'ERR_INVALID_X509_SVID'): string | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof SigilError && err.code === code) return err.reason;
    throw err;
  }
  return undefined;
}

interface Pki {
  root: TestCert;
  inter: TestCert;
  bundle: Bundle;
}
let pki: Pki;

test.before(async () => {
  const root = await createCa({ id: 'spiffe://example.org' });
  const inter = await createCa({ issuer: root, id: 'spiffe://example.org' });
  pki = { root, inter, bundle: Bundle.create(TD, { x509Authorities: [root.der] }) };
});

// ---- parse: leaf rules ----

const ACCEPTS: ReadonlyArray<[string, Omit<LeafOptions, 'issuer'>]> = [
  ['typical leaf', {}],
  ['empty subject with critical SAN (3.1)', { subject: '' }],
  ['DNS SANs beside the one URI SAN (2)', { dns: ['web.example.org', 'localhost'] }],
  ['no EKU extension (4.4 SHOULD)', { eku: null }],
  ['EKU with extra purposes (4.4)', { eku: [EKU.serverAuth, EKU.clientAuth, EKU.codeSigning] }],
  ['no basicConstraints (cA defaults false)', { ca: null }],
  ['digitalSignature only (4.3)', { keyUsage: KU.digitalSignature }],
  ['critical SAN with a subject', { sanCritical: true }],
];

for (const [name, opts] of ACCEPTS) {
  test(`parse accepts: ${name}`, async (t) => {
    const leaf = await createLeaf({ issuer: pki.inter, ...opts });
    const svid = X509Svid.parse([leaf.der, pki.inter.der], leaf.key.pkcs8Der);
    t.is(svid.id.toString(), opts.id ?? 'spiffe://example.org/workload');
    t.is(svid.certificates.length, 2);
    const r = await opensslVerify({ roots: [pki.root.pem], untrusted: [pki.inter.pem], leaf: leaf.pem, at: NOW });
    t.true(r.ok, r.output);
    t.is(verifyX509SvidChain(svid, pki.bundle, NOW).id.toString(), svid.id.toString());
  });
}

const REJECTS: ReadonlyArray<[Omit<LeafOptions, 'issuer'>, string]> = [
  [{ noSan: true }, 'no-uri-san'],
  [{ uris: [], dns: ['web.example.org'] }, 'no-uri-san'],
  [{ uris: ['spiffe://example.org/a', 'spiffe://example.org/b'] }, 'multiple-uri-sans'],
  [{ uris: ['spiffe://example.org/a', 'https://example.org/b'] }, 'multiple-uri-sans'],
  [{ id: 'https://example.org/web' }, 'bad-spiffe-id'],
  [{ id: 'spiffe://Example.org/web' }, 'bad-spiffe-id'],
  [{ id: 'spiffe://example.org' }, 'id-without-path'],
  [{ subject: '', sanCritical: false }, 'san-not-critical'],
  [{ ca: true }, 'leaf-ca-true'],
  [{ keyUsage: null }, 'no-key-usage'],
  [{ keyUsageCritical: false }, 'key-usage-not-critical'],
  [{ keyUsage: KU.digitalSignature | KU.keyCertSign }, 'leaf-key-cert-sign'],
  [{ keyUsage: KU.digitalSignature | KU.cRLSign }, 'leaf-crl-sign'],
  [{ keyUsage: KU.keyEncipherment | KU.keyAgreement }, 'no-digital-signature'],
  [{ eku: [EKU.serverAuth] }, 'bad-eku'],
  [{ eku: [EKU.clientAuth] }, 'bad-eku'],
];

for (const [opts, reason] of REJECTS) {
  test(`parse rejects ${reason}: ${JSON.stringify(opts)}`, async (t) => {
    const leaf = await createLeaf({ issuer: pki.inter, ...opts });
    t.is(reasonOf(() => X509Svid.parse([leaf.der], leaf.key.pkcs8Der)), reason);
    t.is(reasonOf(() => X509Svid.parseChainOnly([leaf.der])), reason);
    t.is(reasonOf(() => verifyX509SvidChain([leaf.der, pki.inter.der], pki.bundle, NOW)), reason);
  });
}

test('parse takes DER list, concatenated DER and PEM, keys as DER, PEM or KeyObject', async (t) => {
  const leaf = await createLeaf({ issuer: pki.inter });
  const concat = new Uint8Array([...leaf.der, ...pki.inter.der]);
  const inputs: X509ChainInput[] = [[leaf.der, pki.inter.der], concat, leaf.pem + pki.inter.pem, [leaf.x509, pki.inter.x509]];
  for (const chain of inputs) {
    for (const key of [leaf.key.pkcs8Der, leaf.key.pkcs8Pem, leaf.key.privateKey]) {
      const svid = X509Svid.parse(chain, key, { hint: 'internal' });
      t.is(svid.id.toString(), 'spiffe://example.org/workload');
      t.is(svid.hint, 'internal');
      t.deepEqual(svid.certificatesDer(), concat);
    }
  }
});

test('toDer and toPem round-trip through parse', async (t) => {
  const leaf = await createLeaf({ issuer: pki.inter, id: 'spiffe://example.org/ns/prod/sa/web' });
  const svid = X509Svid.parse([leaf.der, pki.inter.der], leaf.key.pkcs8Der);
  const der = svid.toDer();
  const pem = svid.toPem();
  t.regex(pem.certificates, /^-----BEGIN CERTIFICATE-----\n/);
  t.true(pem.privateKey.startsWith(`-----BEGIN ${['PRIVATE', 'KEY'].join(' ')}-----\n`));
  for (const again of [X509Svid.parse(der.certificates, der.privateKey), X509Svid.parse(pem.certificates, pem.privateKey)]) {
    t.true(again.id.equals(svid.id));
    t.is(again.serial, svid.serial);
    t.deepEqual(again.certificatesDer(), svid.certificatesDer());
    t.deepEqual(again.privateKeyDer(), svid.privateKeyDer());
  }
  t.is(svid.notAfter.getTime(), Date.parse(leaf.x509.validTo));
  t.is(svid.serial, leaf.x509.serialNumber);
});

test('the private key never appears in JSON or inspect output', async (t) => {
  const leaf = await createLeaf({ issuer: pki.inter });
  const svid = X509Svid.parse([leaf.der], leaf.key.pkcs8Der);
  const printed = JSON.stringify(svid) + inspect(svid) + String(JSON.stringify({ svid }));
  t.false(printed.includes('PRIVATE KEY'));
  t.false(printed.includes(Buffer.from(leaf.key.pkcs8Der).toString('base64').slice(0, 40)));
  t.true(inspect(svid).includes('[redacted]'));
});

test('parse rejects structural defects of the inputs', async (t) => {
  const leaf = await createLeaf({ issuer: pki.inter });
  const other = await generateKeyPair();
  const leafAsIntermediate = await createLeaf({ issuer: pki.inter, id: 'spiffe://example.org/other' });
  const badInter = await createCa({ issuer: pki.root, keyUsage: KU.digitalSignature });
  const pathInter = await createCa({ issuer: pki.root, id: 'spiffe://example.org/ca' });
  const cases: ReadonlyArray<[() => unknown, string]> = [
    [() => X509Svid.parse([], leaf.key.pkcs8Der), 'empty-chain'],
    [() => X509Svid.parse(new Uint8Array(0), leaf.key.pkcs8Der), 'empty-chain'],
    [() => X509Svid.parse('no pem here', leaf.key.pkcs8Der), 'empty-chain'],
    [() => X509Svid.parse('-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n', leaf.key.pkcs8Der), 'malformed-pem'],
    [() => X509Svid.parse(new Uint8Array([1, 2, 3, 4]), leaf.key.pkcs8Der), 'malformed-der'],
    [() => X509Svid.parse([leaf.der.subarray(0, leaf.der.length - 5)], leaf.key.pkcs8Der), 'malformed-der'],
    [() => X509Svid.parse([new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x01])], leaf.key.pkcs8Der), 'malformed-der'],
    [() => X509Svid.parse([leaf.der], other.pkcs8Der), 'key-mismatch'],
    [() => X509Svid.parse([leaf.der], new Uint8Array([0x30, 0x00])), 'malformed-key'],
    [() => X509Svid.parse([leaf.der], 'not a key'), 'malformed-key'],
    [() => X509Svid.parse([leaf.der], leaf.key.publicKey), 'malformed-key'],
    [() => X509Svid.parse([leaf.der, leafAsIntermediate.der], leaf.key.pkcs8Der), 'intermediate-not-ca'],
    [() => X509Svid.parse([leaf.der, badInter.der], leaf.key.pkcs8Der), 'intermediate-no-key-cert-sign'],
    [() => X509Svid.parse([leaf.der, pathInter.der], leaf.key.pkcs8Der), 'signing-cert-id-has-path'],
  ];
  for (const [fn, reason] of cases) t.is(reasonOf(fn), reason, reason);
  // The passing side of the signing-certificate rules.
  t.notThrows(() => X509Svid.parse([leaf.der, pki.inter.der], leaf.key.pkcs8Der));
});

// ---- verify: path validation, cross-checked with openssl ----

interface VerifyCase {
  name: string;
  /** Build roots (bundle), the chain sent by the peer (leaf first), and the time. */
  build: () => Promise<{ roots: TestCert[]; chain: TestCert[]; at?: Date }>;
  /** Expected reason, or undefined to accept. */
  reason?: string;
  /** Whether openssl must agree (false for SPIFFE-only rules). */
  openssl: boolean;
}

const VERIFY: VerifyCase[] = [
  {
    name: 'leaf issued by the root directly',
    build: async () => ({ roots: [pki.root], chain: [await createLeaf({ issuer: pki.root })] }),
    openssl: true,
  },
  {
    name: 'leaf via one intermediate',
    build: async () => ({ roots: [pki.root], chain: [await createLeaf({ issuer: pki.inter }), pki.inter] }),
    openssl: true,
  },
  {
    name: 'leaf via two intermediates',
    build: async () => {
      const i2 = await createCa({ issuer: pki.inter, name: 'CN=Second Intermediate' });
      return { roots: [pki.root], chain: [await createLeaf({ issuer: i2 }), i2, pki.inter] };
    },
    openssl: true,
  },
  {
    name: 'peer also sends the root',
    build: async () => ({ roots: [pki.root], chain: [await createLeaf({ issuer: pki.inter }), pki.inter, pki.root] }),
    openssl: true,
  },
  {
    name: 'peer sends intermediates out of order',
    build: async () => {
      const i2 = await createCa({ issuer: pki.inter, name: 'CN=Second Intermediate' });
      return { roots: [pki.root], chain: [await createLeaf({ issuer: i2 }), pki.inter, i2] };
    },
    openssl: true,
  },
  {
    name: 'second of two roots in the bundle (rotation)',
    build: async () => {
      const newRoot = await createCa({ name: 'CN=Next Root CA' });
      return { roots: [pki.root, newRoot], chain: [await createLeaf({ issuer: newRoot })] };
    },
    openssl: true,
  },
  {
    name: 'pathLen 1 with one intermediate',
    build: async () => {
      const root = await createCa({ pathLen: 1 });
      const inter = await createCa({ issuer: root });
      return { roots: [root], chain: [await createLeaf({ issuer: inter }), inter] };
    },
    openssl: true,
  },
  {
    name: 'pathLen 0 on the last intermediate',
    build: async () => {
      const inter = await createCa({ issuer: pki.root, pathLen: 0, name: 'CN=Issuing CA' });
      return { roots: [pki.root], chain: [await createLeaf({ issuer: inter }), inter] };
    },
    openssl: true,
  },
  {
    name: 'RSA root signing an EC leaf',
    build: async () => {
      const root = await createCa({ keyAlg: 'rsa-2048', name: 'CN=RSA Root' });
      return { roots: [root], chain: [await createLeaf({ issuer: root })] };
    },
    openssl: true,
  },
  {
    name: 'RSA-PSS root (signature parameters read from the certificate)',
    build: async () => {
      const root = await createCa({ keyAlg: 'rsa-pss-2048', name: 'CN=PSS Root' });
      return { roots: [root], chain: [await createLeaf({ issuer: root })] };
    },
    openssl: true,
  },
  {
    name: 'P-384 root and intermediate',
    build: async () => {
      const root = await createCa({ keyAlg: 'ec-p384', name: 'CN=P384 Root' });
      const inter = await createCa({ keyAlg: 'ec-p521', issuer: root, name: 'CN=P521 Intermediate' });
      return { roots: [root], chain: [await createLeaf({ issuer: inter }), inter] };
    },
    openssl: true,
  },
  {
    name: 'pathLen 0 root with one intermediate',
    build: async () => {
      const root = await createCa({ pathLen: 0 });
      const inter = await createCa({ issuer: root });
      return { roots: [root], chain: [await createLeaf({ issuer: inter }), inter] };
    },
    reason: 'path-len-exceeded',
    openssl: true,
  },
  {
    name: 'pathLen 0 intermediate above another intermediate',
    build: async () => {
      const i1 = await createCa({ issuer: pki.root, pathLen: 0, name: 'CN=Upper' });
      const i2 = await createCa({ issuer: i1, name: 'CN=Lower' });
      return { roots: [pki.root], chain: [await createLeaf({ issuer: i2 }), i2, i1] };
    },
    reason: 'path-len-exceeded',
    openssl: true,
  },
  {
    name: 'leaf signed by an impostor CA with the root name',
    build: async () => {
      const impostor = await createCa({ name: 'CN=Test Root CA' });
      return { roots: [pki.root], chain: [await createLeaf({ issuer: impostor })] };
    },
    reason: 'bad-signature',
    openssl: true,
  },
  {
    name: 'intermediate signed by an impostor root',
    build: async () => {
      const impostor = await createCa({ name: 'CN=Test Root CA' });
      const inter = await createCa({ issuer: impostor });
      return { roots: [pki.root], chain: [await createLeaf({ issuer: inter }), inter] };
    },
    reason: 'bad-signature',
    openssl: true,
  },
  {
    name: 'leaf from another CA hierarchy',
    build: async () => {
      const other = await createCa({ name: 'CN=Other Root' });
      return { roots: [pki.root], chain: [await createLeaf({ issuer: other })] };
    },
    reason: 'untrusted',
    openssl: true,
  },
  {
    name: 'intermediate missing from the chain',
    build: async () => ({ roots: [pki.root], chain: [await createLeaf({ issuer: pki.inter })] }),
    reason: 'untrusted',
    openssl: true,
  },
  {
    name: 'expired leaf',
    build: async () => ({
      roots: [pki.root],
      chain: [await createLeaf({ issuer: pki.root, notBefore: new Date(NOW.getTime() - 3 * HOUR), notAfter: new Date(NOW.getTime() - HOUR) })],
    }),
    reason: 'expired',
    openssl: true,
  },
  {
    name: 'leaf not yet valid',
    build: async () => ({
      roots: [pki.root],
      chain: [await createLeaf({ issuer: pki.root, notBefore: new Date(NOW.getTime() + HOUR), notAfter: new Date(NOW.getTime() + 3 * HOUR) })],
    }),
    reason: 'not-yet-valid',
    openssl: true,
  },
  {
    name: 'expired intermediate',
    build: async () => {
      const inter = await createCa({ issuer: pki.root, notBefore: new Date(NOW.getTime() - 5 * HOUR), notAfter: new Date(NOW.getTime() - HOUR) });
      return { roots: [pki.root], chain: [await createLeaf({ issuer: inter }), inter] };
    },
    reason: 'expired',
    openssl: true,
  },
  {
    name: 'expired root',
    build: async () => {
      const root = await createCa({ notBefore: new Date(NOW.getTime() - 5 * HOUR), notAfter: new Date(NOW.getTime() - HOUR) });
      return { roots: [root], chain: [await createLeaf({ issuer: root })] };
    },
    reason: 'expired',
    openssl: true,
  },
  {
    name: 'valid chain checked at a time after it expires',
    build: async () => ({ roots: [pki.root], chain: [await createLeaf({ issuer: pki.inter }), pki.inter], at: new Date(NOW.getTime() + 2 * HOUR) }),
    reason: 'expired',
    openssl: true,
  },
  {
    name: 'intermediate with cA=false',
    build: async () => {
      const inter = await createCa({ issuer: pki.root, ca: false, keyUsage: KU.digitalSignature, id: null });
      return { roots: [pki.root], chain: [await createLeaf({ issuer: inter }), inter] };
    },
    reason: 'intermediate-not-ca',
    openssl: true,
  },
  {
    name: 'leaf with an unknown critical extension',
    build: async () => ({ roots: [pki.root], chain: [await createLeaf({ issuer: pki.root, extensions: [rawExtension('1.2.3.4.5', true)] })] }),
    reason: 'unsupported-critical-extension',
    openssl: true,
  },
  {
    name: 'leaf with an unknown non-critical extension',
    build: async () => ({ roots: [pki.root], chain: [await createLeaf({ issuer: pki.root, extensions: [rawExtension('1.2.3.4.5', false)] })] }),
    openssl: true,
  },
  {
    name: 'leaf of a trust domain with no bundle',
    build: async () => ({ roots: [pki.root], chain: [await createLeaf({ issuer: pki.root, id: 'spiffe://other.org/web' })] }),
    reason: 'no-bundle',
    openssl: false,
  },
  {
    name: 'leaf rules apply in verification too (cA=true leaf)',
    build: async () => ({ roots: [pki.root], chain: [await createLeaf({ issuer: pki.root, ca: true })] }),
    reason: 'leaf-ca-true',
    openssl: false,
  },
];

for (const c of VERIFY) {
  test(`verify ${c.reason === undefined ? 'accepts' : `rejects ${c.reason}`}: ${c.name}`, async (t) => {
    const { roots, chain, at = NOW } = await c.build();
    const bundle = Bundle.create(TD, { x509Authorities: roots.map((r) => r.der) });
    const source = new BundleSet([bundle]);
    const got = reasonOf(() => verifyX509SvidChain(chain.map((x) => x.der), source, at));
    t.is(got, c.reason);
    if (c.reason === undefined) {
      const v = verifyX509SvidChain(chain.map((x) => x.der), source, at);
      t.is(v.id.toString(), chain[0]!.x509.subjectAltName?.replace(/^URI:/, '') ?? '');
      t.true(roots.some((r) => Buffer.from(r.der).equals(v.chain[v.chain.length - 1]!.der)), 'path ends at a trust anchor');
    }
    if (c.openssl) {
      const r = await opensslVerify({ roots: roots.map((x) => x.pem), untrusted: chain.slice(1).map((x) => x.pem), leaf: chain[0]!.pem, at });
      t.is(r.ok, c.reason === undefined, r.output);
    }
  });
}

test('verify reports an empty bundle as untrusted and accepts an already-parsed chain', async (t) => {
  const leaf = await createLeaf({ issuer: pki.inter });
  const chain = X509Svid.parseChainOnly([leaf.der, pki.inter.der]);
  t.is(reasonOf(() => verifyX509SvidChain(chain, Bundle.create(TD), NOW)), 'untrusted');
  const v = verifyX509SvidChain(chain, pki.bundle, NOW);
  t.is(v.chain.length, 3);
  t.is(v.chain[0], chain.leaf, 'the parsed leaf is reused, not re-parsed');
  t.is(v.chain[2], pki.bundle.x509Authorities[0], 'the bundle anchor is reused, not re-parsed');
});
