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
import { chmodSync, mkdirSync, statSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Server as GrpcServer } from '@grpc/grpc-js';
import type { Logger } from '../../common/logger.js';
import { getPeerCredentials, getPeerGroups, requirePeerCredentials, type SocketPeerCredentials } from '../../common/peer-credentials.js';
import { checkSocketPath, clearStaleSocket, listenUnixForGrpc } from '../../grpc/unix-socket-listener.js';

/** The mode of the admin socket and of the folder the server creates for it. */
export const ADMIN_SOCKET_MODE = 0o770;
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

/** Checks the path, creates its folder (0770) if absent and removes a stale socket; never replaces anything else. */
async function preparePath(path: string, logger: Logger): Promise<void> {
  checkSocketPath(path, 'admin socket');
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
  await clearStaleSocket(path);
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

  let owner = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  const listener = await listenUnixForGrpc<AdminCaller>({
    path,
    backlog: options.backlog ?? 128,
    grpcServer: options.grpcServer,
    peerPrefix: PEER_PREFIX,
    accept: (socket) => {
      try {
        const caller = getPeerCredentials(socket);
        if (!adminPeerAllowed(caller, () => getPeerGroups(socket), owner.uid, owner.gid)) {
          logger.warn({ peerUid: caller.uid, peerGid: caller.gid, peerPid: caller.pid }, 'admin connection refused: caller may not use the admin socket');
          return undefined;
        }
        logger.debug({ peerUid: caller.uid, peerPid: caller.pid }, 'admin client connected');
        return caller;
      } catch (err) {
        logger.warn({ err }, 'admin connection refused: peer credentials unreadable');
        return undefined;
      }
    },
    onError: (err) => logger.error({ err }, 'admin socket error'),
  });
  chmodSync(path, ADMIN_SOCKET_MODE);
  const st = statSync(path);
  owner = { uid: st.uid, gid: st.gid };

  let closing: Promise<void> | undefined;
  return {
    path,
    callerOf: (peer) => listener.factsOf(peer),
    close: () => {
      closing ??= listener.close().then(() => {
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
