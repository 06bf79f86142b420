/**
 * Server half of the x509pop node attestor: the chain must lead to one of the configured
 * CAs (signatures, validity at the injected clock's time, CA flags of issuers), then a
 * fresh nonce proves the agent holds the leaf's key. Selectors describe the certificate:
 *   x509pop:subject:cn:<common name>
 *   x509pop:ca:fingerprint:<sha256 of the trusted CA certificate, hex>
 *   x509pop:san:dns:<name> / x509pop:san:uri:<uri> (one per SAN)
 *   x509pop:serialnumber:<leaf serial, lowercase hex>
 */
import { createHash, randomBytes, verify, X509Certificate } from 'node:crypto';
import { SigilError } from '../../../src/common/errors.js';
import type { Clock } from '../../../src/common/clock.js';
import type { NodeAttestationSession, NodeAttestationStep, NodeAttestorServer } from '../../../src/plugin/node-attestor.js';
import { makeSelector, type Selector } from '../../../src/spiffe/selector.js';
import type { TrustDomain } from '../../../src/spiffe/spiffe-id.js';
import { digestFor, proofInput } from './protocol.js';

/** Options of the server half. */
export interface X509PopServerOptions {
  /** Trusted CA certificates (DER or PEM X509Certificate inputs). */
  readonly trustedCas: readonly (Uint8Array | string)[];
  readonly clock: Clock;
}

const MAX_CHAIN = 8;
const MAX_PAYLOAD_BYTES = 64 * 1024;

function refused(reason: string, message: string, cause?: unknown): SigilError {
  return new SigilError('ERR_ATTESTATION_FAILED', message, { reason, cause });
}

function sha256Hex(der: Buffer): string {
  return createHash('sha256').update(der).digest('hex');
}

function parseJson<T>(bytes: Uint8Array, what: string): T {
  if (bytes.length > MAX_PAYLOAD_BYTES) throw refused('x509pop-malformed', `x509pop ${what} is too large`);
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw refused('x509pop-malformed', `x509pop ${what} is not valid JSON`, err);
  }
  // `null`, a number or a list is valid JSON too; reading fields off it must not throw a TypeError
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw refused('x509pop-malformed', `x509pop ${what} is not a JSON object`);
  return value as T;
}

function commonName(subject: string): string | undefined {
  for (const line of subject.split('\n')) if (line.startsWith('CN=')) return line.slice(3);
  return undefined;
}

/** Verifies x509pop evidence; refusals are ERR_ATTESTATION_FAILED with reasons `x509pop-untrusted`, `x509pop-expired`, `x509pop-bad-proof`, `x509pop-malformed`. */
export class X509PopServerAttestor implements NodeAttestorServer {
  readonly name = 'x509pop';
  readonly #roots: X509Certificate[];
  readonly #clock: Clock;

  constructor(options: X509PopServerOptions) {
    this.#roots = options.trustedCas.map((c) => new X509Certificate(typeof c === 'string' ? c : Buffer.from(c)));
    this.#clock = options.clock;
  }

  begin(trustDomain: TrustDomain): NodeAttestationSession {
    let state: { chain: X509Certificate[]; root: X509Certificate; nonce: Buffer } | 'done' | undefined;
    return {
      next: async (message: Uint8Array): Promise<NodeAttestationStep> => {
        if (state === undefined) {
          const payload = parseJson<{ certificates?: unknown }>(message, 'payload');
          if (!Array.isArray(payload.certificates) || payload.certificates.length === 0 || payload.certificates.length > MAX_CHAIN) {
            throw refused('x509pop-malformed', 'x509pop payload must hold 1 to 8 certificates');
          }
          let chain: X509Certificate[];
          try {
            chain = payload.certificates.map((c) => {
              if (typeof c !== 'string') throw new Error('certificate is not a string');
              return new X509Certificate(Buffer.from(c, 'base64'));
            });
          } catch (err) {
            throw refused('x509pop-malformed', 'x509pop payload holds an unreadable certificate', err);
          }
          const root = this.#verifyChain(chain);
          const nonce = randomBytes(32);
          state = { chain, root, nonce };
          return { kind: 'challenge', challenge: Buffer.from(JSON.stringify({ nonce: nonce.toString('base64') }), 'utf8') };
        }
        if (state === 'done') throw refused('unexpected-message', 'x509pop attestation is already complete');
        const { chain, root, nonce } = state;
        state = 'done';
        const response = parseJson<{ signature?: unknown }>(message, 'challenge response');
        if (typeof response.signature !== 'string') throw refused('x509pop-malformed', 'x509pop challenge response has no signature');
        const leaf = chain[0] as X509Certificate;
        let ok = false;
        try {
          ok = verify(digestFor(leaf.publicKey), proofInput(nonce), leaf.publicKey, Buffer.from(response.signature, 'base64'));
        } catch {
          ok = false;
        }
        if (!ok) throw refused('x509pop-bad-proof', 'x509pop proof of possession failed');
        const fingerprint = sha256Hex(leaf.raw);
        return {
          kind: 'done',
          result: { agentId: trustDomain.id('sigil', 'agent', 'x509pop', fingerprint), selectors: selectorsOf(leaf, root), canReattest: true },
        };
      },
    };
  }

  #verifyChain(chain: X509Certificate[]): X509Certificate {
    const now = this.#clock.now();
    for (const cert of chain) {
      if (new Date(cert.validFrom) > now || new Date(cert.validTo) <= now) {
        throw refused('x509pop-expired', `x509pop certificate ${cert.serialNumber.toLowerCase()} is not valid now`);
      }
    }
    const leaf = chain[0] as X509Certificate;
    if (leaf.ca) throw refused('x509pop-untrusted', 'x509pop leaf certificate must not be a CA');
    let current = leaf;
    const intermediates = chain.slice(1);
    for (let depth = 0; depth <= MAX_CHAIN; depth++) {
      const root = this.#roots.find((r) => current.checkIssued(r) && current.verify(r.publicKey));
      if (root !== undefined) {
        if (new Date(root.validFrom) > now || new Date(root.validTo) <= now) {
          throw refused('x509pop-expired', 'x509pop trusted CA certificate is not valid now');
        }
        return root;
      }
      const next = intermediates.find((c) => c.ca && current.checkIssued(c) && current.verify(c.publicKey));
      if (next === undefined) break;
      current = next;
    }
    throw refused('x509pop-untrusted', 'x509pop certificate does not chain to a trusted CA');
  }
}

function selectorsOf(leaf: X509Certificate, root: X509Certificate): Selector[] {
  const out: Selector[] = [];
  const cn = commonName(leaf.subject);
  if (cn !== undefined && cn.length > 0) out.push(makeSelector('x509pop', `subject:cn:${cn}`));
  out.push(makeSelector('x509pop', `ca:fingerprint:${sha256Hex(root.raw)}`));
  for (const part of (leaf.subjectAltName ?? '').split(', ')) {
    if (part.startsWith('DNS:')) out.push(makeSelector('x509pop', `san:dns:${part.slice(4)}`));
    else if (part.startsWith('URI:')) out.push(makeSelector('x509pop', `san:uri:${part.slice(4)}`));
  }
  out.push(makeSelector('x509pop', `serialnumber:${leaf.serialNumber.toLowerCase()}`));
  return out;
}
