/**
 * The agent's Workload API endpoint: a Unix socket we listen on ourselves (to read each
 * connection's kernel credentials at accept and to raise the listen backlog), handing the
 * accepted sockets to grpc-js through a connection injector. Per-connection facts reach the
 * handlers through the socket's `remoteAddress`, which is what `call.getPeer()` returns.
 */
import { lstatSync, mkdirSync, chmodSync, unlinkSync } from 'node:fs';
import { connect, createServer, type Server as NetServer, type Socket } from 'node:net';
import { dirname, isAbsolute } from 'node:path';
import { Server as GrpcServer, ServerCredentials, type ConnectionInjector, type ServiceDefinition } from '@grpc/grpc-js';
import { SigilError } from '../../common/errors.js';
import { systemClock, type Clock } from '../../common/clock.js';
import type { Logger } from '../../common/logger.js';
import { serviceDefinition, WORKLOAD_PROTO, WORKLOAD_SERVICE } from '../../grpc/proto.js';
import type { WorkloadAttestor } from '../../plugin/workload-attestor.js';
import { getPeerCredentials, requirePeerCredentials } from '../peer/peer-credentials.js';
import { ProcfsProcessInfo, type ProcessInfo } from '../peer/process-info.js';
import { ProcessReadings } from '../peer/process-readings.js';
import type { WorkloadIdentitySource } from './identity-source.js';
import { createWorkloadApiService, WORKLOAD_API_LIMITS } from './workload-api-service.js';
import type { ConnectionFacts } from './workload-caller.js';

/** Options of startWorkloadApiServer. */
export interface WorkloadApiServerOptions {
  /** Absolute path of the Unix socket, e.g. `/run/sigil/agent.sock`. */
  readonly socketPath: string;
  /** Workload attestors; the selectors of all of them are united. */
  readonly attestors: readonly WorkloadAttestor[];
  /** The agent's SVID cache. */
  readonly identities: WorkloadIdentitySource;
  readonly logger: Logger;
  readonly clock?: Clock;
  /** Reader of /proc; the real procfs by default. */
  readonly processInfo?: ProcessInfo;
  /** listen(2) backlog; 4096 by default, since Node's 511 drops bursts of connects. */
  readonly backlog?: number;
  /** Longest a workload attestation may take, in ms; 30 s by default. */
  readonly attestTimeoutMs?: number;
  /** Serve bundles and JWT validation to callers without an identity; off by default, as in SPIRE. */
  readonly allowUnauthenticatedVerifiers?: boolean;
}

/** A running Workload API endpoint. */
export interface WorkloadApiServer {
  /** The address clients put in SPIFFE_ENDPOINT_SOCKET: `unix:///abs/path`. */
  readonly address: string;
  /** Whether the socket accepts connections (false once closing). */
  readonly listening: boolean;
  /** Stops accepting, ends open streams with UNAVAILABLE, closes connections and removes the socket file. */
  close(): Promise<void>;
}

/** sun_path holds 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 107;
const PEER_TOKEN_PREFIX = 'sigil-workload-connection-';

function socketError(reason: string, message: string, cause?: unknown): SigilError {
  return new SigilError('ERR_FAILED_PRECONDITION', message, { reason, cause });
}

/**
 * The Workload API service with response encoders that remember their last outputs: a push
 * writes one message object to every stream of the same state, and encoding it once instead
 * of once per stream is most of a fan-out's cost. Keyed weakly by the message object, which
 * is never changed after it is written.
 */
function withSharedEncoding(definition: ServiceDefinition): ServiceDefinition {
  const out: Record<string, ServiceDefinition[string]> = {};
  for (const [name, method] of Object.entries(definition)) {
    const encode = method.responseSerialize;
    const encoded = new WeakMap<object, Buffer>();
    out[name] = {
      ...method,
      responseSerialize(value: unknown): Buffer {
        if (typeof value !== 'object' || value === null) return encode(value);
        let bytes = encoded.get(value);
        if (bytes === undefined) encoded.set(value, (bytes = encode(value)));
        return bytes;
      },
    };
  }
  return out;
}

/** True when something accepts connections on `path` (a live agent we must not displace). */
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

/** Creates the socket's folder (0755) if absent, and clears a stale socket file; refuses anything else at the path. */
async function prepareSocketPath(path: string): Promise<void> {
  if (!isAbsolute(path)) throw new SigilError('ERR_CONFIG_INVALID', `socket path ${JSON.stringify(path)} is not absolute`, { reason: 'socket-path' });
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
    throw new SigilError('ERR_CONFIG_INVALID', `socket path ${JSON.stringify(path)} is longer than ${MAX_SOCKET_PATH_BYTES} bytes`, { reason: 'socket-path' });
  }
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  let st;
  try {
    st = lstatSync(path);
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT') return;
    throw socketError('socket-path', `cannot inspect socket path ${path}`, err);
  }
  if (!st.isSocket()) throw socketError('not-a-socket', `${path} exists and is not a socket; refusing to replace it`);
  if (await socketInUse(path)) throw socketError('socket-in-use', `${path} is in use by another process`);
  unlinkSync(path);
}

/** Starts the Workload API on a Unix socket and resolves once it accepts connections. */
export async function startWorkloadApiServer(options: WorkloadApiServerOptions): Promise<WorkloadApiServer> {
  const { socketPath, logger } = options;
  const clock = options.clock ?? systemClock;
  const processes = options.processInfo ?? new ProcfsProcessInfo();
  const backlog = options.backlog ?? 4096;
  // Without kernel credentials no caller could be attested: fail at start, not per connection.
  requirePeerCredentials();
  await prepareSocketPath(socketPath);

  const connections = new Map<string, ConnectionFacts>();
  const sockets = new Set<Socket>();
  const service = createWorkloadApiService({
    attestors: options.attestors,
    identities: options.identities,
    readings: new ProcessReadings(processes),
    logger,
    clock,
    attestTimeoutMs: options.attestTimeoutMs ?? 30_000,
    allowUnauthenticatedVerifiers: options.allowUnauthenticatedVerifiers ?? false,
    factsOf: (peer) => (peer.startsWith(PEER_TOKEN_PREFIX) ? connections.get(peer) : undefined),
  });
  // explicit rather than grpc-js's default, so the bound on what a workload can make us buffer is ours
  const grpcServer = new GrpcServer({ 'grpc.max_receive_message_length': WORKLOAD_API_LIMITS.requestBytes });
  grpcServer.addService(withSharedEncoding(serviceDefinition(WORKLOAD_PROTO, WORKLOAD_SERVICE)), service.implementation);
  const injector: ConnectionInjector = grpcServer.createConnectionInjector(ServerCredentials.createInsecure());

  let nextConnection = 0;
  const onConnection = (socket: Socket): void => {
    let facts: ConnectionFacts;
    try {
      // Taken at once: the later a pid is looked at, the likelier it names someone else.
      const cred = getPeerCredentials(socket);
      if (cred.pid <= 0) throw socketError('peer-pid-unknown', 'peer pid is not visible (other pid namespace?)');
      const startTime = processes.startTime(cred.pid);
      if (startTime === undefined) throw socketError('process-gone', `process ${cred.pid} exited before its connection was accepted`);
      facts = Object.freeze({ pid: cred.pid, uid: cred.uid, gid: cred.gid, startTime });
    } catch (err) {
      logger.warn({ err }, 'workload connection refused');
      socket.destroy();
      return;
    }
    const token = `${PEER_TOKEN_PREFIX}${++nextConnection}`;
    Object.defineProperty(socket, 'remoteAddress', { value: token, configurable: true, enumerable: true });
    connections.set(token, facts);
    sockets.add(socket);
    socket.once('close', () => {
      connections.delete(token);
      sockets.delete(socket);
    });
    logger.debug({ peerPid: facts.pid, peerUid: facts.uid }, 'workload connected');
    injector.injectConnection(socket);
  };

  const netServer: NetServer = createServer(onConnection);
  await new Promise<void>((resolve, reject) => {
    netServer.once('error', reject);
    netServer.listen({ path: socketPath, backlog }, () => {
      netServer.off('error', reject);
      resolve();
    });
  });
  netServer.on('error', (err) => logger.error({ err }, 'workload api socket error'));
  // Any local process may connect: attestation, not file modes, decides what it gets.
  chmodSync(socketPath, 0o777);
  logger.info({ socketPath, backlog }, 'workload api listening');

  let closing: Promise<void> | undefined;
  return {
    address: `unix://${socketPath}`,
    get listening(): boolean {
      return closing === undefined && netServer.listening;
    },
    close(): Promise<void> {
      closing ??= new Promise<void>((resolve) => {
        netServer.close(() => resolve());
        service.closeAll();
        injector.destroy();
        grpcServer.forceShutdown();
        for (const s of sockets) s.destroy();
      }).then(() => logger.info({ socketPath }, 'workload api closed'));
      return closing;
    },
  };
}
