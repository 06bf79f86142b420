/**
 * Shapes of the sigil.agent.v1 messages as @grpc/proto-loader hands them to handlers
 * (keepCase, longs as strings, bytes as Buffers, defaults filled, oneof name set), and
 * converters from domain records. Only the agent API handlers use these.
 */
import type { RegistrationEntry } from '../../datastore/datastore.js';
import type { ParsedBundleRecord } from '../bundle-manager.js';

/** First message of AttestAgent. */
export interface AttestParamsMsg {
  attestor: string;
  payload: Buffer;
  csr: Buffer;
}

/** AttestAgentRequest. */
export interface AttestAgentRequestMsg {
  step?: 'params' | 'challenge_response';
  params?: AttestParamsMsg | null;
  challenge_response?: Buffer;
}

/** X509Svid on the wire. */
export interface X509SvidMsg {
  spiffe_id: string;
  cert_chain: Buffer[];
  serial: string;
  expires_at: number;
}

/** Bundle on the wire. */
export interface BundleMsg {
  trust_domain_id: string;
  document: Buffer;
  x509_authorities: Buffer[];
  sequence: number;
  refresh_hint_seconds: number;
}

/** Entry on the wire. */
export interface EntryMsg {
  id: string;
  spiffe_id: string;
  parent_id: string;
  selectors: { type: string; value: string }[];
  x509_svid_ttl_seconds: number;
  jwt_svid_ttl_seconds: number;
  dns_names: string[];
  federates_with: string[];
  admin: boolean;
  downstream: boolean;
  hint: string;
  revision: number;
  expires_at: number;
}

/** Per-item status. */
export interface StatusMsg {
  code: number;
  message: string;
  sigil_code: string;
}

/** Converts a stored bundle to its wire form. */
export function bundleToMsg({ record, bundle }: ParsedBundleRecord): BundleMsg {
  return {
    trust_domain_id: record.trustDomainId,
    document: Buffer.from(record.document, 'utf8'),
    x509_authorities: bundle.x509AuthoritiesDer().map((d) => Buffer.from(d.buffer, d.byteOffset, d.byteLength)),
    sequence: bundle.sequenceNumber ?? 0,
    refresh_hint_seconds: bundle.refreshHintSeconds ?? 0,
  };
}

/** Converts a registration entry to its wire form. */
export function entryToMsg(e: RegistrationEntry): EntryMsg {
  return {
    id: e.id,
    spiffe_id: e.spiffeId,
    parent_id: e.parentId,
    selectors: e.selectors.map((s) => ({ type: s.type, value: s.value })),
    x509_svid_ttl_seconds: e.x509SvidTtlSeconds,
    jwt_svid_ttl_seconds: e.jwtSvidTtlSeconds,
    dns_names: [...e.dnsNames],
    federates_with: [...e.federatesWith],
    admin: e.admin,
    downstream: e.downstream,
    hint: e.hint,
    revision: e.revision,
    expires_at: Math.floor(e.entryExpiresAt / 1000),
  };
}

/** Rough wire size of an entry, to keep pages far below the 4 MiB message limit. */
export function entrySizeEstimate(e: RegistrationEntry): number {
  let n = 64 + e.id.length + e.spiffeId.length + e.parentId.length + e.hint.length;
  for (const s of e.selectors) n += 8 + s.type.length + Buffer.byteLength(s.value);
  for (const d of e.dnsNames) n += 4 + d.length;
  for (const f of e.federatesWith) n += 4 + f.length;
  return n;
}
