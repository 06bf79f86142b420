/**
 * Keeps the agent's view of its authorised entries and bundles in step with the server over
 * one long-lived SyncEntries stream: pages are gathered until `batch_complete` and each batch
 * is handed over whole (FULL replaces, DELTA patches). A broken stream is reopened after a
 * jittered backoff (reset by the first complete batch); a refusal means the server no longer
 * accepts this agent, so the agent re-attests before reopening.
 */
import type { ClientReadableStream, ServiceError } from '@grpc/grpc-js';
import { Backoff } from '../common/backoff.js';
import type { Clock } from '../common/clock.js';
import { SigilError, toSigilError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { logRetry } from '../common/retry-log.js';
import { fromServiceError } from '../grpc/status.js';
import { isAgentRejected } from './agent-identity.js';
import type { AgentServerClient, WireBundle, WireEntry, WireSyncPage } from './server-client.js';

/** One complete batch of changes. */
export interface SyncBatch {
  readonly kind: 'FULL' | 'DELTA';
  readonly entries: readonly WireEntry[];
  readonly deletedEntryIds: readonly string[];
  /** Present when the bundles changed: the own bundle and every federated one. */
  readonly bundles?: { readonly own: WireBundle; readonly federated: readonly WireBundle[] };
}

/** Dependencies of an EntrySync. */
export interface EntrySyncOptions {
  readonly client: AgentServerClient;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly pageSize?: number;
  readonly retryInitialMs?: number;
  readonly retryMaxMs?: number;
  readonly random?: () => number;
  /** Applies a complete batch. */
  readonly onBatch: (batch: SyncBatch) => void;
  /** The server refused this agent: attest again before the stream is reopened. */
  readonly onRejected: () => Promise<void>;
  /** A stream attempt failed (server unreachable, refused, broken stream); not called for a stop or a reconnect. */
  readonly onFailure?: (err: SigilError) => void;
}

/** The sync loop. */
export class EntrySync {
  readonly #o: EntrySyncOptions;
  readonly #backoff: Backoff;
  readonly #stop = new AbortController();
  #stream: ClientReadableStream<WireSyncPage> | undefined;
  #loop: Promise<void> | undefined;
  #connected = false;
  #batches = 0;
  /**
   * Bumped by reconnect(): a stream that ends after the agent SVID changed under it reopens at
   * once. Only that stream: a reconnect before start(), or while the loop sleeps, leaves the
   * next failure its logged, jittered delay (a flag kept across iterations once let every
   * agent's first failure after a server restart reconnect at once and unlogged).
   */
  #generation = 0;
  #wake: AbortController | undefined;

  constructor(options: EntrySyncOptions) {
    this.#o = options;
    this.#backoff = new Backoff({ initialMs: options.retryInitialMs ?? 1000, maxMs: options.retryMaxMs ?? 30_000, ...(options.random ? { random: options.random } : {}) });
  }

  /** True while a stream is open and has delivered its first FULL batch. */
  get connected(): boolean {
    return this.#connected;
  }

  /** Complete batches applied so far. */
  get batchesApplied(): number {
    return this.#batches;
  }

  /** Starts the loop (idempotent). */
  start(): void {
    this.#loop ??= this.#run();
  }

  /** Ends the stream and the loop; resolves when the loop has finished. */
  async stop(): Promise<void> {
    this.#stop.abort(new SigilError('ERR_CANCELLED', 'entry sync stopping', { reason: 'stopping' }));
    this.#stream?.cancel();
    await this.#loop;
  }

  /** Drops the current stream so the loop reopens it at once (e.g. with a new agent SVID). */
  reconnect(): void {
    this.#generation++;
    this.#stream?.cancel();
    this.#wake?.abort();
  }

  async #run(): Promise<void> {
    const { clock, logger } = this.#o;
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      let err: SigilError | undefined;
      const generation = this.#generation;
      try {
        await this.#once();
      } catch (e) {
        err = toSigilError(e);
      }
      this.#connected = false;
      if (signal.aborted) return;
      if (generation !== this.#generation) {
        logger.info('agent SVID changed; reopening entry sync with it');
        continue;
      }
      if (err !== undefined && err.code !== 'ERR_CANCELLED') {
        try {
          this.#o.onFailure?.(err);
        } catch (e) {
          logger.error({ err: e }, 'entry sync failure listener failed');
        }
      }
      if (err !== undefined && isAgentRejected(err)) {
        logger.warn({ code: err.code }, 'server refused entry sync; attesting again');
        await this.#o.onRejected();
        // A new agent SVID reopens at once; anything else waits like any failure.
        if (generation !== this.#generation || signal.aborted) continue;
      }
      const delay = this.#backoff.next();
      if (err === undefined || err.code === 'ERR_CANCELLED') logger.info({ retryInMs: delay }, 'entry sync stream ended; reopening');
      else logRetry(logger, err, { retryInMs: delay }, 'entry sync failed; retrying');
      const wake = new AbortController();
      this.#wake = wake;
      try {
        await clock.sleep(delay, AbortSignal.any([signal, wake.signal]));
      } catch {
        if (signal.aborted) return;
      } finally {
        this.#wake = undefined;
      }
    }
  }

  /** One stream's life: resolves when it ends cleanly, rejects with its error. */
  #once(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let stream: ClientReadableStream<WireSyncPage>;
      this.#o.logger.debug('entry sync stream opening');
      try {
        stream = this.#o.client.syncEntries(this.#o.pageSize ?? 0);
      } catch (err) {
        reject(err);
        return;
      }
      this.#stream = stream;
      let pending: WireSyncPage[] = [];
      let batchNo: string | undefined;
      stream.on('data', (page: WireSyncPage) => {
        if (batchNo !== undefined && page.batch !== batchNo) pending = [];
        batchNo = page.batch;
        pending.push(page);
        if (!page.batch_complete) return;
        const pages = pending;
        pending = [];
        batchNo = undefined;
        try {
          this.#apply(pages);
        } catch (err) {
          this.#o.logger.error({ err }, 'entry sync batch could not be applied');
          stream.cancel();
        }
      });
      stream.on('error', (err: ServiceError) => {
        this.#stream = undefined;
        reject(fromServiceError(err));
      });
      stream.on('end', () => {
        this.#stream = undefined;
        resolve();
      });
    });
  }

  #apply(pages: readonly WireSyncPage[]): void {
    const first = pages[0] as WireSyncPage;
    const kind = first.kind === 'FULL' ? 'FULL' : 'DELTA';
    const entries: WireEntry[] = [];
    const deleted: string[] = [];
    let bundles: SyncBatch['bundles'];
    for (const p of pages) {
      entries.push(...p.entries);
      deleted.push(...p.deleted_entry_ids);
      if (p.bundle !== null && p.bundle !== undefined) bundles = { own: p.bundle, federated: p.federated_bundles };
    }
    if (kind === 'FULL') {
      this.#connected = true;
      this.#backoff.reset();
    }
    this.#batches++;
    this.#o.logger.debug({ kind, entries: entries.length, deleted: deleted.length, bundles: bundles !== undefined }, 'entry sync batch received');
    this.#o.onBatch({ kind, entries, deletedEntryIds: deleted, ...(bundles === undefined ? {} : { bundles }) });
  }
}
