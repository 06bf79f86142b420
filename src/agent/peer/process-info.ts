/**
 * What the kernel says about a process, read from /proc: start time (to detect a pid that
 * exited or was reused), real/effective uids and gids, supplementary groups, executable path
 * and digest. A small seam so tests and other platforms can stand in for /proc.
 */
import { createHash } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { SigilError } from '../../common/errors.js';

/** The four ids Linux keeps per process for users or for groups. */
export interface IdSet {
  readonly real: number;
  readonly effective: number;
  readonly saved: number;
  readonly filesystem: number;
}

/** The credential lines of /proc/<pid>/status. */
export interface ProcessStatus {
  readonly uid: IdSet;
  readonly gid: IdSet;
  /** Supplementary group ids, in the kernel's order. */
  readonly groups: readonly number[];
}

/** The fields of /proc/<pid>/stat Sigil uses. */
export interface ProcStat {
  readonly pid: number;
  /** The command name (at most 15 bytes, may hold spaces and parentheses). */
  readonly comm: string;
  readonly state: string;
  readonly ppid: number;
  /** Field 22: start time in clock ticks after boot; with the pid, it names one process. */
  readonly startTime: number;
}

/** Options of ProcessInfo.hashExecutable. */
export interface HashOptions {
  /** Refuse executables larger than this many bytes; 0 means no limit. */
  readonly limitBytes: number;
}

/** Reads process facts from the kernel. Sync where the answer must be taken at one instant. */
export interface ProcessInfo {
  /** Start time (clock ticks after boot) of `pid`, or undefined when no such process exists. */
  startTime(pid: number): number | undefined;
  /** Uids, gids and supplementary groups of `pid`; throws ERR_NOT_FOUND when the process is gone. */
  status(pid: number): ProcessStatus;
  /** Path of the executable of `pid` as the kernel reports it (may end in ` (deleted)`). */
  exePath(pid: number): string;
  /** Lowercase hex SHA-256 of the executable `pid` runs (the file it was started from, even if replaced since). */
  hashExecutable(pid: number, options: HashOptions, signal?: AbortSignal): Promise<string>;
}

/** Default size limit for hashing an executable: 128 MiB. */
export const DEFAULT_HASH_LIMIT_BYTES = 128 * 1024 * 1024;

function malformed(what: string): SigilError {
  return new SigilError('ERR_INTERNAL', `malformed ${what}`, { reason: 'proc-malformed' });
}

function parseId(text: string | undefined, what: string): number {
  if (text === undefined || !/^\d{1,10}$/.test(text)) throw malformed(what);
  const n = Number(text);
  if (n > 0xffffffff) throw malformed(what);
  return n;
}

/**
 * Parses /proc/<pid>/stat. The command name sits in parentheses and may itself contain
 * spaces and parentheses, so it spans from the first `(` to the *last* `)`; the numeric
 * fields follow that last `)`.
 */
export function parseProcStat(text: string): ProcStat {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open <= 0 || close < open) throw malformed('/proc stat: no command name');
  const pidText = text.slice(0, open).trim();
  if (!/^\d+$/.test(pidText)) throw malformed('/proc stat: pid');
  // Fields 3.. follow "<pid> (<comm>) "; field n is at index n-3.
  const rest = text.slice(close + 1).trim().split(/\s+/);
  const state = rest[0];
  const ppidText = rest[1];
  const startText = rest[22 - 3];
  if (state === undefined || !/^[A-Za-z]$/.test(state)) throw malformed('/proc stat: state');
  if (ppidText === undefined || !/^-?\d+$/.test(ppidText)) throw malformed('/proc stat: ppid');
  if (startText === undefined || !/^\d+$/.test(startText)) throw malformed('/proc stat: start time');
  const startTime = Number(startText);
  if (!Number.isSafeInteger(startTime)) throw malformed('/proc stat: start time');
  return Object.freeze({ pid: Number(pidText), comm: text.slice(open + 1, close), state, ppid: Number(ppidText), startTime });
}

function parseIdSet(value: string | undefined, what: string): IdSet {
  const parts = (value ?? '').trim().split(/\s+/);
  if (parts.length !== 4) throw malformed(`/proc status: ${what}`);
  const [real, effective, saved, filesystem] = parts.map((p) => parseId(p, `/proc status: ${what}`)) as [number, number, number, number];
  return Object.freeze({ real, effective, saved, filesystem });
}

/** Parses the Uid, Gid and Groups lines of /proc/<pid>/status. */
export function parseProcStatus(text: string): ProcessStatus {
  const fields = new Map<string, string>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) fields.set(line.slice(0, colon), line.slice(colon + 1));
  }
  if (!fields.has('Uid') || !fields.has('Gid')) throw malformed('/proc status: missing Uid or Gid');
  const groupsText = (fields.get('Groups') ?? '').trim();
  const groups = groupsText === '' ? [] : groupsText.split(/\s+/).map((g) => parseId(g, '/proc status: Groups'));
  return Object.freeze({ uid: parseIdSet(fields.get('Uid'), 'Uid'), gid: parseIdSet(fields.get('Gid'), 'Gid'), groups: Object.freeze(groups) });
}

/** Stops on abort with a coded error (the signal's own reason when it is one). */
function checkAbort(signal: AbortSignal | undefined): void {
  if (signal?.aborted !== true) return;
  if (signal.reason instanceof SigilError) throw signal.reason;
  throw new SigilError('ERR_CANCELLED', 'hashing the executable was cancelled', { reason: 'cancelled', cause: signal.reason });
}

function checkPid(pid: number): void {
  if (!Number.isSafeInteger(pid) || pid <= 0) {
    throw new SigilError('ERR_INVALID_ARGUMENT', `invalid pid ${pid}`, { reason: 'pid' });
  }
}

function isGone(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'ENOENT' || code === 'ESRCH';
}

function goneError(pid: number, cause: unknown): SigilError {
  return new SigilError('ERR_NOT_FOUND', `process ${pid} not found`, { reason: 'process-not-found', cause });
}

/** Options of ProcfsProcessInfo. */
export interface ProcfsOptions {
  /** Where procfs is mounted; `/proc` by default (a host's /proc seen from a container may differ). */
  readonly procRoot?: string;
  /** How many executable digests to remember, keyed by device, inode, size and times. */
  readonly hashCacheSize?: number;
}

/** ProcessInfo over a real procfs. */
export class ProcfsProcessInfo implements ProcessInfo {
  readonly #root: string;
  readonly #cacheSize: number;
  readonly #hashes = new Map<string, string>();

  constructor(options: ProcfsOptions = {}) {
    this.#root = options.procRoot ?? '/proc';
    this.#cacheSize = options.hashCacheSize ?? 64;
  }

  #path(pid: number, leaf: string): string {
    checkPid(pid);
    return join(this.#root, String(pid), leaf);
  }

  startTime(pid: number): number | undefined {
    let text: string;
    try {
      text = readFileSync(this.#path(pid, 'stat'), 'utf8');
    } catch (err) {
      if (isGone(err)) return undefined;
      throw err;
    }
    return parseProcStat(text).startTime;
  }

  status(pid: number): ProcessStatus {
    let text: string;
    try {
      text = readFileSync(this.#path(pid, 'status'), 'utf8');
    } catch (err) {
      if (isGone(err)) throw goneError(pid, err);
      throw err;
    }
    return parseProcStatus(text);
  }

  exePath(pid: number): string {
    try {
      return readlinkSync(this.#path(pid, 'exe'));
    } catch (err) {
      if (isGone(err)) throw goneError(pid, err);
      throw new SigilError('ERR_FAILED_PRECONDITION', `cannot read the executable path of process ${pid}`, { reason: 'exe-unreadable', cause: err });
    }
  }

  async hashExecutable(pid: number, options: HashOptions, signal?: AbortSignal): Promise<string> {
    checkAbort(signal);
    // Opening /proc/<pid>/exe reaches the very inode the process runs, even if its path was
    // replaced since; stat and read go through that one descriptor.
    let handle: FileHandle;
    try {
      handle = await open(this.#path(pid, 'exe'), 'r');
    } catch (err) {
      if (isGone(err)) throw goneError(pid, err);
      throw new SigilError('ERR_FAILED_PRECONDITION', `cannot open the executable of process ${pid}`, { reason: 'exe-unreadable', cause: err });
    }
    try {
      const st = await handle.stat({ bigint: true });
      if (options.limitBytes > 0 && st.size > BigInt(options.limitBytes)) {
        throw new SigilError('ERR_FAILED_PRECONDITION', `executable of process ${pid} is ${st.size} bytes, above the hash limit of ${options.limitBytes}`, {
          reason: 'executable-too-large',
        });
      }
      const key = `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
      const cached = this.#hashes.get(key);
      if (cached !== undefined) return cached;
      const hash = createHash('sha256');
      const buffer = Buffer.allocUnsafe(1 << 20);
      let total = 0;
      for (;;) {
        checkAbort(signal);
        const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
        if (bytesRead === 0) break;
        total += bytesRead;
        // The file may have grown since the stat: the limit holds for what is actually read.
        if (options.limitBytes > 0 && total > options.limitBytes) {
          throw new SigilError('ERR_FAILED_PRECONDITION', `executable of process ${pid} grew above the hash limit of ${options.limitBytes}`, {
            reason: 'executable-too-large',
          });
        }
        hash.update(buffer.subarray(0, bytesRead));
      }
      const digest = hash.digest('hex');
      if (this.#hashes.size >= this.#cacheSize) {
        const oldest = this.#hashes.keys().next().value;
        if (oldest !== undefined) this.#hashes.delete(oldest);
      }
      this.#hashes.set(key, digest);
      return digest;
    } finally {
      await handle.close();
    }
  }
}
