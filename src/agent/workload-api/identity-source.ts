/**
 * The contract between the Workload API and the agent's SVID cache: given the selectors an
 * attested workload has, the cache says which identities and bundles it is entitled to and
 * pushes every change. The Workload API turns this into wire messages; the cache never sees
 * gRPC types, and the Workload API never mints or matches anything itself.
 */
import type { SigilError } from '../../common/errors.js';
import type { Secret } from '../../common/secret.js';
import type { Selector } from '../../spiffe/selector.js';

/** One X.509-SVID a workload is entitled to, ready for the wire. */
export interface WorkloadX509Svid {
  /** The SVID's SPIFFE ID (`spiffe://td/path`). */
  readonly spiffeId: string;
  /** Concatenated DER certificates, leaf first, then any intermediates. */
  readonly chainDer: Buffer;
  /** The private key as unencrypted PKCS#8 DER; wrapped so it is never logged. */
  readonly keyPkcs8Der: Secret<Buffer>;
  /** The entry's hint, or '' when it has none. */
  readonly hint: string;
}

/** A trust domain's bundle in the two forms the Workload API serves. */
export interface TrustDomainBundle {
  /** Trust domain ID, `spiffe://example.org`: the key of every bundle map on the wire. */
  readonly trustDomainId: string;
  /** X.509 authorities as concatenated DER certificates. */
  readonly x509AuthoritiesDer: Buffer;
  /** JWT authorities as JWKS JSON bytes (keys with `kid` and `use: jwt-svid` only). */
  readonly jwtKeysJwks: Buffer;
}

/** The complete state for one set of selectors at one moment (every push carries all of it). */
export interface WorkloadUpdate {
  /** X.509-SVIDs of every matching entry, the default identity first; empty when none match. */
  readonly svids: readonly WorkloadX509Svid[];
  /** The agent's own trust domain bundle. */
  readonly bundle: TrustDomainBundle;
  /** Bundles of the foreign trust domains the matching entries federate with; empty means none (or all removed). */
  readonly federatedBundles: readonly TrustDomainBundle[];
  /**
   * Whether the selectors match any entry. Set on bundle-only updates, which carry no SVIDs;
   * true there also before the entries are known (the last stored bundle is served until
   * then). When absent, a workload is entitled exactly when `svids` is not empty.
   */
  readonly entitled?: boolean;
}

/** How a subscription wants its updates. */
export interface SubscribeOptions {
  /**
   * Only the bundles matter (FetchX509Bundles, FetchJWTBundles): updates come without SVIDs
   * and without waiting for any to be minted, and before the entries are synced the last
   * bundle the agent stored is served at once.
   */
  readonly bundlesOnly?: boolean;
  /**
   * Called instead of an update when the source cannot give this workload its state now and
   * does not know when it will (the server is unreachable before the first entry sync, or
   * every SVID the workload is entitled to failed to mint). The Workload API ends the stream
   * with UNAVAILABLE, which clients retry. Without it the subscriber simply waits.
   */
  readonly onUnavailable?: (error: SigilError) => void;
}

/** A JWT-SVID minted for a workload. */
export interface IssuedJwtSvid {
  readonly spiffeId: string;
  /** The compact JWS; wrapped so it is never logged. */
  readonly token: Secret<string>;
  /** The entry's hint, or '' when it has none. */
  readonly hint: string;
}

/** The outcome of validating a JWT-SVID. */
export interface ValidatedJwtSvid {
  readonly spiffeId: string;
  /** Every claim of the token's payload, as parsed JSON. */
  readonly claims: Readonly<Record<string, unknown>>;
}

/** Stops a subscription; calling it twice is harmless. */
export type Unsubscribe = () => void;

/**
 * What the agent's SVID cache implements for the Workload API.
 *
 * Errors are SigilErrors: ERR_UNAVAILABLE while the agent cannot answer yet (clients retry),
 * ERR_INVALID_JWT_SVID for a token that does not validate; anything else becomes INTERNAL.
 */
export interface WorkloadIdentitySource {
  /**
   * Calls `onUpdate` with the current state as soon as the cache has one (possibly before
   * `subscribe` returns), then again on every change that concerns these selectors: SVID
   * rotation, entry added or removed, bundle or federation change. Updates may repeat a
   * state; they are never partial.
   */
  subscribe(selectors: readonly Selector[], onUpdate: (update: WorkloadUpdate) => void, options?: SubscribeOptions): Unsubscribe;

  /**
   * Mints JWT-SVIDs for every identity the selectors match (only `spiffeId` when given),
   * each for `audience` (non-empty, first is the primary audience). Returns [] when
   * nothing matches; the Workload API turns that into PermissionDenied.
   */
  fetchJwtSvids(selectors: readonly Selector[], audience: readonly string[], spiffeId: string | undefined, signal?: AbortSignal): Promise<IssuedJwtSvid[]>;

  /**
   * Validates a JWT-SVID for `audience` against the bundles these selectors may use (own
   * trust domain and federated ones), per the JWT-SVID standard; throws ERR_INVALID_JWT_SVID.
   */
  validateJwtSvid(selectors: readonly Selector[], token: string, audience: string, signal?: AbortSignal): Promise<ValidatedJwtSvid>;
}
