/**
 * JWT-SVIDs (SPIFFE JWT-SVID standard): compact JWS tokens whose header holds only
 * alg/kid/typ, signed with an asymmetric algorithm, with `sub` a SPIFFE ID and `aud`/`exp`
 * required. The token itself is a bearer secret: a JwtSvid never prints it.
 */
import { type KeyObject } from 'node:crypto';
import { inspect } from 'node:util';
import { compactVerify, errors as joseErrors } from 'jose';
import type { Bundle, BundleSource } from './bundle.js';
import { SigilError } from './errors.js';
import { SpiffeId } from './spiffe-id.js';

/** The algorithms JWT-SVID section 2.1 allows. */
export const JWT_SVID_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512'] as const;
/** One of the algorithms JWT-SVID allows. */
export type JwtSvidAlgorithm = (typeof JWT_SVID_ALGORITHMS)[number];

/** Default clock leeway for `exp`/`nbf`, in seconds. */
export const DEFAULT_JWT_LEEWAY_SECONDS = 30;

/** Longest token accepted (characters); real JWT-SVIDs are a few KiB, so anything bigger is refused before it is split or decoded. */
export const MAX_JWT_SVID_LENGTH = 64 * 1024;

const ALLOWED_ALGS = new Set<string>(JWT_SVID_ALGORITHMS);
const ALLOWED_HEADER = new Set(['alg', 'kid', 'typ']);
const EC_CURVE: Record<string, string> = { ES256: 'prime256v1', ES384: 'secp384r1', ES512: 'secp521r1' };
const B64URL_RE = /^[A-Za-z0-9_-]*$/;

/** The protected header of a JWT-SVID. */
export interface JwtSvidHeader {
  readonly alg: JwtSvidAlgorithm;
  readonly kid?: string;
  readonly typ?: string;
}

/** Options of parseAndValidateJwtSvid. */
export interface JwtSvidValidateOptions {
  /** The time to validate at; defaults to the current time. */
  readonly now?: Date;
  /** Leeway for `exp` and `nbf` in seconds; defaults to 30. */
  readonly leewaySeconds?: number;
}

function jwtError(reason: string, message: string, cause?: unknown): SigilError {
  return new SigilError('ERR_INVALID_JWT_SVID', message, { reason, cause });
}

/** A JWT-SVID whose structure (and, from parseAndValidateJwtSvid, signature and claims) checked out. */
export class JwtSvid {
  /** The subject's SPIFFE ID. */
  readonly id: SpiffeId;
  /** The `aud` values. */
  readonly audience: readonly string[];
  /** The `exp` time. */
  readonly expiry: Date;
  /** The `iat` time, when present. */
  readonly issuedAt: Date | undefined;
  /** The protected header. */
  readonly header: JwtSvidHeader;
  /** Every claim of the token (frozen). */
  readonly claims: Readonly<Record<string, unknown>>;
  /** Operator-chosen hint (Workload API `hint`), `''` when unset. */
  readonly hint: string;
  readonly #token: string;

  private constructor(token: string, header: JwtSvidHeader, claims: Record<string, unknown>, id: SpiffeId, audience: string[], hint: string) {
    this.#token = token;
    this.header = Object.freeze({ ...header });
    this.claims = Object.freeze(claims);
    this.id = id;
    this.audience = Object.freeze(audience);
    this.expiry = new Date((claims.exp as number) * 1000);
    this.issuedAt = typeof claims.iat === 'number' ? new Date(claims.iat * 1000) : undefined;
    this.hint = hint;
  }

  /** @internal builds a value from parts already checked by parseToken. */
  static fromChecked(parts: ParsedToken, hint = ''): JwtSvid {
    return new JwtSvid(parts.token, parts.header, parts.claims, parts.id, parts.audience, hint);
  }

  /** A copy carrying `hint` (the agent attaches entry hints to tokens it hands out). */
  withHint(hint: string): JwtSvid {
    return new JwtSvid(this.#token, this.header, { ...this.claims }, this.id, [...this.audience], hint);
  }

  /** The compact token; call only where it is sent, never to log. */
  marshal(): string {
    return this.#token;
  }

  /** The `jti` claim when present: the loggable handle of a token. */
  get jti(): string | undefined {
    return typeof this.claims.jti === 'string' ? this.claims.jti : undefined;
  }

  /** Log-safe summary (never the token). */
  toJSON(): { id: string; audience: readonly string[]; expiry: string; jti?: string } {
    const out: { id: string; audience: readonly string[]; expiry: string; jti?: string } = {
      id: this.id.toString(),
      audience: this.audience,
      expiry: this.expiry.toISOString(),
    };
    if (this.jti !== undefined) out.jti = this.jti;
    return out;
  }

  toString(): string {
    return `JwtSvid(${this.id.toString()}, token [redacted])`;
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

/** @internal the structurally checked parts of a token. */
export interface ParsedToken {
  readonly token: string;
  readonly header: JwtSvidHeader;
  readonly claims: Record<string, unknown>;
  readonly id: SpiffeId;
  readonly audience: string[];
}

function decodeJsonSegment(seg: string, what: string): Record<string, unknown> {
  if (seg.length === 0 || !B64URL_RE.test(seg)) throw jwtError('malformed', `token ${what} is not base64url`);
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(seg, 'base64url').toString('utf8'));
  } catch (err) {
    throw jwtError('malformed', `token ${what} is not JSON`, err);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw jwtError('malformed', `token ${what} is not a JSON object`);
  return v as Record<string, unknown>;
}

/** Checks the compact form, the header rules and the claim shapes; no signature, no time. */
function parseToken(token: string): ParsedToken {
  if (typeof token !== 'string') throw jwtError('malformed', 'token is not a string');
  if (token.length > MAX_JWT_SVID_LENGTH) throw jwtError('too-large', `token is ${token.length} characters, more than ${MAX_JWT_SVID_LENGTH}`);
  const segs = token.split('.');
  // Five segments would be a JWE; JWT-SVIDs are JWS compact serialization only (section 5.1).
  if (segs.length !== 3) throw jwtError('malformed', `token has ${segs.length} segments, expected 3`);
  const header = decodeJsonSegment(segs[0]!, 'header');
  for (const k of Object.keys(header)) {
    if (!ALLOWED_HEADER.has(k)) throw jwtError('extra-header', `token header has disallowed parameter ${JSON.stringify(k)}`);
  }
  if (typeof header.alg !== 'string' || !ALLOWED_ALGS.has(header.alg)) {
    throw jwtError('bad-alg', `token algorithm ${JSON.stringify(header.alg)} is not allowed`);
  }
  if (header.typ !== undefined && header.typ !== 'JWT' && header.typ !== 'JOSE') {
    throw jwtError('bad-typ', `token typ ${JSON.stringify(header.typ)} is not JWT or JOSE`);
  }
  if (header.kid !== undefined && typeof header.kid !== 'string') throw jwtError('malformed', 'token kid is not a string');
  if (segs[2]!.length === 0 || !B64URL_RE.test(segs[2]!)) throw jwtError('malformed', 'token signature is missing or not base64url');
  const claims = decodeJsonSegment(segs[1]!, 'payload');
  if (typeof claims.sub !== 'string') throw jwtError('bad-sub', 'token has no sub claim');
  let id: SpiffeId;
  try {
    id = SpiffeId.parse(claims.sub);
  } catch (err) {
    throw jwtError('bad-sub', `token sub is not a SPIFFE ID: ${JSON.stringify(claims.sub.slice(0, 100))}`, err);
  }
  let audience: string[];
  if (typeof claims.aud === 'string') audience = [claims.aud];
  else if (Array.isArray(claims.aud) && claims.aud.every((a) => typeof a === 'string')) audience = claims.aud as string[];
  else if (claims.aud === undefined) throw jwtError('missing-aud', 'token has no aud claim');
  else throw jwtError('malformed', 'token aud is neither a string nor an array of strings');
  if (audience.length === 0) throw jwtError('missing-aud', 'token aud claim is empty');
  if (claims.exp === undefined) throw jwtError('missing-exp', 'token has no exp claim');
  if (typeof claims.exp !== 'number' || !Number.isFinite(claims.exp)) throw jwtError('malformed', 'token exp is not a number');
  for (const k of ['nbf', 'iat'] as const) {
    if (claims[k] !== undefined && (typeof claims[k] !== 'number' || !Number.isFinite(claims[k]))) {
      throw jwtError('malformed', `token ${k} is not a number`);
    }
  }
  return { token, header: header as unknown as JwtSvidHeader, claims, id, audience };
}

/**
 * Parses a JWT-SVID without checking its signature or times, to read sub/aud/exp (caches
 * of tokens the agent itself minted). Never use it to authenticate anyone.
 */
export function parseJwtSvidInsecure(token: string): JwtSvid {
  return JwtSvid.fromChecked(parseToken(token));
}

function keyFitsAlg(key: KeyObject, alg: string): boolean {
  const type = key.asymmetricKeyType;
  if (alg.startsWith('RS')) return type === 'rsa';
  if (alg.startsWith('PS')) return type === 'rsa' || type === 'rsa-pss';
  return type === 'ec' && key.asymmetricKeyDetails?.namedCurve === EC_CURVE[alg];
}

/**
 * The keys a token may be verified with, all from the bundle of its subject's trust domain:
 * the one its `kid` names, or, since JWT-SVID §2.2 makes `kid` optional, every key of that
 * bundle that fits its `alg` (never a key of another trust domain). Bundle keys without a
 * `kid` never get here: a bundle holds only keyed JWT authorities (JWT-SVID §6.1).
 */
function verificationKeys(bundle: Bundle, header: JwtSvidHeader, trustDomain: string): KeyObject[] {
  if (header.kid === undefined || header.kid === '') {
    const fitting = [...bundle.jwtAuthorities.values()].map((a) => a.publicKey).filter((k) => keyFitsAlg(k, header.alg));
    if (fitting.length === 0) throw jwtError('no-fitting-key', `no JWT authority in the bundle of ${trustDomain} fits algorithm ${header.alg}`);
    return fitting;
  }
  const authority = bundle.jwtAuthority(header.kid);
  if (authority === undefined) {
    throw jwtError('unknown-kid', `no JWT authority ${JSON.stringify(header.kid)} in the bundle of ${trustDomain}`);
  }
  if (!keyFitsAlg(authority.publicKey, header.alg)) {
    throw jwtError('bad-alg', `token algorithm ${header.alg} does not fit the key of JWT authority ${JSON.stringify(header.kid)}`);
  }
  return [authority.publicKey];
}

/** Verifies the JWS signature with the first of `keys` that accepts it; 'bad-signature' when none does. */
async function verifySignature(token: string, alg: JwtSvidAlgorithm, keys: readonly KeyObject[]): Promise<void> {
  let failure: unknown;
  for (const key of keys) {
    try {
      // jose caches its CryptoKey per KeyObject, and the bundle keeps the KeyObject.
      await compactVerify(token, key, { algorithms: [alg] });
      return;
    } catch (err) {
      if (!(err instanceof joseErrors.JWSSignatureVerificationFailed)) throw jwtError('malformed', 'token could not be verified', err);
      failure = err;
    }
  }
  throw jwtError('bad-signature', 'token signature does not verify', failure);
}

/**
 * Validates a JWT-SVID: header rules, the signature with the key named by `kid` (or, without
 * `kid`, one of the keys fitting `alg`) in the JWT authorities of the `sub`'s trust domain, `exp` (with leeway), `nbf`, and that `aud`
 * contains the expected audience (every one of them when a list is given). Throws
 * ERR_INVALID_JWT_SVID with a reason such as 'malformed', 'bad-alg', 'extra-header',
 * 'bad-sub', 'no-bundle', 'no-fitting-key', 'unknown-kid', 'bad-signature', 'expired',
 * 'not-yet-valid', 'missing-aud', 'missing-exp', 'audience-mismatch'.
 */
export async function parseAndValidateJwtSvid(
  token: string,
  bundleSource: BundleSource,
  audience: string | readonly string[],
  options: JwtSvidValidateOptions = {},
): Promise<JwtSvid> {
  const parts = parseToken(token);
  const { header, claims, id } = parts;
  const bundle = bundleSource.getBundleForTrustDomain(id.trustDomain);
  if (bundle === undefined) throw jwtError('no-bundle', `no bundle for trust domain ${id.trustDomain.name}`);
  const keys = verificationKeys(bundle, header, id.trustDomain.name);
  await verifySignature(token, header.alg, keys);
  const leeway = options.leewaySeconds ?? DEFAULT_JWT_LEEWAY_SECONDS;
  const nowS = (options.now ?? new Date()).getTime() / 1000;
  if ((claims.exp as number) + leeway <= nowS) throw jwtError('expired', `token expired at ${new Date((claims.exp as number) * 1000).toISOString()}`);
  if (typeof claims.nbf === 'number' && claims.nbf - leeway > nowS) throw jwtError('not-yet-valid', 'token is not valid yet');
  const expected = typeof audience === 'string' ? [audience] : audience;
  // Every expected audience must be present, as go-spiffe (go-jose Expected.Audience) demands.
  if (expected.length === 0 || !expected.every((a) => parts.audience.includes(a))) {
    throw jwtError('audience-mismatch', `token audience ${JSON.stringify(parts.audience)} does not contain ${JSON.stringify(expected)}`);
  }
  return JwtSvid.fromChecked(parts);
}
