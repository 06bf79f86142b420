/**
 * Signing with a CaManager's active authorities: X.509-SVIDs (from a CSR or a public key, on
 * the calling thread or the signing pool) and JWT-SVIDs, with the checks every request
 * passes (trust domain, reserved IDs and their issuance capabilities, DNS names, lifetimes)
 * and the signedUntil bound journaled before anything is handed out. Which authority is
 * active, and the journal itself, stay with the manager (ca-manager.ts), which hands them in.
 */
import { randomBytes, type KeyObject } from 'node:crypto';
import type { Clock } from '../common/clock.js';
import { SigilError } from '../common/errors.js';
import type { ManagedKey } from '../plugin/key-manager.js';
import { reservedIdKind, reservedIdReason } from '../spiffe/reserved-id.js';
import type { SpiffeId, TrustDomain } from '../spiffe/spiffe-id.js';
import { checkSvidPublicKey } from './algorithms.js';
import { NOT_BEFORE_CUSHION_MS, floorSec, invalid, type JwtSlot, type PendingBound, type X509Slot } from './authority.js';
import { verifyCsr } from './csr.js';
import { inMemoryPrivateKey } from './key-manager/key-gen.js';
import { checkDnsName, randomSerial, serialHex } from './leaf-template.js';
import type { ReservedIssuance, ReservedIssuanceSet } from './reserved-issuance.js';
import type { SigningPool } from './signing-pool.js';
import { spkiOf, subjectKeyIdentifier } from './spki.js';

/** A signed X.509-SVID. */
export interface IssuedX509Svid {
  /** DER certificates, leaf first, then Sigil's CA and upstream intermediates when upstream. */
  chain: Buffer[];
  /** Lowercase hex of the serial number, no leading zeros. */
  serial: string;
  notAfter: Date;
  spiffeId: SpiffeId;
}

/** A minted JWT-SVID. */
export interface MintedJwtSvid {
  /** The compact JWS; a secret, never log it (log `jti`). */
  token: string;
  expiresAt: Date;
  kid: string;
  jti: string;
}

/** What signing needs from its CaManager. */
export interface SvidIssuerDeps {
  readonly trustDomain: TrustDomain;
  readonly clock: Clock;
  /** Default X.509-SVID lifetime, and the step the X.509 signedUntil bound moves by. */
  readonly x509SvidTtlMs: number;
  /** Default JWT-SVID lifetime, and the step the JWT signedUntil bound moves by. */
  readonly jwtSvidTtlMs: number;
  /** The `iss` claim of every JWT-SVID, if any. */
  readonly jwtIssuer: string | undefined;
  /** The signing threads (the manager closes them); undefined signs on the calling thread. */
  readonly pool: SigningPool | undefined;
  /** The active X.509 CA now (rotation changes it between calls). */
  readonly activeX509: () => X509Slot | undefined;
  /** The active JWT signing key now. */
  readonly activeJwt: () => JwtSlot | undefined;
  /** Writes the CA journal (after a raised signedUntil bound). */
  readonly save: () => Promise<void>;
  /** Why nothing may be signed any more (this server was removed), if so: every signature is refused with it. */
  readonly refusal: () => SigilError | undefined;
}

/** Signs SVIDs with the active authorities of one CaManager. */
export class SvidIssuer {
  readonly #d: SvidIssuerDeps;
  /** The issuance capabilities this CA minted (only these are honoured); empty until taken. */
  readonly #issuances = new WeakSet<ReservedIssuance>();
  #issuancesTaken = false;

  constructor(deps: SvidIssuerDeps) {
    this.#d = deps;
  }

  /**
   * The capabilities to sign the server's own SVID and agent SVIDs (see reserved-issuance.ts).
   * Handed out once: the server's wiring takes them at start, so no later caller can.
   */
  takeReservedIssuance(): ReservedIssuanceSet {
    if (this.#issuancesTaken) {
      throw new SigilError('ERR_INTERNAL', 'the reserved issuance capabilities were already taken', { reason: 'issuance-taken' });
    }
    this.#issuancesTaken = true;
    const server: ReservedIssuance = Object.freeze({ kind: 'server' });
    const agent: ReservedIssuance = Object.freeze({ kind: 'agent' });
    this.#issuances.add(server);
    this.#issuances.add(agent);
    return { server, agent };
  }

  /**
   * Signs an X.509-SVID for the key in a DER PKCS#10 CSR after verifying the CSR's
   * self-signature (proof of possession). Names in the CSR are ignored: the SVID carries
   * exactly `spiffeId` and `dnsNames`. A reserved ID needs the matching `issuance`. Once
   * `signal` fires, nothing more is signed for it: the promise rejects with ERR_CANCELLED (or
   * the signal's SigilError) unless the signature had already been handed to a thread.
   */
  signX509SvidFromCsr(req: { csr: Uint8Array; spiffeId: SpiffeId; ttlMs?: number; dnsNames?: string[]; issuance?: ReservedIssuance; signal?: AbortSignal }): Promise<IssuedX509Svid> {
    try {
      if (req.signal?.aborted === true) throw new SigilError('ERR_CANCELLED', 'the caller gave up before this was signed', { reason: 'caller-gone' });
      const serverMarker = this.#checkLeafRequest(req.spiffeId, req.dnsNames, req.issuance);
      const slot = this.#d.activeX509();
      const pool = this.#d.pool;
      // the server SVID (rare) is built on this thread: the pool's threads never emit the marker
      if (!serverMarker && pool !== undefined && !pool.closed && slot !== undefined && this.#poolRef(pool, slot) !== null) {
        // an agent's own SVID (attestation, renewal) goes ahead of workload SVIDs waiting for a thread
        return this.#issueInPool(pool, req.csr, req.spiffeId, req.dnsNames ?? [], req.ttlMs, req.signal, req.issuance?.kind === 'agent');
      }
      const { spki, publicKey } = verifyCsr(req.csr);
      const { rsa } = checkSvidPublicKey(publicKey);
      return this.#issue(spki, rsa, req.spiffeId, req.dnsNames ?? [], req.ttlMs, serverMarker);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * How long a batch of `csrs` more signatures would wait behind the signing threads' backlog
   * at their current rate (0 without threads or before any rate is known), for load shedding.
   */
  signingBacklogMs(csrs: number): number {
    const pool = this.#d.pool;
    return pool === undefined || pool.closed ? 0 : pool.estimatedWaitMs(csrs);
  }

  /** Signs an X.509-SVID for a public key; a reserved ID needs the matching `issuance`. */
  signX509Svid(req: { publicKey: KeyObject; spiffeId: SpiffeId; ttlMs?: number; dnsNames?: string[]; issuance?: ReservedIssuance }): Promise<IssuedX509Svid> {
    try {
      const serverMarker = this.#checkLeafRequest(req.spiffeId, req.dnsNames, req.issuance);
      const { rsa } = checkSvidPublicKey(req.publicKey);
      return this.#issue(spkiOf(req.publicKey), rsa, req.spiffeId, req.dnsNames ?? [], req.ttlMs, serverMarker);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Mints a JWT-SVID (header alg/kid/typ only; claims iss when configured, sub, aud, exp, iat, jti) with the active JWT key. */
  async mintJwtSvid(req: { spiffeId: SpiffeId; audience: string[]; ttlMs?: number }): Promise<MintedJwtSvid> {
    // no capability opens a reserved ID here: neither the server nor an agent needs a JWT-SVID
    this.#checkSpiffeId(req.spiffeId, undefined);
    if (!Array.isArray(req.audience) || req.audience.length === 0 || req.audience.some((a) => typeof a !== 'string' || a.length === 0)) {
      throw invalid('bad-audience', 'JWT-SVID audience must be a non-empty list of non-empty strings');
    }
    const ttl = this.#ttl(req.ttlMs, this.#d.jwtSvidTtlMs);
    const refusal = this.#d.refusal();
    if (refusal !== undefined) throw refusal;
    const slot = this.#d.activeJwt();
    const now = this.#d.clock.nowMs();
    if (slot === undefined || slot.key === undefined || slot.rec.notAfter <= now) {
      throw new SigilError('ERR_UNAVAILABLE', 'no active JWT signing key', { reason: 'no-active-authority' });
    }
    const iat = Math.floor(now / 1000);
    const exp = Math.min(Math.floor((now + ttl) / 1000), Math.floor(slot.rec.notAfter / 1000));
    if (exp <= iat) throw new SigilError('ERR_UNAVAILABLE', 'JWT signing key is about to expire', { reason: 'no-active-authority' });
    await this.#raiseSignedUntil(slot, exp * 1000);
    const jti = randomBytes(16).toString('base64url');
    const claims = { ...(this.#d.jwtIssuer === undefined ? {} : { iss: this.#d.jwtIssuer }), sub: req.spiffeId.toString(), aud: req.audience.length === 1 ? req.audience[0] : req.audience, exp, iat, jti };
    const signingInput = `${slot.header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
    const sig = await slot.key.sign(Buffer.from(signingInput, 'latin1'), { dsaEncoding: 'ieee-p1363' });
    return { token: `${signingInput}.${sig.toString('base64url')}`, expiresAt: new Date(exp * 1000), kid: slot.rec.id, jti };
  }

  /**
   * Refuses IDs outside the trust domain, and reserved IDs unless `issuance` is one this CA
   * minted for that kind of ID. Returns true when the leaf is the server's own SVID (it gets
   * the server marker).
   */
  #checkSpiffeId(id: SpiffeId, issuance: ReservedIssuance | undefined): boolean {
    if (!id.memberOf(this.#d.trustDomain)) {
      throw invalid('wrong-trust-domain', `SPIFFE ID ${id.toString()} is not in trust domain ${this.#d.trustDomain.name}`);
    }
    if (id.isTrustDomainId) throw invalid('not-leaf-id', `SVID SPIFFE ID ${id.toString()} must have a path`);
    if (issuance !== undefined && !this.#issuances.has(issuance)) {
      throw invalid('issuance-unknown', 'the reserved issuance capability was not minted by this CA');
    }
    const kind = reservedIdKind(id, this.#d.trustDomain);
    if (kind === undefined) {
      // a capability is for its reserved IDs only: the server marker must never reach a workload ID
      if (issuance !== undefined) throw invalid('issuance-mismatch', `the ${issuance.kind} issuance capability does not cover ${id.toString()}`);
      return false;
    }
    if (issuance === undefined || issuance.kind !== kind) {
      throw invalid('reserved-spiffe-id', `the CA signs no SVID for ${reservedIdReason(id, this.#d.trustDomain) ?? id.toString()}`);
    }
    return kind === 'server';
  }

  #checkLeafRequest(id: SpiffeId, dnsNames: readonly string[] | undefined, issuance: ReservedIssuance | undefined): boolean {
    const serverMarker = this.#checkSpiffeId(id, issuance);
    if (dnsNames !== undefined) {
      if (!Array.isArray(dnsNames)) throw invalid('bad-dns-name', 'dnsNames must be a list');
      for (const d of dnsNames) checkDnsName(d);
    }
    return serverMarker;
  }

  #ttl(requested: number | undefined, fallback: number): number {
    if (requested === undefined || requested === 0) return fallback;
    if (!Number.isFinite(requested) || requested < 0) throw invalid('bad-ttl', `invalid SVID ttl ${requested}`);
    return requested;
  }

  /** The active CA able to sign now and the validity of a leaf it signs now; ERR_UNAVAILABLE when there is none. */
  #leafValidity(ttlMs: number | undefined): { slot: X509Slot & { key: ManagedKey }; notBefore: number; notAfter: number } {
    const ttl = this.#ttl(ttlMs, this.#d.x509SvidTtlMs);
    const refusal = this.#d.refusal();
    if (refusal !== undefined) throw refusal;
    const slot = this.#d.activeX509();
    const now = this.#d.clock.nowMs();
    if (slot === undefined || slot.key === undefined || slot.rec.notAfter <= now) {
      throw new SigilError('ERR_UNAVAILABLE', 'no active X.509 CA', { reason: 'no-active-authority' });
    }
    // The CA's remaining life caps every SVID: a leaf must never outlive its issuer.
    const notAfter = Math.min(floorSec(now + ttl), slot.rec.notAfter);
    if (notAfter <= now) throw new SigilError('ERR_UNAVAILABLE', 'X.509 CA is about to expire', { reason: 'no-active-authority' });
    const notBefore = Math.max(floorSec(now - NOT_BEFORE_CUSHION_MS), slot.rec.notBefore);
    return { slot: slot as X509Slot & { key: ManagedKey }, notBefore, notAfter };
  }

  /** The slot's key in the pool, registered at first use; null for a key the pool cannot hold (not in this process). */
  #poolRef(pool: SigningPool, slot: X509Slot): number | null {
    if (slot.poolRef !== undefined) return slot.poolRef;
    const privateKey = slot.key === undefined ? undefined : inMemoryPrivateKey(slot.key);
    if (slot.key === undefined || privateKey === undefined) return null; // not memoised: a missing key is refused by #leafValidity
    const { issuerName, authorityKeyId, scheme } = slot.template.options;
    slot.poolRef = pool.register({ keyId: slot.key.id, privateKey, issuerName, authorityKeyId, scheme });
    return slot.poolRef;
  }

  /** As signX509SvidFromCsr + #issue, with the CSR check and the signature on a pool thread. */
  async #issueInPool(
    pool: SigningPool,
    csr: Uint8Array,
    spiffeId: SpiffeId,
    dnsNames: readonly string[],
    ttlMs: number | undefined,
    signal: AbortSignal | undefined,
    first: boolean,
  ): Promise<IssuedX509Svid> {
    const { slot, notBefore, notAfter } = this.#leafValidity(ttlMs);
    const ref = this.#poolRef(pool, slot);
    if (ref === null) throw new SigilError('ERR_INTERNAL', 'X.509 CA key is not usable by the signing threads', { reason: 'signing-key-unavailable' });
    if (notAfter > slot.rec.signedUntil) await this.#raiseSignedUntil(slot, notAfter);
    const serial = randomSerial();
    const leaf = await pool.sign({ keyRef: ref, csr, serial, notBeforeMs: notBefore, notAfterMs: notAfter, spiffeId: spiffeId.toString(), dnsNames }, signal, { first });
    return { chain: slot.chainTail.length === 0 ? [leaf] : [leaf, ...slot.chainTail], serial: serialHex(serial), notAfter: new Date(notAfter), spiffeId };
  }

  async #issue(spki: Buffer, rsa: boolean, spiffeId: SpiffeId, dnsNames: readonly string[], ttlMs: number | undefined, serverMarker = false): Promise<IssuedX509Svid> {
    const { slot, notBefore, notAfter } = this.#leafValidity(ttlMs);
    if (notAfter > slot.rec.signedUntil) await this.#raiseSignedUntil(slot, notAfter);
    const serial = randomSerial();
    const tbs = slot.template.tbs({
      serial,
      notBeforeMs: notBefore,
      notAfterMs: notAfter,
      spki,
      subjectKeyId: subjectKeyIdentifier(spki),
      spiffeId: spiffeId.toString(),
      dnsNames,
      rsa,
      serverMarker,
    });
    const signature = await slot.key.sign(tbs);
    const leaf = slot.template.certificate(tbs, signature);
    return { chain: slot.chainTail.length === 0 ? [leaf] : [leaf, ...slot.chainTail], serial: serialHex(serial), notAfter: new Date(notAfter), spiffeId };
  }

  /**
   * Makes sure the journal records that this key signed something valid until `needed`
   * before handing it out, so a restarted server still keeps the key in the bundle long
   * enough. The bound moves in steps of one default SVID lifetime: one journal write per
   * step, not per SVID.
   */
  #raiseSignedUntil(slot: X509Slot | JwtSlot, needed: number): Promise<void> {
    if (needed <= slot.rec.signedUntil) return Promise.resolve();
    if (slot.pending !== undefined && slot.pending.value >= needed) return slot.pending.promise;
    const step = 'template' in slot ? this.#d.x509SvidTtlMs : this.#d.jwtSvidTtlMs;
    const value = Math.min(slot.rec.notAfter, Math.max(needed, this.#d.clock.nowMs() + step));
    const pending: PendingBound = { value, promise: Promise.resolve() };
    pending.promise = (async () => {
        const before = slot.rec.signedUntil;
        if (value > before) slot.rec.signedUntil = value;
        try {
          await this.#d.save();
        } catch (err) {
          if (slot.rec.signedUntil === value) slot.rec.signedUntil = before;
          throw new SigilError('ERR_UNAVAILABLE', 'cannot record CA state', { reason: 'journal-save-failed', cause: err });
        } finally {
          if (slot.pending === pending) slot.pending = undefined;
        }
      })();
    slot.pending = pending;
    return pending.promise;
  }
}
