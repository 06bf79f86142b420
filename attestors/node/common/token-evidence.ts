/**
 * Evidence that is one bearer token and the name of who issued it, as k8s_psat
 * (`{cluster, token}`) and jwt (`{issuer, token}`) send it: the wire form, its bounded and
 * validated decoding, and the agent half that presents a token read from a file. The token is
 * held as a Secret and never appears in an error.
 */
import { z } from 'zod';
import type { Secret } from '../../../src/common/secret.js';
import { SigilError } from '../../../src/common/errors.js';
import type { NodeAttestorAgent } from '../../../src/plugin/node-attestor.js';
import { tokenRefused } from './jwt-key-set.js';

const MAX_PAYLOAD_BYTES = 64 * 1024;
const MAX_TOKEN_CHARS = 32 * 1024;

/** How one attestor spells its evidence: `{ <field>: <name>, token }`. */
export interface TokenEvidenceFormat {
  /** The attestor's name (on the wire, in messages). */
  readonly attestor: string;
  /** The member naming the issuer (`cluster`, `issuer`). */
  readonly field: string;
  /** What a valid name looks like; names become an agent-ID path segment. */
  readonly namePattern: RegExp;
  /** The prefix of refusal reasons (`psat`, `jwt`). */
  readonly reasonPrefix: string;
}

export function encodeTokenEvidence(format: TokenEvidenceFormat, name: string, token: string): Uint8Array {
  return Buffer.from(JSON.stringify({ [format.field]: name, token }), 'utf8');
}

/** Decodes and checks the evidence; refusals are `<prefix>-malformed`. */
export function decodeTokenEvidence(format: TokenEvidenceFormat, bytes: Uint8Array): { readonly name: string; readonly token: string } {
  const refuse = (message: string, cause?: unknown): SigilError => tokenRefused(format.reasonPrefix, 'malformed', message, cause);
  if (bytes.length > MAX_PAYLOAD_BYTES) throw refuse(`${format.attestor} payload is too large`);
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw refuse(`${format.attestor} payload is not valid JSON`, err);
  }
  const schema = z.strictObject({ [format.field]: z.string().regex(format.namePattern), token: z.string().min(1).max(MAX_TOKEN_CHARS) });
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw refuse(`${format.attestor} payload must be {${format.field}, token} with a valid ${format.field} name`);
  return { name: parsed.data[format.field] as string, token: parsed.data.token as string };
}

/** The agent half: sends `{<field>: name, token}`; such attestors ask no challenge. */
export class TokenEvidenceAgent implements NodeAttestorAgent {
  readonly name: string;
  readonly #format: TokenEvidenceFormat;
  readonly #issuerName: string;
  readonly #token: Secret<string>;

  constructor(format: TokenEvidenceFormat, issuerName: string, token: Secret<string>) {
    if (!format.namePattern.test(issuerName)) {
      throw new SigilError('ERR_CONFIG_INVALID', `invalid ${format.attestor} ${format.field} name ${JSON.stringify(issuerName)}: use [A-Za-z0-9._-]`, {
        reason: `${format.reasonPrefix}-${format.field}`,
      });
    }
    this.name = format.attestor;
    this.#format = format;
    this.#issuerName = issuerName;
    this.#token = token;
  }

  async payload(): Promise<Uint8Array> {
    return encodeTokenEvidence(this.#format, this.#issuerName, this.#token.reveal());
  }

  async respond(): Promise<Uint8Array> {
    throw new SigilError('ERR_ATTESTATION_FAILED', `${this.#format.attestor} does not answer challenges`, { reason: 'unexpected-challenge' });
  }
}
