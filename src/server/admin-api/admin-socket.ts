/**
 * The admin API's Unix socket. We accept its connections on our own net.Server so that each
 * one's kernel credentials (SO_PEERCRED) are read at accept, then hand the socket to grpc-js
 * through a connection injector; handlers find the caller through `call.getPeer()`, which
 * returns the token we put in the socket's `remoteAddress`.
 *
 * Who may use the socket: whoever may write to it, and nobody else. The socket file is mode
 * 0770 (owner: the server's user; group: the group of the socket's folder or the server's
 * primary group), its folder is created 0770 when absent, and the server's default places it
 * in the 0700 data dir, which admits the server's own user (and root) only. To let
 * operators in, put the socket in a folder of its own whose group is the operators' group
 * (deploy/: /run/sigil-server, group sigil-server). Because the socket is briefly open with
 * the umask's mode between bind and chmod, every connection is also checked against the same
 * rule at accept: uid 0, the server's uid, or a member (primary or supplementary) of the
 * socket's group. Everything an admin call does is audited with the caller's uid and pid.
 */
import { chmodSync, lstatSync, mkdirSync, statSync, unlinkSync } from 'node:fs';
import { connect, createServer, type Server as NetServer, type Socket } from 'node:net';
import { dirname, isAbsolute } from 'node:path';
import { ServerCredentials, type ConnectionInjector, type Server as GrpcServer } from '@grpc/grpc-js';
import { SigilError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { getPeerCredentials, getPeerGroups, requirePeerCredentials, type SocketPeerCredentials } from '../../common/peer-credentials.js';

/** The mode of the admin socket and of the folder the server creates for it. */
export const ADMIN_SOCKET_MODE = 0o770;
/** sun_path holds 108 bytes with the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 107;
const PEER_PREFIX = 'sigil-admin-connection-';

/** The kernel's account of an admin caller. */
export type AdminCaller = SocketPeerCredentials;

/** A listening admin socket. */
export interface AdminSocket {
  readonly path: string;
  /** The caller behind `call.getPeer()`, or undefined for a peer this socket did not accept. */
  callerOf(peer: string): AdminCaller | undefined;
  /** Stops accepting, closes open connections and removes the socket file. */
  close(): Promise<void>;
}

function refused(reason: string, message: string, cause?: unknown): SigilError {
  return new SigilError('ERR_FAILED_PRECONDITION', message, { reason, cause });
}

function inUse(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

/** Checks the path, creates its folder (0770) if absent and removes a stale socket; never replaces anything else. */
async function preparePath(path: string, logger: Logger): Promise<void> {
  if (!isAbsolute(path)) throw new SigilError('ERR_CONFIG_INVALID', `admin socket path ${JSON.stringify(path)} is not absolute`, { reason: 'socket-path' });
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
    throw new SigilError('ERR_CONFIG_INVALID', `admin socket path ${JSON.stringify(path)} is longer than ${MAX_SOCKET_PATH_BYTES} bytes`, {
      reason: 'socket-path',
    });
  }
  const dir = dirname(path);
  const firstCreated = mkdirSync(dir, { recursive: true, mode: ADMIN_SOCKET_MODE });
  // mkdir's mode passes through the umask: set the folders we made to exactly 0770
  if (firstCreated !== undefined) {
    for (let d = dir; d.length >= firstCreated.length; d = dirname(d)) chmodSync(d, ADMIN_SOCKET_MODE);
  }
  const dirMode = statSync(dir).mode;
  // a folder others may write to (and not sticky) lets them swap our socket for theirs
  if ((dirMode & 0o002) !== 0 && (dirMode & 0o1000) === 0) {
    logger.warn({ dir, mode: (dirMode & 0o7777).toString(8) }, 'admin socket folder is writable by every user; give it mode 0770 or 0750');
  }
  let st;
  try {
    st = lstatSync(path);
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT') return;
    throw refused('socket-path', `cannot inspect admin socket path ${path}`, err);
  }
  if (!st.isSocket()) throw refused('not-a-socket', `${path} exists and is not a socket; refusing to replace it`);
  if (await inUse(path)) throw refused('socket-in-use', `${path} is in use by another process (another server running?)`);
  unlinkSync(path);
}

/** True when a peer may use a socket of mode 0770 owned by `ownerUid` with group `groupGid`. */
export function adminPeerAllowed(peer: SocketPeerCredentials, groups: () => readonly number[], ownerUid: number, groupGid: number): boolean {
  if (peer.uid === 0 || peer.uid === ownerUid || peer.gid === groupGid) return true;
  return groups().includes(groupGid);
}

/** Listens on `path` (mode 0770) and feeds accepted, permitted connections to `grpcServer`. */
export async function listenAdminSocket(options: { path: string; grpcServer: GrpcServer; logger: Logger; backlog?: number }): Promise<AdminSocket> {
  const { path, logger } = options;
  // without kernel credentials the audit could not say who changed what: refuse to start
  requirePeerCredentials();
  await preparePath(path, logger);

  const injector: ConnectionInjector = options.grpcServer.createConnectionInjector(ServerCredentials.createInsecure());
  const callers = new Map<string, AdminCaller>();
  const sockets = new Set<Socket>();
  let owner = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  let next = 0;

  const onConnection = (socket: Socket): void => {
    let caller: AdminCaller;
    try {
      caller = getPeerCredentials(socket);
      if (!adminPeerAllowed(caller, () => getPeerGroups(socket), owner.uid, owner.gid)) {
        logger.warn({ peerUid: caller.uid, peerGid: caller.gid, peerPid: caller.pid }, 'admin connection refused: caller may not use the admin socket');
        socket.destroy();
        return;
      }
    } catch (err) {
      logger.warn({ err }, 'admin connection refused: peer credentials unreadable');
      socket.destroy();
      return;
    }
    const token = `${PEER_PREFIX}${++next}`;
    Object.defineProperty(socket, 'remoteAddress', { value: token, configurable: true, enumerable: true });
    callers.set(token, caller);
    sockets.add(socket);
    socket.once('close', () => {
      callers.delete(token);
      sockets.delete(socket);
    });
    logger.debug({ peerUid: caller.uid, peerPid: caller.pid }, 'admin client connected');
    injector.injectConnection(socket);
  };

  const netServer: NetServer = createServer(onConnection);
  await new Promise<void>((resolve, reject) => {
    netServer.once('error', reject);
    netServer.listen({ path, backlog: options.backlog ?? 128 }, () => {
      netServer.off('error', reject);
      resolve();
    });
  });
  netServer.on('error', (err) => logger.error({ err }, 'admin socket error'));
  chmodSync(path, ADMIN_SOCKET_MODE);
  const st = statSync(path);
  owner = { uid: st.uid, gid: st.gid };

  let closing: Promise<void> | undefined;
  return {
    path,
    callerOf: (peer) => callers.get(peer),
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        netServer.close(() => resolve());
        injector.destroy();
        for (const s of sockets) s.destroy();
      }).then(() => {
        try {
          unlinkSync(path);
        } catch {
          // already gone
        }
      });
      return closing;
    },
  };
}
