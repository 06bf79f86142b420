/**
 * Join tokens: the secret an operator hands to a new node, and the non-secret token ID
 * that names the node. The agent's SPIFFE ID is derived from the ID, never the token
 * (SPIRE puts the token itself in the ID, so it appears in every log and listing):
 *
 *   spiffe://<trust-domain>/sigil/agent/join_token/<token-id>
 *
 * Only the SHA-256 of the token is stored.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Secret } from '../../../src/common/secret.js';
import type { SpiffeId, TrustDomain } from '../../../src/spiffe/spiffe-id.js';

/** The path prefix of agent IDs from this attestor (after the trust domain). */
export const JOIN_TOKEN_AGENT_PATH_PREFIX = '/sigil/agent/join_token/';

/** A freshly generated join token: the secret (shown once) and what is stored. */
export interface GeneratedJoinToken {
  readonly token: Secret<string>;
  readonly tokenId: string;
  readonly tokenHash: string;
  readonly expiresAt: number;
}

/** SHA-256 of a token, lowercase hex (the only form ever stored). */
export function hashJoinToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** Makes a new random token (256 bits) and its random, unrelated token ID. */
export function generateJoinToken(nowMs: number, ttlMs: number): GeneratedJoinToken {
  const token = randomBytes(32).toString('base64url');
  // the ID is independent random bytes, so knowing an agent's ID reveals nothing of the token
  const tokenId = randomBytes(12).toString('hex');
  return { token: new Secret(token), tokenId, tokenHash: hashJoinToken(token), expiresAt: nowMs + ttlMs };
}

/** The SPIFFE ID of an agent attested with the token of this ID. */
export function joinTokenAgentId(trustDomain: TrustDomain, tokenId: string): SpiffeId {
  return trustDomain.id('sigil', 'agent', 'join_token', tokenId);
}
