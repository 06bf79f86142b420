/**
 * Offline JWT-SVID validation for services: the same rules as src/spiffe (header, signature
 * by the `kid` key of the subject's trust domain, exp/nbf with leeway, audience), against
 * any bundle source — a JwtSource, a BundleSource, a BundleSet or one Bundle.
 */
import type { BundleSource } from '../spiffe/bundle.js';
import { parseAndValidateJwtSvid, type JwtSvid, type JwtSvidValidateOptions } from '../spiffe/jwt-svid.js';

/** Validates a JWT-SVID offline; resolves to it or rejects with ERR_INVALID_JWT_SVID and a reason. */
export function validateJwtSvid(
  token: string,
  audience: string | readonly string[],
  bundles: BundleSource,
  options?: JwtSvidValidateOptions,
): Promise<JwtSvid> {
  return parseAndValidateJwtSvid(token, bundles, audience, options);
}
