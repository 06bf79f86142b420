/**
 * Agent half of the jwt node attestor: presents the identity token its platform minted for it,
 * read from a file at every attestation (a CI step or a refresher keeps it fresh), held as a
 * Secret, never logged.
 */
import type { Secret } from '../../../src/common/secret.js';
import { TokenEvidenceAgent } from '../common/token-evidence.js';
import { JWT_EVIDENCE } from './protocol.js';

/** Sends `{issuer, token}`; jwt asks no challenge. */
export class JwtAgentAttestor extends TokenEvidenceAgent {
  constructor(issuer: string, token: Secret<string>) {
    super(JWT_EVIDENCE, issuer, token);
  }
}
