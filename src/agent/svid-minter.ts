/**
 * The X.509-SVIDs the agent holds and their renewal: an in-memory key pair and SVID per entry
 * the SVID cache decides to hold, minted in coalesced batch calls to the server (retried with
 * backoff), each rotated at half of its life (±10%) and dropped at its expiry when no
 * successor came. Which entries to hold, and who is told, is the SVID cache's business; this
 * module only mints, keeps and renews what it is asked to.
 */
import { Backoff } from '../common/backoff.js';
import type { Clock, TimerHandle } from '../common/clock.js';
import { SigilError, toSigilError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { logRetry } from '../common/retry-log.js';
import { Secret } from '../common/secret.js';
import { ParsedCertificate } from '../spiffe/certificate.js';
import type { WorkloadX509Svid } from './workload-api/identity-source.js';
import { isAgentRejected } from './agent-identity.js';
import { generateKeyAndCsrSync, type KeyAndCsr } from './csr.js';
import { DeadlineQueue, type Deadline } from './deadline-queue.js';
import { rotationDelayMs } from './rotation.js';
import { chainUsesTainted } from './tainted-authorities.js';
import { MAX_CSRS_PER_CALL, type X509SvidItemResult } from './server-client.js';

/** What the minter needs from the server. */
export interface X509SvidIssuer {
  batchNewX509Svid(items: readonly { entryId: string; csrDer: Buffer }[], signal?: AbortSignal): Promise<X509SvidItemResult[]>;
}

/** The fields of an entry an X.509-SVID is minted from and served with. */
export interface MintForm {
  readonly id: string;
  readonly spiffeId: string;
  readonly hint: string;
  /** With spiffeId, what the SVID depends on: a change means minting again. */
  readonly ttlSeconds: number;
  /** Sorted. */
  readonly dnsNames: readonly string[];
}

/** An SVID held for an entry; it waits in the deadline queue for its rotation, then its expiry. */
export interface HeldSvid<E extends MintForm> extends Deadline {
  /** The form of the entry it was minted for. */
  from: E;
  readonly svid: WorkloadX509Svid;
  readonly serial: string;
  /** Moved earlier when a taint concerns it. */
  rotateAtMs: number;
  readonly notAfterMs: number;
  /** Its successor was asked for; next deadline is expiry. */
  rotating: boolean;
}

/** Options of an SvidMinter. */
export interface SvidMinterOptions<E extends MintForm> {
  readonly issuer: X509SvidIssuer;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly random?: () => number;
  readonly retryInitialMs?: number;
  readonly retryMaxMs?: number;
  /** The server refused the agent SVID: attest again. */
  readonly onRejected?: () => Promise<void>;
  /** Called once minting has been quiet for a second after a burst, at most every 10 s. */
  readonly afterMinting?: () => void;
  /** The current form of an entry; undefined once it is gone. */
  readonly entryOf: (id: string) => E | undefined;
  /** The SVIDs of these entries changed, or could not be minted, or expired: their workloads need a look. */
  readonly onChanged: (ids: Iterable<string>) => void;
}

/** Quiet time after the last mint, and shortest time between two afterMinting calls. */
const AFTER_MINTING_QUIET_MS = 1000;
const AFTER_MINTING_EVERY_MS = 10_000;

/** Keys generated between two yields to the event loop while a batch of mints is prepared. */
const KEYS_PER_TURN = 16;

/** True when an SVID minted for entry form `a` is still right for form `b`. */
export function sameMintForm(a: MintForm, b: MintForm): boolean {
  return a === b || (a.spiffeId === b.spiffeId && a.ttlSeconds === b.ttlSeconds && a.dnsNames.length === b.dnsNames.length && a.dnsNames.every((d, i) => d === b.dnsNames[i]));
}

/**
 * The served SVID with its key and chain copied into one small pooled Buffer: the exported
 * key is a malloc'd block of its own, and keeping it would pin heap pages among the freed
 * temporaries of key generation.
 */
function svidMaterial(entry: MintForm, keyDer: Buffer, chain: readonly Buffer[]): WorkloadX509Svid {
  const material = Buffer.concat([keyDer, ...chain]);
  return {
    spiffeId: entry.spiffeId,
    chainDer: material.subarray(keyDer.length),
    keyPkcs8Der: new Secret(material.subarray(0, keyDer.length)),
    hint: entry.hint,
  };
}

/** Mints, holds and rotates the X.509-SVIDs of the entries it is asked for. */
export class SvidMinter<E extends MintForm> {
  readonly #o: SvidMinterOptions<E>;
  readonly #svids = new Map<string, HeldSvid<E>>();
  /** Rotation and expiry of every held SVID, behind one timer. */
  readonly #deadlines: DeadlineQueue<HeldSvid<E>>;
  /** Entries waiting to be minted, and those in a call now. */
  readonly #queued = new Set<string>();
  readonly #inFlight = new Set<string>();
  /** Entries whose last mint failed (a waiting workload is answered without them). */
  readonly #failed = new Set<string>();
  readonly #backoff: Backoff;
  #flushScheduled = false;
  #retryTimer: TimerHandle | undefined;
  #afterMintingTimer: TimerHandle | undefined;
  #afterMintingAtMs = -Infinity;
  #stopped = false;
  readonly #stop = new AbortController();

  constructor(options: SvidMinterOptions<E>) {
    this.#o = options;
    this.#backoff = new Backoff({ initialMs: options.retryInitialMs ?? 1000, maxMs: options.retryMaxMs ?? 30_000, ...(options.random ? { random: options.random } : {}) });
    this.#deadlines = new DeadlineQueue(options.clock, (s) => this.#svidDue(s));
  }

  /** Number of SVIDs held. */
  get size(): number {
    return this.#svids.size;
  }

  /** The SVID held for an entry, if any. */
  get(id: string): HeldSvid<E> | undefined {
    return this.#svids.get(id);
  }

  has(id: string): boolean {
    return this.#svids.has(id);
  }

  /** The entry IDs whose SVIDs are held now. */
  ids(): string[] {
    return [...this.#svids.keys()];
  }

  /** Whether a mint of the entry is waiting or in a call now. */
  pending(id: string): boolean {
    return this.#queued.has(id) || this.#inFlight.has(id);
  }

  /** Whether the entry's last mint failed. */
  failed(id: string): boolean {
    return this.#failed.has(id);
  }

  /** Queues a mint when the entry has no SVID for its current form and its last mint did not fail. */
  queueIfMissing(id: string): void {
    const s = this.#svids.get(id);
    const e = this.#o.entryOf(id);
    if ((s === undefined || (e !== undefined && !sameMintForm(s.from, e))) && !this.#failed.has(id)) this.queue(id);
  }

  /** Drops the SVID held for an entry. */
  drop(id: string): void {
    const s = this.#svids.get(id);
    if (s === undefined) return;
    this.#deadlines.remove(s);
    this.#svids.delete(id);
  }

  /** Drops the SVID of an entry that is gone, and its failure. */
  forget(id: string): void {
    this.drop(id);
    this.#failed.delete(id);
  }

  /**
   * Moves the rotation of every held SVID that chains to a tainted authority to `atMs` at the
   * latest, so they are re-minted together (one batch call); returns how many.
   */
  rotateTainted(tainted: ReadonlySet<string>, atMs: number): number {
    let count = 0;
    for (const state of this.#svids.values()) {
      if (state.rotating || !chainUsesTainted(state.svid.chainDer, tainted)) continue;
      state.rotateAtMs = Math.min(state.rotateAtMs, atMs);
      this.#deadlines.schedule(state, Math.min(state.rotateAtMs, state.notAfterMs));
      count++;
    }
    return count;
  }

  queue(id: string): void {
    if (this.#stopped || this.#inFlight.has(id)) {
      if (this.#inFlight.has(id)) this.#queued.add(id); // minted again once the current call returns
      return;
    }
    this.#queued.add(id);
    if (this.#flushScheduled || this.#retryTimer !== undefined) return;
    this.#flushScheduled = true;
    // Coalesce the mints of one burst (a FULL batch, many workloads arriving) into few calls.
    setImmediate(() => {
      this.#flushScheduled = false;
      void this.#flush();
    });
  }

  async #flush(): Promise<void> {
    if (this.#stopped) return;
    const ids = [...this.#queued].filter((id) => !this.#inFlight.has(id)).slice(0, MAX_CSRS_PER_CALL);
    if (ids.length === 0) return;
    for (const id of ids) {
      this.#queued.delete(id);
      this.#inFlight.add(id);
    }
    const requests: (KeyAndCsr & { id: string; from: E | undefined })[] = [];
    for (const id of ids) {
      // Keys are made on this thread (see generateKeyAndCsrSync), a few at a time between turns
      // so that workloads are still answered while a large batch is prepared.
      if (requests.length > 0 && requests.length % KEYS_PER_TURN === 0) await new Promise<void>((resolve) => setImmediate(resolve));
      requests.push({ id, from: this.#o.entryOf(id), ...generateKeyAndCsrSync() });
    }
    let results: X509SvidItemResult[] | undefined;
    let failure: SigilError | undefined;
    try {
      results = await this.#o.issuer.batchNewX509Svid(
        requests.map((r) => ({ entryId: r.id, csrDer: r.csrDer })),
        this.#stop.signal,
      );
    } catch (err) {
      failure = toSigilError(err);
    }
    for (const id of ids) this.#inFlight.delete(id);
    if (this.#stopped) return;
    if (failure !== undefined || results === undefined) {
      const delay = this.#backoff.next();
      logRetry(this.#o.logger, failure ?? new SigilError('ERR_INTERNAL', 'the server answered no results', { reason: 'no-results' }), { entries: ids.length, retryInMs: delay }, 'minting X509-SVIDs failed; retrying');
      for (const id of ids) {
        if (!this.#svids.has(id)) this.#failed.add(id);
        this.#queued.add(id);
      }
      // Waiting workloads are answered with what there is rather than left hanging.
      this.#o.onChanged(ids);
      if (failure !== undefined && isAgentRejected(failure)) void this.#o.onRejected?.();
      this.#retryTimer?.cancel();
      this.#retryTimer = this.#o.clock.setTimer(() => {
        this.#retryTimer = undefined;
        for (const id of [...this.#queued]) if (this.#o.entryOf(id) === undefined) this.#queued.delete(id);
        this.#failed.clear();
        if (this.#queued.size > 0) {
          this.#flushScheduled = true;
          setImmediate(() => {
            this.#flushScheduled = false;
            void this.#flush();
          });
        }
      }, delay);
      return;
    }
    this.#backoff.reset();
    const now = this.#o.clock.nowMs();
    const byId = new Map(requests.map((r) => [r.id, r]));
    for (const res of results) {
      const req = byId.get(res.entryId);
      if (req === undefined) continue;
      const entry = this.#o.entryOf(res.entryId);
      if (res.error !== undefined || res.svid === undefined) {
        this.#o.logger.warn({ entryId: res.entryId, code: res.error?.code }, 'server refused an X509-SVID');
        if (!this.#svids.has(res.entryId)) this.#failed.add(res.entryId);
        continue;
      }
      if (entry === undefined || req.from === undefined || !sameMintForm(req.from, entry)) {
        // The entry changed or went while we were minting: this SVID is stale.
        if (entry !== undefined) this.#queued.add(res.entryId);
        continue;
      }
      try {
        this.#install(entry, res.svid.cert_chain, req.keyPkcs8Der, req.spkiDer, now);
        this.#failed.delete(res.entryId);
      } catch (err) {
        this.#o.logger.error({ err, entryId: res.entryId }, 'server sent an unusable X509-SVID');
        this.#failed.add(res.entryId);
      }
    }
    this.#o.onChanged(ids);
    if (this.#queued.size > 0) {
      const pending = [...this.#queued];
      this.#queued.clear();
      for (const id of pending) if (this.#o.entryOf(id) !== undefined) this.queue(id);
    }
    this.#scheduleAfterMinting();
  }

  /** (Re)arms the afterMinting call for when minting has been quiet for a while. */
  #scheduleAfterMinting(): void {
    const callback = this.#o.afterMinting;
    if (callback === undefined || this.#stopped) return;
    this.#afterMintingTimer?.cancel();
    const now = this.#o.clock.nowMs();
    const delay = Math.max(AFTER_MINTING_QUIET_MS, this.#afterMintingAtMs + AFTER_MINTING_EVERY_MS - now);
    this.#afterMintingTimer = this.#o.clock.setTimer(() => {
      this.#afterMintingTimer = undefined;
      if (this.#queued.size > 0 || this.#inFlight.size > 0) return; // the next flush re-arms it
      this.#afterMintingAtMs = this.#o.clock.nowMs();
      callback();
    }, delay);
  }

  /** An SVID's deadline came: first its rotation (a successor is asked for), then its expiry. */
  #svidDue(state: HeldSvid<E>): void {
    const id = state.from.id;
    if (this.#svids.get(id) !== state) return;
    if (!state.rotating && state.rotateAtMs < state.notAfterMs) {
      state.rotating = true;
      this.#o.logger.debug({ entryId: id, serial: state.serial }, 'rotating X509-SVID');
      this.#deadlines.schedule(state, state.notAfterMs);
      this.queue(id);
      return;
    }
    this.#o.logger.warn({ entryId: id, serial: state.serial }, 'X509-SVID expired before a successor arrived');
    this.drop(id);
    this.#o.onChanged([id]);
  }

  #install(entry: E, chain: readonly Buffer[], key: Secret<Buffer>, spkiDer: Buffer, nowMs: number): void {
    const leafDer = chain[0];
    if (leafDer === undefined) throw new SigilError('ERR_INTERNAL', 'empty SVID chain', { reason: 'empty-chain' });
    const leaf = ParsedCertificate.fromDer(leafDer);
    if (!Buffer.from(leaf.facts.spki).equals(spkiDer)) throw new SigilError('ERR_INTERNAL', 'SVID does not carry the requested key', { reason: 'key-mismatch' });
    const uris = leaf.facts.subjectAltName?.uris ?? [];
    if (uris.length !== 1 || uris[0] !== entry.spiffeId) throw new SigilError('ERR_INTERNAL', 'SVID names another SPIFFE ID', { reason: 'id-mismatch' });
    const id = entry.id;
    this.drop(id);
    const notBeforeMs = leaf.facts.notBefore.getTime();
    const notAfterMs = leaf.facts.notAfter.getTime();
    const rotateAtMs = nowMs + rotationDelayMs({ notBeforeMs, notAfterMs, receivedAtMs: nowMs }, nowMs, this.#o.random);
    const state: HeldSvid<E> = {
      from: entry,
      svid: svidMaterial(entry, key.reveal(), chain),
      serial: leaf.serial,
      rotateAtMs,
      notAfterMs,
      rotating: false,
      dueMs: 0,
      queueIndex: -1,
    };
    this.#svids.set(id, state);
    this.#deadlines.schedule(state, Math.min(rotateAtMs, notAfterMs));
    this.#o.logger.info({ entryId: id, spiffeId: entry.spiffeId, serial: state.serial, notAfter: leaf.facts.notAfter.toISOString() }, 'X509-SVID cached');
  }

  /** Cancels every timer and the call in flight, and drops every SVID. */
  stop(): void {
    this.#stopped = true;
    this.#stop.abort(new SigilError('ERR_CANCELLED', 'svid cache stopping', { reason: 'stopping' }));
    this.#retryTimer?.cancel();
    this.#afterMintingTimer?.cancel();
    for (const id of [...this.#svids.keys()]) this.drop(id);
    this.#deadlines.stop();
  }
}
