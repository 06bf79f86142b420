/**
 * The SPIFFE bundle of one trust domain (SPIFFE Trust Domain and Bundle standard): X.509
 * authorities and JWT authorities, with sequence number and refresh hint. Immutable: every
 * change makes a new value, so `equals` is enough for change detection. Certificates and
 * keys are parsed once, when the bundle is made, and kept for every verification after.
 */
import { createPublicKey, X509Certificate, type JsonWebKey, type KeyObject } from 'node:crypto';
import { ParsedCertificate } from './certificate.js';
import { bytesEqual, concatBytes, splitConcatenatedDer } from './der.js';
import { SigilError } from './errors.js';
import { decodePem, encodeCertificatesPem } from './pem.js';
import type { TrustDomain } from './spiffe-id.js';

/** The `use` value of X.509 authorities in a bundle. */
export const X509_SVID_USE = 'x509-svid';
/** The `use` value of JWT authorities in a bundle. */
export const JWT_SVID_USE = 'jwt-svid';

/** Key types whose JWKs this implementation understands; others are ignored, as section 4.2.1 says. */
const KNOWN_KTY = new Set(['RSA', 'EC', 'OKP']);
/** Public members of each key type, the only ones copied into or out of a JWK. */
const PUBLIC_MEMBERS: Record<string, readonly string[]> = { RSA: ['n', 'e'], EC: ['crv', 'x', 'y'], OKP: ['crv', 'x'] };
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

/** Where verifiers find the bundle of a trust domain (a Bundle, a BundleSet, a client source). */
export interface BundleSource {
  /** The bundle of `td`, or undefined when none is known. */
  getBundleForTrustDomain(td: TrustDomain): Bundle | undefined;
}

/** One JWT authority: a public key under its key ID. */
export interface JwtAuthority {
  readonly kid: string;
  readonly publicKey: KeyObject;
}

/** A JWK as it appears in a SPIFFE bundle. */
export interface BundleJwk {
  readonly kty: string;
  readonly use?: string;
  readonly kid?: string;
  readonly x5c?: readonly string[];
  readonly [member: string]: unknown;
}

/** A SPIFFE bundle document (JWK Set with the SPIFFE members). */
export interface BundleJwks {
  readonly keys: readonly BundleJwk[];
  readonly spiffe_sequence?: number;
  readonly spiffe_refresh_hint?: number;
}

/** What a bundle is made from; every member optional. */
export interface BundleContents {
  readonly x509Authorities?: Iterable<Uint8Array | X509Certificate | ParsedCertificate>;
  readonly jwtAuthorities?: Iterable<readonly [string, KeyObject | JsonWebKey]> | ReadonlyMap<string, KeyObject | JsonWebKey>;
  readonly sequenceNumber?: number | undefined;
  readonly refreshHintSeconds?: number | undefined;
}

function bundleError(reason: string, message: string, cause?: unknown): SigilError {
  return new SigilError('ERR_INVALID_BUNDLE', message, { reason, cause });
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkCount(v: unknown, reason: string, what: string): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw bundleError(reason, `${what} must be a non-negative integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

function toParsed(item: Uint8Array | X509Certificate | ParsedCertificate, i: number): ParsedCertificate {
  if (item instanceof ParsedCertificate) return item;
  try {
    return item instanceof X509Certificate ? ParsedCertificate.fromX509(item) : ParsedCertificate.fromDer(item);
  } catch (err) {
    throw bundleError('bad-x509-authority', `X.509 authority ${i} is not a valid certificate`, err);
  }
}

function importJwtKey(kid: string, key: KeyObject | JsonWebKey): KeyObject {
  if (typeof kid !== 'string' || kid === '') throw bundleError('missing-kid', 'JWT authority has no key ID');
  if (!(key instanceof Object) || !('type' in key) || typeof key.type !== 'string' || !('export' in key)) {
    const jwk = key as JsonWebKey;
    if (PRIVATE_MEMBERS.some((m) => m in jwk)) {
      throw bundleError('private-key-in-bundle', `JWT authority ${JSON.stringify(kid)} holds private key material`);
    }
    const kty = typeof jwk.kty === 'string' ? jwk.kty : '';
    const pub: Record<string, unknown> = { kty };
    for (const m of PUBLIC_MEMBERS[kty] ?? []) pub[m] = jwk[m];
    try {
      return createPublicKey({ key: pub as JsonWebKey, format: 'jwk' });
    } catch (err) {
      throw bundleError('bad-jwt-authority', `JWT authority ${JSON.stringify(kid)} is not a valid public key`, err);
    }
  }
  const ko = key as KeyObject;
  if (ko.type !== 'public') throw bundleError('private-key-in-bundle', `JWT authority ${JSON.stringify(kid)} is not a public key`);
  return ko;
}

function publicJwk(key: KeyObject): { kty: string; [member: string]: unknown } {
  const jwk = key.export({ format: 'jwk' }) as Record<string, unknown>;
  const kty = String(jwk.kty);
  const out: { kty: string; [member: string]: unknown } = { kty };
  for (const m of PUBLIC_MEMBERS[kty] ?? []) out[m] = jwk[m];
  return out;
}

/** The bundle of one trust domain. */
export class Bundle implements BundleSource {
  /** The trust domain the bundle belongs to (recorded beside it, never read from it). */
  readonly trustDomain: TrustDomain;
  /** X.509 authorities, parsed once, deduplicated by DER, in order. */
  readonly x509Authorities: readonly ParsedCertificate[];
  /** JWT authorities by key ID. */
  readonly jwtAuthorities: ReadonlyMap<string, JwtAuthority>;
  /** `spiffe_sequence`, when known. */
  readonly sequenceNumber: number | undefined;
  /** `spiffe_refresh_hint` in seconds, when known. */
  readonly refreshHintSeconds: number | undefined;
  #spki: Map<string, Buffer> | undefined;

  private constructor(
    trustDomain: TrustDomain,
    x509: readonly ParsedCertificate[],
    jwt: ReadonlyMap<string, JwtAuthority>,
    sequenceNumber: number | undefined,
    refreshHintSeconds: number | undefined,
  ) {
    this.trustDomain = trustDomain;
    this.x509Authorities = Object.freeze(x509);
    this.jwtAuthorities = jwt;
    this.sequenceNumber = sequenceNumber;
    this.refreshHintSeconds = refreshHintSeconds;
  }

  /** Makes a bundle from authorities; throws ERR_INVALID_BUNDLE on a bad certificate or key. */
  static create(trustDomain: TrustDomain, contents: BundleContents = {}): Bundle {
    const x509: ParsedCertificate[] = [];
    let i = 0;
    for (const item of contents.x509Authorities ?? []) {
      const parsed = toParsed(item, i++);
      if (!x509.some((c) => bytesEqual(c.der, parsed.der))) x509.push(parsed);
    }
    const jwt = new Map<string, JwtAuthority>();
    for (const [kid, key] of contents.jwtAuthorities ?? []) {
      if (jwt.has(kid)) throw bundleError('duplicate-kid', `JWT authority key ID ${JSON.stringify(kid)} appears twice`);
      jwt.set(kid, Object.freeze({ kid, publicKey: importJwtKey(kid, key) }));
    }
    return new Bundle(
      trustDomain,
      x509,
      jwt,
      checkCount(contents.sequenceNumber, 'bad-sequence', 'sequence number'),
      checkCount(contents.refreshHintSeconds, 'bad-refresh-hint', 'refresh hint'),
    );
  }

  /**
   * Parses a SPIFFE bundle (JWK Set) per the Trust Domain and Bundle standard and X509-SVID
   * section 6.2: unknown `use` or `kty` ignored; x509-svid entries without `x5c` ignored
   * and only the first `x5c` certificate used; jwt-svid entries without a `kid` ignored too,
   * since nothing could name them (JWT-SVID: the key ID must be set), so one such key does not
   * cost the trust domain all its other keys. With `requireKid` (input an operator typed,
   * where a missing kid is a mistake to point out) such an entry is refused (`missing-kid`).
   */
  static parseJwks(trustDomain: TrustDomain, json: string | Uint8Array | object, options: { readonly requireKid?: boolean } = {}): Bundle {
    let doc: unknown = json;
    if (typeof json === 'string' || json instanceof Uint8Array) {
      try {
        doc = JSON.parse(typeof json === 'string' ? json : Buffer.from(json).toString('utf8'));
      } catch (err) {
        throw bundleError('malformed-json', 'bundle is not valid JSON', err);
      }
    }
    if (!isPlainObject(doc)) throw bundleError('not-an-object', 'bundle is not a JSON object');
    if (!Array.isArray(doc.keys)) throw bundleError('missing-keys', 'bundle has no "keys" array');
    const x509: Uint8Array[] = [];
    const jwt: [string, JsonWebKey][] = [];
    doc.keys.forEach((key: unknown, i: number) => {
      if (!isPlainObject(key)) throw bundleError('bad-key', `bundle key ${i} is not an object`);
      if (typeof key.kty !== 'string' || !KNOWN_KTY.has(key.kty)) return;
      if (key.use === X509_SVID_USE) {
        const x5c = key.x5c;
        if (x5c === undefined || (Array.isArray(x5c) && x5c.length === 0)) return;
        if (!Array.isArray(x5c) || typeof x5c[0] !== 'string' || !/^[A-Za-z0-9+/]+={0,2}$/.test(x5c[0])) {
          throw bundleError('bad-x509-authority', `bundle key ${i} has a malformed x5c`);
        }
        x509.push(new Uint8Array(Buffer.from(x5c[0], 'base64')));
      } else if (key.use === JWT_SVID_USE) {
        if (key.kid === undefined || key.kid === '') {
          if (options.requireKid === true) throw bundleError('missing-kid', `bundle key ${i} (jwt-svid) has no kid`);
          return;
        }
        if (typeof key.kid !== 'string') throw bundleError('bad-kid', `bundle key ${i} (jwt-svid) has a kid that is not a string`);
        jwt.push([key.kid, key as JsonWebKey]);
      }
    });
    return Bundle.create(trustDomain, {
      x509Authorities: x509,
      jwtAuthorities: jwt,
      sequenceNumber: checkCount(doc.spiffe_sequence, 'bad-sequence', 'spiffe_sequence'),
      refreshHintSeconds: checkCount(doc.spiffe_refresh_hint, 'bad-refresh-hint', 'spiffe_refresh_hint'),
    });
  }

  /** An X.509-only bundle from concatenated DER certificates (the Workload API's form). */
  static fromX509Der(trustDomain: TrustDomain, der: Uint8Array): Bundle {
    let certs: Uint8Array[];
    try {
      certs = splitConcatenatedDer(der);
    } catch (err) {
      throw bundleError('malformed-der', 'X.509 bundle DER is malformed', err);
    }
    return Bundle.create(trustDomain, { x509Authorities: certs });
  }

  /** An X.509-only bundle from CERTIFICATE PEM blocks (bundle.pem, operator files). */
  static fromX509Pem(trustDomain: TrustDomain, pem: string): Bundle {
    let certs: Uint8Array[];
    try {
      certs = decodePem(pem)
        .filter((b) => b.label === 'CERTIFICATE')
        .map((b) => b.der);
    } catch (err) {
      throw bundleError('malformed-pem', 'X.509 bundle PEM is malformed', err);
    }
    return Bundle.create(trustDomain, { x509Authorities: certs });
  }

  /** A JWT-only bundle from the JWKS bytes of the Workload API's JWT bundles. */
  static fromJwtJwks(trustDomain: TrustDomain, json: string | Uint8Array): Bundle {
    const parsed = Bundle.parseJwks(trustDomain, json);
    return parsed.with({ x509Authorities: [] });
  }

  /** A copy with some members replaced (authorities are reused, not re-parsed). */
  with(changes: BundleContents): Bundle {
    const jwt: [string, KeyObject][] | undefined =
      changes.jwtAuthorities === undefined ? undefined : [...changes.jwtAuthorities].map(([k, v]) => [k, importJwtKey(k, v)]);
    return Bundle.create(this.trustDomain, {
      x509Authorities: changes.x509Authorities ?? this.x509Authorities,
      jwtAuthorities: jwt ?? [...this.jwtAuthorities].map(([k, a]) => [k, a.publicKey] as const),
      sequenceNumber: 'sequenceNumber' in changes ? changes.sequenceNumber : this.sequenceNumber,
      refreshHintSeconds: 'refreshHintSeconds' in changes ? changes.refreshHintSeconds : this.refreshHintSeconds,
    });
  }

  /** A copy (values are immutable; this exists for symmetry with mutable holders). */
  clone(): Bundle {
    return new Bundle(this.trustDomain, this.x509Authorities, new Map(this.jwtAuthorities), this.sequenceNumber, this.refreshHintSeconds);
  }

  /** The bundle itself when `td` is its trust domain: a bundle is its own source. */
  getBundleForTrustDomain(td: TrustDomain): Bundle | undefined {
    return td.name === this.trustDomain.name ? this : undefined;
  }

  /** The JWT authority with key ID `kid`. */
  jwtAuthority(kid: string): JwtAuthority | undefined {
    return this.jwtAuthorities.get(kid);
  }

  /** True when the bundle holds no authority at all (an emptied or revoked bundle). */
  get isEmpty(): boolean {
    return this.x509Authorities.length === 0 && this.jwtAuthorities.size === 0;
  }

  /** X.509 authorities as DER, one per certificate. */
  x509AuthoritiesDer(): Uint8Array[] {
    return this.x509Authorities.map((c) => c.der);
  }

  /** X.509 authorities as concatenated DER (the Workload API's X.509 bundle form). */
  x509ToDer(): Uint8Array {
    return concatBytes(this.x509AuthoritiesDer());
  }

  /** X.509 authorities as CERTIFICATE PEM blocks (bundle.pem). */
  x509ToPem(): string {
    return encodeCertificatesPem(this.x509AuthoritiesDer());
  }

  /** The bundle as a SPIFFE JWK Set document. */
  toJwksObject(): BundleJwks {
    const keys: BundleJwk[] = [];
    for (const c of this.x509Authorities) {
      keys.push({ ...publicJwk(c.publicKey), use: X509_SVID_USE, x5c: [Buffer.from(c.der).toString('base64')] });
    }
    keys.push(...this.jwtJwks());
    const out: { keys: BundleJwk[]; spiffe_sequence?: number; spiffe_refresh_hint?: number } = { keys };
    if (this.sequenceNumber !== undefined) out.spiffe_sequence = this.sequenceNumber;
    if (this.refreshHintSeconds !== undefined) out.spiffe_refresh_hint = this.refreshHintSeconds;
    return out;
  }

  /** The bundle as SPIFFE JWK Set JSON text (federation endpoint, `sigil bundle show`). */
  toJwks(): string {
    return JSON.stringify(this.toJwksObject(), null, 2);
  }

  /** The JWT authorities as JWKS JSON bytes (the Workload API's JWT bundle form). */
  jwtToJwksBytes(): Uint8Array {
    return new Uint8Array(Buffer.from(JSON.stringify({ keys: this.jwtJwks() }), 'utf8'));
  }

  private jwtJwks(): BundleJwk[] {
    return [...this.jwtAuthorities.values()].map((a) => ({ ...publicJwk(a.publicKey), kid: a.kid, use: JWT_SVID_USE }));
  }

  private spkiByKid(): Map<string, Buffer> {
    this.#spki ??= new Map([...this.jwtAuthorities].map(([k, a]) => [k, a.publicKey.export({ type: 'spki', format: 'der' })]));
    return this.#spki;
  }

  /** True when both hold the same authorities (order of X.509 ones included); ignores sequence and hint. */
  sameAuthorities(other: Bundle): boolean {
    if (this === other) return true;
    if (this.trustDomain.name !== other.trustDomain.name) return false;
    if (this.x509Authorities.length !== other.x509Authorities.length) return false;
    for (let i = 0; i < this.x509Authorities.length; i++) {
      if (!bytesEqual(this.x509Authorities[i]!.der, other.x509Authorities[i]!.der)) return false;
    }
    if (this.jwtAuthorities.size !== other.jwtAuthorities.size) return false;
    const mine = this.spkiByKid();
    const theirs = other.spkiByKid();
    for (const [kid, spki] of mine) {
      const o = theirs.get(kid);
      if (o === undefined || !o.equals(spki)) return false;
    }
    return true;
  }

  /** True when trust domain, authorities, sequence number and refresh hint are all equal. */
  equals(other: Bundle): boolean {
    return (
      this.sequenceNumber === other.sequenceNumber &&
      this.refreshHintSeconds === other.refreshHintSeconds &&
      this.sameAuthorities(other)
    );
  }

  /** Log-safe summary. */
  toJSON(): { trustDomain: string; x509Authorities: number; jwtAuthorities: string[]; sequenceNumber?: number } {
    const out: { trustDomain: string; x509Authorities: number; jwtAuthorities: string[]; sequenceNumber?: number } = {
      trustDomain: this.trustDomain.name,
      x509Authorities: this.x509Authorities.length,
      jwtAuthorities: [...this.jwtAuthorities.keys()],
    };
    if (this.sequenceNumber !== undefined) out.sequenceNumber = this.sequenceNumber;
    return out;
  }
}
