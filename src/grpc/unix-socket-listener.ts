/**
 * A Unix socket we listen on ourselves and feed to a grpc-js server through a connection
 * injector, so each connection's kernel facts (SO_PEERCRED, process start time) are read at
 * accept — before any byte of it is parsed — and reach handlers through the socket's
 * `remoteAddress`, which is what `call.getPeer()` returns. Used by the agent's Workload API
 * and the server's admin API.
 */
import { lstatSync, unlinkSync } from 'node:fs';
import { connect, createServer, type Server as NetServer, type Socket } from 'node:net';
import { isAbsolute } from 'node:path';
import { ServerCredentials, type ConnectionInjector, type Server as GrpcServer } from '@grpc/grpc-js';
import { SigilError } from '../common/errors.js';

/** sun_path holds 108 bytes including the terminating NUL. */
export const MAX_SOCKET_PATH_BYTES = 107;

function refused(reason: string, message: string, cause?: unknown): SigilError {
  return new SigilError('ERR_FAILED_PRECONDITION', message, { reason, cause });
}

/** Refuses a relative or over-long socket path (ERR_CONFIG_INVALID, reason `socket-path`); `what` names it in the message. */
export function checkSocketPath(path: string, what: string): void {
  if (!isAbsolute(path)) throw new SigilError('ERR_CONFIG_INVALID', `${what} path ${JSON.stringify(path)} is not absolute`, { reason: 'socket-path' });
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
    throw new SigilError('ERR_CONFIG_INVALID', `${what} path ${JSON.stringify(path)} is longer than ${MAX_SOCKET_PATH_BYTES} bytes`, { reason: 'socket-path' });
  }
}

/** True when something accepts connections on `path` (a live daemon we must not displace). */
function socketInUse(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

/** Removes a stale socket file at `path`; refuses anything that is not a socket, or a socket in use. */
export async function clearStaleSocket(path: string): Promise<void> {
  let st;
  try {
    st = lstatSync(path);
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT') return;
    throw refused('socket-path', `cannot inspect socket path ${path}`, err);
  }
  if (!st.isSocket()) throw refused('not-a-socket', `${path} exists and is not a socket; refusing to replace it`);
  if (await socketInUse(path)) throw refused('socket-in-use', `${path} is in use by another process`);
  unlinkSync(path);
}

/** Options of listenUnixForGrpc. */
export interface UnixGrpcListenerOptions<F> {
  readonly path: string;
  readonly backlog: number;
  readonly grpcServer: GrpcServer;
  /** Tags this listener's peers; `factsOf` answers only for its own. */
  readonly peerPrefix: string;
  /** Reads the connection's facts at accept; returns undefined to refuse it (the socket is destroyed). */
  accept(socket: Socket): F | undefined;
  /** Called for socket-level errors after listening started. */
  onError(err: Error): void;
}

/** A listening socket feeding grpc-js. */
export interface UnixGrpcListener<F> {
  readonly netServer: NetServer;
  /** The facts of the connection behind `call.getPeer()`, or undefined for a peer not accepted here. */
  factsOf(peer: string): F | undefined;
  /** Stops accepting, drops the injector and destroys open connections; resolves when the listener is closed. */
  close(): Promise<void>;
}

/** Listens on `path` and hands every accepted connection to `grpcServer`; resolves once listening. */
export async function listenUnixForGrpc<F>(options: UnixGrpcListenerOptions<F>): Promise<UnixGrpcListener<F>> {
  const injector: ConnectionInjector = options.grpcServer.createConnectionInjector(ServerCredentials.createInsecure());
  const facts = new Map<string, F>();
  const sockets = new Set<Socket>();
  let next = 0;
  const netServer = createServer((socket) => {
    const f = options.accept(socket);
    if (f === undefined) {
      socket.destroy();
      return;
    }
    const token = `${options.peerPrefix}${++next}`;
    Object.defineProperty(socket, 'remoteAddress', { value: token, configurable: true, enumerable: true });
    facts.set(token, f);
    sockets.add(socket);
    socket.once('close', () => {
      facts.delete(token);
      sockets.delete(socket);
    });
    injector.injectConnection(socket);
  });
  await new Promise<void>((resolve, reject) => {
    netServer.once('error', reject);
    netServer.listen({ path: options.path, backlog: options.backlog }, () => {
      netServer.off('error', reject);
      resolve();
    });
  });
  netServer.on('error', options.onError);
  let closing: Promise<void> | undefined;
  return {
    netServer,
    factsOf: (peer) => (peer.startsWith(options.peerPrefix) ? facts.get(peer) : undefined),
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        netServer.close(() => resolve());
        injector.destroy();
        for (const s of sockets) s.destroy();
      });
      return closing;
    },
  };
}
