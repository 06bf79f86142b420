/**
 * The core of every mTLS helper: the TLS material of the source's current state (a secure
 * context with the current SVID and every trusted bundle's authorities, rebuilt only when
 * the source changes), and SPIFFE verification of a peer's chain followed by the authorizer.
 *
 * Two layers check a peer. OpenSSL checks the chain against the union of all trusted
 * authorities during the handshake (so an unknown CA fails with a TLS alert, and Node keeps
 * a client's early writes back until the check passes). Then SPIFFE verification checks
 * the chain again against the bundle of the peer's own trust domain, the X509-SVID leaf
 * rules and the single URI SAN, and the authorizer decides. Hostnames are never checked.
 */
import { createHash } from 'node:crypto';
import { createSecureContext, type PeerCertificate, type SecureContext, type TLSSocket } from 'node:tls';
import { systemClock, type Clock } from '../common/clock.js';
import { SigilError } from '../common/errors.js';
import type { SpiffeId } from '../spiffe/spiffe-id.js';
import { verifyX509SvidChain } from '../spiffe/x509-svid-verify.js';
import { applyAuthorizer, type Authorizer } from './authorizer.js';
import type { X509Source } from './x509-source.js';

/** What every mTLS helper takes. */
export interface SpiffeTlsOptions {
  /** The source of our SVID and of the bundles peers are verified with. */
  readonly source: X509Source;
  /** Who may connect (server side) or be connected to (client side). */
  readonly authorizer: Authorizer;
  /** Time used for certificate validity (tests inject a ManualClock). */
  readonly clock?: Clock;
}

/** @internal the TLS material of one source generation. */
export interface TlsMaterial {
  readonly generation: number;
  /** Our SVID chain, PEM, leaf first. */
  readonly cert: string;
  /** Our private key, PKCS#8 PEM. Lives only in memory, as the agent's does. */
  readonly key: string;
  /** Every trusted X.509 authority (all bundles), PEM. */
  readonly ca: string;
  readonly secureContext: SecureContext;
}

interface CachedVerification {
  readonly id: SpiffeId;
  readonly generation: number;
  readonly validFromMs: number;
  readonly validUntilMs: number;
}

/** Verified chains remembered per config; small, since a service talks to few distinct peers. */
const VERIFY_CACHE_SIZE = 256;

const verifiedSockets = new WeakMap<TLSSocket, SpiffeId>();

/** Caches live per source, so helpers made from fresh option objects still share them. */
interface SourceCache {
  material: TlsMaterial | undefined;
  readonly verified: Map<string, CachedVerification>;
}
const sourceCaches = new WeakMap<X509Source, SourceCache>();

function cacheOf(source: X509Source): SourceCache {
  let c = sourceCaches.get(source);
  if (c === undefined) {
    c = { material: undefined, verified: new Map() };
    sourceCaches.set(source, c);
  }
  return c;
}

/** The SPIFFE ID of a peer whose connection one of these helpers verified, or undefined. */
export function peerSpiffeId(socket: TLSSocket): SpiffeId | undefined {
  return verifiedSockets.get(socket);
}

/** @internal the peer chain Node reports, as DER, leaf first (the walk stops at a self-signed root). */
export function chainFromPeerCertificate(cert: PeerCertificate | undefined): Uint8Array[] {
  const out: Uint8Array[] = [];
  let cur = cert as (PeerCertificate & { issuerCertificate?: PeerCertificate }) | undefined;
  while (cur !== undefined && cur.raw !== undefined && out.length < 16) {
    out.push(new Uint8Array(cur.raw));
    const next = cur.issuerCertificate as (PeerCertificate & { issuerCertificate?: PeerCertificate }) | undefined;
    if (next === undefined || next === cur || next.raw === undefined || next.raw.equals(cur.raw)) break;
    cur = next;
  }
  return out;
}

/** @internal shared state of one helper configuration: material cache, verification cache. */
export class SpiffeTlsConfig {
  readonly source: X509Source;
  readonly authorizer: Authorizer;
  /** Time used for certificate validity. */
  readonly clock: Clock;
  readonly #cache: SourceCache;

  constructor(options: SpiffeTlsOptions) {
    if (options?.source === undefined || typeof options.authorizer !== 'function') {
      throw new SigilError('ERR_INVALID_ARGUMENT', 'mTLS helpers need a source and an authorizer', { reason: 'tls-options' });
    }
    this.source = options.source;
    this.authorizer = options.authorizer;
    this.clock = options.clock ?? systemClock;
    this.#cache = cacheOf(options.source);
  }

  /** The material of the source's current state, built once per update. */
  material(): TlsMaterial {
    // Asked every time, not only when the generation moves: it throws ERR_NO_IDENTITY once
    // the SVID is past its notAfter or withdrawn, so nothing expired is ever presented.
    const svid = this.source.getX509Svid();
    const generation = this.source.generation;
    if (this.#cache.material?.generation === generation) return this.#cache.material;
    const cert = svid.certificatesPem();
    const key = svid.privateKeyPem();
    const ca = this.source.bundles
      .list()
      .map((b) => b.x509ToPem())
      .join('');
    const secureContext = createSecureContext({ cert, key, ca, minVersion: 'TLSv1.2' });
    this.#cache.material = { generation, cert, key, ca, secureContext };
    return this.#cache.material;
  }

  /**
   * Verifies a peer chain (DER, leaf first) by SPIFFE rules against the current bundles and
   * applies the authorizer; returns the peer's ID or throws ERR_INVALID_X509_SVID /
   * ERR_PERMISSION_DENIED. A chain already verified under the same bundles and still
   * within its validity window is not verified again; the authorizer always runs.
   */
  verifyPeerChain(chain: readonly Uint8Array[]): SpiffeId {
    if (chain.length === 0) throw new SigilError('ERR_UNAUTHENTICATED', 'peer presented no certificate', { reason: 'no-peer-certificate' });
    const nowMs = this.clock.nowMs();
    const generation = this.source.generation;
    const h = createHash('sha256');
    for (const c of chain) h.update(c);
    const key = h.digest('base64');
    let hit = this.#cache.verified.get(key);
    if (hit !== undefined && (hit.generation !== generation || nowMs < hit.validFromMs || nowMs > hit.validUntilMs)) {
      this.#cache.verified.delete(key);
      hit = undefined;
    }
    if (hit === undefined) {
      const verified = verifyX509SvidChain(chain, this.source.bundles, new Date(nowMs));
      let from = -Infinity;
      let until = Infinity;
      for (const c of verified.chain) {
        from = Math.max(from, c.facts.notBefore.getTime());
        until = Math.min(until, c.facts.notAfter.getTime());
      }
      hit = { id: verified.id, generation, validFromMs: from, validUntilMs: until };
      if (this.#cache.verified.size >= VERIFY_CACHE_SIZE) this.#cache.verified.delete(this.#cache.verified.keys().next().value as string);
      this.#cache.verified.set(key, hit);
    }
    applyAuthorizer(this.authorizer, hit.id);
    return hit.id;
  }

  /** Verifies the peer of an established TLS socket and remembers its ID for peerSpiffeId. */
  verifySocket(socket: TLSSocket): SpiffeId {
    const id = this.verifyPeerChain(chainFromPeerCertificate(socket.getPeerCertificate(true)));
    verifiedSockets.set(socket, id);
    return id;
  }

  /** A `checkServerIdentity` for clients: SPIFFE verification instead of hostname matching. */
  checkServerIdentity(): (host: string, cert: PeerCertificate) => Error | undefined {
    return (_host, cert) => {
      try {
        this.verifyPeerChain(chainFromPeerCertificate(cert));
        return undefined;
      } catch (err) {
        return err instanceof Error ? err : new SigilError('ERR_INTERNAL', 'peer verification failed', { cause: err });
      }
    };
  }
}
