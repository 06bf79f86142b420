/**
 * Kernel-reported credentials of the process at the other end of an accepted Unix socket
 * (SO_PEERCRED, SO_PEERGROUPS), read through the native/peercred addon. Shared by every
 * Unix-socket API that must know its caller from the kernel, never from the caller: the
 * server's admin socket and the agent's Workload API.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SigilError } from './errors.js';

/** Who is at the other end of a Unix socket, as the kernel recorded it at connect time. */
export interface SocketPeerCredentials {
  /** 0 when the peer lives in another pid namespace. */
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
}

interface PeerCredAddon {
  getPeerCred(fd: number): { pid: number; uid: number; gid: number };
  getPeerGroups(fd: number): number[];
  /** Absent from builds made before it was added. */
  trimMalloc?(): boolean;
}

/** Where `npm install` (node-gyp) leaves the addon, relative to the package root. */
export const PEERCRED_ADDON_PATH = join('native', 'peercred', 'build', 'Release', 'peercred.node');

let loaded: PeerCredAddon | undefined;

function findAddon(): string | undefined {
  // this module runs from src/common or dist/src/common: walk up to the package root
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json'))) {
      const candidate = join(dir, PEERCRED_ADDON_PATH);
      if (existsSync(candidate)) return candidate;
    }
    dir = dirname(dir);
  }
  return undefined;
}

function addon(): PeerCredAddon {
  if (loaded !== undefined) return loaded;
  const path = findAddon();
  if (path === undefined) {
    throw new SigilError('ERR_UNAVAILABLE', `peer credentials addon not built: expected ${PEERCRED_ADDON_PATH} (npm install builds it with node-gyp)`, {
      reason: 'peercred-addon-missing',
    });
  }
  const mod = createRequire(import.meta.url)(path) as Partial<PeerCredAddon> | null;
  if (typeof mod?.getPeerCred !== 'function' || typeof mod.getPeerGroups !== 'function') {
    throw new SigilError('ERR_INTERNAL', `peer credentials addon at ${path} lacks getPeerCred or getPeerGroups`, { reason: 'peercred-addon-invalid' });
  }
  loaded = mod as PeerCredAddon;
  return loaded;
}

/** The file descriptor of an accepted socket; throws when the socket has no OS handle (closed or not a pipe). */
export function socketFd(socket: Socket): number {
  // net.Socket keeps its descriptor on the internal handle; Node's typings do not show it
  const fd = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0) {
    throw new SigilError('ERR_FAILED_PRECONDITION', 'socket has no file descriptor (closed or not a unix socket)', { reason: 'no-fd' });
  }
  return fd;
}

function syscallFailed(what: string, err: unknown): SigilError {
  const code = (err as { code?: unknown } | null)?.code;
  return new SigilError('ERR_FAILED_PRECONDITION', `${what} failed${typeof code === 'string' ? `: ${code}` : ''}`, { reason: 'peercred-syscall', cause: err });
}

/** SO_PEERCRED of an accepted Unix socket: pid, uid and gid of the peer at connect time. */
export function getPeerCredentials(socket: Socket): SocketPeerCredentials {
  const lib = addon();
  const fd = socketFd(socket);
  try {
    const { pid, uid, gid } = lib.getPeerCred(fd);
    return Object.freeze({ pid, uid, gid });
  } catch (err) {
    throw syscallFailed('reading peer credentials', err);
  }
}

/** SO_PEERGROUPS (Linux 4.13 and later) of an accepted Unix socket: the peer's supplementary groups. */
export function getPeerGroups(socket: Socket): number[] {
  const lib = addon();
  const fd = socketFd(socket);
  try {
    return lib.getPeerGroups(fd);
  } catch (err) {
    throw syscallFailed('reading peer groups', err);
  }
}

/** Throws ERR_UNAVAILABLE (`peercred-addon-missing`) when the addon cannot be loaded; for checks at start. */
export function requirePeerCredentials(): void {
  addon();
}

/** True when the peer credentials addon is built and loadable. */
export function peerCredentialsAvailable(): boolean {
  try {
    addon();
    return true;
  } catch {
    return false;
  }
}

/**
 * Returns the C heap's free pages to the kernel (glibc malloc_trim) through the same addon;
 * false when nothing was released or the addon or platform cannot do it. For after bursts of
 * key generation and minting, whose freed temporaries would otherwise stay in the agent's RSS.
 */
export function trimNativeHeap(): boolean {
  try {
    return addon().trimMalloc?.() ?? false;
  } catch {
    return false;
  }
}
