/**
 * The SPIFFE bundle endpoint (SPIFFE Trust Domain and Bundle, section 5): an HTTPS server that
 * answers `GET` with the trust domain's current bundle document (a JWK Set carrying
 * `spiffe_sequence` and `spiffe_refresh_hint`) to anyone, without client authentication, and
 * serves nothing else. The URL is the peer operator's to write (the standard's examples use
 * `/spiffe-bundle`, SPIRE's `/`), so every path answers the same bundle. https_spiffe presents the server's own SVID (the one agents see), so a
 * peer authenticates it against our bundle; https_web presents an operator's WebPKI
 * certificate, re-read when its files change.
 */
import { createServer, type Server } from 'node:https';
import type { SecureContextOptions } from 'node:tls';
import { SigilError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { readOperatorFile } from '../../ca/operator-file.js';
import type { BundleEndpointProfile } from './federation-config.js';

/** Where the endpoint's certificate comes from. */
export type EndpointIdentity =
  | { readonly profile: BundleEndpointProfile; readonly current: () => SecureContextOptions | null; readonly onChange: (listener: () => void) => () => void }
  | { readonly profile: 'https_web'; readonly certFile: string; readonly keyFile: string; readonly reloadIntervalMs?: number };

/** Options of startBundleEndpoint. */
export interface BundleEndpointOptions {
  readonly host: string;
  readonly port: number;
  readonly identity: EndpointIdentity;
  /** The current bundle document (JSON text), read on every request. */
  readonly document: () => Promise<string>;
  readonly logger: Logger;
}

/** A running bundle endpoint. */
export interface BundleEndpoint {
  readonly host: string;
  readonly port: number;
  readonly profile: BundleEndpointProfile;
  close(): Promise<void>;
}

async function readWebIdentity(certFile: string, keyFile: string): Promise<SecureContextOptions> {
  try {
    const cert = await readOperatorFile(certFile, 'federation.bundleEndpoint.tls.certFile');
    const key = await readOperatorFile(keyFile, 'federation.bundleEndpoint.tls.keyFile');
    return { cert, key };
  } catch (err) {
    if (err instanceof SigilError) throw err;
    throw new SigilError('ERR_CONFIG_INVALID', `cannot read federation.bundleEndpoint.tls (${certFile}, ${keyFile})`, { reason: 'bundle-endpoint-tls', cause: err });
  }
}

/** Starts the endpoint; rejects when its certificate cannot be loaded or the address cannot be bound. */
export async function startBundleEndpoint(o: BundleEndpointOptions): Promise<BundleEndpoint> {
  const id = o.identity;
  let initial: SecureContextOptions;
  if (!('current' in id)) {
    initial = await readWebIdentity(id.certFile, id.keyFile);
  } else {
    const c = id.current();
    if (c === null) throw new SigilError('ERR_UNAVAILABLE', 'the bundle endpoint has no certificate yet', { reason: 'bundle-endpoint-identity' });
    initial = c;
  }
  let server: Server;
  try {
    server = createServer({ ...initial, requestCert: false, minVersion: 'TLSv1.2' }, (req, res) => {
      // the answer is small and public, the request has no body worth reading
      req.resume();
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
        return;
      }
      o.document().then(
        (doc) => {
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(doc), 'cache-control': 'no-store' });
          res.end(req.method === 'HEAD' ? undefined : doc);
        },
        (err: unknown) => {
          o.logger.warn({ err }, 'bundle endpoint could not read the bundle');
          res.writeHead(503, { 'content-type': 'text/plain' }).end('bundle not available\n');
        },
      );
    });
  } catch (err) {
    throw new SigilError('ERR_CONFIG_INVALID', 'the bundle endpoint certificate or key is unusable', { reason: 'bundle-endpoint-tls', cause: err });
  }
  // bounded: slow or idle clients cannot hold sockets open
  server.headersTimeout = 10_000;
  server.requestTimeout = 15_000;
  server.keepAliveTimeout = 5_000;
  server.maxHeadersCount = 50;
  server.maxConnections = 1024;
  server.on('tlsClientError', (err) => o.logger.debug({ err }, 'bundle endpoint TLS handshake failed'));

  const stops: (() => void)[] = [];
  if ('current' in id) {
    stops.push(
      id.onChange(() => {
        const c = id.current();
        if (c !== null) server.setSecureContext({ ...c, minVersion: 'TLSv1.2' });
      }),
    );
  } else {
    let last = Buffer.concat([Buffer.from(initial.cert as Buffer), Buffer.from(initial.key as Buffer)]);
    const t = setInterval(() => {
      readWebIdentity(id.certFile, id.keyFile)
        .then((next) => {
          const now = Buffer.concat([Buffer.from(next.cert as Buffer), Buffer.from(next.key as Buffer)]);
          if (now.equals(last)) return;
          server.setSecureContext({ ...next, minVersion: 'TLSv1.2' });
          last = now;
          o.logger.info({ certFile: id.certFile }, 'bundle endpoint certificate reloaded');
        })
        .catch((err: unknown) => o.logger.warn({ err }, 'bundle endpoint certificate reload failed; keeping the current one'));
    }, id.reloadIntervalMs ?? 60_000);
    stops.push(() => clearInterval(t));
  }

  const host = o.host;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, host, () => {
      server.off('error', reject);
      resolve();
    });
  }).catch((err: unknown) => {
    for (const s of stops) s();
    throw new SigilError('ERR_UNAVAILABLE', `cannot listen on ${host}:${o.port} for the bundle endpoint`, { reason: 'bundle-endpoint-listen', cause: err });
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : o.port;
  o.logger.info({ address: `${host}:${port}`, profile: id.profile }, 'bundle endpoint started');
  return {
    host,
    port,
    profile: id.profile,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of stops) s();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
