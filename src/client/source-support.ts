/**
 * What the three sources share: owning or borrowing a client, waiting for the first update
 * of one or more watches with a timeout, and closing. Kept apart so each source file holds
 * only what its source means.
 */
import { systemClock, type Clock } from '../common/clock.js';
import { SigilError } from '../common/errors.js';
import { WorkloadApiClient, type WatchOptions, type WorkloadApiClientOptions } from './workload-api-client.js';

/** Options every source takes. */
export interface SourceOptions extends WorkloadApiClientOptions {
  /** A client to share; the source then does not close it. Otherwise the source makes and owns one. */
  readonly client?: WorkloadApiClient;
  /** How long `create` waits for the first update before failing with ERR_DEADLINE_EXCEEDED; default 30s. */
  readonly timeoutMs?: number;
}

/** Default wait for a source's first update. */
export const DEFAULT_SOURCE_TIMEOUT_MS = 30_000;

/** @internal one running watch inside a source. */
export type WatchStarter = (client: WorkloadApiClient, signal: AbortSignal, options: WatchOptions) => Promise<void>;

/** @internal the machinery behind a source: client, watches, first-update wait, close. */
export class SourceRunner {
  readonly client: WorkloadApiClient;
  readonly #ownsClient: boolean;
  readonly #ctl = new AbortController();
  /** The source's time: certificate validity and the first-update timeout. */
  readonly clock: Clock;
  #watches: Promise<void>[] = [];
  #closed = false;
  /**
   * True once `create()` resolved. From then on nobody awaits the source, so its reconnect
   * waits are background timers (DESIGN.md, Processes): an application may exit when its own
   * work is done. Until then every wait is ref'd, so `await X509Source.create()` keeps the
   * process alive, retrying, until the first update or the timeout.
   */
  #delivered = false;
  /** The first non-retryable error of any watch, when one ended that way. */
  fatal: SigilError | undefined;

  constructor(options: SourceOptions) {
    this.#ownsClient = options.client === undefined;
    this.client = options.client ?? new WorkloadApiClient(options);
    this.clock = options.clock ?? systemClock;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Starts the watches and resolves once `ready()` is true. Rejects with a watch's fatal
   * error, ERR_DEADLINE_EXCEEDED after `timeoutMs`, or ERR_CANCELLED on abort; the runner
   * is closed before rejecting so nothing keeps running.
   */
  async start(watches: readonly WatchStarter[], ready: () => boolean, onChange: (listener: () => void) => () => void, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      let settled = false;
      const cleanups: (() => void)[] = [];
      const settle = (err?: SigilError): void => {
        if (settled) return;
        settled = true;
        for (const c of cleanups) c();
        if (err === undefined) {
          this.#delivered = true;
          resolve();
        }
        else {
          this.close();
          reject(err);
        }
      };
      if (signal?.aborted) {
        settle(new SigilError('ERR_CANCELLED', 'source start was aborted', { reason: 'aborted' }));
        return;
      }
      cleanups.push(onChange(() => {
        if (ready()) settle();
      }));
      const timer = this.clock.setTimer(
        () => settle(new SigilError('ERR_DEADLINE_EXCEEDED', `no update from the workload API within ${timeoutMs}ms`, { reason: 'first-update-timeout' })),
        timeoutMs,
      );
      cleanups.push(() => timer.cancel());
      if (signal !== undefined) {
        const onAbort = (): void => settle(new SigilError('ERR_CANCELLED', 'source start was aborted', { reason: 'aborted' }));
        signal.addEventListener('abort', onAbort, { once: true });
        cleanups.push(() => signal.removeEventListener('abort', onAbort));
      }
      this.#watches = watches.map((w) =>
        w(this.client, this.#ctl.signal, { background: () => this.#delivered }).catch((err: unknown) => {
          const e = err instanceof SigilError ? err : new SigilError('ERR_INTERNAL', 'workload API watch failed', { cause: err });
          this.fatal ??= e;
          settle(e);
        }),
      );
    });
  }

  /** Throws ERR_UNAVAILABLE (reason `source-closed`) once closed. */
  checkOpen(): void {
    if (this.#closed) throw new SigilError('ERR_UNAVAILABLE', 'source is closed', { reason: 'source-closed' });
  }

  /** Stops the watches and, when owned, closes the client. Idempotent. */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#ctl.abort();
      if (this.#ownsClient) this.client.close();
    }
    return Promise.allSettled(this.#watches).then(() => undefined);
  }
}
