/**
 * The HTTP side of `sigil oidc serve`: GET/HEAD of the discovery document, the JWKS and
 * /ready, nothing else (404 for any other path, 405 for any other method, no directory
 * listing), with Cache-Control and a strong ETag; requests are bounded (header size, URL
 * length, no body, time limits). With `tls` the certificate and key files are re-read
 * whenever they change, so a renewed certificate is served without a restart.
 */
import { createHash } from 'node:crypto';
import { readFileSync, unwatchFile, watchFile, type Stats } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createSecureContext } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { SigilError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { checkSecretFileMode } from '../common/secret-file.js';
import { AcmeClient, type ChallengeResponses } from './acme.js';
import type { AcmeSettings, OidcConfig } from './config.js';
import { discoveryDocumentOf, jwksOf } from './documents.js';
import type { FeedProblem, FeedState, KeyFeed } from './key-feed.js';

/** Longest request target accepted. */
export const MAX_URL_LENGTH = 2048;
/** Largest request header block accepted (bytes). */
export const MAX_HEADER_BYTES = 8192;
const ALLOW = 'GET, HEAD';
/** How often changed TLS files are looked for (fs.watchFile polls, which also sees a file replaced by rename). */
const TLS_POLL_MS = 1000;

/** A served document: its bytes and their ETag. */
interface Rendered {
  readonly body: Buffer;
  readonly etag: string;
}

function render(value: unknown): Rendered {
  const body = Buffer.from(`${JSON.stringify(value, null, 2)}\n`, 'utf8');
  return { body, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 32)}"` };
}

/** The current documents, rebuilt on every key change; undefined while there are no keys. */
export class OidcDocuments {
  #discovery: Rendered | undefined;
  #jwks: Rendered | undefined;
  readonly #config: OidcConfig;

  constructor(config: OidcConfig, feed: KeyFeed) {
    this.#config = config;
    const rebuild = (): void => {
      const bundle = feed.bundle;
      if (bundle === undefined) return;
      const jwks = jwksOf(bundle, { setKeyUse: config.setKeyUse });
      if (jwks.keys.length === 0) {
        this.#jwks = undefined;
        this.#discovery = undefined;
        return;
      }
      this.#jwks = render(jwks);
      this.#discovery = render(discoveryDocumentOf(config.issuer, config.jwksUri, jwks));
    };
    feed.on('keys', rebuild);
    rebuild();
  }

  /** The discovery document, when there are keys. */
  get discovery(): Rendered | undefined {
    return this.#discovery;
  }

  /** The JWKS, when there are keys. */
  get jwks(): Rendered | undefined {
    return this.#jwks;
  }

  /** The configuration these documents are for. */
  get config(): OidcConfig {
    return this.#config;
  }
}

function send(res: ServerResponse, status: number, headers: Record<string, string>, body: Buffer | undefined, head: boolean): void {
  res.writeHead(status, { 'X-Content-Type-Options': 'nosniff', ...headers, ...(body === undefined ? {} : { 'Content-Length': String(body.length) }) });
  res.end(head || body === undefined ? undefined : body);
}

function plain(res: ServerResponse, status: number, text: string, head: boolean, extra: Record<string, string> = {}): void {
  send(res, status, { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store', ...extra }, Buffer.from(`${text}\n`), head);
}

/** The public /ready answer. */
export interface ReadyAnswer {
  readonly ready: boolean;
  /** Why not ready, as a kind only: the detail (socket paths, another process's error text) is logged, never served. */
  readonly reason?: FeedProblem;
  /** Keys being served. */
  readonly keys: number;
  /** When the keys last came from the source. */
  readonly updatedAt?: string;
}

/** What /ready answers for `state`, when `published` says whether a JWKS is being served. */
export function readyAnswer(state: FeedState, published: boolean): ReadyAnswer {
  const reason: FeedProblem | undefined = state.problem ?? (published ? undefined : 'no-keys');
  return {
    ready: reason === undefined,
    ...(reason === undefined ? {} : { reason }),
    keys: state.keys,
    ...(state.updatedAt === undefined ? {} : { updatedAt: state.updatedAt }),
  };
}

/** The request handler (exported for the server below; tests go through a real listener). */
export function oidcHandler(docs: OidcDocuments, feed: KeyFeed): (req: IncomingMessage, res: ServerResponse) => void {
  const { discoveryPath, jwksPath, cacheMaxAgeSeconds } = docs.config;
  return (req, res) => {
    const head = req.method === 'HEAD';
    const url = req.url ?? '';
    // a request with a body is not one of ours; close rather than read it
    const hasBody = (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0') || req.headers['transfer-encoding'] !== undefined;
    if (hasBody) {
      res.setHeader('Connection', 'close');
      plain(res, 413, 'request bodies are not accepted', head);
      return;
    }
    if (url.length > MAX_URL_LENGTH) return plain(res, 414, 'request target too long', head);
    const path = url.split('?')[0] ?? '';
    const doc = path === discoveryPath ? 'discovery' : path === jwksPath ? 'jwks' : path === '/ready' ? 'ready' : undefined;
    if (doc === undefined) return plain(res, 404, 'not found', head);
    if (req.method !== 'GET' && req.method !== 'HEAD') return plain(res, 405, 'method not allowed', head, { Allow: ALLOW });
    if (doc === 'ready') {
      const body = readyAnswer(feed.state(), docs.jwks !== undefined);
      send(res, body.ready ? 200 : 503, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' }, Buffer.from(`${JSON.stringify(body)}\n`), head);
      return;
    }
    const rendered = doc === 'discovery' ? docs.discovery : docs.jwks;
    // never an empty key set that a relying party might cache
    if (rendered === undefined) return plain(res, 503, 'no JWT keys yet', head, { 'Retry-After': '5' });
    const headers = { 'Content-Type': 'application/json', 'Cache-Control': `public, max-age=${cacheMaxAgeSeconds}`, ETag: rendered.etag };
    const inm = req.headers['if-none-match'];
    if (inm !== undefined && inm.split(',').some((t) => t.trim() === rendered.etag || t.trim() === '*')) {
      res.writeHead(304, headers);
      res.end();
      return;
    }
    send(res, 200, headers, rendered.body, head);
  };
}

/** A listening OIDC server. */
export interface OidcServer {
  /** The port it listens on (useful with port 0). */
  readonly port: number;
  close(): Promise<void>;
}

function readTlsFiles(tls: { readonly certFile: string; readonly keyFile: string }): { cert: Buffer; key: Buffer } {
  checkSecretFileMode(tls.keyFile, 'tls.keyFile');
  let cert: Buffer;
  let key: Buffer;
  try {
    cert = readFileSync(tls.certFile);
    key = readFileSync(tls.keyFile);
  } catch (err) {
    throw new SigilError('ERR_CONFIG_INVALID', `cannot read tls.certFile ${JSON.stringify(tls.certFile)} or tls.keyFile ${JSON.stringify(tls.keyFile)}`, { reason: 'tls-files', cause: err });
  }
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    throw new SigilError('ERR_CONFIG_INVALID', `tls.certFile and tls.keyFile are not a matching PEM certificate and key`, { reason: 'tls-files', cause: err });
  }
  return { cert, key };
}

/** Starts listening as `docs.config.listen` says. */
export async function startOidcServer(docs: OidcDocuments, feed: KeyFeed, logger: Logger): Promise<OidcServer> {
  const listen = docs.config.listen;
  if (listen === undefined) throw new SigilError('ERR_CONFIG_INVALID', 'listen: required (with tls), or set insecureListen', { reason: 'no-listener' });
  const handler = oidcHandler(docs, feed);
  const limits = { maxHeaderSize: MAX_HEADER_BYTES, requestTimeout: 10_000, headersTimeout: 5_000, keepAliveTimeout: 5_000 };
  let server: Server;
  const watched: string[] = [];
  const extra: Array<() => Promise<void>> = [];
  if (listen.acme !== undefined) {
    const acme = await startAcme(listen.acme, logger, () => handler, limits);
    server = acme.server;
    extra.push(acme.close);
  } else if (listen.tls !== undefined) {
    const tls = listen.tls;
    const https = createHttpsServer({ ...limits, ...readTlsFiles(tls), minVersion: 'TLSv1.2' }, handler);
    const reload = (cur: Stats, prev: Stats): void => {
      if (cur.mtimeMs === prev.mtimeMs && cur.size === prev.size && cur.ino === prev.ino) return;
      try {
        https.setSecureContext({ ...readTlsFiles(tls), minVersion: 'TLSv1.2' });
        logger.info({ certFile: tls.certFile }, 'TLS certificate reloaded');
      } catch (err) {
        // a half-written pair: keep serving the old one, the next change retries
        logger.warn({ certFile: tls.certFile, reason: err instanceof SigilError ? err.reason : undefined }, 'TLS certificate not reloaded');
      }
    };
    for (const f of [tls.certFile, tls.keyFile]) {
      watchFile(f, { interval: TLS_POLL_MS, persistent: false }, reload);
      watched.push(f);
    }
    server = https;
  } else {
    server = createHttpServer(limits, handler);
  }
  server.headersTimeout = limits.headersTimeout;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  }).catch((err: unknown) => {
    for (const f of watched) unwatchFile(f);
    throw new SigilError('ERR_UNAVAILABLE', `cannot listen on ${listen.host}:${listen.port}`, { reason: 'listen-failed', cause: err });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const f of watched) unwatchFile(f);
        server.close(() => resolve());
        server.closeAllConnections();
      }).then(async () => {
        for (const c of extra) await c();
      }),
  };
}

/** Answers http-01 challenges on plain HTTP (and nothing else). */
function challengeHandler(responses: ChallengeResponses): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const m = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]{1,256})$/.exec(req.url ?? '');
    const answer = m === null ? undefined : responses.get(m[1] as string);
    if (answer === undefined || (req.method !== 'GET' && req.method !== 'HEAD')) return plain(res, 404, 'not found', req.method === 'HEAD');
    send(res, 200, { 'Content-Type': 'application/octet-stream', 'Cache-Control': 'no-store' }, Buffer.from(answer), req.method === 'HEAD');
  };
}

/**
 * The HTTPS server with an ACME certificate: the http-01 responder listens first, the cached
 * certificate is used when it is not yet due for renewal, else one is obtained before serving;
 * renewal runs at two thirds of the certificate's life (a failure keeps the old one and retries
 * in a minute).
 */
async function startAcme(
  settings: AcmeSettings,
  logger: Logger,
  makeHandler: (https: boolean) => (req: IncomingMessage, res: ServerResponse) => void,
  limits: Record<string, number>,
): Promise<{ server: Server; close: () => Promise<void> }> {
  const responses: ChallengeResponses = new Map();
  const responder = createHttpServer(limits, challengeHandler(responses));
  await new Promise<void>((resolve, reject) => {
    responder.once('error', (err) => reject(new SigilError('ERR_UNAVAILABLE', `cannot listen on ${settings.httpListen.host}:${settings.httpListen.port} for http-01`, { reason: 'listen-failed', cause: err })));
    responder.listen(settings.httpListen.port, settings.httpListen.host, () => resolve());
  });
  const client = new AcmeClient(settings, responses, logger);
  const ctl = new AbortController();
  let pair = client.cached();
  if (pair === undefined) {
    try {
      pair = await client.obtain(ctl.signal);
    } catch (err) {
      responder.closeAllConnections();
      await new Promise<void>((resolve) => responder.close(() => resolve()));
      throw err;
    }
  }
  const https = createHttpsServer({ ...limits, cert: pair.cert, key: pair.key, minVersion: 'TLSv1.2' }, makeHandler(true));
  let timer: NodeJS.Timeout | undefined;
  const schedule = (at: number): void => {
    timer = setTimeout(() => {
      client.obtain(ctl.signal).then(
        (p) => {
          https.setSecureContext({ cert: p.cert, key: p.key, minVersion: 'TLSv1.2' });
          schedule(client.renewAt(p.cert));
        },
        (err: unknown) => {
          logger.warn({ reason: err instanceof SigilError ? err.reason : undefined, err: err instanceof Error ? err.message : String(err) }, 'ACME renewal failed; retrying');
          if (!ctl.signal.aborted) schedule(Date.now() + 60_000);
        },
      );
    }, Math.max(1000, Math.min(at - Date.now(), 2 ** 31 - 1)));
  };
  schedule(client.renewAt(pair.cert));
  return {
    server: https,
    close: () =>
      new Promise<void>((resolve) => {
        ctl.abort();
        clearTimeout(timer);
        responder.close(() => resolve());
        responder.closeAllConnections();
      }),
  };
}
