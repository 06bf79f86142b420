/**
 * The agent's Workload API endpoint: a Unix socket we listen on ourselves (to read each
 * connection's kernel credentials at accept and to raise the listen backlog), handing the
 * accepted sockets to grpc-js through a connection injector. Per-connection facts reach the
 * handlers through the socket's `remoteAddress`, which is what `call.getPeer()` returns.
 */
import { mkdirSync, chmodSync } from 'node:fs';
import { dirname } from 'node:path';
import { Server as GrpcServer, type ServiceDefinition } from '@grpc/grpc-js';
import { SigilError } from '../../common/errors.js';
import { systemClock, type Clock } from '../../common/clock.js';
import type { Logger } from '../../common/logger.js';
import { serviceDefinition, WORKLOAD_PROTO, WORKLOAD_SERVICE } from '../../grpc/proto.js';
import { checkSocketPath, clearStaleSocket, listenUnixForGrpc, type UnixGrpcListener } from '../../grpc/unix-socket-listener.js';
import type { WorkloadAttestor } from '../../plugin/workload-attestor.js';
import { getPeerCredentials, requirePeerCredentials } from '../peer/peer-credentials.js';
import { ProcfsProcessInfo, type ProcessInfo } from '../peer/process-info.js';
import { ProcessReadings } from '../peer/process-readings.js';
import type { WorkloadIdentitySource } from './identity-source.js';
import { createWorkloadApiService, MalformedRequest, WORKLOAD_API_LIMITS } from './workload-api-service.js';
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

const PEER_TOKEN_PREFIX = 'sigil-workload-connection-';

function socketError(reason: string, message: string, cause?: unknown): SigilError {
  return new SigilError('ERR_FAILED_PRECONDITION', message, { reason, cause });
}

/**
 * The Workload API service with request decoders that hand a malformed request to the
 * handler instead of throwing, and response encoders that remember their last outputs: a push
 * writes one message object to every stream of the same state, and encoding it once instead
 * of once per stream is most of a fan-out's cost. Keyed weakly by the message object, which
 * is never changed after it is written.
 */
function withWorkloadCodecs(definition: ServiceDefinition): ServiceDefinition {
  const out: Record<string, ServiceDefinition[string]> = {};
  for (const [name, method] of Object.entries(definition)) {
    const encode = method.responseSerialize;
    const decode = method.requestDeserialize;
    const encoded = new WeakMap<object, Buffer>();
    out[name] = {
      ...method,
      // A request that does not decode reaches the handler as such, which answers INVALID_ARGUMENT.
      requestDeserialize(bytes: Buffer): unknown {
        try {
          return decode(bytes);
        } catch (err) {
          return new MalformedRequest(err);
        }
      },
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

/** Creates the socket's folder (0755) if absent, and clears a stale socket file; refuses anything else at the path. */
async function prepareSocketPath(path: string): Promise<void> {
  checkSocketPath(path, 'socket');
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  await clearStaleSocket(path);
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

  // the service is built before the listener it reads connection facts from
  const bound: { listener?: UnixGrpcListener<ConnectionFacts> } = {};
  const service = createWorkloadApiService({
    attestors: options.attestors,
    identities: options.identities,
    readings: new ProcessReadings(processes),
    logger,
    clock,
    attestTimeoutMs: options.attestTimeoutMs ?? 30_000,
    allowUnauthenticatedVerifiers: options.allowUnauthenticatedVerifiers ?? false,
    factsOf: (peer) => bound.listener?.factsOf(peer),
  });
  // explicit rather than grpc-js's default, so the bound on what a workload can make us buffer is ours
  // channelz off: nothing reads it, and grpc-js counts every call and socket for it
  const grpcServer = new GrpcServer({ 'grpc.max_receive_message_length': WORKLOAD_API_LIMITS.requestBytes, 'grpc.enable_channelz': 0 });
  grpcServer.addService(withWorkloadCodecs(serviceDefinition(WORKLOAD_PROTO, WORKLOAD_SERVICE)), service.implementation);

  const listening = await listenUnixForGrpc<ConnectionFacts>({
    path: socketPath,
    backlog,
    grpcServer,
    peerPrefix: PEER_TOKEN_PREFIX,
    accept: (socket) => {
      try {
        // Taken at once: the later a pid is looked at, the likelier it names someone else.
        const cred = getPeerCredentials(socket);
        if (cred.pid <= 0) throw socketError('peer-pid-unknown', 'peer pid is not visible (other pid namespace?)');
        const startTime = processes.startTime(cred.pid);
        if (startTime === undefined) throw socketError('process-gone', `process ${cred.pid} exited before its connection was accepted`);
        logger.debug({ peerPid: cred.pid, peerUid: cred.uid }, 'workload connected');
        return Object.freeze({ pid: cred.pid, uid: cred.uid, gid: cred.gid, startTime });
      } catch (err) {
        logger.warn({ err }, 'workload connection refused');
        return undefined;
      }
    },
    onError: (err) => logger.error({ err }, 'workload api socket error'),
  });
  bound.listener = listening;
  const { netServer } = listening;
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
      if (closing === undefined) {
        service.closeAll();
        grpcServer.forceShutdown();
        closing = listening.close().then(() => logger.info({ socketPath }, 'workload api closed'));
      }
      return closing;
    },
  };
}
