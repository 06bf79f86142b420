/**
 * gRPC (@grpc/grpc-js) over SPIFFE mTLS.
 *
 * Channels: credentials built on grpc-js certificate providers fed by the X509Source, so
 * each new connection uses the current SVID and bundles, with SPIFFE verification and the
 * authorizer in checkServerIdentity.
 *
 * Servers: grpc-js gives a server's TLS sockets to no hook before its HTTP/2 layer, and its
 * per-call auth context holds only the peer leaf (not the chain SPIFFE verification needs).
 * So the TLS listener is ours (the same guarded server as createTlsServer) and verified
 * connections are handed to the grpc-js Server through its connection injector. A refused
 * peer never reaches HTTP/2; an accepted one shows in handlers through grpcPeerSpiffeId.
 */
import { once } from 'node:events';
import type { TLSSocket } from 'node:tls';
import {
  experimental,
  ServerCredentials,
  type ChannelCredentials,
  type Server as GrpcServer,
} from '@grpc/grpc-js';
import type { PeerCertificate } from 'node:tls';
import type { TimerHandle } from '../common/clock.js';
import { SigilError } from '../common/errors.js';
import { SpiffeId } from '../spiffe/spiffe-id.js';
import { createTlsServer, tlsConfigOf, type SpiffeServerOptions } from './tls.js';
import type { SpiffeTlsConfig, SpiffeTlsOptions } from './tls-config.js';

type CaListener = (update: { caCertificate: Buffer } | null) => void;
type IdentityListener = (update: { certificate: Buffer; privateKey: Buffer } | null) => void;

/**
 * Feeds grpc-js the source's current material, and every change of it. When the source
 * holds no identity (withdrawn, or the SVID reached its notAfter) the identity listeners get
 * null, so grpc-js makes no new connection with the old SVID until an update restores one.
 */
class SourceCertificateProvider {
  readonly #config: SpiffeTlsConfig;
  readonly #ca = new Set<CaListener>();
  readonly #identity = new Set<IdentityListener>();
  readonly #onUpdate = (): void => this.#push();
  #expiry: TimerHandle | undefined;

  constructor(config: SpiffeTlsConfig) {
    this.#config = config;
  }

  #push(ca: Iterable<CaListener> = this.#ca, identity: Iterable<IdentityListener> = this.#identity): void {
    this.#expiry?.cancel();
    this.#expiry = undefined;
    let m;
    try {
      m = this.#config.material();
    } catch (err) {
      if (this.#config.source.closed) return; // closed source: keep what the channel has
      if (err instanceof SigilError && err.code === 'ERR_NO_IDENTITY') for (const l of identity) l(null);
      return;
    }
    for (const l of ca) l({ caCertificate: Buffer.from(m.ca) });
    for (const l of identity) l({ certificate: Buffer.from(m.cert), privateKey: Buffer.from(m.key) });
    // Withdraw the SVID at its notAfter if no rotation came first; background, since an
    // expiring certificate is no reason to keep the application running.
    const untilExpiry = this.#config.source.svid.notAfter.getTime() - this.#config.clock.nowMs() + 1;
    this.#expiry = this.#config.clock.setTimer(() => this.#push(), untilExpiry, { background: true });
  }

  #listening(): void {
    if (this.#ca.size + this.#identity.size === 1) {
      this.#config.source.on('update', this.#onUpdate);
      this.#config.source.on('identityLost', this.#onUpdate);
    }
  }

  #maybeStop(): void {
    if (this.#ca.size + this.#identity.size === 0) {
      this.#config.source.off('update', this.#onUpdate);
      this.#config.source.off('identityLost', this.#onUpdate);
      this.#expiry?.cancel();
      this.#expiry = undefined;
    }
  }

  addCaCertificateListener(listener: CaListener): void {
    this.#ca.add(listener);
    this.#listening();
    this.#push([listener], []);
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.#ca.delete(listener);
    this.#maybeStop();
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.#identity.add(listener);
    this.#listening();
    this.#push([], [listener]);
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.#identity.delete(listener);
    this.#maybeStop();
  }
}

/**
 * Channel credentials for grpc-js clients: present the current SVID, verify the server by
 * SPIFFE rules and the authorizer (hostnames are ignored). A refused server fails the
 * connection, so calls end with UNAVAILABLE.
 */
export function grpcChannelCredentials(options: SpiffeTlsOptions): ChannelCredentials {
  const config = tlsConfigOf(options);
  const provider = new SourceCertificateProvider(config);
  return experimental.createCertificateProviderChannelCredentials(provider, provider, {
    checkServerIdentity: config.checkServerIdentity(),
  });
}

/** Where serveGrpc listens. */
export interface ServeGrpcOptions extends SpiffeServerOptions {
  /** Address to bind; 127.0.0.1 by default. */
  readonly host?: string;
  /** Port to bind; 0 (any free port) by default. */
  readonly port?: number;
  /** Called with every refused peer's error (a SigilError: code and reason say why). */
  readonly onRefused?: (error: unknown) => void;
}

/** A running SPIFFE mTLS listener feeding a grpc-js Server. */
export interface GrpcSpiffeListener {
  /** The bound port. */
  readonly port: number;
  /** Stops accepting, closes the connections it handed over. */
  close(): Promise<void>;
}

/**
 * Serves a grpc-js Server (services already added) over SPIFFE mTLS: each client SVID is
 * verified and authorized before the connection reaches gRPC; rotation needs no restart.
 */
export async function serveGrpc(server: GrpcServer, options: ServeGrpcOptions, signal?: AbortSignal): Promise<GrpcSpiffeListener> {
  const injector = server.createConnectionInjector(ServerCredentials.createInsecure());
  const tlsServer = createTlsServer({ ...options, tls: { ...options.tls, ALPNProtocols: ['h2'] } }, (socket) => {
    injector.injectConnection(socket);
  });
  tlsServer.on('tlsClientError', (err) => options.onRefused?.(err));
  const sockets = new Set<TLSSocket>();
  tlsServer.on('secureConnection', (socket: TLSSocket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  tlsServer.listen(options.port ?? 0, options.host ?? '127.0.0.1');
  try {
    await once(tlsServer, 'listening', signal === undefined ? {} : { signal });
  } catch (err) {
    tlsServer.close();
    injector.destroy();
    throw signal?.aborted ? new SigilError('ERR_CANCELLED', 'serveGrpc was aborted', { reason: 'aborted' }) : err;
  }
  const address = tlsServer.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  let closing: Promise<void> | undefined;
  return {
    port,
    close() {
      closing ??= new Promise<void>((resolve) => {
        injector.destroy();
        tlsServer.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
      return closing;
    },
  };
}

/**
 * The SPIFFE ID of the peer of a gRPC call served by serveGrpc (or of a verified channel),
 * read from the connection's verified peer certificate; undefined on a plaintext call.
 */
export function grpcPeerSpiffeId(call: { getAuthContext(): { sslPeerCertificate?: PeerCertificate } | null }): SpiffeId | undefined {
  const cert = call.getAuthContext()?.sslPeerCertificate;
  const san: string | undefined = cert?.subjectaltname;
  if (san === undefined) return undefined;
  const uris = san
    .split(', ')
    .filter((e) => e.startsWith('URI:'))
    .map((e) => e.slice(4));
  if (uris.length !== 1) return undefined;
  try {
    return SpiffeId.parse(uris[0] as string);
  } catch {
    return undefined;
  }
}
