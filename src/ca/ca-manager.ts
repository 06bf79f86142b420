/**
 * The certificate authority of one trust domain: the X.509 signing CA and the JWT signing
 * key, each living through prepared -> active -> old. The next one is prepared (and
 * published in the bundle at once) at 1/2 of the active one's life and activated at 5/6;
 * an old one leaves the bundle once everything it signed has expired. State survives
 * restarts through the CA journal (never private keys) plus the key manager.
 *
 * Operator actions follow SPIRE: `prepare` and `activate` on demand; `taint` marks an old
 * (no longer active) authority so agents rotate away from it; `revoke` removes an old,
 * tainted authority from the bundle at once, invalidating what it signed. The active
 * authority can be neither tainted nor revoked: activate a successor first.
 *
 * This file holds the lifecycle (phases, schedule, operator actions) and the journal writes;
 * one authority's slot is made in authority.ts, signing with the active ones is
 * svid-issuer.ts, rebuilding from the journal at start is journal-restore.ts, and what to take
 * in from another server's edit of the stored journal is journal-adoption.ts.
 *
 * A server removed (`sigil server remove` on another server) while it still runs halts: as
 * soon as it reads its stored journal marked removed, or finds it gone, it writes that journal
 * no more, signs nothing, refuses every operation and emits 'removed' (the server then reports
 * not ready and exits). A removed server must not keep issuing, nor undo its removal.
 */
import { createHash, type KeyObject } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Clock, TimerHandle } from '../common/clock.js';
import { SigilError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { serializeError } from '../common/logger.js';
import type { KeyManager, KeyType } from '../plugin/key-manager.js';
import type { SpiffeId, TrustDomain } from '../spiffe/spiffe-id.js';
import {
  info,
  invalid,
  mintJwtSlot,
  mintX509Slot,
  precondition,
  type JwtAuthority,
  type JwtSlot,
  type MintDeps,
  type SlotInfo,
  type X509Slot,
} from './authority.js';
import { decodeCaJournal, encodeCaJournal, type CaJournal, type CaJournalStore } from './ca-journal.js';
import { adoptionFrom, isEmptyAdoption, removedAtOf } from './journal-adoption.js';
import { restoreFromJournal } from './journal-restore.js';
import { milestones, nextEvent, pruneReason, signableAt } from './rotation-schedule.js';
import { SigningPool } from './signing-pool.js';
import type { ReservedIssuance, ReservedIssuanceSet } from './reserved-issuance.js';
import { SvidIssuer, type IssuedX509Svid, type MintedJwtSvid } from './svid-issuer.js';
import type { UpstreamAuthority } from './upstream-authority.js';

export { NOT_BEFORE_CUSHION_MS } from './authority.js';
export type { JwtAuthority, SlotInfo } from './authority.js';
export type { IssuedX509Svid, MintedJwtSvid } from './svid-issuer.js';

/** Default X.509 CA lifetime (SPIRE's ca_ttl). */
export const DEFAULT_CA_TTL_MS = 24 * 3_600_000;
/** Default X.509-SVID lifetime. */
export const DEFAULT_X509_SVID_TTL_MS = 3_600_000;
/** Default JWT-SVID lifetime. */
export const DEFAULT_JWT_SVID_TTL_MS = 5 * 60_000;
const RETRY_AFTER_FAILURE_MS = 30_000;

/** Which authority an operation is about. */
export type AuthorityKind = 'x509' | 'jwt';

/** Options of CaManager.create. */
export interface CaManagerOptions {
  trustDomain: TrustDomain;
  keyManager: KeyManager;
  journal: CaJournalStore;
  clock: Clock;
  logger: Logger;
  /** Key type of X.509 CAs; ec-p256 by default. */
  x509CaKeyType?: KeyType;
  /** Key type of JWT signing keys; ec-p256 by default. */
  jwtKeyType?: KeyType;
  /** Lifetime of each X.509 CA and JWT signing key; 24h by default. */
  caTtlMs?: number;
  /** Default X.509-SVID lifetime; 1h by default. */
  x509SvidTtlMs?: number;
  /** Default JWT-SVID lifetime; 5m by default. */
  jwtSvidTtlMs?: number;
  /**
   * How long a new authority must have been in the trust bundle before it signs anything, so
   * agents (of every server) and federated peers have it first; 0 by default. The first
   * authority of its kind in the trust domain signs at once: nobody can rely on another yet.
   */
  propagationMarginMs?: number;
  /**
   * Puts the saved journal's authorities into the trust bundle (the server merges every
   * server's into the shared one) and resolves once they are in it. Without it an authority
   * counts as published once journaled.
   */
  publish?: () => Promise<void>;
  /** The `iss` claim of every JWT-SVID (an issuer URL checked by the config); none by default. */
  jwtIssuer?: string;
  /** An upstream CA (cert chain + key loaded from files); Sigil's CA becomes its intermediate. */
  upstream?: UpstreamAuthority;
  /** Subject of Sigil's CA certificates; C=US, O=Sigil by default. */
  subject?: { country?: string; organization?: string; commonName?: string };
  /**
   * Worker threads that verify CSRs and sign leaves for signX509SvidFromCsr; 0 (the default)
   * signs on the calling thread. Keys a key manager holds outside this process always do.
   */
  signingThreads?: number;
}

/** What #adoptStored took in from the stored journal. */
interface Adopted {
  readonly tainted: Array<[AuthorityKind, string]>;
  readonly removed: Array<[AuthorityKind, X509Slot | JwtSlot]>;
}

/** The error every signature and operation of a removed server fails with (ERR_UNAVAILABLE: agents go to another server). */
function removedError(what: string): SigilError {
  return new SigilError('ERR_UNAVAILABLE', `this server ${what}: it signs nothing and writes its CA journal no more; stop it (a new data dir and server ID join again)`, { reason: 'server-removed' });
}

/** The X.509 CA and JWT signing keys of one trust domain, with their lifecycle. Emits 'bundle-changed', 'activated', 'tainted' and 'removed'. */
export class CaManager extends EventEmitter {
  readonly #td: TrustDomain;
  readonly #km: KeyManager;
  readonly #journal: CaJournalStore;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #x509KeyType: KeyType;
  readonly #jwtKeyType: KeyType;
  readonly #caTtl: number;
  readonly #upstream: UpstreamAuthority | undefined;
  readonly #upstreamFp: string | null;
  readonly #subject: { country: string; organization: string; commonName: string | undefined };
  readonly #margin: number;
  readonly #publish: (() => Promise<void>) | undefined;

  #x509: X509Slot[] = [];
  #jwt: JwtSlot[] = [];
  #activeX509: X509Slot | undefined;
  #activeJwt: JwtSlot | undefined;
  #x509Anchors: Buffer[] = [];
  #ops: Promise<unknown> = Promise.resolve();
  #saves: Promise<unknown> = Promise.resolve();
  #timer: TimerHandle | undefined;
  #started = false;
  /** Set once this server was found removed: nothing is signed, journaled or changed from then on. */
  #removal: SigilError | undefined;
  /** Whether the journal was loaded or written: from then on a missing stored journal was deleted. */
  #journaled = false;
  readonly #pool: SigningPool | undefined;
  readonly #issuer: SvidIssuer;

  private constructor(o: CaManagerOptions) {
    super();
    this.#td = o.trustDomain;
    this.#km = o.keyManager;
    this.#journal = o.journal;
    this.#clock = o.clock;
    this.#log = o.logger;
    this.#x509KeyType = o.x509CaKeyType ?? 'ec-p256';
    this.#jwtKeyType = o.jwtKeyType ?? 'ec-p256';
    this.#caTtl = o.caTtlMs ?? DEFAULT_CA_TTL_MS;
    const x509SvidTtlMs = o.x509SvidTtlMs ?? DEFAULT_X509_SVID_TTL_MS;
    const jwtSvidTtlMs = o.jwtSvidTtlMs ?? DEFAULT_JWT_SVID_TTL_MS;
    for (const [name, v] of [['caTtlMs', this.#caTtl], ['x509SvidTtlMs', x509SvidTtlMs], ['jwtSvidTtlMs', jwtSvidTtlMs]] as const) {
      if (!Number.isFinite(v) || v < 60_000) {
        throw new SigilError('ERR_CONFIG_INVALID', `${name} must be at least one minute, got ${v}`, { reason: 'bad-ttl' });
      }
    }
    this.#upstream = o.upstream;
    this.#upstreamFp = o.upstream === undefined ? null : createHash('sha256').update(o.upstream.certChain[0] as Buffer).digest('hex');
    this.#subject = { country: o.subject?.country ?? 'US', organization: o.subject?.organization ?? 'Sigil', commonName: o.subject?.commonName };
    this.#margin = o.propagationMarginMs ?? 0;
    if (!Number.isFinite(this.#margin) || this.#margin < 0) {
      throw new SigilError('ERR_CONFIG_INVALID', `propagationMarginMs must not be negative, got ${this.#margin}`, { reason: 'bad-margin' });
    }
    this.#publish = o.publish;
    const threads = o.signingThreads ?? 0;
    this.#pool = threads === 0 ? undefined : new SigningPool(threads);
    this.#issuer = new SvidIssuer({
      trustDomain: this.#td,
      clock: this.#clock,
      x509SvidTtlMs,
      jwtSvidTtlMs,
      jwtIssuer: o.jwtIssuer,
      pool: this.#pool,
      activeX509: () => this.#activeX509,
      activeJwt: () => this.#activeJwt,
      save: () => this.#save(),
      refusal: () => this.#removal,
    });
  }

  /** Loads the journal (or mints the first CA and JWT key), then makes sure an active authority of each kind exists. */
  static async create(options: CaManagerOptions): Promise<CaManager> {
    const ca = new CaManager(options);
    await ca.#load();
    await ca.#enqueue(() => ca.#lifecycle());
    await ca.#waitForActive();
    return ca;
  }

  /**
   * A server joining a trust domain whose bundle other servers' authorities already fill
   * mints its first authorities prepared: they sign only once they have been in the shared
   * bundle for the propagation margin. Waits (on the injected Clock) until both are active.
   */
  async #waitForActive(): Promise<void> {
    let told = false;
    while (this.#activeX509 === undefined || this.#activeJwt === undefined) {
      const at = this.#nextEvent();
      if (!Number.isFinite(at)) throw new SigilError('ERR_INTERNAL', 'the CA has no authority to activate', { reason: 'no-active-authority' });
      if (!told) {
        told = true;
        this.#log.info({ activateAt: new Date(at).toISOString(), propagationMarginMs: this.#margin }, 'new authorities are published; waiting for the propagation margin before signing with them');
      }
      await new Promise<void>((resolve) => this.#clock.setTimer(resolve, Math.max(0, at - this.#clock.nowMs())));
      await this.#enqueue(() => this.#lifecycle());
    }
  }

  #mintDeps(): MintDeps {
    return {
      trustDomain: this.#td,
      keyManager: this.#km,
      clock: this.#clock,
      logger: this.#log,
      x509KeyType: this.#x509KeyType,
      jwtKeyType: this.#jwtKeyType,
      caTtlMs: this.#caTtl,
      upstream: this.#upstream,
      upstreamFp: this.#upstreamFp,
      subject: this.#subject,
    };
  }

  /** Mints a prepared authority of `kind` and adds it to the slots (not yet journaled or published). */
  async #mint(kind: AuthorityKind): Promise<X509Slot | JwtSlot> {
    if (kind === 'x509') {
      const slot = await mintX509Slot(this.#mintDeps(), 'prepared');
      this.#x509.push(slot);
      return slot;
    }
    const slot = await mintJwtSlot(this.#mintDeps(), 'prepared');
    this.#jwt.push(slot);
    return slot;
  }

  /**
   * Journals and publishes the authorities not yet in the bundle, then records when they
   * got there: the propagation margin counts from that moment.
   */
  async #publishPending(): Promise<boolean> {
    const pending = [...this.#x509, ...this.#jwt].filter((s) => s.rec.publishedAt === null);
    if (pending.length === 0) return false;
    this.#afterChange();
    await this.#save();
    if (this.#publish !== undefined) await this.#publish();
    const at = this.#clock.nowMs();
    for (const s of pending) s.rec.publishedAt = at;
    await this.#save();
    return true;
  }

  /** Whether another server's journal holds a live authority of `kind` (then a first authority here must wait the margin too). */
  async #othersLive(kind: AuthorityKind): Promise<boolean> {
    if (this.#journal.others === undefined) return false;
    const now = this.#clock.nowMs();
    for (const bytes of await this.#journal.others()) {
      const j = decodeCaJournal(bytes);
      if ((kind === 'x509' ? j.x509 : j.jwt).some((r) => r.notAfter > now)) return true;
    }
    return false;
  }

  /** Starts the timer that prepares, activates and prunes on schedule (with the injected Clock). */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    this.#schedule();
  }

  /** Stops the timer; signing keeps working. */
  stop(): void {
    this.#started = false;
    this.#timer?.cancel();
    this.#timer = undefined;
  }

  /** Stops the timer and the signing threads; later signing happens on the calling thread. */
  async close(): Promise<void> {
    this.stop();
    await this.#pool?.close();
  }

  /** Why this CA halted (its server was removed), if it did. */
  get removal(): SigilError | undefined {
    return this.#removal;
  }

  /** Number of signing threads (0: signing happens on the calling thread). */
  get signingThreads(): number {
    return this.#pool === undefined || this.#pool.closed ? 0 : this.#pool.size;
  }

  /** Runs the lifecycle now: prunes, prepares and activates whatever is due. Idempotent. */
  tick(): Promise<void> {
    return this.#enqueue(() => this.#lifecycle());
  }

  /** Resolves once every queued operation and journal save has finished. */
  async idle(): Promise<void> {
    for (;;) {
      const ops = this.#ops;
      const saves = this.#saves;
      await Promise.allSettled([ops, saves]);
      if (ops === this.#ops && saves === this.#saves) return;
    }
  }

  // ---- issuing (src/ca/svid-issuer.ts) ----

  /**
   * The capabilities to sign the server's own SVID and agent SVIDs (see reserved-issuance.ts).
   * Handed out once: the server's wiring takes them at start, so no later caller can.
   */
  takeReservedIssuance(): ReservedIssuanceSet {
    return this.#issuer.takeReservedIssuance();
  }

  /**
   * Signs an X.509-SVID for the key in a DER PKCS#10 CSR after verifying the CSR's
   * self-signature (proof of possession). Names in the CSR are ignored: the SVID carries
   * exactly `spiffeId` and `dnsNames`. A reserved ID needs the matching `issuance`. Once
   * `signal` fires, nothing more is signed for it: the promise rejects with ERR_CANCELLED (or
   * the signal's SigilError) unless the signature had already been handed to a thread.
   */
  signX509SvidFromCsr(req: { csr: Uint8Array; spiffeId: SpiffeId; ttlMs?: number; dnsNames?: string[]; issuance?: ReservedIssuance; signal?: AbortSignal }): Promise<IssuedX509Svid> {
    return this.#issuer.signX509SvidFromCsr(req);
  }

  /**
   * How long a batch of `csrs` more signatures would wait behind the signing threads' backlog
   * at their current rate (0 without threads or before any rate is known), for load shedding.
   */
  signingBacklogMs(csrs: number): number {
    return this.#issuer.signingBacklogMs(csrs);
  }

  /** Signs an X.509-SVID for a public key; a reserved ID needs the matching `issuance`. */
  signX509Svid(req: { publicKey: KeyObject; spiffeId: SpiffeId; ttlMs?: number; dnsNames?: string[]; issuance?: ReservedIssuance }): Promise<IssuedX509Svid> {
    return this.#issuer.signX509Svid(req);
  }

  /** Mints a JWT-SVID (header alg/kid/typ only; claims iss when configured, sub, aud, exp, iat, jti) with the active JWT key. */
  mintJwtSvid(req: { spiffeId: SpiffeId; audience: string[]; ttlMs?: number }): Promise<MintedJwtSvid> {
    return this.#issuer.mintJwtSvid(req);
  }

  // ---- bundle and status ----

  /** DER trust anchors for the bundle: every live self-signed CA (prepared, active, old), or the upstream root(s). */
  x509Authorities(): Buffer[] {
    return [...this.#x509Anchors];
  }

  /** JWT signing public keys for the bundle: prepared, active and old keys not yet pruned. */
  jwtAuthorities(): JwtAuthority[] {
    return this.#jwt.map((s) => ({ kid: s.rec.id, publicKey: s.publicKey, notAfter: new Date(s.rec.notAfter) }));
  }

  /** Every authority of both kinds, oldest first. */
  status(): { x509: SlotInfo[]; jwt: SlotInfo[] } {
    return {
      x509: this.#x509.map((s) => info(s.rec, s.rec.upstream !== null)),
      jwt: this.#jwt.map((s) => info(s.rec, false)),
    };
  }

  // ---- operator actions ----

  /** Prepares a new authority now (replacing a prepared one not yet active) and publishes it in the bundle. */
  prepare(kind: AuthorityKind): Promise<SlotInfo> {
    return this.#enqueue(async () => {
      const slots = this.#slots(kind);
      const old = slots.find((s) => s.rec.phase === 'prepared');
      if (old !== undefined) await this.#remove(kind, old, 'replaced');
      const slot = await this.#mint(kind);
      await this.#publishPending();
      this.emit('bundle-changed');
      this.#schedule();
      return info(slot.rec, 'template' in slot && slot.rec.upstream !== null);
    });
  }

  /** Activates the prepared authority now; the active one becomes old. Fails without a prepared one. */
  activate(kind: AuthorityKind): Promise<SlotInfo> {
    return this.#enqueue(async () => {
      const prepared = this.#slots(kind).find((s) => s.rec.phase === 'prepared');
      if (prepared === undefined) throw precondition('no-prepared-authority', `there is no prepared ${kind} authority to activate`);
      const at = signableAt(prepared.rec, this.#margin);
      if (this.#clock.nowMs() < at) {
        throw precondition(
          'authority-propagating',
          `prepared ${kind} authority ${prepared.rec.id} can be activated from ${Number.isFinite(at) ? new Date(at).toISOString() : 'its publication'} on, once it has been in the trust bundle for the propagation margin (${Math.round(this.#margin / 1000)}s)`,
        );
      }
      this.#promote(kind, prepared);
      await this.#save();
      this.emit('activated', kind, info(prepared.rec, 'template' in prepared && prepared.rec.upstream !== null));
      this.#schedule();
      return info(prepared.rec, 'template' in prepared && prepared.rec.upstream !== null);
    });
  }

  /** Marks an old authority as tainted so its SVIDs get replaced; the active or prepared one cannot be tainted. */
  taint(kind: AuthorityKind, id: string): Promise<void> {
    return this.#enqueue(async () => {
      const slot = this.#find(kind, id);
      if (slot.rec.phase !== 'old') {
        throw precondition(`authority-${slot.rec.phase}`, `only an old ${kind} authority can be tainted; ${id} is ${slot.rec.phase}`);
      }
      if (slot.rec.tainted) throw precondition('already-tainted', `${kind} authority ${id} is already tainted`);
      slot.rec.tainted = true;
      await this.#save();
      this.#log.warn({ kind, authorityId: id }, 'authority tainted');
      this.emit('tainted', kind, id);
      this.emit('bundle-changed');
    });
  }

  /**
   * Removes an old, tainted authority from the bundle now and deletes its key, so nothing it
   * signed verifies any more. An upstream-signed X.509 authority cannot be revoked here: the
   * bundle trusts the upstream root, not it.
   */
  revoke(kind: AuthorityKind, id: string): Promise<void> {
    return this.#enqueue(async () => {
      const slot = this.#find(kind, id);
      if (slot.rec.phase !== 'old') {
        throw precondition(`authority-${slot.rec.phase}`, `only an old, tainted ${kind} authority can be revoked; ${id} is ${slot.rec.phase}`);
      }
      if (!slot.rec.tainted) throw precondition('authority-not-tainted', `${kind} authority ${id} must be tainted before it is revoked`);
      if ('template' in slot && slot.rec.upstream !== null) {
        throw precondition('upstream-signed', `${kind} authority ${id} is signed by the upstream authority and cannot be revoked from the bundle`);
      }
      await this.#remove(kind, slot, 'revoked');
      this.emit('bundle-changed');
    });
  }

  // ---- internals ----

  #slots(kind: AuthorityKind): Array<X509Slot | JwtSlot> {
    if (kind !== 'x509' && kind !== 'jwt') throw invalid('bad-authority-kind', `unknown authority kind ${JSON.stringify(String(kind))}`);
    return kind === 'x509' ? this.#x509 : this.#jwt;
  }

  #find(kind: AuthorityKind, id: string): X509Slot | JwtSlot {
    const slot = this.#slots(kind).find((s) => s.rec.id === id);
    if (slot === undefined) throw new SigilError('ERR_NOT_FOUND', `no ${kind} authority ${JSON.stringify(String(id))}`, { reason: 'authority-not-found' });
    return slot;
  }

  #enqueue<T>(fn: () => Promise<T>): Promise<T> {
    // a removed server changes nothing: no key minted, no phase moved, no journal written
    const guarded = (): Promise<T> => (this.#removal === undefined ? fn() : Promise.reject(this.#removal));
    const run = this.#ops.then(guarded, guarded);
    this.#ops = run.catch(() => undefined);
    return run;
  }

  /**
   * Writes the journal. With a store that can update in place, first takes in what another
   * server recorded in the stored journal since (a taint, a revoke: src/server/remote-authority.ts),
   * in the same transaction, so the snapshot written never undoes it.
   */
  #save(): Promise<void> {
    const run = this.#saves.then(async () => {
      if (this.#removal !== undefined) throw this.#removal;
      if (this.#journal.update === undefined) return this.#journal.save(encodeCaJournal(this.#snapshot()));
      const adopted: Adopted = { tainted: [], removed: [] };
      let refused: SigilError | undefined;
      await this.#journal.update((stored) => {
        // removed while still running (from another server's socket): nothing is written back
        refused = this.#removalIn(stored);
        if (refused !== undefined) return undefined;
        this.#adoptStored(stored, adopted);
        return encodeCaJournal(this.#snapshot());
      });
      if (refused !== undefined) {
        this.#halt(refused);
        throw refused;
      }
      this.#journaled = true;
      await this.#afterAdopt(adopted);
    });
    this.#saves = run.catch(() => undefined);
    return run;
  }

  /**
   * Takes in a taint or revoke of this server's authority that another server's admin socket
   * recorded in the stored journal: a revoked authority leaves memory and its key is deleted, a
   * tainted one is marked (and 'tainted' emitted). Reads first; takes the write lock only when
   * there is something to take in. The server calls it whenever the stored journals change.
   */
  reconcile(): Promise<void> {
    if (this.#removal !== undefined) return Promise.resolve();
    return this.#enqueue(async () => {
      if (this.#journal.update === undefined) return;
      const stored = await this.#journal.load();
      const removal = this.#removalIn(stored);
      if (removal !== undefined) return this.#halt(removal);
      if (!this.#adoptStored(stored, undefined)) return;
      const run = this.#saves.then(async () => {
        const adopted: Adopted = { tainted: [], removed: [] };
        let refused: SigilError | undefined;
        await this.#journal.update!((bytes) => {
          refused = this.#removalIn(bytes);
          if (refused === undefined) this.#adoptStored(bytes, adopted);
          return undefined;
        });
        if (refused !== undefined) return this.#halt(refused);
        await this.#afterAdopt(adopted);
      });
      this.#saves = run.catch(() => undefined);
      await run;
    });
  }

  /**
   * Applies src/ca/journal-adoption.ts's answer for the stored journal into `into` (or, when
   * undefined, only says whether there is anything to adopt). Synchronous: it runs inside the
   * journal's update transaction.
   */
  #adoptStored(bytes: Uint8Array | undefined, into: Adopted | undefined): boolean {
    const a = adoptionFrom(bytes, { x509: this.#x509.map((s) => s.rec), jwt: this.#jwt.map((s) => s.rec) });
    if (isEmptyAdoption(a) || into === undefined) return !isEmptyAdoption(a);
    for (const kind of ['x509', 'jwt'] as const) {
      for (const slot of this.#slots(kind)) {
        if (a.tainted[kind].includes(slot.rec.id)) {
          slot.rec.tainted = true;
          into.tainted.push([kind, slot.rec.id]);
        }
        if (a.revoked[kind].includes(slot.rec.id)) into.removed.push([kind, slot]);
      }
    }
    this.#x509 = this.#x509.filter((s) => !a.revoked.x509.includes(s.rec.id));
    this.#jwt = this.#jwt.filter((s) => !a.revoked.jwt.includes(s.rec.id));
    this.#afterChange();
    return true;
  }

  /** Why the stored journal `bytes` says this server is removed: marked so, or deleted after this manager had one. */
  #removalIn(bytes: Uint8Array | undefined): SigilError | undefined {
    if (bytes === undefined) return this.#journaled ? removedError('has no CA journal in the datastore any more (removed, and its authorities drained)') : undefined;
    const at = removedAtOf(bytes);
    return at === undefined ? undefined : removedError(`was removed from the trust domain at ${new Date(at).toISOString()} (sigil server remove on another server)`);
  }

  /** Stops for good once this server is found removed: the timer ends, every later operation and signature is refused. */
  #halt(removal: SigilError): void {
    if (this.#removal !== undefined) return;
    this.#removal = removal;
    this.stop();
    this.#log.error({ err: serializeError(removal) }, 'this server was removed from the trust domain: signing stopped, CA journal no longer written');
    this.emit('removed', removal);
  }

  /** After #adoptStored committed: deletes revoked keys, logs, tells listeners. */
  async #afterAdopt(adopted: Adopted): Promise<void> {
    for (const [kind, slot] of adopted.removed) {
      if ('template' in slot && typeof slot.poolRef === 'number') this.#pool?.forget(slot.poolRef);
      await this.#km.deleteKey(slot.rec.keyId).catch((err: unknown) => this.#log.warn({ keyId: slot.rec.keyId, err: serializeError(err) }, 'cannot delete key'));
      this.#log.warn({ kind, authorityId: slot.rec.id, why: 'revoked through another server' }, 'authority removed');
    }
    for (const [kind, id] of adopted.tainted) {
      this.#log.warn({ kind, authorityId: id, through: 'another server' }, 'authority tainted');
      this.emit('tainted', kind, id);
    }
    if (adopted.removed.length > 0 || adopted.tainted.length > 0) this.emit('bundle-changed');
  }

  #snapshot(): CaJournal {
    return { version: 1, trustDomain: this.#td.name, x509: this.#x509.map((s) => ({ ...s.rec })), jwt: this.#jwt.map((s) => ({ ...s.rec })) };
  }

  /** Recomputes derived state (active pointers, bundle anchors) after any change to the slot lists. */
  #afterChange(): void {
    this.#activeX509 = this.#x509.find((s) => s.rec.phase === 'active');
    this.#activeJwt = this.#jwt.find((s) => s.rec.phase === 'active');
    const anchors: Buffer[] = [];
    for (const s of this.#x509) for (const a of s.anchors) if (!anchors.some((x) => x.equals(a))) anchors.push(a);
    this.#x509Anchors = anchors;
  }

  /** Rebuilds the authorities from the stored journal (src/ca/journal-restore.ts), or records an empty one at a first start. */
  async #load(): Promise<void> {
    const restored = await restoreFromJournal({ trustDomain: this.#td, keyManager: this.#km, journal: this.#journal, logger: this.#log, upstreamFp: this.#upstreamFp });
    if (restored === undefined) {
      await this.#save();
      return;
    }
    this.#x509 = restored.x509;
    this.#jwt = restored.jwt;
    this.#journaled = true;
    this.#afterChange();
    if (restored.changed) await this.#save();
  }

  /** prepared -> active, active -> old (in memory; the caller saves). */
  #promote(kind: AuthorityKind, next: X509Slot | JwtSlot): void {
    for (const s of this.#slots(kind)) if (s.rec.phase === 'active') s.rec.phase = 'old';
    next.rec.phase = 'active';
    this.#afterChange();
    this.#log.info({ kind, authorityId: next.rec.id }, 'authority activated');
  }

  async #remove(kind: AuthorityKind, slot: X509Slot | JwtSlot, why: string): Promise<void> {
    if (kind === 'x509') this.#x509 = this.#x509.filter((s) => s !== slot);
    else this.#jwt = this.#jwt.filter((s) => s !== slot);
    if ('template' in slot && typeof slot.poolRef === 'number') this.#pool?.forget(slot.poolRef);
    this.#afterChange();
    // Journal first: a crash after it leaves an orphan key (collected at start), never a journal entry without its key.
    await this.#save();
    await this.#km.deleteKey(slot.rec.keyId).catch((err: unknown) => this.#log.warn({ keyId: slot.rec.keyId, err: serializeError(err) }, 'cannot delete key'));
    this.#log.info({ kind, authorityId: slot.rec.id, why }, 'authority removed');
  }

  /** One lifecycle pass over both kinds; returns after saving whatever changed. */
  async #lifecycle(): Promise<void> {
    let bundleChanged = false;
    const activated: Array<[AuthorityKind, X509Slot | JwtSlot]> = [];
    for (const kind of ['x509', 'jwt'] as const) {
      const r = await this.#lifecycleOf(kind);
      bundleChanged ||= r.bundleChanged;
      if (r.activated !== undefined) activated.push([kind, r.activated]);
    }
    if (bundleChanged || activated.length > 0) {
      this.#afterChange();
      await this.#save();
    }
    for (const [kind, s] of activated) this.emit('activated', kind, info(s.rec, 'template' in s && s.rec.upstream !== null));
    if (bundleChanged) this.emit('bundle-changed');
  }

  async #lifecycleOf(kind: AuthorityKind): Promise<{ bundleChanged: boolean; activated: X509Slot | JwtSlot | undefined }> {
    let bundleChanged = false;
    let activated: X509Slot | JwtSlot | undefined;
    const now = this.#clock.nowMs();
    // Prune: expired authorities, and old ones whose last signed credential has expired.
    for (const s of [...this.#slots(kind)]) {
      const why = pruneReason(s, now);
      if (why !== undefined) {
        await this.#remove(kind, s, why);
        bundleChanged = true;
      }
    }
    let othersLive: boolean | undefined;
    for (let guard = 0; guard < 6; guard++) {
      const slots = this.#slots(kind);
      const active = slots.find((s) => s.rec.phase === 'active');
      const prepared = slots.find((s) => s.rec.phase === 'prepared');
      if (prepared !== undefined && prepared.rec.publishedAt === null) {
        await this.#publishPending();
        continue;
      }
      if (active === undefined) {
        if (prepared === undefined) {
          await this.#mint(kind);
          bundleChanged = true;
          continue;
        }
        othersLive ??= await this.#othersLive(kind);
        if (othersLive && this.#clock.nowMs() < signableAt(prepared.rec, this.#margin)) break;
        this.#promote(kind, prepared);
        activated = prepared;
        continue;
      }
      const { prepareAt, activateAt } = milestones(active.rec);
      if (prepared === undefined && now >= prepareAt) {
        await this.#mint(kind);
        bundleChanged = true;
        continue;
      }
      if (prepared !== undefined && now >= activateAt && now >= signableAt(prepared.rec, this.#margin)) {
        this.#promote(kind, prepared);
        activated = prepared;
        continue;
      }
      break;
    }
    this.#afterChange();
    return { bundleChanged, activated };
  }

  /** The next moment the lifecycle has something to do (src/ca/rotation-schedule.ts). */
  #nextEvent(): number {
    return nextEvent([this.#x509, this.#jwt], this.#margin);
  }

  #schedule(delayMs?: number): void {
    if (!this.#started) return;
    this.#timer?.cancel();
    const now = this.#clock.nowMs();
    const at = delayMs === undefined ? this.#nextEvent() : now + delayMs;
    if (!Number.isFinite(at)) return;
    this.#timer = this.#clock.setTimer(() => {
      this.#timer = undefined;
      this.tick().then(
        () => this.#schedule(),
        (err: unknown) => {
          if (this.#removal !== undefined) return; // halted: logged once, nothing to retry
          this.#log.error({ err: serializeError(err) }, 'CA lifecycle step failed; retrying');
          this.#schedule(RETRY_AFTER_FAILURE_MS);
        },
      );
    }, Math.max(0, at - now));
  }
}
