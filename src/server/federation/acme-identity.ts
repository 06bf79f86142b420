/**
 * The https_web bundle endpoint's certificate from ACME: obtained once at start (the server
 * does not start without it), renewed when two thirds of its life have passed, retried with
 * backoff (10s doubling to 10 min) while the current one stays in use. Key and certificate
 * live in memory only.
 */
import type { SecureContextOptions } from 'node:tls';
import type { Logger } from '../../common/logger.js';
import { logRetry } from '../../common/retry-log.js';
import { readOperatorFileSync } from '../../ca/operator-file.js';
import { AcmeClient, type AcmeCertificate } from './acme-client.js';
import type { FederationConfig } from './federation-config.js';

type AcmeConfig = NonNullable<NonNullable<FederationConfig['bundleEndpoint']>['acme']>;

/** Keeps an ACME certificate current. */
export class AcmeIdentity {
  readonly #client: AcmeClient;
  readonly #logger: Logger;
  readonly #listeners = new Set<() => void>();
  #current: AcmeCertificate | undefined;
  #timer: NodeJS.Timeout | undefined;
  #failures = 0;
  #stopped = false;

  constructor(config: AcmeConfig, logger: Logger) {
    this.#logger = logger;
    this.#client = new AcmeClient({
      directoryUrl: config.directoryUrl,
      domainName: config.domainName,
      ...(config.email === undefined ? {} : { email: config.email }),
      ...(config.caFile === undefined ? {} : { caPem: readOperatorFileSync(config.caFile, 'federation.bundleEndpoint.acme.caFile').toString('utf8') }),
      challengeHost: config.challengeHost,
      challengePort: config.challengePort,
      logger,
    });
  }

  /** Obtains the first certificate; rejects when it cannot. */
  async start(): Promise<void> {
    this.#current = await this.#client.obtain();
    this.#scheduleRenewal();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  /** The current certificate and key for the TLS server. */
  current(): SecureContextOptions | null {
    return this.#current === undefined ? null : { cert: this.#current.cert, key: this.#current.key };
  }

  /** Calls `listener` after every renewal; returns the unsubscribe. */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #scheduleRenewal(delayMs?: number): void {
    if (this.#stopped || this.#current === undefined) return;
    const c = this.#current;
    const at = c.notBefore.getTime() + ((c.notAfter.getTime() - c.notBefore.getTime()) * 2) / 3;
    // setTimeout takes at most 2^31-1 ms; a longer wait is taken in steps
    const wait = Math.min(2 ** 31 - 1, Math.max(1000, delayMs ?? at - Date.now()));
    this.#timer = setTimeout(() => {
      if (delayMs === undefined && Date.now() < at) {
        this.#scheduleRenewal();
        return;
      }
      this.#client.obtain().then(
        (next) => {
          this.#current = next;
          this.#failures = 0;
          for (const l of this.#listeners) l();
          this.#scheduleRenewal();
        },
        (err: unknown) => {
          this.#failures++;
          const retry = Math.min(600_000, 10_000 * 2 ** Math.min(this.#failures - 1, 10));
          logRetry(this.#logger, err, { retryInMs: retry }, 'bundle endpoint certificate renewal through ACME failed; keeping the current one');
          this.#scheduleRenewal(retry);
        },
      );
    }, wait);
  }
}
