/**
 * One fetch of a peer's bundle endpoint (SPIFFE Trust Domain and Bundle, section 5.2). With
 * https_spiffe the endpoint must present an X.509-SVID for the configured endpoint SPIFFE ID
 * that chains to the peer bundle we already hold (the bootstrap one first, then the latest
 * fetched); no host name is checked. With https_web it is ordinary WebPKI (the system CAs, or
 * a configured CA file) with the host name checked. The answer is bounded in size and time and
 * parsed as a SPIFFE bundle of the expected trust domain; anything else is ERR_UNAVAILABLE
 * (the endpoint did not give us a usable bundle), never a crash. A certificate OpenSSL refuses
 * is told apart from a network fault (its own reason and message): "cannot reach" is kept for
 * connection, DNS and timeout failures.
 */
import { request, type RequestOptions } from 'node:https';
import type { PeerCertificate } from 'node:tls';
import { isIP } from 'node:net';
import { SigilError } from '../../common/errors.js';
import { Bundle } from '../../spiffe/bundle.js';
import { toPem } from '../../common/x509.js';
import { verifyX509SvidChain } from '../../spiffe/x509-svid-verify.js';
import type { SpiffeId, TrustDomain } from '../../spiffe/spiffe-id.js';

/** Largest bundle document accepted: far above any real bundle (hundreds of keys). */
export const MAX_BUNDLE_BYTES = 1024 * 1024;

/** What to fetch and how to authenticate it. */
export interface FetchBundleOptions {
  readonly url: string;
  readonly trustDomain: TrustDomain;
  readonly auth:
    | { readonly profile: 'https_spiffe'; readonly endpointSpiffeId: SpiffeId; readonly bundle: Bundle | undefined }
    | { readonly profile: 'https_web'; readonly caPem?: string };
  readonly now: () => Date;
  readonly timeoutMs?: number;
  readonly maxBytes?: number;
  readonly signal?: AbortSignal;
}

function unavailable(reason: string, message: string, cause?: unknown): SigilError {
  return new SigilError('ERR_UNAVAILABLE', message, { reason, ...(cause === undefined ? {} : { cause }) });
}

/** OpenSSL verification results (Node's `err.code`) meaning: the chain does not lead to a trusted root. */
const UNTRUSTED_CHAIN_CODES: ReadonlySet<string> = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_SIGNATURE_FAILURE',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
  'INVALID_CA',
  'INVALID_PURPOSE',
  'PATH_LENGTH_EXCEEDED',
  'CERT_CHAIN_TOO_LONG',
]);
/** OpenSSL verification results meaning: a certificate of the chain is outside its validity period. */
const OUT_OF_DATE_CODES: ReadonlySet<string> = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID']);

/**
 * The error of a refused TLS certificate, or undefined when `err` is no certificate verdict
 * (a network fault, a timeout, a handshake that broke off).
 */
function certificateError(err: unknown, where: string, trustedBy: string): SigilError | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return undefined;
  if (UNTRUSTED_CHAIN_CODES.has(code)) return unavailable('federation-untrusted-certificate', `the certificate of ${where} does not chain to ${trustedBy}`, err);
  if (OUT_OF_DATE_CODES.has(code)) return unavailable('federation-untrusted-certificate', `the certificate of ${where} is expired or not yet valid`, err);
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return unavailable('federation-untrusted-certificate', `the certificate of ${where} is not valid for its host name`, err);
  return undefined;
}

/** The chain Node reports, DER, leaf first. */
function chainOf(cert: PeerCertificate | undefined): Uint8Array[] {
  const out: Uint8Array[] = [];
  let cur = cert as (PeerCertificate & { issuerCertificate?: PeerCertificate }) | undefined;
  while (cur !== undefined && cur.raw !== undefined && out.length < 16) {
    out.push(new Uint8Array(cur.raw));
    const next = cur.issuerCertificate as (PeerCertificate & { issuerCertificate?: PeerCertificate }) | undefined;
    if (next === undefined || next === cur || next.raw === undefined || next.raw.equals(cur.raw)) break;
    cur = next;
  }
  return out;
}

/** Fetches and parses the peer's bundle; throws ERR_UNAVAILABLE with a `federation-*` reason. */
export function fetchBundle(o: FetchBundleOptions): Promise<Bundle> {
  let url: URL;
  try {
    url = new URL(o.url);
  } catch (err) {
    return Promise.reject(unavailable('federation-url', `bundle endpoint URL ${o.url} is invalid`, err));
  }
  if (url.protocol !== 'https:') return Promise.reject(unavailable('federation-url', `bundle endpoint URL ${o.url} is not https`));
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const maxBytes = o.maxBytes ?? MAX_BUNDLE_BYTES;
  const timeoutMs = o.timeoutMs ?? 10_000;
  const where = `the bundle endpoint of ${o.trustDomain.name} at ${url.host}`;
  let identityError: SigilError | undefined;
  let tlsOptions: RequestOptions;
  let trustedBy: string;
  if (o.auth.profile === 'https_spiffe') {
    const auth = o.auth;
    const anchors = auth.bundle?.x509Authorities ?? [];
    if (auth.bundle === undefined || anchors.length === 0) {
      return Promise.reject(unavailable('federation-no-bundle', `no bundle of ${auth.endpointSpiffeId.trustDomain.name} to authenticate ${where} (set a bootstrap bundle)`));
    }
    const bundle = auth.bundle;
    trustedBy = `the trust bundle held for ${bundle.trustDomain.name}`;
    tlsOptions = {
      // OpenSSL checks the path to one of the peer's roots; the SPIFFE rules and the exact ID are ours
      ca: anchors.map((a) => toPem(a.der, 'CERTIFICATE')).join(''),
      rejectUnauthorized: true,
      checkServerIdentity: (_host, cert) => {
        try {
          const v = verifyX509SvidChain(chainOf(cert), bundle, o.now());
          if (!v.id.equals(auth.endpointSpiffeId)) {
            identityError = unavailable('federation-wrong-id', `${where} presented ${v.id.toString()}, not ${auth.endpointSpiffeId.toString()}`);
            return identityError;
          }
          return undefined;
        } catch (err) {
          identityError = unavailable('federation-bad-svid', `${where} presented no valid X.509-SVID of ${bundle.trustDomain.name}`, err);
          return identityError;
        }
      },
    };
  } else {
    trustedBy = o.auth.caPem === undefined ? 'the web roots (the system CAs)' : 'the web roots (federation.httpsWebCaFile)';
    tlsOptions = { ...(o.auth.caPem === undefined ? {} : { ca: o.auth.caPem }), rejectUnauthorized: true, ...(isIP(host) === 0 ? { servername: host } : {}) };
  }
  const options: RequestOptions = {
    host,
    port: url.port === '' ? 443 : Number(url.port),
    path: `${url.pathname}${url.search}`,
    method: 'GET',
    headers: { accept: 'application/json' },
    timeout: timeoutMs,
    agent: false,
    ...(o.signal === undefined ? {} : { signal: o.signal }),
    ...tlsOptions,
  };
  return new Promise<Bundle>((resolve, reject) => {
    const req = request(options, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let done = false;
      res.on('data', (chunk: Buffer) => {
        if (done) return;
        size += chunk.length;
        if (size > maxBytes) {
          done = true;
          req.destroy();
          reject(unavailable('federation-too-large', `the answer of ${where} is larger than ${maxBytes} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      res.on('end', () => {
        if (done) return;
        const status = res.statusCode ?? 0;
        if (status !== 200) {
          reject(unavailable('federation-status', `${where} answered HTTP ${status}`));
          return;
        }
        try {
          resolve(Bundle.parseJwks(o.trustDomain, Buffer.concat(chunks)));
        } catch (err) {
          reject(unavailable('federation-bad-bundle', `${where} served no valid SPIFFE bundle of ${o.trustDomain.name}`, err));
        }
      });
      res.on('error', (err) => reject(unavailable('federation-unreachable', `reading the answer of ${where} failed`, err)));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs}ms`)));
    req.on('error', (err) => reject(identityError ?? certificateError(err, where, trustedBy) ?? unavailable('federation-unreachable', `cannot reach ${where}`, err)));
    req.end();
  });
}
