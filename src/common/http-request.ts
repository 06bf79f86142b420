/**
 * One bounded HTTP(S) request for plugins that read from other systems (a kubelet, a
 * Kubernetes API server, an OIDC issuer): a size cap on the answer, a time cap, a CA to trust,
 * and host-name checking that can be turned off only for address-reached peers whose
 * certificates name no host. Every failure is ERR_UNAVAILABLE with the caller's reason prefix;
 * the request's headers (which may carry a bearer token) never appear in an error.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import { isIP } from 'node:net';
import { SigilError } from './errors.js';

/** What to send and how far to trust the peer. */
export interface HttpRequestOptions {
  readonly url: URL;
  readonly method?: 'GET' | 'POST';
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string;
  /** PEM of the CAs to trust (system CAs when absent). */
  readonly ca?: string;
  /** Skip certificate verification altogether (an explicit operator choice). */
  readonly insecureSkipVerify?: boolean;
  /** Verify the chain but not the host name (peers reached by address). */
  readonly skipHostnameCheck?: boolean;
  readonly timeoutMs?: number;
  readonly maxBytes?: number;
  /** Prefix of the error reasons: `<prefix>-unreachable`, `<prefix>-status`, `<prefix>-response`. */
  readonly reasonPrefix: string;
  /** What the peer is, for messages (`the kubelet`, `the API server`). */
  readonly peerName: string;
  readonly signal?: AbortSignal;
}

/** An answer with status 2xx. */
export interface HttpAnswer {
  readonly status: number;
  readonly body: string;
}

/** Sends one request; resolves with a 2xx answer, else throws ERR_UNAVAILABLE. */
export function httpRequestText(o: HttpRequestOptions): Promise<HttpAnswer> {
  const https = o.url.protocol === 'https:';
  if (!https && o.url.protocol !== 'http:') {
    return Promise.reject(new SigilError('ERR_INVALID_ARGUMENT', `unsupported URL scheme ${o.url.protocol}`, { reason: `${o.reasonPrefix}-url` }));
  }
  const maxBytes = o.maxBytes ?? 4 * 1024 * 1024;
  const timeoutMs = o.timeoutMs ?? 10_000;
  const host = o.url.hostname.replace(/^\[|\]$/g, '');
  const where = `${o.peerName} at ${o.url.host}`;
  const options: RequestOptions = {
    host,
    port: o.url.port === '' ? (https ? 443 : 80) : Number(o.url.port),
    path: `${o.url.pathname}${o.url.search}`,
    method: o.method ?? 'GET',
    headers: { accept: 'application/json', ...(o.body === undefined ? {} : { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(o.body)) }), ...o.headers },
    timeout: timeoutMs,
    agent: false,
    ...(o.signal === undefined ? {} : { signal: o.signal }),
    ...(https
      ? {
          ...(o.ca === undefined ? {} : { ca: o.ca }),
          rejectUnauthorized: o.insecureSkipVerify !== true,
          ...(o.skipHostnameCheck === true ? { checkServerIdentity: () => undefined } : isIP(host) === 0 ? { servername: host } : {}),
        }
      : {}),
  };
  return new Promise<HttpAnswer>((resolve, reject) => {
    const req = (https ? httpsRequest : httpRequest)(options, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxBytes) {
          req.destroy();
          reject(new SigilError('ERR_UNAVAILABLE', `the answer of ${where} is larger than ${maxBytes} bytes`, { reason: `${o.reasonPrefix}-response` }));
          return;
        }
        chunks.push(chunk);
      });
      res.on('end', () => {
        const status = res.statusCode ?? 0;
        if (status < 200 || status > 299) {
          reject(new SigilError('ERR_UNAVAILABLE', `${where} answered ${options.method} ${o.url.pathname} with HTTP ${status}`, { reason: `${o.reasonPrefix}-status` }));
          return;
        }
        resolve({ status, body: Buffer.concat(chunks).toString('utf8') });
      });
      res.on('error', (err) => reject(new SigilError('ERR_UNAVAILABLE', `reading the answer of ${where} failed`, { reason: `${o.reasonPrefix}-unreachable`, cause: err })));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs}ms`)));
    req.on('error', (err) => reject(new SigilError('ERR_UNAVAILABLE', `cannot reach ${where}`, { reason: `${o.reasonPrefix}-unreachable`, cause: err })));
    req.end(o.body);
  });
}

/** Parses a JSON answer; throws ERR_UNAVAILABLE (`<prefix>-response`) when it is not JSON. */
export function parseJsonAnswer(body: string, reasonPrefix: string, peerName: string): unknown {
  try {
    return JSON.parse(body);
  } catch (err) {
    throw new SigilError('ERR_UNAVAILABLE', `${peerName} answered with something that is not JSON`, { reason: `${reasonPrefix}-response`, cause: err });
  }
}
