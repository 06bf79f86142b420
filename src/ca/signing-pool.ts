/**
 * Worker threads that verify CSRs and sign X.509-SVID leaves, so every core signs while the
 * main thread serves gRPC, TLS, the datastore and the audit log. The main thread decides
 * everything but the CSR's key (serial, validity, names); a thread only does the crypto.
 *
 * CA private keys reach the threads as KeyObjects cloned by postMessage: in memory only,
 * never encoded, written or logged. Requests made in the same turn of the event loop travel
 * together, one message per thread, with their CSRs packed into one transferred buffer.
 * A thread holds at most two messages of at most MAX_JOBS_PER_MESSAGE requests; requests
 * beyond that wait and leave together with the next reply. A waiting request whose caller has
 * gone (its AbortSignal fired) is dropped before it reaches a thread, so a cancelled or
 * expired call costs at most the signatures already handed out. Threads start at the first request, are unref'd while idle (an idle pool never keeps the
 * process alive), and one that dies fails its requests with ERR_INTERNAL and is replaced at
 * the next request.
 */
import type { KeyObject } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { SigilError } from '../common/errors.js';
import type { SignatureScheme } from './algorithms.js';
import type { FromSigningWorker, LeafJob, ToSigningWorker, WorkerKey } from './signing-worker.js';

/** A CA key and the issuer facts of the leaves it signs. */
export interface PoolKey {
  /** The key manager's key ID (not secret). */
  readonly keyId: string;
  readonly privateKey: KeyObject;
  /** DER Name of the CA, byte for byte. */
  readonly issuerName: Uint8Array;
  readonly authorityKeyId: Uint8Array;
  readonly scheme: SignatureScheme;
}

/** One leaf to sign with a registered key. */
export interface PoolLeafRequest {
  readonly keyRef: number;
  readonly csr: Uint8Array;
  /** Positive serial, big-endian magnitude. */
  readonly serial: Uint8Array;
  readonly notBeforeMs: number;
  readonly notAfterMs: number;
  readonly spiffeId: string;
  readonly dnsNames: readonly string[];
}

/** Most threads a pool may have. */
export const MAX_SIGNING_THREADS = 64;

interface Waiting {
  readonly req: PoolLeafRequest;
  /** Leaves before every waiting request that is not (see `sign`'s `first`). */
  readonly first: boolean;
  readonly signal: AbortSignal | undefined;
  readonly resolve: (leaf: Buffer) => void;
  readonly reject: (err: unknown) => void;
}

interface Thread {
  readonly worker: Worker;
  readonly inflight: Map<number, Waiting>;
  /** Since when the thread's busy time is counted (it has requests), or undefined while idle. */
  busySince: number | undefined;
  /** False until its first reply: that one includes the thread's start-up, not signing. */
  warm: boolean;
  /** `jobs` messages posted and not answered yet. */
  batches: number;
}

/**
 * `jobs` messages a thread may hold at once: two keep it busy across a reply's round trip;
 * requests beyond that wait here and leave together with the next reply, so a busy pool
 * sends fewer, larger messages (each post wakes a thread, which costs more than it carries).
 */
const BATCHES_PER_THREAD = 2;
/**
 * Most requests in one message: large enough to amortise the post, small enough that work for
 * a caller that gave up is still waiting here (and can be dropped) rather than in a thread.
 */
export const MAX_JOBS_PER_MESSAGE = 128;
/** About how much recent busy thread time the signing rate is measured over. */
const RATE_WINDOW_MS = 4000;
/** Requests that must have been measured before the rate is trusted. */
const MIN_MEASURED = 256;

function callerGone(signal: AbortSignal): SigilError {
  const reason: unknown = signal.reason;
  if (reason instanceof SigilError) return reason;
  return new SigilError('ERR_CANCELLED', 'the caller gave up before this was signed', { reason: 'caller-gone' });
}

const WORKER_URL = new URL('./signing-worker.js', import.meta.url);

function threadGone(): SigilError {
  return new SigilError('ERR_INTERNAL', 'signing thread stopped', { reason: 'signing-thread-exit' });
}

/** A fixed-size pool of signing threads. */
export class SigningPool {
  /** Number of threads. */
  readonly size: number;
  readonly #threads: (Thread | undefined)[];
  readonly #keys = new Map<number, WorkerKey>();
  /** Waiting requests: every `first` one ahead of the others, each kind in arrival order. */
  #queue: Waiting[] = [];
  #flushQueued = false;
  #nextRef = 1;
  #nextJob = 1;
  #closed = false;
  /**
   * The signing rate, from time a thread was busy (had requests) and requests it answered in
   * that time; both halve once the busy time passes RATE_WINDOW_MS, so the rate follows recent
   * work and idle time never lowers it.
   */
  #busyMs = 0;
  #answered = 0;

  constructor(size: number) {
    if (!Number.isSafeInteger(size) || size < 1 || size > MAX_SIGNING_THREADS) {
      throw new SigilError('ERR_CONFIG_INVALID', `signing threads must be an integer from 1 to ${MAX_SIGNING_THREADS}, got ${String(size)}`, {
        reason: 'bad-signing-threads',
      });
    }
    this.size = size;
    this.#threads = new Array<Thread | undefined>(size).fill(undefined);
  }

  /** True once closed: requests are refused. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Hands a CA key to every thread (now and any started later); returns its reference for `sign`. */
  register(key: PoolKey): number {
    const ref = this.#nextRef++;
    const wk: WorkerKey = { ref, keyId: key.keyId, privateKey: key.privateKey, issuerName: key.issuerName, authorityKeyId: key.authorityKeyId, scheme: key.scheme };
    this.#keys.set(ref, wk);
    for (const t of this.#threads) if (t !== undefined) this.#post(t, { type: 'key', key: wk });
    return ref;
  }

  /** Drops a key from every thread (a removed CA). */
  forget(ref: number): void {
    if (!this.#keys.delete(ref)) return;
    for (const t of this.#threads) if (t !== undefined) this.#post(t, { type: 'forget', ref });
  }

  /**
   * Verifies the CSR and signs its leaf on a thread; resolves to the DER certificate. Rejects
   * with the CSR's SigilError (ERR_INVALID_ARGUMENT) as the main-thread path would, with
   * ERR_INTERNAL when a thread fails, ERR_UNAVAILABLE once closed. A `first` request waits
   * only behind other `first` ones: an agent attesting holds a stream open for one signature,
   * and should not queue behind thousands of workload SVIDs.
   */
  sign(req: PoolLeafRequest, signal?: AbortSignal, options: { readonly first?: boolean } = {}): Promise<Buffer> {
    if (this.#closed) return Promise.reject(new SigilError('ERR_UNAVAILABLE', 'signing pool is closed', { reason: 'signing-pool-closed' }));
    if (signal?.aborted === true) return Promise.reject(callerGone(signal));
    return new Promise((resolve, reject) => {
      const first = options.first === true;
      const w: Waiting = { req, signal, first, resolve, reject };
      if (!first || this.#queue.length === 0 || (this.#queue[this.#queue.length - 1] as Waiting).first) this.#queue.push(w);
      else this.#queue.splice(this.#firstCount(), 0, w);
      this.#scheduleFlush();
    });
  }

  /** How many `first` requests lead the queue. */
  #firstCount(): number {
    let lo = 0;
    let hi = this.#queue.length;
    // they are a prefix: binary search for its end
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.#queue[mid] as Waiting).first) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Requests waiting or on a thread. */
  get pending(): number {
    // requests of callers that have gone are dropped at the next flush: not work any more
    let n = 0;
    for (const w of this.#queue) if (w.signal?.aborted !== true) n++;
    for (const t of this.#threads) n += t?.inflight.size ?? 0;
    return n;
  }

  /**
   * How long `extra` more requests would wait behind the pending ones at the rate measured over
   * the recent busy time of the threads; 0 while nothing has been measured (a new pool).
   */
  estimatedWaitMs(extra: number): number {
    if (this.#answered < MIN_MEASURED || this.#busyMs <= 0) return 0;
    const perThreadPerMs = this.#answered / this.#busyMs;
    return (this.pending + extra) / (perThreadPerMs * this.size);
  }

  #scheduleFlush(): void {
    if (this.#flushQueued || this.#queue.length === 0) return;
    this.#flushQueued = true;
    // after the I/O callbacks of this turn, so concurrent calls share one message per thread
    setImmediate(() => this.#flush());
  }

  /** Shares the waiting requests among threads with room for a message, fewest requests in flight first. */
  #flush(): void {
    this.#flushQueued = false;
    if (this.#queue.length === 0) return;
    if (this.#closed) {
      const queue = this.#queue;
      this.#queue = [];
      for (const w of queue) w.reject(new SigilError('ERR_UNAVAILABLE', 'signing pool is closed', { reason: 'signing-pool-closed' }));
      return;
    }
    // Callers that gave up while their requests waited get their answer now, unsigned.
    const live: Waiting[] = [];
    for (const w of this.#queue) {
      if (w.signal?.aborted === true) w.reject(callerGone(w.signal));
      else live.push(w);
    }
    this.#queue = live;
    const open = this.#threads.map((t, i) => t ?? this.#start(i)).filter((t) => t.batches < BATCHES_PER_THREAD);
    if (open.length === 0 || live.length === 0) return; // the next reply flushes again
    const room = open.length * MAX_JOBS_PER_MESSAGE;
    const taken = live.slice(0, room);
    this.#queue = live.slice(room);
    const load = open.map((t) => t.inflight.size);
    const groups = open.map((): Waiting[] => []);
    for (const w of taken) {
      let best = -1;
      for (let i = 0; i < load.length; i++) {
        if ((groups[i] as Waiting[]).length >= MAX_JOBS_PER_MESSAGE) continue;
        if (best < 0 || (load[i] as number) < (load[best] as number)) best = i;
      }
      (groups[best] as Waiting[]).push(w);
      load[best] = (load[best] as number) + 1;
    }
    groups.forEach((g, i) => {
      if (g.length > 0) this.#send(open[i] as Thread, g);
    });
    // a thread may take a second message at once; the rest waits for a reply
    if (this.#queue.length > 0 && open.some((t) => t.batches < BATCHES_PER_THREAD)) this.#scheduleFlush();
  }

  #send(t: Thread, group: Waiting[]): void {
    let size = 0;
    for (const w of group) size += w.req.csr.length + w.req.serial.length;
    // One fresh buffer, transferred. Cloning the requests' own Uint8Arrays would copy whole
    // ArrayBuffers: CSRs are views into a gRPC message, serials into Node's 8 KiB Buffer pool.
    const bytes = new Uint8Array(size);
    const jobs: LeafJob[] = [];
    let at = 0;
    for (const w of group) {
      const { req } = w;
      const csrAt = at;
      bytes.set(req.csr, at);
      at += req.csr.length;
      const serialAt = at;
      bytes.set(req.serial, at);
      at += req.serial.length;
      const id = this.#nextJob++;
      jobs.push({
        id,
        keyRef: req.keyRef,
        csr: [csrAt, req.csr.length],
        serial: [serialAt, req.serial.length],
        notBeforeMs: req.notBeforeMs,
        notAfterMs: req.notAfterMs,
        spiffeId: req.spiffeId,
        dnsNames: req.dnsNames,
      });
      t.inflight.set(id, w);
    }
    t.worker.ref();
    t.busySince ??= Date.now();
    t.batches++;
    this.#post(t, { type: 'jobs', jobs, bytes }, [bytes.buffer]);
  }

  /** Counts `answered` requests and the busy time they took on `t`. */
  #measure(t: Thread, answered: number): void {
    const now = Date.now();
    if (t.warm) {
      if (t.busySince !== undefined) this.#busyMs += now - t.busySince;
      this.#answered += answered;
    }
    t.warm = true;
    t.busySince = t.inflight.size > 0 ? now : undefined;
    if (this.#busyMs > RATE_WINDOW_MS) {
      this.#busyMs /= 2;
      this.#answered /= 2;
    }
  }

  #post(t: Thread, msg: ToSigningWorker, transfer: ArrayBuffer[] = []): void {
    t.worker.postMessage(msg, transfer);
  }

  #start(i: number): Thread {
    const worker = new Worker(WORKER_URL, { name: `sigil-signer-${i}` });
    const t: Thread = { worker, inflight: new Map(), batches: 0, busySince: undefined, warm: false };
    this.#threads[i] = t;
    worker.unref();
    for (const k of this.#keys.values()) this.#post(t, { type: 'key', key: k });
    worker.on('message', (m: FromSigningWorker) => {
      const bytes = Buffer.from(m.bytes.buffer, m.bytes.byteOffset, m.bytes.byteLength);
      for (const r of m.results) {
        const w = t.inflight.get(r.id);
        if (w === undefined) continue;
        t.inflight.delete(r.id);
        if ('leaf' in r) w.resolve(bytes.subarray(r.leaf[0], r.leaf[0] + r.leaf[1]));
        else w.reject(new SigilError(r.error.code, r.error.message, r.error.reason === undefined ? {} : { reason: r.error.reason }));
      }
      t.batches--;
      this.#measure(t, m.results.length);
      if (t.inflight.size === 0) worker.unref();
      this.#scheduleFlush();
    });
    // an uncaught error in the thread ends it; 'exit' follows and fails what it held
    worker.on('error', () => undefined);
    worker.on('exit', () => {
      if (this.#threads[i] === t) this.#threads[i] = undefined;
      const lost = [...t.inflight.values()];
      t.inflight.clear();
      for (const w of lost) w.reject(threadGone());
      this.#scheduleFlush();
    });
    return t;
  }

  /** Stops every thread; requests still queued or running fail with ERR_UNAVAILABLE or ERR_INTERNAL. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const queued = this.#queue;
    this.#queue = [];
    for (const w of queued) w.reject(new SigilError('ERR_UNAVAILABLE', 'signing pool is closed', { reason: 'signing-pool-closed' }));
    this.#keys.clear();
    await Promise.all(this.#threads.map((t) => t?.worker.terminate()));
  }
}
