/** Agent half of the join_token node attestor: sends the token, once, as the whole evidence. */
import { SigilError } from '../../../src/common/errors.js';
import type { Secret } from '../../../src/common/secret.js';
import type { NodeAttestorAgent } from '../../../src/plugin/node-attestor.js';

/** Produces the join token as evidence (UTF-8 bytes); there is no challenge. */
export class JoinTokenAgentAttestor implements NodeAttestorAgent {
  readonly name = 'join_token';
  readonly #token: Secret<string>;

  constructor(token: Secret<string>) {
    this.#token = token;
  }

  async payload(): Promise<Uint8Array> {
    return Buffer.from(this.#token.reveal(), 'utf8');
  }

  async respond(): Promise<Uint8Array> {
    throw new SigilError('ERR_ATTESTATION_FAILED', 'join_token attestation has no challenge', { reason: 'unexpected-challenge' });
  }
}
