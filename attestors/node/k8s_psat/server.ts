/**
 * Server half of the k8s_psat node attestor: an agent proves it runs in a pod of a known
 * cluster with a projected service-account token. The token is checked for the cluster (keys,
 * issuer, audience, expiry, pod and node binding — see token-verifiers.ts), its service account
 * must be on the cluster's allow list, and the agent becomes
 * `spiffe://<td>/sigil/agent/k8s_psat/<cluster>/<node-uid>`: one agent identity per node, so a
 * restarted agent pod on the same node is the same agent. Selectors:
 *   k8s_psat:cluster:<name>, k8s_psat:agent_ns:<ns>, k8s_psat:agent_sa:<sa>,
 *   k8s_psat:agent_pod_name:<name>, k8s_psat:agent_pod_uid:<uid>,
 *   k8s_psat:agent_node_name:<name>, k8s_psat:agent_node_uid:<uid>,
 *   k8s_psat:agent_node_label:<key>:<value> (TokenReview mode with readNode)
 * Node-alias entries with `k8s_psat:cluster:<name>` cover every node of a cluster.
 */
import type { Clock } from '../../../src/common/clock.js';
import type { NodeAttestationSession, NodeAttestationStep, NodeAttestorServer } from '../../../src/plugin/node-attestor.js';
import { makeSelector, type Selector } from '../../../src/spiffe/selector.js';
import type { TrustDomain } from '../../../src/spiffe/spiffe-id.js';
import { K8S_PSAT, decodePayload, psatRefused, type PsatIdentity } from './protocol.js';
import { tokenVerifierFor, type PsatKeySource, type PsatTokenVerifier } from './token-verifiers.js';

/** One cluster whose agents may attest. */
export interface PsatClusterConfig {
  /** `namespace:serviceaccount` pairs whose tokens may attest an agent. */
  readonly serviceAccountAllowList: readonly string[];
  /** Audiences the token must carry one of. */
  readonly audience: readonly string[];
  readonly keys: PsatKeySource;
}

/** Options of the server half. */
export interface K8sPsatServerOptions {
  readonly clusters: Readonly<Record<string, PsatClusterConfig>>;
  readonly clock: Clock;
}

const SEGMENT = /^[A-Za-z0-9._-]+$/;

function selectorsOf(cluster: string, id: PsatIdentity): Selector[] {
  const s = (value: string): Selector => makeSelector(K8S_PSAT, value);
  const out = [
    s(`cluster:${cluster}`),
    s(`agent_ns:${id.namespace}`),
    s(`agent_sa:${id.serviceAccount}`),
    s(`agent_pod_name:${id.podName}`),
    s(`agent_pod_uid:${id.podUid}`),
    s(`agent_node_name:${id.nodeName}`),
    s(`agent_node_uid:${id.nodeUid}`),
  ];
  for (const [k, v] of Object.entries(id.nodeLabels ?? {})) out.push(s(`agent_node_label:${k}:${v}`));
  return out;
}

/** Verifies k8s_psat evidence; refusals are ERR_ATTESTATION_FAILED with `psat-…` reasons. */
export class K8sPsatServerAttestor implements NodeAttestorServer {
  readonly name = K8S_PSAT;
  readonly #clusters: Map<string, { config: PsatClusterConfig; verifier: PsatTokenVerifier; allowed: ReadonlySet<string> }>;

  constructor(options: K8sPsatServerOptions) {
    this.#clusters = new Map(
      Object.entries(options.clusters).map(([name, config]) => [name, { config, verifier: tokenVerifierFor(config.keys, options.clock), allowed: new Set(config.serviceAccountAllowList) }]),
    );
  }

  begin(trustDomain: TrustDomain): NodeAttestationSession {
    let done = false;
    return {
      next: async (message: Uint8Array, signal?: AbortSignal): Promise<NodeAttestationStep> => {
        if (done) throw psatRefused('unexpected-message', 'k8s_psat attestation is already complete');
        done = true;
        const payload = decodePayload(message);
        const cluster = this.#clusters.get(payload.cluster);
        if (cluster === undefined) throw psatRefused('psat-unknown-cluster', `cluster ${payload.cluster} is not configured for k8s_psat`);
        const id = await cluster.verifier.verify(payload.token, cluster.config.audience, signal);
        if (!cluster.allowed.has(`${id.namespace}:${id.serviceAccount}`)) {
          throw psatRefused('psat-sa-not-allowed', `service account ${id.namespace}:${id.serviceAccount} may not attest agents of cluster ${payload.cluster}`);
        }
        if (!SEGMENT.test(id.nodeUid)) throw psatRefused('psat-claims', 'the node UID is not usable in an agent ID');
        return {
          kind: 'done',
          result: { agentId: trustDomain.id('sigil', 'agent', K8S_PSAT, payload.cluster, id.nodeUid), selectors: selectorsOf(payload.cluster, id), canReattest: true },
        };
      },
    };
  }
}
