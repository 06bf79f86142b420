/**
 * Wire format of the x509pop node attestor (both halves). All messages are JSON (UTF-8):
 *
 *   agent → server  payload:   { "certificates": ["<base64 DER leaf>", "<base64 DER intermediate>", …] }
 *   server → agent  challenge: { "nonce": "<base64 32 random bytes>" }
 *   agent → server  response:  { "signature": "<base64>" }
 *
 * The signature is over `sigil-x509pop-v1\0` + nonce, with the leaf's private key: ECDSA
 * (DER) with SHA-256 for P-256, SHA-384 for P-384, RSA PKCS#1 v1.5 with SHA-256.
 * The agent's SPIFFE ID is `spiffe://<td>/sigil/agent/x509pop/<sha256 of the leaf DER, hex>`.
 */
import type { KeyObject } from 'node:crypto';

/** Domain separation for the proof signature. */
export const X509POP_CONTEXT = Buffer.from('sigil-x509pop-v1\0', 'utf8');

/** The path prefix of agent IDs from this attestor (after the trust domain). */
export const X509POP_AGENT_PATH_PREFIX = '/sigil/agent/x509pop/';

/** The bytes that the proof signs. */
export function proofInput(nonce: Uint8Array): Buffer {
  return Buffer.concat([X509POP_CONTEXT, nonce]);
}

/** The digest used with a key (undefined lets Node choose, as for Ed25519). */
export function digestFor(key: KeyObject): string {
  const curve = key.asymmetricKeyDetails?.namedCurve;
  if (curve === 'secp384r1') return 'sha384';
  if (curve === 'secp521r1') return 'sha512';
  return 'sha256';
}
