/**
 * The two documents an OpenID relying party reads: the discovery document (OpenID Connect
 * Discovery 1.0 section 3, with only what Sigil does) and the JWK Set of the trust domain's
 * JWT-SVID keys, each key with `kid`, `kty`, `alg` and (unless `setKeyUse` is off) `use: sig`.
 */
import type { KeyObject } from 'node:crypto';
import type { Bundle } from '../spiffe/bundle.js';

/** The public JWK members per key type (RFC 7518 section 6). */
const PUBLIC_MEMBERS: Readonly<Record<string, readonly string[]>> = { EC: ['crv', 'x', 'y'], RSA: ['n', 'e'] };

/** The JWS algorithm a JWT-SVID key signs with: ES* by curve; RSA keys sign RS256 (the CA's only RSA algorithm). */
export function jwsAlgOfKey(key: KeyObject): 'ES256' | 'ES384' | 'ES512' | 'RS256' | undefined {
  if (key.asymmetricKeyType === 'rsa') return 'RS256';
  if (key.asymmetricKeyType !== 'ec') return undefined;
  const curve = key.asymmetricKeyDetails?.namedCurve;
  return curve === 'prime256v1' ? 'ES256' : curve === 'secp384r1' ? 'ES384' : curve === 'secp521r1' ? 'ES512' : undefined;
}

/** One published key. */
export interface OidcJwk {
  readonly kty: string;
  readonly kid: string;
  readonly alg: string;
  readonly use?: 'sig';
  readonly [member: string]: unknown;
}

/** The JWK Set of `bundle`'s JWT authorities, sorted by kid so the same keys give the same bytes (and ETag). */
export function jwksOf(bundle: Bundle, options: { readonly setKeyUse: boolean }): { keys: OidcJwk[] } {
  const keys: OidcJwk[] = [];
  for (const a of [...bundle.jwtAuthorities.values()].sort((x, y) => (x.kid < y.kid ? -1 : x.kid > y.kid ? 1 : 0))) {
    const alg = jwsAlgOfKey(a.publicKey);
    if (alg === undefined) continue;
    const jwk = a.publicKey.export({ format: 'jwk' }) as Record<string, unknown>;
    const kty = String(jwk.kty);
    const out: Record<string, unknown> = { kty, kid: a.kid, alg };
    if (options.setKeyUse) out.use = 'sig';
    for (const m of PUBLIC_MEMBERS[kty] ?? []) out[m] = jwk[m];
    keys.push(out as OidcJwk);
  }
  return { keys };
}

/** The discovery document for `issuer` whose keys are `jwks` at `jwksUri`. */
export function discoveryDocumentOf(issuer: string, jwksUri: string, jwks: { readonly keys: readonly OidcJwk[] }): Record<string, unknown> {
  return {
    issuer,
    jwks_uri: jwksUri,
    response_types_supported: ['id_token'],
    subject_types_supported: ['public'],
    id_token_signing_alg_values_supported: [...new Set(jwks.keys.map((k) => k.alg))].sort(),
  };
}
