/**
 * Workload attestor plugin interface: turns kernel-reported process credentials into
 * selectors. Input comes only from the kernel (SO_PEERCRED, /proc), never the caller.
 */
import type { Selector } from '../spiffe/selector.js';

/** The caller's credentials as the kernel reported them on the accepted socket. */
export interface PeerCredentials {
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
}

/** Produces selectors for a process; an attestor that does not apply returns []. */
export interface WorkloadAttestor {
  /** Selector type it produces, e.g. `unix`. */
  readonly name: string;
  attest(peer: PeerCredentials, signal?: AbortSignal): Promise<Selector[]>;
}
