/**
 * Which SVIDs a taint concerns. The server lists the subject key identifiers of tainted
 * X.509 authorities with its bundle (agent.proto's Bundle.tainted_x509_subject_key_ids);
 * an SVID whose chain holds a certificate with such a subject key identifier (an
 * upstream-signed intermediate) or authority key identifier (a leaf signed by it) must be
 * replaced before the operator revokes the authority. Parsing uses @peculiar/x509, which
 * is slow, so it runs only when the tainted set changes, never per mint.
 */
import { parseCertificate, x509 } from '../common/x509.js';
import { splitConcatenatedDer } from '../spiffe/der.js';

/** Upper bound of the delay before the re-mints a taint triggers, so a fleet does not hit the server in one instant. */
export const TAINT_JITTER_MAX_MS = 3000;

/** Hex IDs (lowercase) of the tainted authorities named in a bundle message. */
export function taintedIdsOf(keyIds: readonly Uint8Array[] | undefined): Set<string> {
  return new Set((keyIds ?? []).map((k) => Buffer.from(k).toString('hex')));
}

/**
 * True when some certificate of `chain` (DER certificates, or their concatenation) was
 * issued by, or is, a tainted authority; false for an unparsable chain.
 */
export function chainUsesTainted(chain: Uint8Array | readonly Uint8Array[], tainted: ReadonlySet<string>): boolean {
  if (tainted.size === 0) return false;
  let certs: readonly Uint8Array[];
  try {
    certs = chain instanceof Uint8Array ? splitConcatenatedDer(chain) : chain;
  } catch {
    return false;
  }
  for (const der of certs) {
    let cert: x509.X509Certificate;
    try {
      cert = parseCertificate(der);
    } catch {
      return false;
    }
    const ski = cert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
    const aki = cert.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId;
    if ((ski !== undefined && tainted.has(ski.toLowerCase())) || (aki !== undefined && tainted.has(aki.toLowerCase()))) return true;
  }
  return false;
}

/** One delay for all the re-mints of one taint on this agent: they stay one batch, yet agents spread out. */
export function taintJitterMs(random: () => number = Math.random): number {
  return Math.floor(random() * TAINT_JITTER_MAX_MS);
}
