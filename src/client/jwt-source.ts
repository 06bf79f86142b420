/**
 * JwtSource: holds the current JWT bundles (watched) and fetches JWT-SVIDs on demand, as
 * go-spiffe's JWTSource does: tokens are audience-specific, so they are asked for when
 * needed rather than streamed. Validation of tokens from peers happens offline against
 * the held bundles.
 */
import { EventEmitter } from 'node:events';
import { SigilError } from '../common/errors.js';
import type { Bundle, BundleSource } from '../spiffe/bundle.js';
import type { BundleSet } from '../spiffe/bundle-set.js';
import type { JwtSvid, JwtSvidValidateOptions } from '../spiffe/jwt-svid.js';
import type { TrustDomain } from '../spiffe/spiffe-id.js';
import { validateJwtSvid } from './validate-jwt-svid.js';
import { DEFAULT_SOURCE_TIMEOUT_MS, SourceRunner, type SourceOptions } from './source-support.js';
import type { JwtSvidParams } from './workload-api-client.js';

/** Options of JwtSource.create. */
export interface JwtSourceOptions extends SourceOptions {
  /** When the workload has several identities and no `spiffeId` is asked for, take the JWT-SVID with this hint. */
  readonly hint?: string;
}

/** Events of a JwtSource. */
export interface JwtSourceEvents {
  /** New JWT bundles are in place. */
  update: [bundles: BundleSet];
  /** A watch failure or an unusable update; the last good bundles stay. */
  watchError: [error: SigilError];
}

/** A live source of JWT bundles that also fetches JWT-SVIDs. */
export class JwtSource extends EventEmitter<JwtSourceEvents> implements BundleSource {
  readonly #runner: SourceRunner;
  readonly #hint: string | undefined;
  #bundles: BundleSet | undefined;
  #denied: SigilError | undefined;

  private constructor(options: JwtSourceOptions) {
    super();
    this.#runner = new SourceRunner(options);
    this.#hint = options.hint;
  }

  /** Connects and waits for the first JWT bundles; rejects like X509Source.create. */
  static async create(options: JwtSourceOptions = {}, signal?: AbortSignal): Promise<JwtSource> {
    const source = new JwtSource(options);
    await source.#runner.start(
      [
        (client, s, o) =>
          client.watchJwtBundles(
            {
              onUpdate: (b) => {
                if (source.#runner.closed) return;
                source.#bundles = b;
                source.#denied = undefined;
                source.emit('update', b);
              },
              onError: (e) => {
                if (source.listenerCount('watchError') > 0) source.emit('watchError', e);
              },
              // Redacted bundles must not be used any more (Workload API §6.2.2).
              onPermissionDenied: (e) => {
                source.#bundles = undefined;
                source.#denied = e;
              },
            },
            s,
            o,
          ),
      ],
      () => source.#bundles !== undefined,
      (listener) => {
        source.on('update', listener);
        return () => source.off('update', listener);
      },
      options.timeoutMs ?? DEFAULT_SOURCE_TIMEOUT_MS,
      signal,
    );
    return source;
  }

  /** Fetches a JWT-SVID for the audience from the Workload API (by `spiffeId`, hint, or the default). */
  async fetchJwtSvid(params: JwtSvidParams, signal?: AbortSignal): Promise<JwtSvid> {
    this.#runner.checkOpen();
    if (params.spiffeId !== undefined || this.#hint === undefined) return this.#runner.client.fetchJwtSvid(params, signal);
    const all = await this.#runner.client.fetchJwtSvids(params, signal);
    const found = all.find((s) => s.hint === this.#hint);
    if (found === undefined) {
      throw new SigilError('ERR_NO_IDENTITY', `no JWT-SVID has the hint ${JSON.stringify(this.#hint)}`, { reason: 'no-matching-svid' });
    }
    return found;
  }

  /** Fetches one JWT-SVID per identity of the workload. */
  fetchJwtSvids(params: JwtSvidParams, signal?: AbortSignal): Promise<JwtSvid[]> {
    this.#runner.checkOpen();
    return this.#runner.client.fetchJwtSvids(params, signal);
  }

  /** Validates a peer's JWT-SVID offline against the held bundles; throws ERR_INVALID_JWT_SVID. */
  validateJwtSvid(token: string, audience: string | readonly string[], options?: JwtSvidValidateOptions): Promise<JwtSvid> {
    this.#runner.checkOpen();
    return validateJwtSvid(token, audience, this, options);
  }

  /** The current JWT bundles; throws ERR_PERMISSION_DENIED while the agent denies this workload any. */
  get bundles(): BundleSet {
    this.#runner.checkOpen();
    if (this.#denied !== undefined) throw new SigilError('ERR_PERMISSION_DENIED', 'the agent denied this workload its JWT bundles', { reason: 'permission-denied', cause: this.#denied });
    return this.#bundles as BundleSet;
  }

  /** The JWT bundle of a trust domain, or undefined. */
  getJwtBundleForTrustDomain(td: TrustDomain): Bundle | undefined {
    return this.bundles.getBundleForTrustDomain(td);
  }

  /** BundleSource: the JWT bundle of a trust domain, for validators. */
  getBundleForTrustDomain(td: TrustDomain): Bundle | undefined {
    return this.getJwtBundleForTrustDomain(td);
  }

  /** Stops watching and, unless the client was shared, closes it. */
  close(): Promise<void> {
    return this.#runner.close();
  }
}
