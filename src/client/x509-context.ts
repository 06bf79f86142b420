/**
 * What one FetchX509SVID message means to a workload: its X509-SVIDs (the first is the
 * default identity) and the X.509 bundles it should trust, own and federated. Also the
 * converters from the other bundle responses. Every message carries the full state, so
 * each parse builds a fresh, complete value.
 */
import { SigilError } from '../common/errors.js';
import { Bundle } from '../spiffe/bundle.js';
import { BundleSet } from '../spiffe/bundle-set.js';
import { SpiffeId, TrustDomain } from '../spiffe/spiffe-id.js';
import { X509Svid } from '../spiffe/x509-svid.js';
import { verifyX509SvidChain } from '../spiffe/x509-svid-verify.js';

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

function svidError(reason: string, message: string, cause?: unknown): SigilError {
  return new SigilError('ERR_INVALID_X509_SVID', message, { reason, cause });
}

/**
 * One X509SVID item, checked before anything of it is used: every mandatory field set
 * (Workload API §4.5, §5.2.1), `spiffe_id` equal to the leaf's URI SAN, and the chain
 * verified against the item's own bundle at `now` (signatures, validity, path rules), so
 * an SVID that no peer following X509-SVID §5 could accept is never presented.
 */
function parseSvidItem(raw: RawX509Svid, index: number, now: Date): { svid: X509Svid; bundle: Bundle } {
  const where = `svids[${index}]`;
  if (raw.spiffe_id === undefined || raw.spiffe_id === '') throw svidError('missing-spiffe-id', `${where} has an empty spiffe_id`);
  if (raw.x509_svid === undefined || raw.x509_svid.length === 0) throw svidError('missing-x509-svid', `${where} has an empty x509_svid`);
  if (raw.x509_svid_key === undefined || raw.x509_svid_key.length === 0) throw svidError('missing-x509-svid-key', `${where} has an empty x509_svid_key`);
  if (raw.bundle === undefined || raw.bundle.length === 0) {
    throw new SigilError('ERR_INVALID_BUNDLE', `${where} has an empty bundle`, { reason: 'missing-bundle' });
  }
  let claimed: SpiffeId;
  try {
    claimed = SpiffeId.parse(raw.spiffe_id);
  } catch (err) {
    throw svidError('bad-spiffe-id', `${where} spiffe_id is not a SPIFFE ID: ${JSON.stringify(raw.spiffe_id.slice(0, 100))}`, err);
  }
  const svid = X509Svid.parse(new Uint8Array(raw.x509_svid), new Uint8Array(raw.x509_svid_key), { hint: raw.hint ?? '' });
  if (!svid.id.equals(claimed)) {
    throw svidError('spiffe-id-mismatch', `${where} spiffe_id ${claimed.toString()} differs from the certificate's ${svid.id.toString()}`);
  }
  const bundle = Bundle.fromX509Der(svid.id.trustDomain, new Uint8Array(raw.bundle));
  verifyX509SvidChain(svid, bundle, now);
  return { svid, bundle };
}

/**
 * @internal parses and checks an X509SVIDResponse at time `now`. Throws (so the message is
 * discarded whole and the caller keeps its last good state) when it holds no SVID, when any
 * item breaks a rule of parseSvidItem, or when a bundle is malformed.
 */
export function parseX509SvidResponse(resp: RawX509SvidResponse, now: Date = new Date()): X509Context {
  const svids: X509Svid[] = [];
  const bundles = new BundleSet();
  (resp.svids ?? []).forEach((raw, i) => {
    const { svid, bundle } = parseSvidItem(raw, i, now);
    svids.push(svid);
    // Several SVIDs of one trust domain carry the same bundle; the first one stands.
    if (!bundles.has(svid.id.trustDomain)) bundles.set(bundle);
  });
  for (const [key, der] of Object.entries(resp.federated_bundles ?? {})) {
    const td = trustDomainKey(key);
    if (!bundles.has(td)) bundles.set(Bundle.fromX509Der(td, new Uint8Array(der)));
  }
  if (svids.length === 0) {
    throw new SigilError('ERR_NO_IDENTITY', 'the workload API returned no X509-SVID', { reason: 'no-svids' });
  }
  return Object.freeze({ svids: Object.freeze(svids), bundles });
}

/** The mandatory `bundles` map of a bundles response (Workload API §5.2.2, §6.2.2) must not be empty. */
function requireBundles(bundles: Record<string, Buffer> | undefined, method: string): [string, Buffer][] {
  const entries = Object.entries(bundles ?? {});
  if (entries.length === 0) throw new SigilError('ERR_INVALID_BUNDLE', `${method} response has no bundles`, { reason: 'missing-bundles' });
  return entries;
}

/** @internal parses an X509BundlesResponse into a set of X.509-only bundles. */
export function parseX509BundlesResponse(resp: RawX509BundlesResponse): BundleSet {
  const set = new BundleSet();
  for (const [key, der] of requireBundles(resp.bundles, 'FetchX509Bundles')) set.set(Bundle.fromX509Der(trustDomainKey(key), new Uint8Array(der)));
  return set;
}

/** @internal parses a JWTBundlesResponse into a set of JWT-only bundles. */
export function parseJwtBundlesResponse(resp: RawJwtBundlesResponse): BundleSet {
  const set = new BundleSet();
  for (const [key, jwks] of requireBundles(resp.bundles, 'FetchJWTBundles')) set.set(Bundle.fromJwtJwks(trustDomainKey(key), new Uint8Array(jwks)));
  return set;
}
