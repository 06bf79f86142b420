/**
 * What one FetchX509SVID message means to a workload: its X509-SVIDs (the first is the
 * default identity) and the X.509 bundles it should trust, own and federated. Also the
 * converters from the other bundle responses. Every message carries the full state, so
 * each parse builds a fresh, complete value.
 */
import { SigilError } from '../common/errors.js';
import { Bundle } from '../spiffe/bundle.js';
import { BundleSet } from '../spiffe/bundle-set.js';
import { TrustDomain } from '../spiffe/spiffe-id.js';
import { X509Svid } from '../spiffe/x509-svid.js';

/** The X.509 identities of a workload and the bundles to verify peers with. */
export interface X509Context {
  /** Every X509-SVID the workload is entitled to; `svids[0]` is the default. */
  readonly svids: readonly X509Svid[];
  /** X.509 bundles by trust domain: the SVIDs' own and the federated ones. */
  readonly bundles: BundleSet;
}

/** @internal the wire form of one X509SVID (proto-loader, keepCase). */
export interface RawX509Svid {
  spiffe_id: string;
  x509_svid: Buffer;
  x509_svid_key: Buffer;
  bundle: Buffer;
  hint: string;
}

/** @internal the wire form of X509SVIDResponse. */
export interface RawX509SvidResponse {
  svids: RawX509Svid[];
  crl: Buffer[];
  federated_bundles: Record<string, Buffer>;
}

/** @internal the wire form of X509BundlesResponse. */
export interface RawX509BundlesResponse {
  crl: Buffer[];
  bundles: Record<string, Buffer>;
}

/** @internal the wire form of JWTBundlesResponse. */
export interface RawJwtBundlesResponse {
  bundles: Record<string, Buffer>;
}

function trustDomainKey(key: string): TrustDomain {
  try {
    return TrustDomain.parse(key);
  } catch (err) {
    throw new SigilError('ERR_INVALID_BUNDLE', `bundle map key is not a trust domain ID: ${JSON.stringify(key.slice(0, 100))}`, {
      reason: 'bad-bundle-key',
      cause: err,
    });
  }
}

/** @internal parses an X509SVIDResponse; throws ERR_NO_IDENTITY when it holds no SVID. */
export function parseX509SvidResponse(resp: RawX509SvidResponse): X509Context {
  const svids: X509Svid[] = [];
  const bundles = new BundleSet();
  for (const raw of resp.svids ?? []) {
    const svid = X509Svid.parse(new Uint8Array(raw.x509_svid), new Uint8Array(raw.x509_svid_key), { hint: raw.hint ?? '' });
    svids.push(svid);
    // Several SVIDs of one trust domain carry the same bundle; the first one stands.
    if (!bundles.has(svid.id.trustDomain)) bundles.set(Bundle.fromX509Der(svid.id.trustDomain, new Uint8Array(raw.bundle)));
  }
  for (const [key, der] of Object.entries(resp.federated_bundles ?? {})) {
    const td = trustDomainKey(key);
    if (!bundles.has(td)) bundles.set(Bundle.fromX509Der(td, new Uint8Array(der)));
  }
  if (svids.length === 0) {
    throw new SigilError('ERR_NO_IDENTITY', 'the workload API returned no X509-SVID', { reason: 'no-svids' });
  }
  return Object.freeze({ svids: Object.freeze(svids), bundles });
}

/** @internal parses an X509BundlesResponse into a set of X.509-only bundles. */
export function parseX509BundlesResponse(resp: RawX509BundlesResponse): BundleSet {
  const set = new BundleSet();
  for (const [key, der] of Object.entries(resp.bundles ?? {})) set.set(Bundle.fromX509Der(trustDomainKey(key), new Uint8Array(der)));
  return set;
}

/** @internal parses a JWTBundlesResponse into a set of JWT-only bundles. */
export function parseJwtBundlesResponse(resp: RawJwtBundlesResponse): BundleSet {
  const set = new BundleSet();
  for (const [key, jwks] of Object.entries(resp.bundles ?? {})) set.set(Bundle.fromJwtJwks(trustDomainKey(key), new Uint8Array(jwks)));
  return set;
}
