/**
 * The messages of benchmark 10's transport floor, as they travel over IPC: real samples taken
 * from the Sigil server of the same run (its own bundle, one agent's entries, a real SVID chain),
 * so the bare server's answers have the sizes of Sigil's own. Bytes travel as base64.
 */
import type { TlsPair } from './tls-pair.js';

/** One wire Bundle with its bytes as base64. */
export interface BundleSample {
  readonly trust_domain_id: string;
  readonly document: string;
  readonly x509_authorities: readonly string[];
  readonly sequence: number;
  readonly refresh_hint_seconds: number;
}

/** What the bare server answers with. */
export interface FleetSamples {
  readonly bundle: BundleSample;
  /** One agent's entries in wire form (no bytes in them). */
  readonly entries: readonly Record<string, unknown>[];
  /** A real X509-SVID chain, DER as base64. */
  readonly svidChain: readonly string[];
  /** A real CSR, DER as base64 (what the bare agents send). */
  readonly csr: string;
}

/** Driver -> bare server. */
export type BareFleetServerCommand = { readonly type: 'serve'; readonly samples: FleetSamples } | { readonly type: 'stop' };
/** Bare server -> driver. */
export type BareFleetServerReply =
  | { readonly type: 'listening'; readonly tlsTarget: string; readonly mtlsTarget: string; readonly tls: TlsPair }
  | { readonly type: 'error'; readonly error: string };

/** Driver -> a bare agents process. */
export interface BareFleetAgentsCommand {
  readonly type: 'start';
  readonly tlsTarget: string;
  readonly mtlsTarget: string;
  readonly tls: TlsPair;
  readonly agents: number;
  readonly entryIds: readonly string[];
  readonly csr: string;
}
/** A bare agents process -> driver. */
export type BareFleetAgentsReport = { readonly type: 'done' } | { readonly type: 'error'; readonly error: string };

export function bundleFromSample(b: BundleSample): Record<string, unknown> {
  return {
    trust_domain_id: b.trust_domain_id,
    document: Buffer.from(b.document, 'base64'),
    x509_authorities: b.x509_authorities.map((a) => Buffer.from(a, 'base64')),
    sequence: b.sequence,
    refresh_hint_seconds: b.refresh_hint_seconds,
    tainted_x509_subject_key_ids: [],
    tainted_jwt_key_ids: [],
  };
}
