/**
 * A small ACME client (RFC 8555) for the https_web bundle endpoint: one account key in memory,
 * one DNS name, the http-01 challenge answered by a short-lived HTTP listener, the certificate
 * (and its fresh key, never written anywhere) renewed when two thirds of its life have passed.
 * Every request is bounded in time and size; failures are ERR_UNAVAILABLE (reason `acme-*`).
 */
import { createHash, createPrivateKey, generateKeyPairSync, sign, webcrypto, type KeyObject } from 'node:crypto';
import { createServer as createHttpServer } from 'node:http';
import { request } from 'node:https';
import { SigilError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { x509 } from '../../common/x509.js';

/** What the client needs. */
export interface AcmeOptions {
  readonly directoryUrl: string;
  readonly domainName: string;
  readonly email?: string;
  /** PEM CAs that verify the ACME server (system CAs when absent). */
  readonly caPem?: string;
  /** host:port of the http-01 listener (port 80 in production). */
  readonly challengeHost: string;
  readonly challengePort: number;
  readonly logger: Logger;
  readonly timeoutMs?: number;
}

/** A certificate chain (PEM) and its key (PEM), with its validity. */
export interface AcmeCertificate {
  readonly cert: string;
  readonly key: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

const MAX_ANSWER = 1024 * 1024;

function b64u(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

function fail(reason: string, message: string, cause?: unknown): SigilError {
  return new SigilError('ERR_UNAVAILABLE', message, { reason: `acme-${reason}`, ...(cause === undefined ? {} : { cause }) });
}

interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
}

/** Obtains certificates from one ACME directory. */
export class AcmeClient {
  readonly #o: AcmeOptions;
  readonly #accountKey: KeyObject;
  readonly #jwk: Record<string, string>;
  #directory: Record<string, string> | undefined;
  #nonce: string | undefined;
  #kid: string | undefined;

  constructor(options: AcmeOptions) {
    this.#o = options;
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    this.#accountKey = privateKey;
    const j = publicKey.export({ format: 'jwk' });
    this.#jwk = { crv: String(j.crv), kty: String(j.kty), x: String(j.x), y: String(j.y) };
  }

  #send(url: string, method: 'GET' | 'HEAD' | 'POST', body?: string): Promise<Answer> {
    const u = new URL(url);
    if (u.protocol !== 'https:') return Promise.reject(fail('url', `ACME URL ${url} is not https`));
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host: u.hostname.replace(/^\[|\]$/g, ''),
          port: u.port === '' ? 443 : Number(u.port),
          path: `${u.pathname}${u.search}`,
          method,
          headers: body === undefined ? {} : { 'content-type': 'application/jose+json', 'content-length': Buffer.byteLength(body) },
          timeout: this.#o.timeoutMs ?? 15_000,
          agent: false,
          ...(this.#o.caPem === undefined ? {} : { ca: this.#o.caPem }),
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > MAX_ANSWER) req.destroy(new Error('answer too large'));
            else chunks.push(c);
          });
          res.on('end', () => {
            const nonce = res.headers['replay-nonce'];
            if (typeof nonce === 'string') this.#nonce = nonce;
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') });
          });
          res.on('error', (err) => reject(fail('unreachable', `reading the ACME answer from ${u.host} failed`, err)));
        },
      );
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', (err) => reject(fail('unreachable', `cannot reach the ACME server at ${u.host}`, err)));
      req.end(body);
    });
  }

  async #dir(): Promise<Record<string, string>> {
    if (this.#directory !== undefined) return this.#directory;
    const a = await this.#send(this.#o.directoryUrl, 'GET');
    if (a.status !== 200) throw fail('status', `the ACME directory answered HTTP ${a.status}`);
    this.#directory = JSON.parse(a.body) as Record<string, string>;
    return this.#directory;
  }

  /** A JWS-signed POST (payload undefined = POST-as-GET); retries a bad nonce a few times. */
  async #post(url: string, payload: unknown): Promise<Answer> {
    for (let attempt = 0; ; attempt++) {
      if (this.#nonce === undefined) {
        const d = await this.#dir();
        await this.#send(d['newNonce'] as string, 'HEAD');
        if (this.#nonce === undefined) throw fail('nonce', 'the ACME server gave no nonce');
      }
      const protectedHeader: Record<string, unknown> = { alg: 'ES256', nonce: this.#nonce, url, ...(this.#kid === undefined ? { jwk: this.#jwk } : { kid: this.#kid }) };
      this.#nonce = undefined;
      const p = b64u(JSON.stringify(protectedHeader));
      const pl = payload === undefined ? '' : b64u(JSON.stringify(payload));
      const signature = sign('sha256', Buffer.from(`${p}.${pl}`), { key: this.#accountKey, dsaEncoding: 'ieee-p1363' });
      const a = await this.#send(url, 'POST', JSON.stringify({ protected: p, payload: pl, signature: b64u(signature) }));
      if (a.status >= 400) {
        let type = '';
        let detail = '';
        try {
          const problem = JSON.parse(a.body) as { type?: string; detail?: string };
          type = problem.type ?? '';
          detail = problem.detail ?? '';
        } catch {
          // not a problem document
        }
        if (type === 'urn:ietf:params:acme:error:badNonce' && attempt < 5) continue;
        throw fail('status', `the ACME server refused ${new URL(url).pathname} with HTTP ${a.status}${type === '' ? '' : ` (${type}: ${detail.slice(0, 200)})`}`);
      }
      return a;
    }
  }

  #thumbprint(): string {
    return b64u(createHash('sha256').update(JSON.stringify(this.#jwk)).digest());
  }

  async #poll(url: string, done: (o: { status: string }) => boolean, what: string): Promise<Record<string, unknown>> {
    for (let i = 0; i < 60; i++) {
      const o = JSON.parse((await this.#post(url, undefined)).body) as { status: string } & Record<string, unknown>;
      if (o.status === 'invalid') throw fail('invalid', `the ACME ${what} became invalid`);
      if (done(o)) return o;
      await new Promise((r) => setTimeout(r, 500));
    }
    throw fail('timeout', `the ACME ${what} did not complete`);
  }

  /** Obtains a new certificate for the domain name. */
  async obtain(): Promise<AcmeCertificate> {
    const d = await this.#dir();
    if (this.#kid === undefined) {
      const acct = await this.#post(d['newAccount'] as string, { termsOfServiceAgreed: true, ...(this.#o.email === undefined ? {} : { contact: [`mailto:${this.#o.email}`] }) });
      const loc = acct.headers['location'];
      if (typeof loc !== 'string') throw fail('account', 'the ACME server gave no account URL');
      this.#kid = loc;
    }
    const orderAnswer = await this.#post(d['newOrder'] as string, { identifiers: [{ type: 'dns', value: this.#o.domainName }] });
    const orderUrl = orderAnswer.headers['location'];
    if (typeof orderUrl !== 'string') throw fail('order', 'the ACME server gave no order URL');
    const order = JSON.parse(orderAnswer.body) as { authorizations: string[]; finalize: string };
    const tokens = new Map<string, string>();
    const challengeServer = createHttpServer((req, res) => {
      const m = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]+)$/.exec(req.url ?? '');
      const answer = m === null ? undefined : tokens.get(m[1] as string);
      if (answer === undefined) res.writeHead(404).end();
      else res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(answer);
    });
    await new Promise<void>((resolve, reject) => {
      challengeServer.once('error', (err) => reject(fail('challenge-listen', `cannot listen on ${this.#o.challengeHost}:${this.#o.challengePort} for the http-01 challenge`, err)));
      challengeServer.listen(this.#o.challengePort, this.#o.challengeHost, () => resolve());
    });
    try {
      for (const authzUrl of order.authorizations) {
        const authz = JSON.parse((await this.#post(authzUrl, undefined)).body) as { status: string; challenges: { type: string; url: string; token: string }[] };
        if (authz.status === 'valid') continue;
        const ch = authz.challenges.find((c) => c.type === 'http-01');
        if (ch === undefined) throw fail('challenge', 'the ACME server offers no http-01 challenge');
        tokens.set(ch.token, `${ch.token}.${this.#thumbprint()}`);
        await this.#post(ch.url, {});
        await this.#poll(authzUrl, (o) => o.status === 'valid', 'authorization');
      }
    } finally {
      challengeServer.close();
      challengeServer.closeAllConnections();
    }
    const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
    const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      keys,
      signingAlgorithm: alg,
      name: `CN=${this.#o.domainName}`,
      extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: this.#o.domainName }])],
    });
    await this.#post(order.finalize, { csr: b64u(Buffer.from(csr.rawData)) });
    const finished = await this.#poll(orderUrl, (o) => o.status === 'valid', 'order');
    const certUrl = finished['certificate'];
    if (typeof certUrl !== 'string') throw fail('certificate', 'the ACME order has no certificate URL');
    const cert = (await this.#post(certUrl, undefined)).body;
    if (!cert.includes('-----BEGIN CERTIFICATE-----')) throw fail('certificate', 'the ACME server returned no PEM certificate');
    const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
    const key = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }).export({ format: 'pem', type: 'pkcs8' }).toString();
    const leaf = new x509.X509Certificate(cert.slice(0, cert.indexOf('-----END CERTIFICATE-----') + 25));
    this.#o.logger.info({ domainName: this.#o.domainName, notAfter: leaf.notAfter.toISOString(), serial: leaf.serialNumber }, 'bundle endpoint certificate obtained through ACME');
    return { cert, key, notBefore: leaf.notBefore, notAfter: leaf.notAfter };
  }
}
