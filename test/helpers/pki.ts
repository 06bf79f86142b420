/**
 * Test PKI, generated at test time (never committed): CAs, intermediates and X.509-SVID
 * leaves with any SPIFFE defect switchable, and JWT signing keys and tokens with any header
 * or claims. Built on node:crypto and @peculiar/x509 (with Node's webcrypto as provider).
 *
 * Typical use:
 *   const root = await createCa({ id: 'spiffe://example.org' });
 *   const leaf = await createLeaf({ issuer: root, id: 'spiffe://example.org/web' });
 *   X509Svid.parse([leaf.der], leaf.key.pkcs8Der);
 *   const bad = await createLeaf({ issuer: root, ca: true }); // 'leaf-ca-true'
 */
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { createHmac, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, webcrypto, X509Certificate, type KeyObject } from 'node:crypto';

/** The PEM label of PKCS#8 keys (built, so no key-shaped literal sits in the repository). */
const PKCS8_LABEL = ['PRIVATE', 'KEY'].join(' ');

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type CryptoKeyPair = webcrypto.CryptoKeyPair;

/** Key algorithms the helpers can generate. */
export type TestKeyAlg = 'ec-p256' | 'ec-p384' | 'ec-p521' | 'rsa-2048' | 'rsa-pss-2048';

/** A generated key pair in every form tests need. */
export interface TestKeyPair {
  readonly alg: TestKeyAlg;
  /** WebCrypto pair (for @peculiar/x509). */
  readonly keys: CryptoKeyPair;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  /** PKCS#8 DER of the private key. */
  readonly pkcs8Der: Uint8Array;
  /** PKCS#8 PEM of the private key. */
  readonly pkcs8Pem: string;
}

/** A generated certificate with its key. */
export interface TestCert {
  readonly der: Uint8Array;
  readonly pem: string;
  /** Node's view of the certificate. */
  readonly x509: X509Certificate;
  /** The subject DN as given (issuers of children reuse it). */
  readonly subject: string;
  /** The certified key pair. */
  readonly key: TestKeyPair;
}

/** Key usage flags, as @peculiar/x509 numbers them (RFC 5280 bit n = 1 << n). */
export const KU = x509.KeyUsageFlags;
/** EKU purpose OIDs. */
export const EKU = { serverAuth: '1.3.6.1.5.5.7.3.1', clientAuth: '1.3.6.1.5.5.7.3.2', codeSigning: '1.3.6.1.5.5.7.3.3' } as const;

const ALGS: Record<TestKeyAlg, { gen: webcrypto.EcKeyGenParams | webcrypto.RsaHashedKeyGenParams; sign: webcrypto.EcdsaParams | webcrypto.Algorithm }> = {
  'ec-p256': { gen: { name: 'ECDSA', namedCurve: 'P-256' }, sign: { name: 'ECDSA', hash: 'SHA-256' } as webcrypto.EcdsaParams },
  'ec-p384': { gen: { name: 'ECDSA', namedCurve: 'P-384' }, sign: { name: 'ECDSA', hash: 'SHA-384' } as webcrypto.EcdsaParams },
  'ec-p521': { gen: { name: 'ECDSA', namedCurve: 'P-521' }, sign: { name: 'ECDSA', hash: 'SHA-512' } as webcrypto.EcdsaParams },
  'rsa-2048': {
    gen: { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' },
    sign: { name: 'RSASSA-PKCS1-v1_5' },
  },
  'rsa-pss-2048': {
    gen: { name: 'RSA-PSS', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' },
    sign: { name: 'RSA-PSS', saltLength: 32 } as webcrypto.RsaPssParams,
  },
};

/** Generates a key pair (P-256 by default). */
export async function generateKeyPair(alg: TestKeyAlg = 'ec-p256'): Promise<TestKeyPair> {
  const keys = (await webcrypto.subtle.generateKey(ALGS[alg].gen, true, ['sign', 'verify'])) as CryptoKeyPair;
  const pkcs8Der = new Uint8Array(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const privateKey = createPrivateKey({ key: Buffer.from(pkcs8Der), format: 'der', type: 'pkcs8' });
  const b64 = Buffer.from(pkcs8Der).toString('base64').replace(/(.{64})/g, '$1\n');
  return {
    alg,
    keys,
    privateKey,
    publicKey: createPublicKey(privateKey),
    pkcs8Der,
    pkcs8Pem: `-----BEGIN ${PKCS8_LABEL}-----\n${b64.endsWith('\n') ? b64 : `${b64}\n`}-----END ${PKCS8_LABEL}-----\n`,
  };
}

const HOUR = 3600_000;

function randomSerial(): string {
  // Positive, 16 bytes: top bit cleared so the INTEGER needs no sign padding surprises.
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x01;
  return b.toString('hex');
}

async function finish(cert: x509.X509Certificate, subject: string, key: TestKeyPair): Promise<TestCert> {
  const der = new Uint8Array(cert.rawData);
  return { der, pem: cert.toString('pem') + '\n', x509: new X509Certificate(der), subject, key };
}

/** Options of createCa; every defect is a switch. */
export interface CaOptions {
  /** Subject DN (default `CN=Test Root CA` or `CN=Test Intermediate CA`). */
  readonly name?: string;
  /** URI SAN (default `spiffe://example.org`); null for no SAN. */
  readonly id?: string | null;
  /** The issuing CA; omitted for a self-signed root. */
  readonly issuer?: TestCert;
  /** basicConstraints cA (default true); null to omit basicConstraints. */
  readonly ca?: boolean | null;
  /** basicConstraints pathLenConstraint. */
  readonly pathLen?: number;
  /** Key usage flags (default keyCertSign | cRLSign); null to omit. */
  readonly keyUsage?: number | null;
  readonly notBefore?: Date;
  readonly notAfter?: Date;
  /** The CA's key (default: a new P-256 key). */
  readonly key?: TestKeyPair;
  /** Key algorithm when no key is given. */
  readonly keyAlg?: TestKeyAlg;
  /** Extra extensions appended as given. */
  readonly extensions?: readonly x509.Extension[];
}

/** Creates a root (self-signed) or intermediate CA. */
export async function createCa(opts: CaOptions = {}): Promise<TestCert> {
  const key = opts.key ?? (await generateKeyPair(opts.keyAlg));
  const subject = opts.name ?? (opts.issuer === undefined ? 'CN=Test Root CA' : 'CN=Test Intermediate CA');
  const extensions: x509.Extension[] = [];
  if (opts.ca !== null) extensions.push(new x509.BasicConstraintsExtension(opts.ca ?? true, opts.pathLen, true));
  const ku = opts.keyUsage === undefined ? KU.keyCertSign | KU.cRLSign : opts.keyUsage;
  if (ku !== null) extensions.push(new x509.KeyUsagesExtension(ku, true));
  const id = opts.id === undefined ? 'spiffe://example.org' : opts.id;
  if (id !== null) extensions.push(new x509.SubjectAlternativeNameExtension([{ type: 'url', value: id }], false));
  extensions.push(await x509.SubjectKeyIdentifierExtension.create(key.keys.publicKey));
  extensions.push(...(opts.extensions ?? []));
  const issuerKey = opts.issuer?.key ?? key;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject,
    issuer: opts.issuer?.subject ?? subject,
    notBefore: opts.notBefore ?? new Date(Date.now() - HOUR),
    notAfter: opts.notAfter ?? new Date(Date.now() + 24 * HOUR),
    publicKey: key.keys.publicKey,
    signingKey: issuerKey.keys.privateKey,
    signingAlgorithm: ALGS[issuerKey.alg].sign,
    extensions,
  });
  return finish(cert, subject, key);
}

/** Options of createLeaf; every defect of X509-SVID is a switch. */
export interface LeafOptions {
  /** The issuing CA. */
  readonly issuer: TestCert;
  /** The SPIFFE ID (default `spiffe://example.org/workload`). */
  readonly id?: string;
  /** URI SANs, overriding `id` (`[]` for none; two for the multiple-URI defect). */
  readonly uris?: readonly string[];
  /** DNS SANs added beside the URIs. */
  readonly dns?: readonly string[];
  /** Omit the SAN extension entirely. */
  readonly noSan?: boolean;
  /** SAN criticality (default: critical exactly when the subject is empty). */
  readonly sanCritical?: boolean;
  /** Subject DN (default `CN=workload`; `''` for an empty subject). */
  readonly subject?: string;
  /** basicConstraints cA (default false); null to omit basicConstraints. */
  readonly ca?: boolean | null;
  /** Key usage flags (default digitalSignature | keyEncipherment | keyAgreement); null to omit. */
  readonly keyUsage?: number | null;
  /** Key usage criticality (default true). */
  readonly keyUsageCritical?: boolean;
  /** EKU purposes (default serverAuth + clientAuth); null to omit. */
  readonly eku?: readonly string[] | null;
  readonly notBefore?: Date;
  readonly notAfter?: Date;
  /** The certified key (default: a new P-256 key). */
  readonly key?: TestKeyPair;
  /** Extra extensions appended as given. */
  readonly extensions?: readonly x509.Extension[];
}

/** Creates a leaf X.509-SVID signed by `issuer`. */
export async function createLeaf(opts: LeafOptions): Promise<TestCert> {
  const key = opts.key ?? (await generateKeyPair());
  const subject = opts.subject ?? 'CN=workload';
  const extensions: x509.Extension[] = [];
  if (opts.ca !== null) extensions.push(new x509.BasicConstraintsExtension(opts.ca ?? false, undefined, true));
  const ku = opts.keyUsage === undefined ? KU.digitalSignature | KU.keyEncipherment | KU.keyAgreement : opts.keyUsage;
  if (ku !== null) extensions.push(new x509.KeyUsagesExtension(ku, opts.keyUsageCritical ?? true));
  if (opts.eku !== null) extensions.push(new x509.ExtendedKeyUsageExtension([...(opts.eku ?? [EKU.serverAuth, EKU.clientAuth])], false));
  if (opts.noSan !== true) {
    const names: x509.JsonGeneralName[] = (opts.uris ?? [opts.id ?? 'spiffe://example.org/workload']).map((value) => ({ type: 'url', value }));
    for (const value of opts.dns ?? []) names.push({ type: 'dns', value });
    extensions.push(new x509.SubjectAlternativeNameExtension(names, opts.sanCritical ?? subject === ''));
  }
  extensions.push(...(opts.extensions ?? []));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject,
    issuer: opts.issuer.subject,
    notBefore: opts.notBefore ?? new Date(Date.now() - HOUR),
    notAfter: opts.notAfter ?? new Date(Date.now() + HOUR),
    publicKey: key.keys.publicKey,
    signingKey: opts.issuer.key.keys.privateKey,
    signingAlgorithm: ALGS[opts.issuer.key.alg].sign,
    extensions,
  });
  return finish(cert, subject, key);
}

/** A ready-made hierarchy: root → intermediate → leaf, all valid now. */
export async function createHierarchy(id = 'spiffe://example.org/workload'): Promise<{ root: TestCert; intermediate: TestCert; leaf: TestCert }> {
  const td = id.slice(0, id.indexOf('/', 'spiffe://'.length) === -1 ? undefined : id.indexOf('/', 'spiffe://'.length));
  const root = await createCa({ id: td });
  const intermediate = await createCa({ issuer: root, id: td });
  const leaf = await createLeaf({ issuer: intermediate, id });
  return { root, intermediate, leaf };
}

/** An extension with any OID, criticality and value (e.g. an unknown critical extension). */
export function rawExtension(oid: string, critical: boolean, value: Uint8Array = new Uint8Array([0x05, 0x00])): x509.Extension {
  return new x509.Extension(oid, critical, value);
}

// ---- JWT ----

/** A JWT signing key with its kid and algorithm. */
export interface TestJwtKey {
  readonly kid: string;
  readonly alg: string;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

/** Generates a JWT signing key for `alg` (ES256/384/512, RS*, PS*). */
export function createJwtKey(alg = 'ES256', kid: string = randomBytes(8).toString('hex')): TestJwtKey {
  let pair: { privateKey: KeyObject; publicKey: KeyObject };
  if (alg.startsWith('ES')) {
    const curve = { ES256: 'prime256v1', ES384: 'secp384r1', ES512: 'secp521r1' }[alg] ?? 'prime256v1';
    pair = generateKeyPairSync('ec', { namedCurve: curve });
  } else pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { kid, alg, ...pair };
}

const HASH: Record<string, string> = { '256': 'sha256', '384': 'sha384', '512': 'sha512' };

/** Options of signJwt. */
export interface SignJwtOptions {
  /** Header members replacing the default `{alg, kid, typ: 'JWT'}`; undefined values remove a member. */
  readonly header?: Record<string, unknown>;
  /** Sign as this algorithm instead of the key's (for alg/key mismatch cases). */
  readonly signAs?: string;
  /** HMAC secret for HS* algorithms. */
  readonly hmacSecret?: Uint8Array;
}

function b64url(v: unknown): string {
  return Buffer.from(JSON.stringify(v)).toString('base64url');
}

/**
 * Signs `claims` with `key` into a compact JWS. Any header is possible, including ones a
 * JWT library would refuse to produce (`alg: none`, HS256, extra members).
 */
export function signJwt(key: TestJwtKey, claims: Record<string, unknown>, opts: SignJwtOptions = {}): string {
  const header: Record<string, unknown> = { alg: key.alg, kid: key.kid, typ: 'JWT', ...opts.header };
  for (const k of Object.keys(header)) if (header[k] === undefined) delete header[k];
  const input = `${b64url(header)}.${b64url(claims)}`;
  const alg = opts.signAs ?? String(header.alg);
  let sig: Buffer;
  if (alg === 'none') sig = Buffer.alloc(0);
  else if (alg.startsWith('HS')) sig = createHmac(HASH[alg.slice(2)] ?? 'sha256', opts.hmacSecret ?? Buffer.from('secret')).update(input).digest();
  else {
    const hash = HASH[alg.slice(2)] ?? 'sha256';
    if (alg.startsWith('ES')) sig = sign(hash, Buffer.from(input), { key: key.privateKey, dsaEncoding: 'ieee-p1363' });
    else if (alg.startsWith('PS')) {
      sig = sign(hash, Buffer.from(input), { key: key.privateKey, padding: 6 /* RSA_PKCS1_PSS_PADDING */, saltLength: Number(alg.slice(2)) / 8 });
    } else sig = sign(hash, Buffer.from(input), key.privateKey);
  }
  return `${input}.${sig.toString('base64url')}`;
}

/** Standard claims for a JWT-SVID valid around `now` (seconds precision). */
export function jwtClaims(sub: string, aud: string | string[], now: Date = new Date(), ttlSeconds = 300): Record<string, unknown> {
  const iat = Math.floor(now.getTime() / 1000);
  return { sub, aud, iat, exp: iat + ttlSeconds };
}
