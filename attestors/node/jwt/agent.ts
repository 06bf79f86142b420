/**
 * Agent half of the jwt node attestor: presents the identity token its platform minted for it,
 * read from a file at every attestation (a CI step or a refresher keeps it fresh), held as a
 * Secret, never logged.
 */
import type { Secret } from '../../../src/common/secret.js';
import { SigilError } from '../../../src/common/errors.js';
import type { NodeAttestorAgent } from '../../../src/plugin/node-attestor.js';
import { ISSUER_NAME, JWT_ATTESTOR, encodePayload } from './protocol.js';

export class JwtAgentAttestor implements NodeAttestorAgent {
  readonly name = JWT_ATTESTOR;
  readonly #issuer: string;
  readonly #token: Secret<string>;

  constructor(issuer: string, token: Secret<string>) {
    if (!ISSUER_NAME.test(issuer)) {
      throw new SigilError('ERR_CONFIG_INVALID', `invalid jwt issuer name ${JSON.stringify(issuer)}: use [A-Za-z0-9._-]`, { reason: 'jwt-issuer-name' });
    }
    this.#issuer = issuer;
    this.#token = token;
  }

  async payload(): Promise<Uint8Array> {
    return encodePayload({ issuer: this.#issuer, token: this.#token.reveal() });
  }

  async respond(): Promise<Uint8Array> {
    throw new SigilError('ERR_ATTESTATION_FAILED', 'jwt does not answer challenges', { reason: 'unexpected-challenge' });
  }
}
