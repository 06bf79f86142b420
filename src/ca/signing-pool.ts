/**
 * Worker threads that verify CSRs and sign X.509-SVID leaves, so every core signs while the
 * main thread serves gRPC, TLS, the datastore and the audit log. The main thread decides
 * everything but the CSR's key (serial, validity, names); a thread only does the crypto.
 *
 * CA private keys reach the threads as KeyObjects cloned by postMessage: in memory only,
 * never encoded, written or logged. Requests made in the same turn of the event loop travel
 * together, one message per thread, with their CSRs packed into one transferred buffer.
 * Threads start at the first request, are unref'd while idle (an idle pool never keeps the
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
  readonly resolve: (leaf: Buffer) => void;
  readonly reject: (err: unknown) => void;
}

interface Thread {
  readonly worker: Worker;
  readonly inflight: Map<number, Waiting>;
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
  #queue: Waiting[] = [];
  #flushQueued = false;
  #nextRef = 1;
  #nextJob = 1;
  #closed = false;

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
   * ERR_INTERNAL when a thread fails, ERR_UNAVAILABLE once closed.
   */
  sign(req: PoolLeafRequest): Promise<Buffer> {
    if (this.#closed) return Promise.reject(new SigilError('ERR_UNAVAILABLE', 'signing pool is closed', { reason: 'signing-pool-closed' }));
    return new Promise((resolve, reject) => {
      this.#queue.push({ req, resolve, reject });
      if (!this.#flushQueued) {
        this.#flushQueued = true;
        // after the I/O callbacks of this turn, so concurrent calls share one message per thread
        setImmediate(() => this.#flush());
      }
    });
  }

  #flush(): void {
    this.#flushQueued = false;
    const queue = this.#queue;
    this.#queue = [];
    if (queue.length === 0) return;
    if (this.#closed) {
      for (const w of queue) w.reject(new SigilError('ERR_UNAVAILABLE', 'signing pool is closed', { reason: 'signing-pool-closed' }));
      return;
    }
    const threads = this.#threads.map((t, i) => t ?? this.#start(i));
    const load = threads.map((t) => t.inflight.size);
    const groups = threads.map((): Waiting[] => []);
    for (const w of queue) {
      let best = 0;
      for (let i = 1; i < load.length; i++) if ((load[i] as number) < (load[best] as number)) best = i;
      (groups[best] as Waiting[]).push(w);
      load[best] = (load[best] as number) + 1;
    }
    groups.forEach((g, i) => {
      if (g.length > 0) this.#send(threads[i] as Thread, g);
    });
  }

  #send(t: Thread, group: Waiting[]): void {
    let size = 0;
    for (const w of group) size += w.req.csr.length;
    // one fresh buffer, transferred: request Buffers are often views into a larger gRPC message
    const bytes = new Uint8Array(size);
    const jobs: LeafJob[] = [];
    let at = 0;
    for (const w of group) {
      const { req } = w;
      bytes.set(req.csr, at);
      const id = this.#nextJob++;
      jobs.push({
        id,
        keyRef: req.keyRef,
        csr: [at, req.csr.length],
        serial: req.serial,
        notBeforeMs: req.notBeforeMs,
        notAfterMs: req.notAfterMs,
        spiffeId: req.spiffeId,
        dnsNames: req.dnsNames,
      });
      at += req.csr.length;
      t.inflight.set(id, w);
    }
    t.worker.ref();
    this.#post(t, { type: 'jobs', jobs, bytes }, [bytes.buffer]);
  }

  #post(t: Thread, msg: ToSigningWorker, transfer: ArrayBuffer[] = []): void {
    t.worker.postMessage(msg, transfer);
  }

  #start(i: number): Thread {
    const worker = new Worker(WORKER_URL, { name: `sigil-signer-${i}` });
    const t: Thread = { worker, inflight: new Map() };
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
      if (t.inflight.size === 0) worker.unref();
    });
    // an uncaught error in the thread ends it; 'exit' follows and fails what it held
    worker.on('error', () => undefined);
    worker.on('exit', () => {
      if (this.#threads[i] === t) this.#threads[i] = undefined;
      const lost = [...t.inflight.values()];
      t.inflight.clear();
      for (const w of lost) w.reject(threadGone());
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
