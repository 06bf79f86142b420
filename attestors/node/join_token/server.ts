/**
 * Server half of the join_token node attestor: the token is looked up by its hash and handed
 * back as evidence to spend; the server spends it in the transaction that records the agent
 * it admits (so an attestation whose caller gave up spends nothing) and binds it to that
 * agent's key. An expired token is refused. The agent ID comes from the token ID (see token.ts).
 */
import { SigilError } from '../../../src/common/errors.js';
import type { Clock } from '../../../src/common/clock.js';
import type { NodeAttestationSession, NodeAttestorServer, NodeAttestationStep } from '../../../src/plugin/node-attestor.js';
import type { TrustDomain } from '../../../src/spiffe/spiffe-id.js';
import { makeSelector } from '../../../src/spiffe/selector.js';
import { hashJoinToken, joinTokenAgentId } from './token.js';

/** Where the server half finds tokens (the datastore satisfies it). */
export interface JoinTokenStore {
  /** The token with this hash, spent or not; undefined when absent. */
  getJoinToken(tokenHash: string): Promise<{ readonly tokenId: string; readonly expiresAt: number; readonly spentBy: string } | undefined>;
}

const MAX_TOKEN_BYTES = 512;

function refused(reason: string, message: string): SigilError {
  return new SigilError('ERR_ATTESTATION_FAILED', message, { reason });
}

/** Verifies join tokens against the store; refusals are ERR_ATTESTATION_FAILED with reasons `join-token-unknown`, `join-token-expired`, `join-token-malformed`. */
export class JoinTokenServerAttestor implements NodeAttestorServer {
  readonly name = 'join_token';
  readonly #store: JoinTokenStore;
  readonly #clock: Clock;

  constructor(options: { readonly store: JoinTokenStore; readonly clock: Clock }) {
    this.#store = options.store;
    this.#clock = options.clock;
  }

  begin(trustDomain: TrustDomain): NodeAttestationSession {
    let used = false;
    return {
      next: async (message: Uint8Array): Promise<NodeAttestationStep> => {
        if (used) throw refused('unexpected-message', 'join_token attestation takes one message');
        used = true;
        if (message.length === 0 || message.length > MAX_TOKEN_BYTES) throw refused('join-token-malformed', 'join token is empty or too long');
        const token = Buffer.from(message).toString('utf8');
        const tokenHash = hashJoinToken(token);
        const record = await this.#store.getJoinToken(tokenHash);
        // one message for unknown and already-used tokens (the server checks the key that spent it)
        if (record === undefined) throw refused('join-token-unknown', 'join token is unknown or already used');
        if (record.expiresAt <= this.#clock.nowMs()) {
          throw refused('join-token-expired', `join token ${record.tokenId} has expired`);
        }
        return {
          kind: 'done',
          result: {
            agentId: joinTokenAgentId(trustDomain, record.tokenId),
            selectors: [makeSelector('join_token', `id:${record.tokenId}`)],
            canReattest: false,
            spends: { joinTokenHash: tokenHash, spentBy: record.spentBy },
          },
        };
      },
    };
  }
}
