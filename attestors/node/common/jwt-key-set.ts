/**
 * Signed tokens from an OpenID issuer, checked against its signing keys: the keys from a JWKS
 * file or from the issuer's discovery document over HTTPS, kept for 5 minutes and read again
 * when a token names a key not in them (no more than every 30 s), the last good keys kept when
 * the source hiccups. Shared by the node attestors that take such tokens (k8s_psat, jwt); each
 * names its refusals with its own reason prefix (`psat-expired`, `jwt-expired`, …).
 */
import { readFileSync } from 'node:fs';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet, type JWTPayload } from 'jose';
import { z } from 'zod';
import type { Clock } from '../../../src/common/clock.js';
import { SigilError, isSigilError } from '../../../src/common/errors.js';
import { httpRequestText, parseJsonAnswer } from '../../../src/common/http-request.js';

const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512'];
const KEYS_TTL_MS = 5 * 60_000;
const KEYS_MIN_REFETCH_MS = 30_000;
const MAX_FILE_BYTES = 1024 * 1024;

/** Where an issuer's keys come from. */
export type IssuerKeySource = { readonly kind: 'jwks-file'; readonly jwksFile: string } | { readonly kind: 'discovery'; readonly caFile?: string };

/** A refusal: ERR_ATTESTATION_FAILED with `<prefix>-<what>` as its reason; never the token in the message. */
export function tokenRefused(prefix: string, what: string, message: string, cause?: unknown): SigilError {
  return new SigilError('ERR_ATTESTATION_FAILED', message, { reason: `${prefix}-${what}`, cause });
}

/** A small operator file (JWKS, CA, credential), at most 1 MiB. */
export function readSmallFile(path: string, what: string, prefix: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw tokenRefused(prefix, 'config-file', `cannot read the ${what} ${path}`, err);
  }
  if (text.length > MAX_FILE_BYTES) throw tokenRefused(prefix, 'config-file', `the ${what} ${path} is larger than 1 MiB`);
  return text;
}

const jwksSchema = z.object({ keys: z.array(z.record(z.string(), z.unknown())) });

function parseJwks(json: unknown, where: string, prefix: string): JSONWebKeySet {
  const parsed = jwksSchema.safeParse(json);
  if (!parsed.success) throw tokenRefused(prefix, 'jwks', `${where} is not a JWK set`);
  return parsed.data as unknown as JSONWebKeySet;
}

const discoverySchema = z.object({ issuer: z.string(), jwks_uri: z.string().url() });

/** Loads the keys of `issuer` from `source`. */
function loaderFor(issuer: string, source: IssuerKeySource, prefix: string): (signal?: AbortSignal) => Promise<JSONWebKeySet> {
  if (source.kind === 'jwks-file') {
    const where = `JWKS file ${source.jwksFile}`;
    return async () => parseJwks(parseJsonAnswer(readSmallFile(source.jwksFile, 'JWKS file', prefix), `${prefix}-jwks`, where), where, prefix);
  }
  const ca = source.caFile === undefined ? undefined : readSmallFile(source.caFile, 'issuer CA file', prefix);
  const get = async (url: URL, signal?: AbortSignal): Promise<unknown> =>
    parseJsonAnswer(
      (await httpRequestText({ url, ...(ca === undefined ? {} : { ca }), reasonPrefix: `${prefix}-issuer`, peerName: `the issuer ${issuer}`, ...(signal === undefined ? {} : { signal }) })).body,
      `${prefix}-issuer`,
      `the issuer ${issuer}`,
    );
  return async (signal) => {
    const doc = discoverySchema.safeParse(await get(new URL(`${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`), signal));
    if (!doc.success || doc.data.issuer !== issuer) throw tokenRefused(prefix, 'issuer', `the discovery document of ${issuer} does not name that issuer`);
    return parseJwks(await get(new URL(doc.data.jwks_uri), signal), `the JWKS of ${issuer}`, prefix);
  };
}

/** Verifies an issuer's tokens: signature, issuer, audience, expiry. */
export class IssuerTokenVerifier {
  readonly #issuer: string;
  readonly #prefix: string;
  readonly #load: (signal?: AbortSignal) => Promise<JSONWebKeySet>;
  readonly #clock: Clock;
  #keys: { set: JSONWebKeySet; at: number } | undefined;

  constructor(options: { readonly issuer: string; readonly source: IssuerKeySource; readonly clock: Clock; readonly reasonPrefix: string }) {
    this.#issuer = options.issuer;
    this.#prefix = options.reasonPrefix;
    this.#load = loaderFor(options.issuer, options.source, options.reasonPrefix);
    this.#clock = options.clock;
  }

  async #keySet(kid: string | undefined, signal?: AbortSignal): Promise<JSONWebKeySet> {
    const now = this.#clock.nowMs();
    const known = this.#keys;
    const stale = known === undefined || now - known.at > KEYS_TTL_MS;
    const missing = known !== undefined && kid !== undefined && !known.set.keys.some((k) => k.kid === kid) && now - known.at > KEYS_MIN_REFETCH_MS;
    if (stale || missing) {
      try {
        this.#keys = { set: await this.#load(signal), at: now };
      } catch (err) {
        // Keep serving with the last good keys when the source hiccups.
        if (known === undefined || !isSigilError(err)) throw err;
      }
    }
    return (this.#keys ?? known)!.set;
  }

  /** The verified claims; refusals are `<prefix>-malformed|expired|wrong-audience|wrong-issuer|invalid-token`. */
  async verify(token: string, audiences: readonly string[], signal?: AbortSignal): Promise<JWTPayload> {
    let kid: string | undefined;
    try {
      kid = decodeProtectedHeader(token).kid;
    } catch (err) {
      throw tokenRefused(this.#prefix, 'malformed', 'the token is not a compact JWS', err);
    }
    const set = await this.#keySet(kid, signal);
    try {
      const { payload } = await jwtVerify(token, createLocalJWKSet(set), {
        issuer: this.#issuer,
        audience: [...audiences],
        algorithms: ALGORITHMS,
        requiredClaims: ['exp', 'sub'],
        currentDate: this.#clock.now(),
      });
      return payload;
    } catch (err) {
      const code = (err as { code?: string }).code ?? '';
      const claim = (err as { claim?: string }).claim;
      const what =
        code === 'ERR_JWT_EXPIRED'
          ? 'expired'
          : code === 'ERR_JWT_CLAIM_VALIDATION_FAILED' && claim === 'aud'
            ? 'wrong-audience'
            : code === 'ERR_JWT_CLAIM_VALIDATION_FAILED' && claim === 'iss'
              ? 'wrong-issuer'
              : 'invalid-token';
      throw tokenRefused(this.#prefix, what, `the token was refused (${what})`);
    }
  }
}
