/** Agent half of the x509pop node attestor: presents a certificate chain and proves possession of its key. */
import { sign, type KeyObject } from 'node:crypto';
import { SigilError } from '../../../src/common/errors.js';
import type { NodeAttestorAgent } from '../../../src/plugin/node-attestor.js';
import { digestFor, proofInput } from './protocol.js';

/** Options of the agent half: the node's certificate chain (DER, leaf first) and its private key. */
export interface X509PopAgentOptions {
  readonly certificates: readonly Uint8Array[];
  readonly privateKey: KeyObject;
}

/** Sends the chain, then signs the server's nonce. */
export class X509PopAgentAttestor implements NodeAttestorAgent {
  readonly name = 'x509pop';
  readonly #certs: readonly Uint8Array[];
  readonly #key: KeyObject;

  constructor(options: X509PopAgentOptions) {
    if (options.certificates.length === 0) {
      throw new SigilError('ERR_INVALID_ARGUMENT', 'x509pop needs at least one certificate', { reason: 'x509pop-no-certificate' });
    }
    this.#certs = options.certificates;
    this.#key = options.privateKey;
  }

  async payload(): Promise<Uint8Array> {
    return Buffer.from(JSON.stringify({ certificates: this.#certs.map((c) => Buffer.from(c).toString('base64')) }), 'utf8');
  }

  async respond(challenge: Uint8Array): Promise<Uint8Array> {
    let nonce: Buffer;
    try {
      const parsed = JSON.parse(Buffer.from(challenge).toString('utf8')) as { nonce?: unknown };
      if (typeof parsed.nonce !== 'string') throw new Error('nonce missing');
      nonce = Buffer.from(parsed.nonce, 'base64');
    } catch (err) {
      throw new SigilError('ERR_ATTESTATION_FAILED', 'x509pop challenge is malformed', { reason: 'x509pop-bad-challenge', cause: err });
    }
    const signature = sign(digestFor(this.#key), proofInput(nonce), this.#key);
    return Buffer.from(JSON.stringify({ signature: signature.toString('base64') }), 'utf8');
  }
}
