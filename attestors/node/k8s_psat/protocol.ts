/**
 * The k8s_psat evidence on the wire: the agent sends `{ "cluster": <name>, "token": <JWT> }`,
 * where the token is the projected service-account token Kubernetes mounts into the agent's
 * pod (bound to the pod, with an audience and a short life). What the server learns from it —
 * from the token's own claims or from a TokenReview — is a `PsatIdentity`.
 */
import { z } from 'zod';
import { SigilError } from '../../../src/common/errors.js';
import { decodeTokenEvidence, encodeTokenEvidence, type TokenEvidenceFormat } from '../common/token-evidence.js';

/** The attestor's name on the AttestAgent stream and in agent IDs. */
export const K8S_PSAT = 'k8s_psat';

/** Cluster names become an agent-ID path segment. */
export const CLUSTER_NAME = /^[A-Za-z0-9._-]{1,128}$/;

/** What the agent sends. */
export interface PsatPayload {
  readonly cluster: string;
  readonly token: string;
}

/** Who the token says the agent is. */
export interface PsatIdentity {
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly podName: string;
  readonly podUid: string;
  readonly nodeName: string;
  readonly nodeUid: string;
  /** Node labels, when the server read the node from the API (TokenReview mode). */
  readonly nodeLabels?: Readonly<Record<string, string>>;
}

/** A refusal: ERR_ATTESTATION_FAILED with a `psat-…` reason; never the token in the message. */
export function psatRefused(reason: string, message: string, cause?: unknown): SigilError {
  return new SigilError('ERR_ATTESTATION_FAILED', message, { reason, cause });
}

/** The evidence's wire spelling, shared with the other token attestors. */
export const PSAT_EVIDENCE: TokenEvidenceFormat = { attestor: K8S_PSAT, field: 'cluster', namePattern: CLUSTER_NAME, reasonPrefix: 'psat' };

/** Encodes the agent's evidence. */
export function encodePayload(p: PsatPayload): Uint8Array {
  return encodeTokenEvidence(PSAT_EVIDENCE, p.cluster, p.token);
}

/** Decodes and checks the agent's evidence (`psat-malformed` when it is not `{cluster, token}`). */
export function decodePayload(bytes: Uint8Array): PsatPayload {
  const { name, token } = decodeTokenEvidence(PSAT_EVIDENCE, bytes);
  return { cluster: name, token };
}

const named = z.object({ name: z.string().min(1), uid: z.string().min(1) });

/** The `kubernetes.io` claim of a projected service-account token (node since Kubernetes 1.30). */
export const kubernetesClaimSchema = z.object({
  namespace: z.string().min(1),
  serviceaccount: named,
  pod: named.optional(),
  node: named.optional(),
});
