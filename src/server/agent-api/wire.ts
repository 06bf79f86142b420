/**
 * Shapes of the sigil.agent.v1 messages as @grpc/proto-loader hands them to handlers
 * (keepCase, longs as strings, bytes as Buffers, defaults filled, oneof name set), and
 * converters from domain records. Only the agent API handlers use these.
 */
import { SigilError } from '../../common/errors.js';
import type { RegistrationEntry } from '../../datastore/datastore.js';
import type { EntryMessage } from '../../grpc/messages.js';
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
  /** Own bundle only: SKIs of tainted X.509 authorities. */
  tainted_x509_subject_key_ids: Buffer[];
  /** Own bundle only: kids of tainted JWT signing keys. */
  tainted_jwt_key_ids: string[];
}

/** Entry on the wire, as the server builds it (64-bit fields as numbers). */
export type EntryMsg = EntryMessage<number>;

/** Per-item status. */
export interface StatusMsg {
  code: number;
  message: string;
  sigil_code: string;
}

/** Converts a stored bundle to its wire form. */
export function bundleToMsg({ record, bundle, taintedX509SubjectKeyIds, taintedJwtKeyIds }: ParsedBundleRecord): BundleMsg {
  return {
    trust_domain_id: record.trustDomainId,
    document: Buffer.from(record.document, 'utf8'),
    x509_authorities: bundle.x509AuthoritiesDer().map((d) => Buffer.from(d.buffer, d.byteOffset, d.byteLength)),
    sequence: bundle.sequenceNumber ?? 0,
    refresh_hint_seconds: bundle.refreshHintSeconds ?? 0,
    tainted_x509_subject_key_ids: taintedX509SubjectKeyIds === undefined ? [] : [...taintedX509SubjectKeyIds],
    tainted_jwt_key_ids: taintedJwtKeyIds === undefined ? [] : [...taintedJwtKeyIds],
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

/** Limits on what one agent API request may carry; each far above legitimate use, far below the 4 MiB message limit's reach. */
export const AGENT_INPUT_LIMITS = {
  attestorNameBytes: 64,
  /** Node attestation evidence or one challenge response. */
  attestationMessageBytes: 64 * 1024,
  csrBytes: 16 * 1024,
  entryIdBytes: 256,
  audiences: 32,
  audienceBytes: 512,
} as const;

function hasControlChar(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

function invalid(reason: string, message: string): SigilError {
  return new SigilError('ERR_INVALID_ARGUMENT', message, { reason });
}

/** Checks a CSR's presence and size; `what` names it in the message. */
export function checkCsr(csr: Buffer | undefined, what: string): Buffer {
  if (csr === undefined || csr.length === 0) throw invalid('no-csr', `${what} carries no CSR`);
  if (csr.length > AGENT_INPUT_LIMITS.csrBytes) throw invalid('csr-too-large', `${what} CSR is ${csr.length} bytes, more than ${AGENT_INPUT_LIMITS.csrBytes}`);
  return csr;
}

/** Checks a node attestor name (as configured: lowercase letters, digits, underscore). */
export function checkAttestorName(name: string): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > AGENT_INPUT_LIMITS.attestorNameBytes || !/^[a-z0-9_]+$/.test(name)) {
    throw invalid('unknown-attestor', `node attestor name ${JSON.stringify(String(name).slice(0, 64))} is not valid`);
  }
  return name;
}

/** Checks one attestation message (evidence or challenge response) for size; its content is the attestor's to judge. */
export function checkAttestationMessage(bytes: Buffer | undefined, what: string): Buffer {
  const b = bytes ?? Buffer.alloc(0);
  if (b.length > AGENT_INPUT_LIMITS.attestationMessageBytes) {
    throw new SigilError('ERR_ATTESTATION_FAILED', `${what} is ${b.length} bytes, more than ${AGENT_INPUT_LIMITS.attestationMessageBytes}`, { reason: 'attestation-too-large' });
  }
  return b;
}

/** Checks an entry ID sent by an agent (the value is named in messages only when short and printable). */
export function checkEntryId(id: string): string {
  if (typeof id !== 'string' || id.length === 0 || Buffer.byteLength(id) > AGENT_INPUT_LIMITS.entryIdBytes || hasControlChar(id)) {
    throw invalid('invalid-entry-id', 'entry id must be 1 to 256 bytes without control characters');
  }
  return id;
}

/** Checks JWT-SVID audiences: 1 to 32 non-empty values of at most 512 bytes without control characters. */
export function checkAudience(audience: readonly string[]): string[] {
  if (audience.length === 0 || audience.length > AGENT_INPUT_LIMITS.audiences) {
    throw invalid('no-audience', `a JWT-SVID needs 1 to ${AGENT_INPUT_LIMITS.audiences} audiences, got ${audience.length}`);
  }
  for (const a of audience) {
    if (a.length === 0 || Buffer.byteLength(a) > AGENT_INPUT_LIMITS.audienceBytes || hasControlChar(a)) {
      throw invalid('invalid-audience', `each audience must be 1 to ${AGENT_INPUT_LIMITS.audienceBytes} bytes without control characters`);
    }
  }
  return [...audience];
}
