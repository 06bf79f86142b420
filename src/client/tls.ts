/**
 * mTLS over node:tls with SPIFFE authentication. Clients get per-connection options (the
 * current SVID, SPIFFE verification in checkServerIdentity); servers are made here so the
 * peer check runs before any listener sees the socket, and so the server's context follows
 * every rotation (tls.Server#setSecureContext) without a restart.
 */
import { constants as cryptoConstants } from 'node:crypto';
import { once } from 'node:events';
import {
  connect as tlsConnect,
  createServer as tlsCreateServer,
  type ConnectionOptions,
  type Server as TlsServer,
  type TlsOptions,
  type TLSSocket,
} from 'node:tls';
import { SigilError } from '../common/errors.js';
import { SpiffeTlsConfig, type SpiffeTlsOptions } from './tls-config.js';

/** @internal the config of an options object; cheap, since its caches live per source. */
export function tlsConfigOf(options: SpiffeTlsOptions): SpiffeTlsConfig {
  return options instanceof SpiffeTlsConfig ? options : new SpiffeTlsConfig(options);
}

/**
 * Options for `tls.connect` (and `http2.connect`) with the current SVID and SPIFFE server
 * verification. Call it for every new connection so a rotated SVID is used.
 */
export function tlsClientOptions(options: SpiffeTlsOptions): ConnectionOptions {
  const config = tlsConfigOf(options);
  return {
    secureContext: config.material().secureContext,
    // Must stay true: with it Node destroys the socket, before any early write leaves, when
    // checkServerIdentity returns an error; with false it would only record the error.
    rejectUnauthorized: true,
    checkServerIdentity: config.checkServerIdentity(),
    minVersion: 'TLSv1.2',
  };
}

/** Where connectTls connects, beside the SPIFFE options. */
export interface ConnectTlsOptions extends SpiffeTlsOptions {
  readonly host?: string;
  readonly port: number;
  /** Extra node:tls options (ALPN, servername…); identity and verification options are ours. */
  readonly tls?: Omit<ConnectionOptions, 'secureContext' | 'checkServerIdentity' | 'rejectUnauthorized' | 'host' | 'port'>;
}

/**
 * Connects with mTLS and resolves once the server has been verified by SPIFFE rules and
 * authorized; rejects with the verification error (ERR_INVALID_X509_SVID,
 * ERR_PERMISSION_DENIED), a socket error, or ERR_CANCELLED on abort.
 */
export async function connectTls(options: ConnectTlsOptions, signal?: AbortSignal): Promise<TLSSocket> {
  const config = tlsConfigOf(options);
  const socket = tlsConnect({ ...options.tls, ...tlsClientOptions(options), host: options.host ?? 'localhost', port: options.port });
  const onAbort = (): void => {
    socket.destroy(new SigilError('ERR_CANCELLED', 'TLS connect was aborted', { reason: 'aborted' }));
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  if (signal?.aborted) onAbort();
  try {
    await once(socket, 'secureConnect');
    // Already verified in checkServerIdentity (a cache hit here); this records the peer ID.
    config.verifySocket(socket);
    return socket;
  } catch (err) {
    socket.destroy();
    throw err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

/** Options of createTlsServer and the other server helpers. */
export interface SpiffeServerOptions extends SpiffeTlsOptions {
  /** Extra node:tls server options (ALPN, timeouts…); identity and verification options are ours. */
  readonly tls?: Omit<TlsOptions, 'cert' | 'key' | 'ca' | 'requestCert' | 'rejectUnauthorized' | 'SNICallback'>;
}

/** @internal the server options every SPIFFE server starts with. */
export function serverTlsOptions(config: SpiffeTlsConfig, extra: SpiffeServerOptions['tls']): TlsOptions {
  const m = config.material();
  return {
    ...extra,
    cert: m.cert,
    key: m.key,
    ca: m.ca,
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.2',
    // No session tickets: every connection does a full handshake, so every peer is verified
    // against the current bundles and sees the current certificate.
    secureOptions: (extra?.secureOptions ?? 0) | cryptoConstants.SSL_OP_NO_TICKET,
  };
}

/**
 * Closes a refused connection. In TLS 1.3 the client has finished its handshake before the
 * server sees the client certificate, so the client sees this as the server closing the
 * connection before sending anything. (A TCP reset would be clearer, but resetting the
 * socket under Node's TLS layer crashes the process.)
 */
function refuse(socket: TLSSocket): void {
  // Nobody else holds this socket, so nobody else would handle its late errors (EPIPE…).
  socket.on('error', () => undefined);
  socket.destroy();
}

/**
 * @internal makes a TLS-based server SPIFFE-authenticating: the peer is verified and
 * authorized before any 'secureConnection' listener (HTTP, HTTP/2, the caller's) runs; a
 * refused socket is destroyed and reported as 'tlsClientError'. The server's context is
 * replaced on every source update.
 */
export function guardServer<S extends TlsServer>(server: S, config: SpiffeTlsConfig, extra: SpiffeServerOptions['tls']): S {
  const emit = server.emit.bind(server) as (event: string | symbol, ...args: unknown[]) => boolean;
  (server as { emit: (event: string | symbol, ...args: unknown[]) => boolean }).emit = (event, ...args) => {
    if (event === 'connection') {
      // No identity to present (withdrawn, or expired and not yet replaced): refuse before
      // the handshake starts rather than present an SVID the standards say to stop using.
      try {
        config.material();
      } catch (err) {
        const socket = args[0] as { destroy(): void; on(e: string, f: () => void): void };
        socket.on('error', () => undefined);
        socket.destroy();
        emit('tlsClientError', err, undefined);
        return false;
      }
    }
    if (event === 'secureConnection') {
      const socket = args[0] as TLSSocket;
      try {
        config.verifySocket(socket);
      } catch (err) {
        refuse(socket);
        emit('tlsClientError', err, socket);
        return false;
      }
    }
    return emit(event, ...args);
  };
  const onUpdate = (): void => {
    try {
      server.setSecureContext(serverTlsOptions(config, extra));
    } catch (err) {
      // Keep serving with the previous context; the source reports the bad update itself.
      emit('tlsClientError', new SigilError('ERR_INTERNAL', 'could not apply the new SVID', { cause: err }), undefined);
    }
  };
  config.source.on('update', onUpdate);
  server.once('close', () => config.source.off('update', onUpdate));
  return server;
}

/**
 * A node:tls server that presents the current SVID, requires a client SVID, verifies it by
 * SPIFFE rules and the authorizer before `secureConnectionListener` runs, and follows
 * rotations. Refused peers are reported as 'tlsClientError' with a SigilError.
 */
export function createTlsServer(options: SpiffeServerOptions, secureConnectionListener?: (socket: TLSSocket) => void): TlsServer {
  const config = tlsConfigOf(options);
  const server = tlsCreateServer(serverTlsOptions(config, options.tls), secureConnectionListener);
  return guardServer(server, config, options.tls);
}
