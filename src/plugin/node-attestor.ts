/**
 * Node attestor plugin interface. Each attestor has an agent half that produces evidence
 * and a server half that verifies it, possibly over several challenge–response rounds
 * on the AttestAgent stream.
 */
import type { Selector } from '../spiffe/selector.js';
import type { SpiffeId, TrustDomain } from '../spiffe/spiffe-id.js';

/** Agent half: produces the first payload and answers challenges. Payloads are opaque bytes. */
export interface NodeAttestorAgent {
  /** The attestor's name as configured, e.g. `join_token`, `x509pop`. */
  readonly name: string;
  /** The first evidence sent to the server. */
  payload(signal?: AbortSignal): Promise<Uint8Array>;
  /** Answers a server challenge (attestors without challenges throw). */
  respond(challenge: Uint8Array, signal?: AbortSignal): Promise<Uint8Array>;
}

/** What the server half learns about a node that passed attestation. */
export interface NodeAttestationResult {
  /** The agent's SPIFFE ID. */
  readonly agentId: SpiffeId;
  /** Node selectors, used to match node-alias entries. */
  readonly selectors: readonly Selector[];
  /** True when the evidence may attest the same agent again (false for one-time tokens). */
  readonly canReattest: boolean;
  /**
   * One-time evidence the server spends in the transaction that records the agent, never before:
   * an attestation whose caller gave up spends nothing. `spentBy` is '' while unspent, else the
   * SHA-256 (hex) of the SPKI of the agent key it admitted (only that key may finish again).
   */
  readonly spends?: { readonly joinTokenHash: string; readonly spentBy: string };
}

/** One round of the server half: either a challenge to send back, or the final result. */
export type NodeAttestationStep =
  | { readonly kind: 'challenge'; readonly challenge: Uint8Array }
  | { readonly kind: 'done'; readonly result: NodeAttestationResult };

/** An attestation in progress on the server; `next` is called with each agent message. */
export interface NodeAttestationSession {
  next(message: Uint8Array, signal?: AbortSignal): Promise<NodeAttestationStep>;
}

/** Server half: verifies evidence; throws SigilError ERR_ATTESTATION_FAILED on any refusal. */
export interface NodeAttestorServer {
  readonly name: string;
  /** Starts an attestation for the server's trust domain. */
  begin(trustDomain: TrustDomain): NodeAttestationSession;
}
