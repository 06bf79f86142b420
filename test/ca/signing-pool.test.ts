/**
 * Signing on worker threads (CaManager `signingThreads`) must be invisible to callers: the
 * same leaf as the calling-thread path apart from serial and signature, the same refusals
 * (code and reason) for bad CSRs, the new key right after a CA rotation, and a quiet
 * fallback to the calling thread once closed or for keys held outside the process.
 */
import test, { type ExecutionContext } from 'ava';
import { X509Certificate, webcrypto } from 'node:crypto';
import { isSigilError, SigilError } from '../../src/common/errors.js';
import { x509 } from '../../src/common/x509.js';
import { bytesOf, children, readWhole } from '../../src/ca/der.js';
import { MemoryKeyManager } from '../../src/ca/key-manager/memory-key-manager.js';
import { MAX_JOBS_PER_MESSAGE, SigningPool } from '../../src/ca/signing-pool.js';
import type { KeyManager, KeyType, ManagedKey } from '../../src/plugin/key-manager.js';
import { TD, makeCa, makeCsr, opensslVerify, tempDir, type LeafKeyKind } from './helpers.js';

const CA_TYPES: KeyType[] = ['ec-p256', 'ec-p384', 'rsa-2048'];
const LEAF_TYPES: LeafKeyKind[] = ['ec-p256', 'ec-p384', 'rsa-2048', 'ed25519'];

/** The TBSCertificate's fields as DER, serial (field 1) blanked. */
function tbsFieldsWithoutSerial(der: Buffer): string[] {
  const [tbs] = children(der, readWhole(der));
  return children(der, tbs!).map((n, i) => (i === 1 ? 'serial' : bytesOf(der, n).toString('hex')));
}

/** The Certificate's outer signature algorithm, as DER hex. */
function outerAlgorithm(der: Buffer): string {
  return bytesOf(der, children(der, readWhole(der))[1]!).toString('hex');
}

async function pooledCa(t: ExecutionContext, extra: Parameters<typeof makeCa>[0] = {}): Promise<Awaited<ReturnType<typeof makeCa>>> {
  const made = await makeCa({ signingThreads: 2, ...extra });
  t.teardown(() => made.ca.close());
  return made;
}

async function refusal(p: Promise<unknown>): Promise<{ code: string; reason: string | undefined }> {
  try {
    await p;
  } catch (err) {
    if (err instanceof SigilError) return { code: err.code, reason: err.reason };
    throw err;
  }
  throw new Error('expected a refusal');
}

for (const caType of CA_TYPES) {
  test(`a ${caType} CA: thread-signed leaves equal calling-thread leaves but for serial and signature, and verify with openssl`, async (t) => {
    const { ca, clock } = await pooledCa(t, { x509CaKeyType: caType });
    const { dir, cleanup } = await tempDir();
    t.teardown(cleanup);
    t.is(ca.signingThreads, 2);
    const caDer = ca.x509Authorities()[0] as Buffer;
    const inputs = [];
    for (const kind of LEAF_TYPES) {
      const { csr } = await makeCsr(kind);
      inputs.push({ kind, csr, spiffeId: TD.id('ns', kind), dnsNames: kind === 'ec-p256' ? ['web.example.org', '*.web.example.org'] : [] });
    }
    const threaded = await Promise.all(inputs.map((i) => ca.signX509SvidFromCsr({ csr: i.csr, spiffeId: i.spiffeId, dnsNames: i.dnsNames })));
    await ca.close();
    t.is(ca.signingThreads, 0);
    for (const [n, i] of inputs.entries()) {
      const inline = await ca.signX509SvidFromCsr({ csr: i.csr, spiffeId: i.spiffeId, dnsNames: i.dnsNames });
      const leaf = threaded[n]!.chain[0] as Buffer;
      t.deepEqual(tbsFieldsWithoutSerial(leaf), tbsFieldsWithoutSerial(inline.chain[0] as Buffer), i.kind);
      t.is(outerAlgorithm(leaf), outerAlgorithm(inline.chain[0] as Buffer), i.kind);
      t.is(threaded[n]!.notAfter.getTime(), inline.notAfter.getTime());
      t.is(BigInt(`0x${new X509Certificate(leaf).serialNumber}`), BigInt(`0x${threaded[n]!.serial}`));
      t.true(new X509Certificate(leaf).verify(new X509Certificate(caDer).publicKey), i.kind);
      t.true(await new x509.X509Certificate(leaf).verify({ publicKey: new x509.X509Certificate(caDer), signatureOnly: true }), i.kind);
      t.regex(await opensslVerify(dir, threaded[n]!.chain, ca.x509Authorities(), clock.nowMs() + 1000), /: OK/, i.kind);
    }
  });
}

test('bad CSRs are refused on the threads with the same code and reason as on the calling thread', async (t) => {
  const { ca: pooled } = await pooledCa(t);
  const { ca: inline } = await makeCa();
  const { csr, publicKey } = await makeCsr();
  const other = await makeCsr();
  const badSig = Buffer.from(csr);
  badSig[badSig.length - 5] = (badSig[badSig.length - 5] as number) ^ 0x01;
  const aSpki = publicKey.export({ format: 'der', type: 'spki' });
  const at = csr.indexOf(aSpki);
  const forged = Buffer.concat([csr.subarray(0, at), other.publicKey.export({ format: 'der', type: 'spki' }), csr.subarray(at + aSpki.length)]);
  const weakAlg = { name: 'RSASSA-PKCS1-v1_5', modulusLength: 1024, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' };
  const weakKeys = (await webcrypto.subtle.generateKey(weakAlg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  type CsrParams = Parameters<typeof x509.Pkcs10CertificateRequestGenerator.create>[0];
  const weak = await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=w', keys: weakKeys as unknown as CsrParams['keys'], signingAlgorithm: weakAlg as CsrParams['signingAlgorithm'] });
  const cases: [string, Buffer][] = [
    ['bad signature', badSig],
    ['forged key', forged],
    ['empty', Buffer.alloc(0)],
    ['garbage', Buffer.from('hello')],
    ['truncated', csr.subarray(0, csr.length - 3)],
    ['trailing byte', Buffer.concat([csr, Buffer.from([0])])],
    ['weak RSA key', Buffer.from(weak.rawData)],
  ];
  for (const [label, bytes] of cases) {
    const want = await refusal(inline.signX509SvidFromCsr({ csr: bytes, spiffeId: TD.id('w') }));
    const got = await refusal(pooled.signX509SvidFromCsr({ csr: bytes, spiffeId: TD.id('w') }));
    t.deepEqual(got, want, label);
    t.is(got.code, 'ERR_INVALID_ARGUMENT', label);
    t.truthy(got.reason, label);
  }
  // a refusal in a batch does not disturb its neighbours
  const mixed = await Promise.allSettled([csr, badSig, other.csr].map((c) => pooled.signX509SvidFromCsr({ csr: c, spiffeId: TD.id('w') })));
  t.deepEqual(mixed.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled']);
});

test('many concurrent requests across the threads: every leaf valid, serials distinct', async (t) => {
  const { ca } = await pooledCa(t);
  const csrs = await Promise.all(Array.from({ length: 8 }, () => makeCsr()));
  const caCert = new X509Certificate(ca.x509Authorities()[0] as Buffer);
  const svids = await Promise.all(Array.from({ length: 300 }, (_, i) => ca.signX509SvidFromCsr({ csr: csrs[i % csrs.length]!.csr, spiffeId: TD.id('w', String(i)) })));
  t.is(new Set(svids.map((s) => s.serial)).size, 300);
  for (const [i, s] of svids.entries()) {
    const cert = new X509Certificate(s.chain[0] as Buffer);
    t.true(cert.verify(caCert.publicKey));
    t.is(cert.subjectAltName, `URI:${TD.id('w', String(i)).toString()}`);
    t.true(cert.publicKey.equals(csrs[i % csrs.length]!.publicKey));
  }
});

test('after a CA rotation the threads sign with the new CA', async (t) => {
  const { ca, clock } = await pooledCa(t);
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const { csr } = await makeCsr();
  const first = await ca.signX509SvidFromCsr({ csr, spiffeId: TD.id('w') });
  await ca.prepare('x509');
  const next = await ca.activate('x509');
  const second = await ca.signX509SvidFromCsr({ csr, spiffeId: TD.id('w') });
  const aki = (der: Buffer): string | undefined => new x509.X509Certificate(der).getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId;
  t.not(aki(first.chain[0] as Buffer), aki(second.chain[0] as Buffer));
  t.is(aki(second.chain[0] as Buffer), next.id);
  t.regex(await opensslVerify(dir, second.chain, ca.x509Authorities(), clock.nowMs() + 1000), /: OK/);
});

test('keys held outside the process are used on the calling thread', async (t) => {
  // a key manager whose keys expose only `sign`, as an HSM-backed one would
  const inner = new MemoryKeyManager();
  const opaque = (k: ManagedKey): ManagedKey => ({ id: k.id, type: k.type, publicKey: k.publicKey, sign: (d, o) => k.sign(d, o) });
  const remote: KeyManager = {
    generateKey: async (id, type) => opaque(await inner.generateKey(id, type)),
    getKey: async (id) => {
      const k = await inner.getKey(id);
      return k === undefined ? undefined : opaque(k);
    },
    listKeys: async () => (await inner.listKeys()).map(opaque),
    deleteKey: (id) => inner.deleteKey(id),
  };
  const { ca } = await pooledCa(t, { keyManager: remote as MemoryKeyManager });
  const { csr } = await makeCsr();
  const svid = await ca.signX509SvidFromCsr({ csr, spiffeId: TD.id('w') });
  t.true(new X509Certificate(svid.chain[0] as Buffer).verify(new X509Certificate(ca.x509Authorities()[0] as Buffer).publicKey));
  const err = await t.throwsAsync(ca.signX509SvidFromCsr({ csr: Buffer.from('x'), spiffeId: TD.id('w') }));
  t.true(isSigilError(err, 'ERR_INVALID_ARGUMENT'));
});

test('pool sizes outside 1..64 are a config error; a closed pool refuses work', async (t) => {
  for (const n of [0, -1, 1.5, 65, Number.NaN]) {
    const err = t.throws(() => new SigningPool(n));
    t.true(isSigilError(err, 'ERR_CONFIG_INVALID'), String(n));
    t.is((err as SigilError).reason, 'bad-signing-threads');
  }
  const pool = new SigningPool(1);
  await pool.close();
  const { csr } = await makeCsr();
  const err = await t.throwsAsync(pool.sign({ keyRef: 1, csr, serial: Buffer.from([1]), notBeforeMs: 0, notAfterMs: 1000, spiffeId: 'spiffe://example.org/w', dnsNames: [] }));
  t.true(isSigilError(err, 'ERR_UNAVAILABLE'));
});

test('an unknown key reference fails that request only, as an internal error', async (t) => {
  const pool = new SigningPool(1);
  t.teardown(() => pool.close());
  const { csr } = await makeCsr();
  const err = await t.throwsAsync(pool.sign({ keyRef: 99, csr, serial: Buffer.from([1]), notBeforeMs: 0, notAfterMs: 1000, spiffeId: 'spiffe://example.org/w', dnsNames: [] }));
  t.true(isSigilError(err, 'ERR_INTERNAL'));
});

test('a request whose signal fired is refused unsigned; the backlog estimate follows the measured rate (issue 20)', async (t) => {
  const { ca } = await pooledCa(t);
  const { csr } = await makeCsr();
  t.is(ca.signingBacklogMs(1000), 0, 'no estimate before anything was measured');
  // Enough work that most of it still waits in the pool when the signal fires.
  const ctl = new AbortController();
  const all = Array.from({ length: 2000 }, () => ca.signX509SvidFromCsr({ csr, spiffeId: TD.id('w'), signal: ctl.signal }));
  const first = await Promise.race(all);
  t.truthy(first.serial);
  ctl.abort();
  const settled = await Promise.allSettled(all);
  const refused = settled.filter((r) => r.status === 'rejected');
  t.true(refused.length > 0, 'every queued request was signed after the abort');
  for (const r of refused) t.true(isSigilError((r as PromiseRejectedResult).reason, 'ERR_CANCELLED'));
  await t.throwsAsync(ca.signX509SvidFromCsr({ csr, spiffeId: TD.id('w'), signal: ctl.signal }), { message: /gave up/ });
  // The replies measured a rate: more work waits longer.
  const small = ca.signingBacklogMs(10);
  const big = ca.signingBacklogMs(100_000);
  t.true(small > 0 && big > small * 100, `estimates ${small} ms and ${big} ms`);
});

test('an agent SVID waits only for the messages already on the threads, not behind thousands of queued workload SVIDs (issue 20)', async (t) => {
  const { ca } = await pooledCa(t);
  const { agent } = ca.takeReservedIssuance();
  const { csr } = await makeCsr();
  let done = 0;
  const workload = Array.from({ length: 3000 }, () => ca.signX509SvidFromCsr({ csr, spiffeId: TD.id('w') }).then(() => done++));
  // queued in the same turn, after all of them
  const signedBefore = ca.signX509SvidFromCsr({ csr, spiffeId: TD.id('sigil', 'agent', 'join_token', 'a'), issuance: agent }).then(() => done);
  const before = await signedBefore;
  await Promise.all(workload);
  // two messages per thread may be out when it queues, and it may share the next one
  const bound = ca.signingThreads * 2 * MAX_JOBS_PER_MESSAGE + MAX_JOBS_PER_MESSAGE;
  t.true(before <= bound, `${before} workload SVIDs were signed before the agent's (bound ${bound})`);
});
