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
  readonly signal: AbortSignal | undefined;
  readonly resolve: (leaf: Buffer) => void;
  readonly reject: (err: unknown) => void;
}

/**
 * Waiting requests in arrival order: taking from the front costs what is taken, not the
 * length of the queue (thousands wait under load, and the pool takes from it at every reply).
 */
class WaitingQueue {
  #items: Waiting[] = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(w: Waiting): void {
    this.#items.push(w);
  }

  /** Removes and returns up to `n` requests from the front, skipping (and handing to `gone`) those whose caller has gone. */
  take(n: number, gone: (w: Waiting) => void): Waiting[] {
    const out: Waiting[] = [];
    while (out.length < n && this.#head < this.#items.length) {
      const w = this.#items[this.#head++] as Waiting;
      if (w.signal?.aborted === true) gone(w);
      else out.push(w);
    }
    if (this.#head === this.#items.length) {
      this.#items = [];
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return out;
  }

  /** Removes every request whose caller has gone, handing each to `gone`. */
  purge(gone: (w: Waiting) => void): void {
    const live: Waiting[] = [];
    for (let i = this.#head; i < this.#items.length; i++) {
      const w = this.#items[i] as Waiting;
      if (w.signal?.aborted === true) gone(w);
      else live.push(w);
    }
    this.#items = live;
    this.#head = 0;
  }

  /** Removes and returns everything. */
  drain(): Waiting[] {
    const all = this.#items.slice(this.#head);
    this.#items = [];
    this.#head = 0;
    return all;
  }
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
  /** Agent SVIDs waiting (see `sign`'s `first`): they leave before any of `#queue`. */
  readonly #firstQueue = new WaitingQueue();
  /** Every other request waiting. */
  readonly #queue = new WaitingQueue();
  /** The signals of waiting requests, each watched once: an abort marks the queues for a purge. */
  readonly #watched = new WeakSet<AbortSignal>();
  /** True after a watched signal fired: the next flush drops its requests wherever they wait. */
  #purge = false;
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
    if (signal !== undefined && !this.#watched.has(signal)) {
      this.#watched.add(signal);
      signal.addEventListener(
        'abort',
        () => {
          this.#purge = true;
          this.#scheduleFlush();
        },
        { once: true },
      );
    }
    return new Promise((resolve, reject) => {
      (options.first === true ? this.#firstQueue : this.#queue).push({ req, signal, resolve, reject });
      this.#scheduleFlush();
    });
  }

  /** Requests waiting for a thread. */
  get #waiting(): number {
    return this.#firstQueue.length + this.#queue.length;
  }

  /**
   * Requests waiting or on a thread. Waiting requests whose caller has gone still count until
   * the next flush drops them (at the latest when a thread replies): this is read for every
   * batch a server sheds or admits, so it must not walk a queue of thousands.
   */
  get pending(): number {
    let n = this.#waiting;
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
    if (this.#flushQueued || this.#waiting === 0) return;
    this.#flushQueued = true;
    // after the I/O callbacks of this turn, so concurrent calls share one message per thread
    setImmediate(() => this.#flush());
  }

  /** Shares the waiting requests among threads with room for a message, fewest requests in flight first. */
  #flush(): void {
    this.#flushQueued = false;
    if (this.#waiting === 0) return;
    if (this.#closed) {
      for (const w of [...this.#firstQueue.drain(), ...this.#queue.drain()]) w.reject(new SigilError('ERR_UNAVAILABLE', 'signing pool is closed', { reason: 'signing-pool-closed' }));
      return;
    }
    // Callers that gave up while their requests waited get their answer now, unsigned.
    const gone = (w: Waiting): void => w.reject(callerGone(w.signal as AbortSignal));
    if (this.#purge) {
      this.#purge = false;
      this.#firstQueue.purge(gone);
      this.#queue.purge(gone);
    }
    const open = this.#threads.map((t, i) => t ?? this.#start(i)).filter((t) => t.batches < BATCHES_PER_THREAD);
    if (open.length === 0) return; // the next reply flushes again
    const room = open.length * MAX_JOBS_PER_MESSAGE;
    const taken = this.#firstQueue.take(room, gone);
    if (taken.length < room) taken.push(...this.#queue.take(room - taken.length, gone));
    if (taken.length === 0) return;
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
    if (this.#waiting > 0 && open.some((t) => t.batches < BATCHES_PER_THREAD)) this.#scheduleFlush();
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
    for (const w of [...this.#firstQueue.drain(), ...this.#queue.drain()]) w.reject(new SigilError('ERR_UNAVAILABLE', 'signing pool is closed', { reason: 'signing-pool-closed' }));
    this.#keys.clear();
    await Promise.all(this.#threads.map((t) => t?.worker.terminate()));
  }
}
