/**
 * Reads the pods of this node from the kubelet: `GET /pods` on the secure port (10250) with the
 * agent's service-account token, the kubelet's certificate verified against the cluster CA (or a
 * configured one), or — only when configured so — on the read-only port over plain HTTP.
 *
 * The token and CA files are re-read every `reloadIntervalMs` (projected tokens rotate). When
 * the kubelet is reached as 127.0.0.1 (no node name configured) its certificate chain is checked
 * but not its host name, which kubelet serving certificates rarely carry; with a node name both
 * are. Answers are capped in size and time.
 */
import { readFileSync } from 'node:fs';
import { SigilError } from '../../../src/common/errors.js';
import { httpRequestText } from '../../../src/common/http-request.js';
import { systemClock, type Clock } from '../../../src/common/clock.js';

/** How the agent reaches its kubelet. */
export type KubeletConnection =
  | {
      readonly kind: 'secure';
      /** Node name or address; 127.0.0.1 when absent (host name then not verified). */
      readonly nodeName?: string;
      readonly port: number;
      /** PEM file of the CA that signed the kubelet's serving certificate; undefined with skipVerification. */
      readonly caFile?: string;
      /** Skips verifying the kubelet's certificate altogether (an explicit, logged choice). */
      readonly skipVerification: boolean;
      /** Bearer token file (the projected service-account token). */
      readonly tokenFile: string;
    }
  | { readonly kind: 'read-only'; readonly port: number };

/** Options of a kubelet client. */
export interface KubeletClientOptions {
  readonly connection: KubeletConnection;
  /** How often the token and CA files are re-read; 1 minute by default. */
  readonly reloadIntervalMs?: number;
  /** Longest wait for one answer; 10 s by default. */
  readonly timeoutMs?: number;
  readonly clock?: Clock;
}

/** Largest `/pods` answer read (a node of many pods answers a few MiB). */
export const MAX_POD_LIST_BYTES = 64 * 1024 * 1024;
const MAX_CREDENTIAL_FILE_BYTES = 1024 * 1024;

function readCredentialFile(path: string, what: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new SigilError('ERR_UNAVAILABLE', `cannot read the kubelet ${what} file ${path}`, { reason: 'kubelet-credentials', cause: err });
  }
  if (text.length > MAX_CREDENTIAL_FILE_BYTES) {
    throw new SigilError('ERR_UNAVAILABLE', `the kubelet ${what} file ${path} is larger than 1 MiB`, { reason: 'kubelet-credentials' });
  }
  return text;
}

/** A client for one kubelet's `/pods`. */
export class KubeletClient {
  readonly #connection: KubeletConnection;
  readonly #reloadMs: number;
  readonly #timeoutMs: number;
  readonly #clock: Clock;
  #loaded: { at: number; token: string; ca?: string } | undefined;

  constructor(options: KubeletClientOptions) {
    this.#connection = options.connection;
    this.#reloadMs = options.reloadIntervalMs ?? 60_000;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#clock = options.clock ?? systemClock;
  }

  #credentials(): { token: string; ca?: string } {
    const c = this.#connection;
    if (c.kind !== 'secure') return { token: '' };
    const now = this.#clock.nowMs();
    if (this.#loaded !== undefined && now - this.#loaded.at < this.#reloadMs) return this.#loaded;
    const token = readCredentialFile(c.tokenFile, 'token').trim();
    if (token.length === 0) throw new SigilError('ERR_UNAVAILABLE', `the kubelet token file ${c.tokenFile} is empty`, { reason: 'kubelet-credentials' });
    const ca = c.skipVerification || c.caFile === undefined ? undefined : readCredentialFile(c.caFile, 'CA');
    this.#loaded = { at: now, token, ...(ca === undefined ? {} : { ca }) };
    return this.#loaded;
  }

  /** The body of `GET /pods`; throws ERR_UNAVAILABLE (`kubelet-unreachable`, `kubelet-status`, `kubelet-response`). */
  async fetchPods(signal?: AbortSignal): Promise<string> {
    const c = this.#connection;
    const creds = this.#credentials();
    const host = c.kind === 'secure' ? (c.nodeName ?? '127.0.0.1') : '127.0.0.1';
    const url = new URL(`${c.kind === 'secure' ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${c.port}/pods`);
    const answer = await httpRequestText({
      url,
      headers: creds.token === '' ? {} : { authorization: `Bearer ${creds.token}` },
      ...(creds.ca === undefined ? {} : { ca: creds.ca }),
      insecureSkipVerify: c.kind === 'secure' && c.skipVerification,
      // Reached by address, a kubelet's serving certificate names no host we could check.
      skipHostnameCheck: c.kind === 'secure' && c.nodeName === undefined,
      timeoutMs: this.#timeoutMs,
      maxBytes: MAX_POD_LIST_BYTES,
      reasonPrefix: 'kubelet',
      peerName: 'the kubelet',
      ...(signal === undefined ? {} : { signal }),
    });
    return answer.body;
  }
}
