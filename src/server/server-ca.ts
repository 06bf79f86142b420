/**
 * What the server needs from its CA (src/ca/ca-manager.ts's CaManager satisfies it). The
 * API handlers depend on this narrow view so they stay testable and independent of how
 * the CA keeps its keys.
 */
import type { KeyObject } from 'node:crypto';
import type { ReservedIssuance } from '../ca/reserved-issuance.js';
import type { SpiffeId } from '../spiffe/spiffe-id.js';

/** An X.509-SVID as signed by the CA. */
export interface SignedX509Svid {
  /** Leaf first, DER, without the root. */
  readonly chain: readonly Buffer[];
  /** Leaf serial, hex. */
  readonly serial: string;
  readonly notAfter: Date;
}

/** A minted JWT-SVID; `token` is a secret. */
export interface MintedJwtSvid {
  readonly token: string;
  readonly expiresAt: Date;
  readonly kid: string;
  /** The token's `jti`: what logs may name instead of the token. */
  readonly jti: string;
}

/** The server's certificate authority. */
export interface ServerCa {
  /**
   * Signs from a CSR; a reserved ID (src/spiffe/reserved-id.ts) is refused unless `issuance` is
   * the CA's capability for it. Nothing is signed once `signal` has fired (ERR_CANCELLED).
   */
  signX509SvidFromCsr(req: { csr: Uint8Array; spiffeId: SpiffeId; ttlMs?: number; dnsNames?: string[]; issuance?: ReservedIssuance; signal?: AbortSignal }): Promise<SignedX509Svid>;
  /** How long `csrs` more signatures would wait behind the signing backlog (0 when unknown). */
  signingBacklogMs(csrs: number): number;
  /** Mints a JWT-SVID; never for a reserved ID. */
  mintJwtSvid(req: { spiffeId: SpiffeId; audience: string[]; ttlMs?: number }): Promise<MintedJwtSvid>;
  /** X.509 roots of the trust domain (DER), as published in the bundle. */
  x509Authorities(): Buffer[];
  /** JWT signing public keys, as published in the bundle. */
  jwtAuthorities(): { kid: string; publicKey: KeyObject; notAfter: Date | number }[];
  /** Every authority with its lifecycle facts; X.509 `id` is the CA's subject key identifier, hex. */
  status(): { x509: readonly { id: string; tainted: boolean }[]; jwt: readonly { id: string; tainted: boolean }[] };
  /** 'activated': a new authority signs from now on; 'tainted': an old one must stop being relied on. */
  on(event: 'bundle-changed' | 'activated' | 'tainted', listener: () => void): unknown;
  off(event: 'bundle-changed' | 'activated' | 'tainted', listener: () => void): unknown;
}
