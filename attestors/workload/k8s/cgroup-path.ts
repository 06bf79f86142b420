/**
 * Finds the pod UID and container ID of a process from its `/proc/<pid>/cgroup` file, written
 * from the documented formats rather than from samples (the spot where workload attestors break):
 *
 * - each line is `hierarchy-id:controllers:path` (cgroup v1 has many lines, v2 one `0::path`);
 * - the kubelet puts a pod under `kubepods[/<qos>]/pod<uid>` (cgroupfs driver) or
 *   `kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid>.slice` (systemd driver, where
 *   the dashes of the UID become underscores); guaranteed pods have no QoS level;
 * - the container runtime puts the container in the next level: its 64-hex ID alone (cgroupfs),
 *   or `<prefix>-<id>.scope` with the prefix `docker`, `crio` or `cri-containerd` (systemd);
 * - kind, k3s and other nested setups put all of that below other levels (`/docker/<id>/…`,
 *   `/kubelet.slice/kubelet-kubepods.slice/…`), so the pod level is searched anywhere in the path;
 * - levels below the container (a process that made its own sub-cgroup) are ignored.
 *
 * Static (mirror) pods have a 32-hex UID without dashes. CRI-O's `crio-conmon-<id>.scope` is the
 * container monitor, not the container, and names no workload. A process in a private cgroup
 * namespace sees `/` and cannot be placed: it gets no Kubernetes selectors.
 */
import { SigilError } from '../../../src/common/errors.js';

/** Where a process runs in Kubernetes, as its cgroups say. */
export interface PodContainer {
  /** The pod's UID in its canonical form (dashes, lowercase). */
  readonly podUid: string;
  /** The container's runtime ID (64 lowercase hex digits). */
  readonly containerId: string;
}

const UID_DASHED = /^[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}$/;
const UID_STATIC = /^[0-9a-f]{32}$/;
const CONTAINER_ID = /^[0-9a-f]{64}$/;
/** `pod<uid>` (cgroupfs) or `[kubelet-]kubepods[-<qos>]-pod<uid>.slice` (systemd, also nested). */
const POD_LEVEL = /^(?:[a-z]+-)*pod([0-9a-f_-]+?)(?:\.slice)?$/;
/** `<id>`, or `<runtime>-<id>.scope` with a runtime prefix the kubelet's runtimes use. */
const CONTAINER_LEVEL = /^(?:(docker|crio|cri-containerd|containerd)-)?([0-9a-f]{64})(?:\.scope)?$/;

function podUidOf(level: string): string | undefined {
  const m = POD_LEVEL.exec(level);
  if (m === null) return undefined;
  const raw = m[1] as string;
  if (UID_DASHED.test(raw)) return raw.replaceAll('_', '-');
  if (UID_STATIC.test(raw)) return raw;
  return undefined;
}

function containerIdOf(level: string | undefined): string | undefined {
  if (level === undefined) return undefined;
  const m = CONTAINER_LEVEL.exec(level);
  if (m === null) return undefined;
  // A bare ID and a `.scope` must come together with their forms: `docker-<id>` without
  // `.scope`, or `<id>.scope` without a runtime, is no level a runtime makes.
  const hasPrefix = m[1] !== undefined;
  const hasScope = level.endsWith('.scope');
  if (hasPrefix !== hasScope) return undefined;
  const id = m[2] as string;
  return CONTAINER_ID.test(id) ? id : undefined;
}

/** The pod and container one cgroup path names, or undefined when it names none. */
export function podContainerOfPath(path: string): PodContainer | undefined {
  const levels = path.split('/').filter((l) => l.length > 0);
  // The innermost pod level wins: in nested setups an outer `kubepods` belongs to the host.
  for (let i = levels.length - 1; i >= 0; i--) {
    const podUid = podUidOf(levels[i] as string);
    if (podUid === undefined) continue;
    const containerId = containerIdOf(levels[i + 1]);
    return containerId === undefined ? undefined : { podUid, containerId };
  }
  return undefined;
}

/**
 * The pod and container a `/proc/<pid>/cgroup` file places its process in, or undefined for a
 * process outside any pod (or one whose cgroups cannot be read as a pod's). Throws
 * ERR_ATTESTATION_FAILED (`cgroup-ambiguous`) when two hierarchies name different containers,
 * since either answer could be wrong.
 */
export function parseCgroupFile(text: string): PodContainer | undefined {
  let found: PodContainer | undefined;
  for (const line of text.split('\n')) {
    if (line.trim().length === 0) continue;
    // hierarchy-id:controller-list:path — the path itself may contain colons.
    const first = line.indexOf(':');
    const second = first === -1 ? -1 : line.indexOf(':', first + 1);
    if (second === -1) continue;
    const here = podContainerOfPath(line.slice(second + 1));
    if (here === undefined) continue;
    if (found !== undefined && (found.podUid !== here.podUid || found.containerId !== here.containerId)) {
      throw new SigilError('ERR_ATTESTATION_FAILED', 'the cgroups of the process name two different containers', { reason: 'cgroup-ambiguous' });
    }
    found = here;
  }
  return found;
}
