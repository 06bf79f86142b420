/**
 * HTTPS and HTTP/2 over SPIFFE mTLS: servers whose peers are verified and authorized before
 * the HTTP layer sees the connection, and an https.Agent that dials with the current SVID
 * and verifies servers by SPIFFE rules. Rotation needs no restart on either side.
 */
import { createSecureServer, type Http2SecureServer, type SecureClientSessionOptions, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import { Agent, createServer as httpsCreateServer, type AgentOptions, type RequestOptions, type Server as HttpsServer } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { guardServer, serverTlsOptions, tlsClientOptions, tlsConfigOf, type SpiffeServerOptions } from './tls.js';
import type { SpiffeTlsOptions } from './tls-config.js';

/** An https server with SPIFFE mTLS; refused peers are reported as 'tlsClientError'. */
export function createHttpsServer(
  options: SpiffeServerOptions,
  requestListener?: (req: IncomingMessage, res: ServerResponse) => void,
): HttpsServer {
  const config = tlsConfigOf(options);
  const server = requestListener === undefined
    ? httpsCreateServer(serverTlsOptions(config, options.tls))
    : httpsCreateServer(serverTlsOptions(config, options.tls), requestListener);
  return guardServer(server, config, options.tls);
}

/** An HTTP/2 secure server with SPIFFE mTLS (ALPN h2). */
export function createHttp2SecureServer(
  options: SpiffeServerOptions,
  onRequest?: (req: Http2ServerRequest, res: Http2ServerResponse) => void,
): Http2SecureServer {
  const config = tlsConfigOf(options);
  const tlsOptions = serverTlsOptions(config, options.tls);
  const server = onRequest === undefined ? createSecureServer(tlsOptions) : createSecureServer(tlsOptions, onRequest);
  return guardServer(server, config, options.tls);
}

/** Options for `http2.connect` with the current SVID and SPIFFE server verification; call per session. */
export function http2ClientOptions(options: SpiffeTlsOptions): SecureClientSessionOptions {
  return tlsClientOptions(options);
}

/** An https.Agent that uses the SVID current at each new connection and verifies servers by SPIFFE rules. */
class SpiffeHttpsAgent extends Agent {
  readonly #options: SpiffeTlsOptions;

  constructor(options: SpiffeTlsOptions, agentOptions: AgentOptions) {
    // No TLS session cache: a resumed session skips checkServerIdentity and keeps old certificates.
    super({ ...agentOptions, maxCachedSessions: 0 });
    this.#options = options;
  }

  override createConnection(options: RequestOptions, callback?: (err: Error | null, stream: Duplex) => void): Duplex | null | undefined {
    return super.createConnection({ ...options, ...tlsClientOptions(this.#options) } as RequestOptions, callback);
  }
}

/** Makes an https.Agent for SPIFFE mTLS clients; pass it as `agent` to https.request or fetch-like clients. */
export function createHttpsAgent(options: SpiffeTlsOptions, agentOptions: AgentOptions = {}): Agent {
  tlsConfigOf(options);
  return new SpiffeHttpsAgent(options, agentOptions);
}
