/**
 * A minimal ACME client (RFC 8555) for `sigil oidc serve`'s `acme` config: one account (an
 * EC P-256 key kept 0600 in the cache dir), one DNS identifier, the http-01 challenge answered
 * by a responder the caller serves on port 80, the certificate and its key cached in the cache
 * dir and renewed once two thirds of its life have passed. Tested against Debian's pebble.
 */
import { createHash, createPrivateKey, generateKeyPairSync, webcrypto, X509Certificate, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { calculateJwkThumbprint, exportJWK, FlattenedSign, type JWK } from 'jose';
import { SigilError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { x509 } from '../common/x509.js';

/** The `acme` block of oidc.yaml, resolved. */
export interface AcmeConfig {
  readonly directoryUrl: string;
  readonly email: string;
  readonly domain: string;
  readonly cacheDir: string;
  /** PEM of CAs to trust for the directory (a test ACME server); system CAs when absent. */
  readonly caFile?: string;
}

interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
}

const MAX_ANSWER = 1024 * 1024;

function acmeError(message: string, cause?: unknown): SigilError {
  return new SigilError('ERR_UNAVAILABLE', message, { reason: 'acme-failed', cause });
}

/** The key authorizations of pending http-01 challenges, by token (what the port-80 responder answers). */
export type ChallengeResponses = Map<string, string>;

/** Obtains and renews a certificate for one domain. */
export class AcmeClient {
  readonly #c: AcmeConfig;
  readonly #log: Logger;
  readonly #ca: Buffer | undefined;
  readonly #challenges: ChallengeResponses;
  #accountKey: KeyObject | undefined;
  #jwk: JWK | undefined;
  #kid: string | undefined;
  #nonce: string | undefined;
  #dir: Record<string, string> | undefined;

  constructor(config: AcmeConfig, challenges: ChallengeResponses, logger: Logger) {
    this.#c = config;
    this.#log = logger;
    this.#challenges = challenges;
    this.#ca = config.caFile === undefined ? undefined : readFileSync(config.caFile);
  }

  /** The cached certificate chain and key, when present and not yet due for renewal. */
  cached(now = new Date()): { cert: Buffer; key: Buffer } | undefined {
    const certPath = join(this.#c.cacheDir, 'cert.pem');
    const keyPath = join(this.#c.cacheDir, 'key.pem');
    if (!existsSync(certPath) || !existsSync(keyPath)) return undefined;
    const cert = readFileSync(certPath);
    const leaf = new X509Certificate(cert);
    const from = new Date(leaf.validFrom).getTime();
    const to = new Date(leaf.validTo).getTime();
    if (now.getTime() >= from + ((to - from) * 2) / 3) return undefined;
    return { cert, key: readFileSync(keyPath) };
  }

  /** When the cached certificate is due for renewal (ms since the epoch). */
  renewAt(cert: Buffer): number {
    const leaf = new X509Certificate(cert);
    const from = new Date(leaf.validFrom).getTime();
    return from + ((new Date(leaf.validTo).getTime() - from) * 2) / 3;
  }

  #request(url: string, method: 'GET' | 'HEAD' | 'POST', body?: string): Promise<Answer> {
    const u = new URL(url);
    return new Promise((resolve, reject) => {
      const opts = {
        method,
        headers: { 'User-Agent': 'sigil-oidc', ...(body === undefined ? {} : { 'Content-Type': 'application/jose+json' }) },
        timeout: 30_000,
        ...(this.#ca === undefined ? {} : { ca: this.#ca }),
      };
      const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(u, opts, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_ANSWER) req.destroy(acmeError('ACME answer too large'));
          else chunks.push(c);
        });
        res.on('end', () => {
          const nonce = res.headers['replay-nonce'];
          if (typeof nonce === 'string') this.#nonce = nonce;
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') });
        });
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(acmeError(`ACME request to ${u.origin} timed out`)));
      req.on('error', (err) => reject(acmeError(`ACME server ${u.origin} unreachable`, err)));
      req.end(body);
    });
  }

  async #directory(): Promise<Record<string, string>> {
    if (this.#dir !== undefined) return this.#dir;
    const a = await this.#request(this.#c.directoryUrl, 'GET');
    if (a.status !== 200) throw acmeError(`ACME directory ${this.#c.directoryUrl} answered ${a.status}`);
    this.#dir = JSON.parse(a.body) as Record<string, string>;
    return this.#dir;
  }

  #loadAccountKey(): void {
    if (this.#accountKey !== undefined) return;
    mkdirSync(this.#c.cacheDir, { recursive: true, mode: 0o700 });
    const path = join(this.#c.cacheDir, 'account-key.pem');
    if (existsSync(path)) this.#accountKey = createPrivateKey(readFileSync(path));
    else {
      const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      writeFileSync(`${path}.tmp`, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
      renameSync(`${path}.tmp`, path);
      this.#accountKey = privateKey;
    }
  }

  /** A signed POST (payload undefined: POST-as-GET); retries once on badNonce. */
  async #post(url: string, payload: unknown, retry = true): Promise<Answer> {
    const dir = await this.#directory();
    this.#loadAccountKey();
    const key = this.#accountKey as KeyObject;
    this.#jwk ??= await exportJWK(key).then(({ kty, crv, x, y }) => ({ kty, crv, x, y }) as JWK);
    if (this.#nonce === undefined) await this.#request(dir.newNonce as string, 'HEAD');
    const header = { alg: 'ES256', nonce: this.#nonce, url, ...(this.#kid === undefined ? { jwk: this.#jwk } : { kid: this.#kid }) };
    this.#nonce = undefined;
    const bytes = payload === undefined ? new Uint8Array() : new TextEncoder().encode(JSON.stringify(payload));
    const jws = await new FlattenedSign(bytes).setProtectedHeader(header).sign(key);
    const a = await this.#request(url, 'POST', JSON.stringify(jws));
    if (a.status === 400 && retry && a.body.includes('badNonce')) return this.#post(url, payload, false);
    if (a.status >= 400) throw acmeError(`ACME ${url} answered ${a.status}: ${a.body.slice(0, 300)}`);
    return a;
  }

  async #poll(url: string, done: (s: string) => boolean, signal: AbortSignal): Promise<Record<string, unknown>> {
    for (let i = 0; i < 120; i++) {
      const v = JSON.parse((await this.#post(url, undefined)).body) as Record<string, unknown>;
      if (v.status === 'invalid') {
        const why = ((v.challenges ?? []) as { error?: { detail?: string } }[]).map((c) => c.error?.detail).filter((d) => d !== undefined);
        throw acmeError(`ACME object ${url} became invalid${why.length > 0 ? `: ${why.join('; ').slice(0, 500)}` : ''}`);
      }
      if (done(String(v.status))) return v;
      await new Promise((r) => setTimeout(r, 500));
      if (signal.aborted) throw acmeError('ACME stopped');
    }
    throw acmeError(`ACME object ${url} did not become ready`);
  }

  /** Runs one order to its end and caches the certificate; returns it with its key. */
  async obtain(signal: AbortSignal): Promise<{ cert: Buffer; key: Buffer }> {
    const dir = await this.#directory();
    if (this.#kid === undefined) {
      const acct = await this.#post(dir.newAccount as string, { termsOfServiceAgreed: true, contact: [`mailto:${this.#c.email}`] });
      this.#kid = acct.headers.location as string;
    }
    const order = await this.#post(dir.newOrder as string, { identifiers: [{ type: 'dns', value: this.#c.domain }] });
    const orderUrl = order.headers.location as string;
    const o = JSON.parse(order.body) as { authorizations: string[]; finalize: string };
    const thumb = await calculateJwkThumbprint(this.#jwk as JWK, 'sha256');
    for (const authzUrl of o.authorizations) {
      const authz = JSON.parse((await this.#post(authzUrl, undefined)).body) as { status: string; challenges: { type: string; url: string; token: string }[] };
      if (authz.status === 'valid') continue;
      const ch = authz.challenges.find((c) => c.type === 'http-01');
      if (ch === undefined) throw acmeError('the ACME server offers no http-01 challenge');
      this.#challenges.set(ch.token, `${ch.token}.${thumb}`);
      try {
        await this.#post(ch.url, {});
        await this.#poll(authzUrl, (s) => s === 'valid', signal);
      } finally {
        this.#challenges.delete(ch.token);
      }
    }
    const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
    const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      keys,
      signingAlgorithm: alg,
      name: `CN=${this.#c.domain}`,
      extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: this.#c.domain }])],
    });
    await this.#post(o.finalize, { csr: Buffer.from(csr.rawData).toString('base64url') });
    const done = await this.#poll(orderUrl, (s) => s === 'valid', signal);
    const cert = Buffer.from((await this.#post(String(done.certificate), undefined)).body, 'utf8');
    const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
    const key = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }).export({ type: 'pkcs8', format: 'pem' }) as string;
    writeFileSync(join(this.#c.cacheDir, 'key.pem.tmp'), key, { mode: 0o600 });
    renameSync(join(this.#c.cacheDir, 'key.pem.tmp'), join(this.#c.cacheDir, 'key.pem'));
    writeFileSync(join(this.#c.cacheDir, 'cert.pem.tmp'), cert, { mode: 0o644 });
    renameSync(join(this.#c.cacheDir, 'cert.pem.tmp'), join(this.#c.cacheDir, 'cert.pem'));
    this.#log.info({ domain: this.#c.domain, sha256: createHash('sha256').update(new X509Certificate(cert).raw).digest('hex') }, 'ACME certificate obtained');
    return { cert, key: Buffer.from(key) };
  }
}
