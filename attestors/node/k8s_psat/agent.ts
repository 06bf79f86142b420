/**
 * Agent half of the k8s_psat node attestor: presents the projected service-account token the
 * kubelet keeps fresh in the agent's pod. The token is read at every attestation (the kubelet
 * rotates it), held as a Secret, and never logged.
 */
import type { Secret } from '../../../src/common/secret.js';
import { SigilError } from '../../../src/common/errors.js';
import type { NodeAttestorAgent } from '../../../src/plugin/node-attestor.js';
import { CLUSTER_NAME, K8S_PSAT, encodePayload } from './protocol.js';

/** Sends `{cluster, token}`; k8s_psat asks no challenge. */
export class K8sPsatAgentAttestor implements NodeAttestorAgent {
  readonly name = K8S_PSAT;
  readonly #cluster: string;
  readonly #token: Secret<string>;

  constructor(cluster: string, token: Secret<string>) {
    if (!CLUSTER_NAME.test(cluster)) {
      throw new SigilError('ERR_CONFIG_INVALID', `invalid k8s_psat cluster name ${JSON.stringify(cluster)}: use [A-Za-z0-9._-]`, { reason: 'psat-cluster' });
    }
    this.#cluster = cluster;
    this.#token = token;
  }

  async payload(): Promise<Uint8Array> {
    return encodePayload({ cluster: this.#cluster, token: this.#token.reveal() });
  }

  async respond(): Promise<Uint8Array> {
    throw new SigilError('ERR_ATTESTATION_FAILED', 'k8s_psat does not answer challenges', { reason: 'unexpected-challenge' });
  }
}
