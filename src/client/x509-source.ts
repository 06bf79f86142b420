/**
 * X509Source: always holds the workload's current X509-SVID and X.509 bundles, kept up to
 * date by a watch on the Workload API. The mTLS helpers read it on every new connection,
 * so a rotation pushed by the agent is used without restarting anything.
 *
 * It holds an identity only while it has one to present: every update is checked before it
 * is applied (x509-context.ts), a PermissionDenied from the agent or a redaction of the
 * picked SVID withdraws the identity until a later update restores it, and an SVID past its
 * notAfter is never handed out, whatever the agent does.
 */
import { EventEmitter } from 'node:events';
import { SigilError } from '../common/errors.js';
import type { Bundle, BundleSource } from '../spiffe/bundle.js';
import type { BundleSet } from '../spiffe/bundle-set.js';
import { SpiffeId, type TrustDomain } from '../spiffe/spiffe-id.js';
import type { X509Svid } from '../spiffe/x509-svid.js';
import { DEFAULT_SOURCE_TIMEOUT_MS, SourceRunner, type SourceOptions } from './source-support.js';
import type { X509Context } from './x509-context.js';

/**
 * Chooses the SVID to use when a workload has several: by hint, by SPIFFE ID, or a
 * function. Without one the default (first) SVID is used.
 */
export type SvidPicker =
  | { readonly hint: string }
  | { readonly spiffeId: SpiffeId | string }
  | ((svids: readonly X509Svid[]) => X509Svid | undefined);

/** Options of X509Source.create. */
export interface X509SourceOptions extends SourceOptions {
  /** Which SVID to hold when there are several. */
  readonly picker?: SvidPicker;
}

/** Events of an X509Source. */
export interface X509SourceEvents {
  /** A new SVID or bundle set is in place (every message of the stream). */
  update: [context: X509Context];
  /** A watch failure or an unusable update; the source keeps its last good state and retries. */
  watchError: [error: SigilError];
  /** The source holds no identity any more (PermissionDenied, or the picked SVID was redacted); `svid` throws this error until an update restores one. */
  identityLost: [error: SigilError];
}

function pickerFn(picker: SvidPicker | undefined): (svids: readonly X509Svid[]) => X509Svid | undefined {
  if (picker === undefined) return (svids) => svids[0];
  if (typeof picker === 'function') return picker;
  if ('hint' in picker) return (svids) => svids.find((s) => s.hint === picker.hint);
  const want = (typeof picker.spiffeId === 'string' ? SpiffeId.parse(picker.spiffeId) : picker.spiffeId).toString();
  return (svids) => svids.find((s) => s.id.toString() === want);
}

/** A live source of the workload's X509-SVID and X.509 bundles. */
export class X509Source extends EventEmitter<X509SourceEvents> implements BundleSource {
  readonly #runner: SourceRunner;
  readonly #pick: (svids: readonly X509Svid[]) => X509Svid | undefined;
  #svid: X509Svid | undefined;
  #context: X509Context | undefined;
  /** Why the source holds no identity now, after it had one. */
  #lost: SigilError | undefined;
  #generation = 0;

  private constructor(options: X509SourceOptions) {
    super();
    this.#runner = new SourceRunner(options);
    this.#pick = pickerFn(options.picker);
  }

  /**
   * Connects, waits for the first X509-SVID (the one the picker chooses), and keeps
   * watching. Rejects with ERR_DEADLINE_EXCEEDED after `timeoutMs`, a non-retryable
   * Workload API error, or ERR_CANCELLED when `signal` aborts.
   */
  static async create(options: X509SourceOptions = {}, signal?: AbortSignal): Promise<X509Source> {
    const source = new X509Source(options);
    await source.#runner.start(
      [
        (client, s, o) =>
          client.watchX509Context(
            {
              onUpdate: (ctx) => source.#set(ctx),
              onError: (e) => source.#error(e),
              onPermissionDenied: (e) => source.#lose(new SigilError('ERR_NO_IDENTITY', 'the agent denied this workload any X509-SVID', { reason: 'permission-denied', cause: e })),
            },
            s,
            o,
          ),
      ],
      () => source.#svid !== undefined,
      (listener) => {
        source.on('update', listener);
        return () => source.off('update', listener);
      },
      options.timeoutMs ?? DEFAULT_SOURCE_TIMEOUT_MS,
      signal,
    );
    return source;
  }

  #set(ctx: X509Context): void {
    if (this.#runner.closed) return;
    const svid = this.#pick(ctx.svids);
    if (svid === undefined) {
      // The SVID we present was redacted from the full state: stop using it (§5.2.1).
      const err = new SigilError('ERR_NO_IDENTITY', 'no X509-SVID matches the picker', { reason: 'no-matching-svid' });
      this.#error(err);
      this.#lose(err);
      return;
    }
    this.#svid = svid;
    this.#context = ctx;
    this.#lost = undefined;
    this.#generation++;
    this.emit('update', ctx);
  }

  #lose(err: SigilError): void {
    if (this.#runner.closed || this.#lost !== undefined) return;
    this.#svid = undefined;
    this.#context = undefined;
    this.#lost = err;
    this.#generation++;
    if (this.listenerCount('identityLost') > 0) this.emit('identityLost', err);
  }

  #error(err: SigilError): void {
    if (this.listenerCount('watchError') > 0) this.emit('watchError', err);
  }

  /**
   * The current X509-SVID. Throws ERR_NO_IDENTITY when the source holds none: reason
   * `permission-denied` (the agent withdrew it), `no-matching-svid` (redacted), `svid-expired`
   * (past its notAfter and not yet replaced), `no-svid`; ERR_UNAVAILABLE once closed.
   */
  getX509Svid(): X509Svid {
    this.#runner.checkOpen();
    if (this.#lost !== undefined) {
      throw new SigilError('ERR_NO_IDENTITY', 'the workload holds no X509-SVID now', { reason: this.#lost.reason ?? 'no-svid', cause: this.#lost });
    }
    if (this.#svid === undefined) throw new SigilError('ERR_NO_IDENTITY', 'no X509-SVID yet', { reason: 'no-svid' });
    if (this.#runner.clock.nowMs() > this.#svid.notAfter.getTime()) {
      throw new SigilError('ERR_NO_IDENTITY', `X509-SVID ${this.#svid.serial} expired at ${this.#svid.notAfter.toISOString()}`, { reason: 'svid-expired' });
    }
    return this.#svid;
  }

  /** The current X509-SVID (same as getX509Svid). */
  get svid(): X509Svid {
    return this.getX509Svid();
  }

  /** True when `svid` would return an SVID now (no error thrown). */
  get hasIdentity(): boolean {
    try {
      this.getX509Svid();
      return true;
    } catch {
      return false;
    }
  }

  /** The current X.509 bundles, own and federated; throws like `svid` while there is no identity (they came with it). */
  get bundles(): BundleSet {
    return this.context.bundles;
  }

  /** The full current context (every SVID, not only the picked one); throws like `svid` while there is no identity. */
  get context(): X509Context {
    this.#runner.checkOpen();
    if (this.#context === undefined) this.getX509Svid();
    return this.#context as X509Context;
  }

  /** True once close() was called. */
  get closed(): boolean {
    return this.#runner.closed;
  }

  /** Increases with every update; lets callers cache what they derive from the current state. */
  get generation(): number {
    return this.#generation;
  }

  /** The X.509 bundle of a trust domain, or undefined. */
  getX509BundleForTrustDomain(td: TrustDomain): Bundle | undefined {
    return this.bundles.getBundleForTrustDomain(td);
  }

  /** BundleSource: the X.509 bundle of a trust domain, for verifiers. */
  getBundleForTrustDomain(td: TrustDomain): Bundle | undefined {
    return this.getX509BundleForTrustDomain(td);
  }

  /** Stops watching and, unless the client was shared, closes it. */
  close(): Promise<void> {
    return this.#runner.close();
  }
}
