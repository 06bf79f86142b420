/**
 * The jwt node attestor's evidence on the wire: the agent sends `{ "issuer": <name>, "token":
 * <JWT> }`, where `name` is one of the issuers the server's `nodeAttestors.jwt.issuers` names
 * and the token is an OpenID identity token that issuer minted for the machine the agent runs
 * on (a CI job, a cloud VM), for an audience only Sigil accepts.
 */
import { tokenRefused } from '../common/jwt-key-set.js';
import { decodeTokenEvidence, encodeTokenEvidence, type TokenEvidenceFormat } from '../common/token-evidence.js';
import type { SigilError } from '../../../src/common/errors.js';

/** The attestor's name on the AttestAgent stream, in agent IDs and as the selector type. */
export const JWT_ATTESTOR = 'jwt';

/** Issuer names become an agent-ID path segment. */
export const ISSUER_NAME = /^[A-Za-z0-9._-]{1,128}$/;

/** What the agent sends. */
export interface JwtPayload {
  readonly issuer: string;
  readonly token: string;
}

/** A refusal with a `jwt-…` reason; never the token in the message. */
export function jwtRefused(what: string, message: string, cause?: unknown): SigilError {
  return tokenRefused('jwt', what, message, cause);
}

/** The evidence's wire spelling, shared with the other token attestors. */
export const JWT_EVIDENCE: TokenEvidenceFormat = { attestor: JWT_ATTESTOR, field: 'issuer', namePattern: ISSUER_NAME, reasonPrefix: 'jwt' };

export function encodePayload(p: JwtPayload): Uint8Array {
  return encodeTokenEvidence(JWT_EVIDENCE, p.issuer, p.token);
}

/** Decodes and checks the agent's evidence (`jwt-malformed` when it is not `{issuer, token}`). */
export function decodePayload(bytes: Uint8Array): JwtPayload {
  const { name, token } = decodeTokenEvidence(JWT_EVIDENCE, bytes);
  return { issuer: name, token };
}
