/**
 * The SPIFFE Workload API client: one gRPC channel to the agent's socket, every call
 * carrying the `workload.spiffe.io: true` header. Fetches take the first message of a
 * stream; watches hold the stream open and reconnect with backoff on every status except
 * InvalidArgument (a broken client: retrying cannot help; a Cancelled sent by the agent is
 * retried), resetting the backoff after each good message, as go-spiffe does. Watches end
 * cleanly on abort.
 * Every message is checked before a watcher sees it (x509-context.ts); a bad one is reported
 * through onError and the stream carries on.
 */
import { credentials, Metadata, status as GrpcStatus, type Client, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { Backoff, type BackoffOptions } from '../common/backoff.js';
import { systemClock, type Clock } from '../common/clock.js';
import { SigilError } from '../common/errors.js';
import { silentLogger, type Logger } from '../common/logger.js';
import { fromServiceError } from '../grpc/status.js';
import { serviceClient, WORKLOAD_HEADER, WORKLOAD_PROTO, WORKLOAD_SERVICE } from '../grpc/proto.js';
import type { BundleSet } from '../spiffe/bundle-set.js';
import { parseJwtSvidInsecure, type JwtSvid } from '../spiffe/jwt-svid.js';
import { SpiffeId } from '../spiffe/spiffe-id.js';
import type { X509Svid } from '../spiffe/x509-svid.js';
import { defaultWorkloadEndpoint, grpcTarget, parseWorkloadEndpoint, type WorkloadEndpoint } from './address.js';
import {
  parseJwtBundlesResponse,
  parseX509BundlesResponse,
  parseX509SvidResponse,
  type RawJwtBundlesResponse,
  type RawX509BundlesResponse,
  type RawX509SvidResponse,
  type X509Context,
} from './x509-context.js';

/** Options of a WorkloadApiClient. */
export interface WorkloadApiClientOptions {
  /** `unix:///path` or `tcp://IP:port`; defaults to SPIFFE_ENDPOINT_SOCKET. */
  readonly address?: string;
  /** Structured logger for watch failures (never logs keys or tokens); silent by default. */
  readonly logger?: Logger;
  /** Reconnect backoff of watches; defaults to 1s doubling to 30s with jitter. */
  readonly backoff?: BackoffOptions;
  /** Time source for the backoff sleeps and the validity checks of received SVIDs (tests inject a ManualClock). */
  readonly clock?: Clock;
}

/** Receives a watch's updates and the errors that interrupt it. */
export interface Watcher<T> {
  /** Called with every complete update. */
  onUpdate(value: T): void;
  /** Called when a stream fails or a message cannot be parsed; the watch carries on unless it says otherwise. */
  onError?(error: SigilError): void;
  /**
   * Called (before onError) when the stream ends with PermissionDenied: the workload is
   * entitled to nothing now, so what it held must no longer be used (Workload API §5.2.1,
   * §5.2.2, §6.2.2). The watch keeps retrying; a later update restores it.
   */
  onPermissionDenied?(error: SigilError): void;
}

/** How a watch relates to the process's lifetime. */
export interface WatchOptions {
  /**
   * Asked before every reconnect wait: when it returns true the wait is a background timer
   * that does not keep the process alive on its own. By default every wait keeps it alive,
   * since the caller is awaiting the watch. Sources answer true once `create()` resolved.
   */
  readonly background?: () => boolean;
}

/** Parameters of a JWT-SVID request. */
export interface JwtSvidParams {
  /** One audience or several; at least one is required. */
  readonly audience: string | readonly string[];
  /** Ask for this identity only (when the workload has several). */
  readonly spiffeId?: SpiffeId | string;
}

/** Default reconnect backoff of watches. */
export const DEFAULT_WATCH_BACKOFF: BackoffOptions = Object.freeze({ initialMs: 1000, maxMs: 30_000, multiplier: 2 });

type RawJwtSvidResponse = { svids: { spiffe_id: string; svid: string; hint: string }[] };
type UnaryCallback<R> = (err: ServiceError | null, resp?: R) => void;
type StreamMethod = (req: object, md: Metadata) => ClientReadableStream<unknown>;
type UnaryMethod = (req: object, md: Metadata, cb: UnaryCallback<unknown>) => { cancel(): void };

/**
 * Why a call ended because its signal aborted: the signal's own reason when it is a
 * SigilError; a timeout (`AbortSignal.timeout`) as ERR_DEADLINE_EXCEEDED, since the caller
 * gave up waiting rather than cancelled; anything else as ERR_CANCELLED.
 */
function aborted(signal?: AbortSignal): SigilError {
  const reason: unknown = signal?.reason;
  if (reason instanceof SigilError) return reason;
  if ((reason as { name?: unknown } | null | undefined)?.name === 'TimeoutError') {
    return new SigilError('ERR_DEADLINE_EXCEEDED', 'no answer from the workload API before the timeout', { reason: 'timeout' });
  }
  return new SigilError('ERR_CANCELLED', 'workload API call was aborted', { reason: 'aborted' });
}

function audiences(audience: string | readonly string[]): string[] {
  const list = typeof audience === 'string' ? [audience] : [...audience];
  if (list.length === 0 || list.some((a) => typeof a !== 'string' || a.length === 0)) {
    throw new SigilError('ERR_INVALID_ARGUMENT', 'at least one non-empty audience is required', { reason: 'no-audience' });
  }
  return list;
}

function toSigilError(err: unknown): SigilError {
  return err instanceof SigilError ? err : fromServiceError(err);
}

/** A client of the SPIFFE Workload API. */
export class WorkloadApiClient {
  /** The validated address this client talks to. */
  readonly endpoint: WorkloadEndpoint;
  readonly #client: Client;
  readonly #logger: Logger;
  readonly #backoff: BackoffOptions;
  readonly #clock: Clock;
  readonly #watches = new Set<AbortController>();
  #closed = false;

  /** Validates the address (throws ERR_INVALID_ARGUMENT) and prepares a lazy channel to it. */
  constructor(options: WorkloadApiClientOptions = {}) {
    this.endpoint = options.address === undefined ? defaultWorkloadEndpoint() : parseWorkloadEndpoint(options.address);
    const Ctor = serviceClient(WORKLOAD_PROTO, WORKLOAD_SERVICE);
    this.#client = new Ctor(grpcTarget(this.endpoint), credentials.createInsecure(), {
      // The agent may be restarted at any time; keep reconnect attempts quick and bounded.
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 5000,
    });
    this.#logger = options.logger ?? silentLogger();
    this.#backoff = options.backoff ?? DEFAULT_WATCH_BACKOFF;
    this.#clock = options.clock ?? systemClock;
  }

  /**
   * Fetches the current X.509 context (SVIDs and bundles) once. Rejects a message that
   * breaks the Workload API or X509-SVID rules (see docs/client.md) with its coded error.
   */
  async fetchX509Context(signal?: AbortSignal): Promise<X509Context> {
    return this.#first<RawX509SvidResponse, X509Context>('FetchX509SVID', this.#parseX509, signal);
  }

  readonly #parseX509 = (resp: RawX509SvidResponse): X509Context => parseX509SvidResponse(resp, this.#clock.now());

  /** Fetches the default X509-SVID (the first one) once. */
  async fetchX509Svid(signal?: AbortSignal): Promise<X509Svid> {
    return (await this.fetchX509Context(signal)).svids[0] as X509Svid;
  }

  /** Watches the X.509 context until `signal` aborts (resolves) or a non-retryable status (rejects). */
  watchX509Context(watcher: Watcher<X509Context>, signal: AbortSignal, options: WatchOptions = {}): Promise<void> {
    return this.#watch<RawX509SvidResponse, X509Context>('FetchX509SVID', this.#parseX509, watcher, signal, options);
  }

  /** Fetches the X.509 bundles (own and federated) once. */
  async fetchX509Bundles(signal?: AbortSignal): Promise<BundleSet> {
    return this.#first<RawX509BundlesResponse, BundleSet>('FetchX509Bundles', parseX509BundlesResponse, signal);
  }

  /** Watches the X.509 bundles; same ending rules as watchX509Context. */
  watchX509Bundles(watcher: Watcher<BundleSet>, signal: AbortSignal, options: WatchOptions = {}): Promise<void> {
    return this.#watch<RawX509BundlesResponse, BundleSet>('FetchX509Bundles', parseX509BundlesResponse, watcher, signal, options);
  }

  /** Fetches the JWT bundles once. */
  async fetchJwtBundles(signal?: AbortSignal): Promise<BundleSet> {
    return this.#first<RawJwtBundlesResponse, BundleSet>('FetchJWTBundles', parseJwtBundlesResponse, signal);
  }

  /** Watches the JWT bundles; same ending rules as watchX509Context. */
  watchJwtBundles(watcher: Watcher<BundleSet>, signal: AbortSignal, options: WatchOptions = {}): Promise<void> {
    return this.#watch<RawJwtBundlesResponse, BundleSet>('FetchJWTBundles', parseJwtBundlesResponse, watcher, signal, options);
  }

  /** Fetches JWT-SVIDs for an audience: one per identity, or the one asked for. */
  async fetchJwtSvids(params: JwtSvidParams, signal?: AbortSignal): Promise<JwtSvid[]> {
    const audience = audiences(params.audience);
    const spiffeId = params.spiffeId === undefined ? '' : (typeof params.spiffeId === 'string' ? SpiffeId.parse(params.spiffeId) : params.spiffeId).toString();
    const resp = await this.#unary<RawJwtSvidResponse>('FetchJWTSVID', { audience, spiffe_id: spiffeId }, signal);
    if (resp.svids.length === 0) throw new SigilError('ERR_NO_IDENTITY', 'the workload API returned no JWT-SVID', { reason: 'no-svids' });
    // The agent signed these for us; parse without verifying, as go-spiffe does, but check their shape.
    return resp.svids.map((s) => parseJwtSvidInsecure(s.svid).withHint(s.hint ?? ''));
  }

  /** Fetches one JWT-SVID: the default identity's, or the one asked for. */
  async fetchJwtSvid(params: JwtSvidParams, signal?: AbortSignal): Promise<JwtSvid> {
    return (await this.fetchJwtSvids(params, signal))[0] as JwtSvid;
  }

  /** Asks the agent to validate a JWT-SVID for an audience; returns it parsed. Rejects an invalid token. */
  async validateJwtSvid(token: string, audience: string, signal?: AbortSignal): Promise<JwtSvid> {
    audiences(audience);
    await this.#unary<unknown>('ValidateJWTSVID', { audience, svid: token }, signal);
    return parseJwtSvidInsecure(token);
  }

  /** Ends every watch and closes the channel. Calls after close fail with ERR_UNAVAILABLE. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const c of this.#watches) c.abort();
    this.#watches.clear();
    this.#client.close();
  }

  #checkOpen(): void {
    if (this.#closed) throw new SigilError('ERR_UNAVAILABLE', 'workload API client is closed', { reason: 'client-closed' });
  }

  #metadata(): Metadata {
    const md = new Metadata();
    md.set(WORKLOAD_HEADER, 'true');
    return md;
  }

  #method<M>(name: string): M {
    return (this.#client as unknown as Record<string, (...args: unknown[]) => unknown>)[name]!.bind(this.#client) as M;
  }

  #unary<R>(name: string, req: object, signal?: AbortSignal): Promise<R> {
    this.#checkOpen();
    if (signal?.aborted) return Promise.reject(aborted(signal));
    return new Promise<R>((resolve, reject) => {
      const onAbort = (): void => call.cancel();
      const call = this.#method<UnaryMethod>(name)(req, this.#metadata(), (err, resp) => {
        signal?.removeEventListener('abort', onAbort);
        if (err !== null) reject(signal?.aborted ? aborted(signal) : toSigilError(err));
        else resolve(resp as R);
      });
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  #first<R, T>(name: string, parse: (r: R) => T, signal?: AbortSignal): Promise<T> {
    this.#checkOpen();
    if (signal?.aborted) return Promise.reject(aborted(signal));
    return new Promise<T>((resolve, reject) => {
      let done = false;
      const stream = this.#method<StreamMethod>(name)({}, this.#metadata());
      const finish = (fn: () => void): void => {
        if (done) return;
        done = true;
        signal?.removeEventListener('abort', onAbort);
        stream.cancel();
        fn();
      };
      const onAbort = (): void => finish(() => reject(aborted(signal)));
      signal?.addEventListener('abort', onAbort, { once: true });
      stream.on('data', (msg: R) => {
        finish(() => {
          try {
            resolve(parse(msg));
          } catch (err) {
            reject(toSigilError(err));
          }
        });
      });
      stream.on('error', (err: unknown) => finish(() => reject(toSigilError(err))));
      stream.on('end', () =>
        finish(() => reject(new SigilError('ERR_UNAVAILABLE', 'workload API stream ended without a message', { reason: 'stream-ended' }))),
      );
    });
  }

  async #watch<R, T>(name: string, parse: (r: R) => T, watcher: Watcher<T>, signal: AbortSignal, options: WatchOptions): Promise<void> {
    this.#checkOpen();
    // Our own controller, so close() can end every watch too.
    const ctl = new AbortController();
    const onAbort = (): void => ctl.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    if (signal.aborted) ctl.abort();
    this.#watches.add(ctl);
    const backoff = new Backoff(this.#backoff);
    try {
      while (!ctl.signal.aborted) {
        const { error, grpcCode } = await this.#streamOnce(name, parse, watcher, backoff, ctl.signal);
        if (ctl.signal.aborted) return;
        if (grpcCode === GrpcStatus.PERMISSION_DENIED) this.#safely(name, () => watcher.onPermissionDenied?.(error));
        this.#safely(name, () => watcher.onError?.(error));
        // go-spiffe stops on Cancelled because in Go it means the caller's own context ended;
        // ours is the abort signal, handled above. A Cancelled sent by the agent (grpc-js
        // servers reset streams with CANCEL when they shut down) is retried like any outage,
        // or an agent restart would end every source for good.
        if (grpcCode === GrpcStatus.INVALID_ARGUMENT) {
          this.#logger.error({ method: name, code: error.code, reason: error.reason }, 'workload API watch ended');
          throw error;
        }
        const delay = backoff.next();
        this.#logger.warn({ method: name, code: error.code, reason: error.reason, retryInMs: delay }, 'workload API watch failed');
        try {
          await this.#clock.sleep(delay, ctl.signal, { background: options.background?.() === true });
        } catch {
          return;
        }
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      this.#watches.delete(ctl);
    }
  }

  /** Runs a watcher callback: a throwing watcher must not kill the stream (or the process, from an event handler). */
  #safely(name: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.#logger.error({ method: name, err }, 'workload API watcher threw');
    }
  }

  #streamOnce<R, T>(
    name: string,
    parse: (r: R) => T,
    watcher: Watcher<T>,
    backoff: Backoff,
    signal: AbortSignal,
  ): Promise<{ error: SigilError; grpcCode: number | undefined }> {
    return new Promise((resolve) => {
      let stream: ClientReadableStream<unknown>;
      try {
        stream = this.#method<StreamMethod>(name)({}, this.#metadata());
      } catch (err) {
        resolve({ error: toSigilError(err), grpcCode: undefined });
        return;
      }
      let done = false;
      const finish = (error: SigilError, grpcCode: number | undefined): void => {
        if (done) return;
        done = true;
        signal.removeEventListener('abort', onAbort);
        resolve({ error, grpcCode });
      };
      const onAbort = (): void => {
        stream.cancel();
        finish(aborted(signal), undefined);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      stream.on('data', (msg: R) => {
        if (done) return;
        backoff.reset();
        let value: T;
        try {
          value = parse(msg);
        } catch (err) {
          // A bad message is reported but does not end the stream: the next one may be good.
          const e = toSigilError(err);
          this.#logger.warn({ method: name, code: e.code, reason: e.reason }, 'workload API sent an unusable update');
          this.#safely(name, () => watcher.onError?.(e));
          return;
        }
        this.#safely(name, () => watcher.onUpdate(value));
      });
      stream.on('error', (err: ServiceError) => finish(toSigilError(err), err.code));
      stream.on('end', () =>
        finish(new SigilError('ERR_UNAVAILABLE', 'workload API stream ended', { reason: 'stream-ended' }), GrpcStatus.UNAVAILABLE),
      );
    });
  }
}
