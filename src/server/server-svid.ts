/**
 * The server's own X.509-SVID (`spiffe://<td>/sigil/server`) for the agent API's TLS, and
 * the trust roots that verify agent SVIDs. Both feed grpc-js through a certificate
 * provider, so a renewed SVID or a changed bundle applies to new connections without a
 * restart. The key is generated in memory at start and never written anywhere.
 */
import { webcrypto } from 'node:crypto';
import type { CaCertificateUpdateListener, IdentityCertificateUpdateListener } from '@grpc/grpc-js/build/src/certificate-provider.js';
import type { Clock, TimerHandle } from '../common/clock.js';
import type { Logger } from '../common/logger.js';
import { toPem, x509 } from '../common/x509.js';
import type { ReservedIssuance } from '../ca/reserved-issuance.js';
import { SpiffeId } from '../spiffe/spiffe-id.js';
import type { ServerCa, SignedX509Svid } from './server-ca.js';

/** Generates an EC P-256 key and a CSR for it; returns the CSR (DER) and the PKCS#8 private key (DER). */
export async function generateKeyAndCsr(): Promise<{ csr: Buffer; pkcs8: Buffer }> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ keys, signingAlgorithm: alg, name: '' });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  return { csr: Buffer.from(csr.rawData), pkcs8 };
}

/** Keeps the server SVID fresh (renewed at half of its life) and publishes it with the CA roots. */
export class ServerSvidProvider {
  readonly #ca: ServerCa;
  readonly #issuance: ReservedIssuance;
  readonly #spiffeId: string;
  readonly #ttlMs: number;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #caListeners = new Set<CaCertificateUpdateListener>();
  readonly #idListeners = new Set<IdentityCertificateUpdateListener>();
  #identity: { certificate: Buffer; privateKey: Buffer } | null = null;
  #roots: { caCertificate: Buffer } | null = null;
  readonly #rootsOf: () => Buffer[];
  #timer: TimerHandle | undefined;
  #current: SignedX509Svid | undefined;
  #stopped = false;
  readonly #onBundle = (): void => this.refreshRoots();
  /**
   * A new active authority, or a taint of the one that signed the current SVID: reissue now
   * rather than at half-life, so the certificate new connections see never chains to an
   * authority about to be revoked (agents would then fail to verify the server).
   */
  readonly #onAuthority = (): void => {
    if (this.#stopped) return;
    this.rotate().catch((err: unknown) => this.#logger.error({ err }, 'server SVID reissue after an authority change failed'));
  };

  /** `issuance` is the CA's server capability: the only way to have the server's ID (with its marker) signed. */
  /** `roots` gives the X.509 authorities agents' SVIDs may chain to (the shared bundle's); the CA's own by default. */
  constructor(options: { ca: ServerCa; issuance: ReservedIssuance; spiffeId: string; ttlMs: number; clock: Clock; logger: Logger; roots?: () => Buffer[] }) {
    this.#ca = options.ca;
    this.#rootsOf = options.roots ?? ((): Buffer[] => this.#ca.x509Authorities());
    this.#issuance = options.issuance;
    this.#spiffeId = options.spiffeId;
    this.#ttlMs = options.ttlMs;
    this.#clock = options.clock;
    this.#logger = options.logger;
  }

  /** Mints the first SVID and follows bundle changes. */
  async start(): Promise<void> {
    this.refreshRoots();
    await this.rotate();
    this.#ca.on('bundle-changed', this.#onBundle);
    this.#ca.on('activated', this.#onAuthority);
    this.#ca.on('tainted', this.#onAuthority);
  }

  stop(): void {
    this.#stopped = true;
    this.#timer?.cancel();
    this.#ca.off('bundle-changed', this.#onBundle);
    this.#ca.off('activated', this.#onAuthority);
    this.#ca.off('tainted', this.#onAuthority);
  }

  /** The current server SVID. */
  get current(): SignedX509Svid | undefined {
    return this.#current;
  }

  /** The current SVID chain and key as PEM (for the bundle endpoint's TLS); null before the first. */
  tlsIdentity(): { cert: Buffer; key: Buffer } | null {
    return this.#identity === null ? null : { cert: this.#identity.certificate, key: this.#identity.privateKey };
  }

  /** Calls `listener` after every new SVID; returns the unsubscribe. */
  onRotated(listener: () => void): () => void {
    const l: IdentityCertificateUpdateListener = () => listener();
    this.#idListeners.add(l);
    return () => this.#idListeners.delete(l);
  }

  /** Mints a new SVID now. */
  async rotate(): Promise<void> {
    const { csr, pkcs8 } = await generateKeyAndCsr();
    const svid = await this.#ca.signX509SvidFromCsr({ csr, spiffeId: SpiffeId.parse(this.#spiffeId), ttlMs: this.#ttlMs, issuance: this.#issuance });
    this.#current = svid;
    this.#identity = { certificate: Buffer.from(svid.chain.map((c) => toPem(c, 'CERTIFICATE')).join('')), privateKey: Buffer.from(toPem(pkcs8, 'PRIVATE KEY')) };
    for (const l of this.#idListeners) l(this.#identity);
    this.#logger.info({ spiffeId: this.#spiffeId, serial: svid.serial, notAfter: svid.notAfter.toISOString() }, 'server SVID issued');
    this.#timer?.cancel();
    if (this.#stopped) return;
    const life = svid.notAfter.getTime() - this.#clock.nowMs();
    this.#timer = this.#clock.setTimer(() => {
      this.rotate().catch((err: unknown) => {
        this.#logger.error({ err }, 'server SVID rotation failed');
        this.#timer = this.#clock.setTimer(() => void this.rotate().catch(() => undefined), 10_000);
      });
    }, Math.max(1000, life / 2));
  }

  /** Re-reads the X.509 authorities (the roots agents' SVIDs chain to). */
  refreshRoots(): void {
    const pem = this.#rootsOf().map((c) => toPem(c, 'CERTIFICATE')).join('');
    this.#roots = { caCertificate: Buffer.from(pem) };
    for (const l of this.#caListeners) l(this.#roots);
  }

  addCaCertificateListener(listener: CaCertificateUpdateListener): void {
    this.#caListeners.add(listener);
    // grpc-js registers its own watcher only after this returns, so report on a later tick
    setImmediate(() => this.#caListeners.has(listener) && listener(this.#roots));
  }

  removeCaCertificateListener(listener: CaCertificateUpdateListener): void {
    this.#caListeners.delete(listener);
  }

  addIdentityCertificateListener(listener: IdentityCertificateUpdateListener): void {
    this.#idListeners.add(listener);
    setImmediate(() => this.#idListeners.has(listener) && listener(this.#identity));
  }

  removeIdentityCertificateListener(listener: IdentityCertificateUpdateListener): void {
    this.#idListeners.delete(listener);
  }
}
