/**
 * The `k8s` workload attestor: places the calling process in a pod and container through its
 * cgroups (kernel facts), then describes that pod from the kubelet's `/pods`. A process that is
 * in no pod gets no k8s selectors (its unix ones still apply). A container that has just started
 * may not be in the pod status yet: the pod list is read again every `pollRetryIntervalMs`, at
 * most `maxPollAttempts` times, before the attestor gives up (ERR_DEADLINE_EXCEEDED).
 *
 * The pod list is cached for half the poll interval and fetched once for every caller waiting
 * at the same time, so a burst of connecting workloads costs the kubelet one request.
 */
import { readFile } from 'node:fs/promises';
import { SigilError, isSigilError } from '../../../src/common/errors.js';
import { systemClock, type Clock } from '../../../src/common/clock.js';
import type { PeerCredentials, WorkloadAttestor } from '../../../src/plugin/workload-attestor.js';
import type { Selector } from '../../../src/spiffe/selector.js';
import { parseCgroupFile } from './cgroup-path.js';
import { KubeletClient, type KubeletConnection } from './kubelet-client.js';
import { findContainer, parsePodList, type Pod } from './pod-list.js';
import { containerSelectors, podSelectors } from './pod-selectors.js';

/** Configuration of the k8s attestor (SPIRE's keys, camel-cased). */
export interface K8sAttestorConfig {
  readonly kubelet: KubeletConnection;
  /** Attempts to find a container in the pod list before giving up; 60 by default. */
  readonly maxPollAttempts?: number;
  /** Wait between attempts; 500 ms by default. */
  readonly pollRetryIntervalMs?: number;
  /** How often token and CA files are re-read; 1 minute by default. */
  readonly reloadIntervalMs?: number;
  /** Only pod selectors, also while the container is not in the pod status yet. */
  readonly disableContainerSelectors?: boolean;
}

/** Dependencies of the k8s attestor. */
export interface K8sAttestorOptions extends K8sAttestorConfig {
  readonly clock?: Clock;
  /** Reads `/proc/<pid>/cgroup`; the real file by default (a seam for other proc mounts). */
  readonly readCgroup?: (pid: number) => Promise<string>;
}

/** SPIRE's defaults. */
export const K8S_DEFAULTS = { maxPollAttempts: 60, pollRetryIntervalMs: 500, reloadIntervalMs: 60_000 } as const;

async function readProcCgroup(pid: number): Promise<string> {
  try {
    return await readFile(`/proc/${pid}/cgroup`, 'utf8');
  } catch (err) {
    throw new SigilError('ERR_NOT_FOUND', `cannot read the cgroups of process ${pid}`, { reason: 'process-gone', cause: err });
  }
}

/** Produces the `k8s:` selectors of a process that runs in a pod of this node. */
export class K8sWorkloadAttestor implements WorkloadAttestor {
  readonly name = 'k8s';
  readonly #kubelet: KubeletClient;
  readonly #clock: Clock;
  readonly #readCgroup: (pid: number) => Promise<string>;
  readonly #maxAttempts: number;
  readonly #retryMs: number;
  readonly #podOnly: boolean;
  #cached: { until: number; pods: Map<string, Pod> } | undefined;
  #inflight: Promise<Map<string, Pod>> | undefined;

  constructor(options: K8sAttestorOptions) {
    const attempts = options.maxPollAttempts ?? K8S_DEFAULTS.maxPollAttempts;
    const retry = options.pollRetryIntervalMs ?? K8S_DEFAULTS.pollRetryIntervalMs;
    if (!Number.isSafeInteger(attempts) || attempts < 1) {
      throw new SigilError('ERR_CONFIG_INVALID', `invalid maxPollAttempts ${String(attempts)}: use a whole number from 1`, { reason: 'k8s-config' });
    }
    if (!Number.isFinite(retry) || retry <= 0) {
      throw new SigilError('ERR_CONFIG_INVALID', `invalid pollRetryInterval ${String(retry)}ms: use a positive duration`, { reason: 'k8s-config' });
    }
    this.#clock = options.clock ?? systemClock;
    this.#kubelet = new KubeletClient({ connection: options.kubelet, reloadIntervalMs: options.reloadIntervalMs ?? K8S_DEFAULTS.reloadIntervalMs, clock: this.#clock });
    this.#readCgroup = options.readCgroup ?? readProcCgroup;
    this.#maxAttempts = attempts;
    this.#retryMs = retry;
    this.#podOnly = options.disableContainerSelectors ?? false;
  }

  async attest(peer: PeerCredentials, signal?: AbortSignal): Promise<Selector[]> {
    const place = parseCgroupFile(await this.#readCgroup(peer.pid));
    if (place === undefined) return [];
    for (let attempt = 1; ; attempt++) {
      signal?.throwIfAborted();
      const pod = (await this.#pods(signal)).get(place.podUid);
      if (pod !== undefined) {
        const container = findContainer(pod, place.containerId);
        if (container !== undefined) return this.#podOnly ? podSelectors(pod) : [...podSelectors(pod), ...containerSelectors(container)];
        if (this.#podOnly) return podSelectors(pod);
      }
      if (attempt >= this.#maxAttempts) {
        throw new SigilError(
          'ERR_DEADLINE_EXCEEDED',
          `container ${place.containerId.slice(0, 12)} of pod ${place.podUid} is not in the kubelet's pod list after ${attempt} attempts`,
          { reason: pod === undefined ? 'pod-not-found' : 'container-not-found' },
        );
      }
      await this.#clock.sleep(this.#retryMs, signal);
    }
  }

  /** The node's pods, from the cache while it is fresh, else from one shared kubelet request. */
  async #pods(signal?: AbortSignal): Promise<Map<string, Pod>> {
    const now = this.#clock.nowMs();
    if (this.#cached !== undefined && now < this.#cached.until) return this.#cached.pods;
    if (this.#inflight === undefined) {
      // Not tied to one caller's signal: the answer serves every caller waiting for it.
      this.#inflight = this.#kubelet
        .fetchPods()
        .then((body) => {
          const pods = parsePodList(body);
          this.#cached = { until: this.#clock.nowMs() + this.#retryMs / 2, pods };
          return pods;
        })
        .finally(() => {
          this.#inflight = undefined;
        });
    }
    const inflight = this.#inflight;
    if (signal === undefined) return await inflight;
    return await new Promise<Map<string, Pod>>((resolve, reject) => {
      const onAbort = (): void => reject(isSigilError(signal.reason) ? signal.reason : new SigilError('ERR_CANCELLED', 'k8s attestation was cancelled', { reason: 'cancelled' }));
      signal.addEventListener('abort', onAbort, { once: true });
      inflight.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  }
}
