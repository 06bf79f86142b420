/**
 * Agent half of the k8s_psat node attestor: presents the projected service-account token the
 * kubelet keeps fresh in the agent's pod. The token is read at every attestation (the kubelet
 * rotates it), held as a Secret, and never logged.
 */
import type { Secret } from '../../../src/common/secret.js';
import { TokenEvidenceAgent } from '../common/token-evidence.js';
import { PSAT_EVIDENCE } from './protocol.js';

/** Sends `{cluster, token}`; k8s_psat asks no challenge. */
export class K8sPsatAgentAttestor extends TokenEvidenceAgent {
  constructor(cluster: string, token: Secret<string>) {
    super(PSAT_EVIDENCE, cluster, token);
  }
}
