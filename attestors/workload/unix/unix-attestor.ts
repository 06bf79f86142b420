/**
 * The `unix` workload attestor: selectors from the kernel's view of the calling process, as
 * SPIRE's unix plugin produces them. uid and gid are the *effective* ids from
 * /proc/<pid>/status (SPIRE takes the second of real/effective/saved/fs); supplementary
 * groups come from its Groups line; path and sha256 only when `discoverWorkloadPath` is on,
 * since they need the agent to read /proc/<pid>/exe.
 */
import { SigilError, isSigilError } from '../../../src/common/errors.js';
import type { PeerCredentials, WorkloadAttestor } from '../../../src/plugin/workload-attestor.js';
import { makeSelector, type Selector } from '../../../src/spiffe/selector.js';
import { UserDatabase } from './user-database.js';

/** The process facts this attestor needs; the agent's ProcessInfo (src/agent/peer) provides them. */
export interface UnixProcessReader {
  /** Effective ids are read from here; throws a SigilError ERR_NOT_FOUND when the process is gone. */
  status(pid: number): { readonly uid: { readonly effective: number }; readonly gid: { readonly effective: number }; readonly groups: readonly number[] };
  exePath(pid: number): string;
  hashExecutable(pid: number, options: { readonly limitBytes: number }, signal?: AbortSignal): Promise<string>;
}

/** Configuration of the unix attestor (SPIRE's keys, camel-cased). */
export interface UnixAttestorConfig {
  /** Adds `unix:path` and `unix:sha256`; off by default. */
  readonly discoverWorkloadPath?: boolean;
  /** Largest executable hashed, in bytes: 0 means no limit, negative means never hash; 128 MiB by default. */
  readonly workloadSizeLimit?: number;
}

/** Dependencies of the unix attestor. */
export interface UnixAttestorOptions extends UnixAttestorConfig {
  readonly processes: UnixProcessReader;
  /** Where user and group names come from; /etc/passwd and /etc/group by default. */
  readonly users?: UserDatabase;
}

/** Default `workloadSizeLimit`: 128 MiB. */
export const DEFAULT_WORKLOAD_SIZE_LIMIT = 128 * 1024 * 1024;

/** Stops on abort with a coded error (the signal's own reason when it is one). */
function checkAbort(signal: AbortSignal | undefined): void {
  if (signal?.aborted !== true) return;
  if (signal.reason instanceof SigilError) throw signal.reason;
  throw new SigilError('ERR_CANCELLED', 'unix attestation was cancelled', { reason: 'cancelled', cause: signal.reason });
}

function unix(kind: string, value: string | number): Selector {
  return makeSelector('unix', `${kind}:${value}`);
}

/** Produces `unix:uid`, `unix:user`, `unix:gid`, `unix:group`, `unix:supplementary_gid`, `unix:supplementary_group`, and optionally `unix:path` and `unix:sha256`. */
export class UnixWorkloadAttestor implements WorkloadAttestor {
  readonly name = 'unix';
  readonly #processes: UnixProcessReader;
  readonly #users: UserDatabase;
  readonly #discoverPath: boolean;
  readonly #sizeLimit: number;

  constructor(options: UnixAttestorOptions) {
    const limit = options.workloadSizeLimit ?? DEFAULT_WORKLOAD_SIZE_LIMIT;
    if (!Number.isSafeInteger(limit)) {
      throw new SigilError('ERR_CONFIG_INVALID', `invalid workloadSizeLimit ${String(limit)}: use a whole number of bytes`, { reason: 'workload-size-limit' });
    }
    this.#processes = options.processes;
    this.#users = options.users ?? new UserDatabase();
    this.#discoverPath = options.discoverWorkloadPath ?? false;
    this.#sizeLimit = limit;
  }

  async attest(peer: PeerCredentials, signal?: AbortSignal): Promise<Selector[]> {
    checkAbort(signal);
    const status = this.#read(peer.pid, () => this.#processes.status(peer.pid));
    const uid = status.uid.effective;
    const gid = status.gid.effective;
    const [user, group, groupNames] = await Promise.all([
      this.#users.userName(uid),
      this.#users.groupName(gid),
      Promise.all(status.groups.map((g) => this.#users.groupName(g))),
    ]);
    const out: Selector[] = [unix('uid', uid)];
    if (user !== undefined) out.push(unix('user', user));
    out.push(unix('gid', gid));
    if (group !== undefined) out.push(unix('group', group));
    status.groups.forEach((g, i) => {
      out.push(unix('supplementary_gid', g));
      const name = groupNames[i];
      if (name !== undefined) out.push(unix('supplementary_group', name));
    });
    if (this.#discoverPath) {
      // Without the path or digest an entry that names them cannot match; failing the whole
      // attestation (as SPIRE does) keeps the caller from getting only part of its selectors.
      out.push(unix('path', this.#read(peer.pid, () => this.#processes.exePath(peer.pid))));
      if (this.#sizeLimit >= 0) {
        let digest: string;
        try {
          digest = await this.#processes.hashExecutable(peer.pid, { limitBytes: this.#sizeLimit }, signal);
        } catch (err) {
          throw this.#wrap(peer.pid, err);
        }
        out.push(unix('sha256', digest));
      }
    }
    checkAbort(signal);
    return out;
  }

  #read<T>(pid: number, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw this.#wrap(pid, err);
    }
  }

  #wrap(pid: number, err: unknown): SigilError {
    if (isSigilError(err, 'ERR_NOT_FOUND')) {
      return new SigilError('ERR_ATTESTATION_FAILED', `process ${pid} exited during attestation`, { reason: 'process-gone', cause: err });
    }
    const reason = isSigilError(err) && err.reason !== undefined ? err.reason : 'unix-attestation';
    return new SigilError('ERR_ATTESTATION_FAILED', `unix attestation of process ${pid} failed`, { reason, cause: err });
  }
}
