/**
 * Kernel-reported credentials of the process at the other end of an accepted Unix socket
 * (SO_PEERCRED), through the native/peercred addon. The Workload API trusts only these,
 * never anything the caller sends.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SigilError } from '../../common/errors.js';
import type { PeerCredentials } from '../../plugin/workload-attestor.js';

interface PeerCredAddon {
  getPeerCred(fd: number): { pid: number; uid: number; gid: number };
  getPeerGroups(fd: number): number[];
  /** Absent from builds made before it was added. */
  trimMalloc?(): boolean;
}

const ADDON_RELATIVE = join('native', 'peercred', 'build', 'Release', 'peercred.node');

let addon: PeerCredAddon | undefined;

/** Finds the built addon by walking up from this module (src/… or dist/src/…) to the package root. */
function addonPath(): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json'))) {
      const candidate = join(dir, ADDON_RELATIVE);
      if (existsSync(candidate)) return candidate;
    }
    dir = dirname(dir);
  }
  return undefined;
}

function loadAddon(): PeerCredAddon {
  if (addon !== undefined) return addon;
  const path = addonPath();
  if (path === undefined) {
    throw new SigilError('ERR_UNAVAILABLE', `peer credentials addon not built: expected ${ADDON_RELATIVE} (build it with npm run install, which runs node-gyp)`, {
      reason: 'peercred-addon-missing',
    });
  }
  const loaded: unknown = createRequire(import.meta.url)(path);
  const candidate = loaded as Partial<PeerCredAddon> | null;
  if (typeof candidate?.getPeerCred !== 'function' || typeof candidate.getPeerGroups !== 'function') {
    throw new SigilError('ERR_INTERNAL', `peer credentials addon at ${path} does not export getPeerCred`, { reason: 'peercred-addon-invalid' });
  }
  addon = candidate as PeerCredAddon;
  return addon;
}

/** The shape of net.Socket's internal handle that carries the descriptor (not in Node's typings). */
interface HandleWithFd {
  readonly fd?: unknown;
}

/** The file descriptor of an accepted socket; throws when the socket has no OS handle (closed or not a pipe). */
export function socketFd(socket: Socket): number {
  const handle = (socket as unknown as { _handle?: HandleWithFd | null })._handle;
  const fd = handle?.fd;
  if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0) {
    throw new SigilError('ERR_FAILED_PRECONDITION', 'socket has no file descriptor (closed or not a unix socket)', { reason: 'no-fd' });
  }
  return fd;
}

function syscallError(err: unknown, what: string): SigilError {
  const code = (err as { code?: unknown } | null)?.code;
  return new SigilError('ERR_FAILED_PRECONDITION', `${what} failed${typeof code === 'string' ? `: ${code}` : ''}`, {
    reason: 'peercred-syscall',
    cause: err,
  });
}

/** Reads SO_PEERCRED from a connected Unix socket: pid, uid and gid of the peer at connect time. */
export function getPeerCredentials(socket: Socket): PeerCredentials {
  const lib = loadAddon();
  const fd = socketFd(socket);
  let raw: { pid: number; uid: number; gid: number };
  try {
    raw = lib.getPeerCred(fd);
  } catch (err) {
    throw syscallError(err, 'reading peer credentials');
  }
  return Object.freeze({ pid: raw.pid, uid: raw.uid, gid: raw.gid });
}

/** Reads SO_PEERGROUPS (Linux ≥ 4.13): the peer's supplementary group IDs at connect time. */
export function getPeerGroups(socket: Socket): number[] {
  const lib = loadAddon();
  const fd = socketFd(socket);
  try {
    return lib.getPeerGroups(fd);
  } catch (err) {
    throw syscallError(err, 'reading peer groups');
  }
}

/** Throws the clear ERR_UNAVAILABLE (`peercred-addon-missing`) when the addon is not built; for startup checks. */
export function requirePeerCredentials(): void {
  loadAddon();
}

/** True when the peer credentials addon is built and loadable. */
export function peerCredentialsAvailable(): boolean {
  try {
    loadAddon();
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
    return loadAddon().trimMalloc?.() ?? false;
  } catch {
    return false;
  }
}
