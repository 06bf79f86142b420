/**
 * Input rules every Datastore implementation enforces before it writes, so the SQLite and
 * PostgreSQL stores reject exactly the same records with the same code and reason.
 * Failures are ERR_INVALID_ARGUMENT; `reason` names the field.
 */
import { createHash } from 'node:crypto';
import { SigilError } from '../common/errors.js';
import { SpiffeId, spiffeIdReason } from '../spiffe/spiffe-id.js';
import { makeSelector, normalizeSelectors, type Selector } from '../spiffe/selector.js';
import type { AttestedNode, FederationRelationshipFields, JoinTokenRecord, NewRegistrationEntry, RegistrationEntry } from './datastore.js';

/** Custom entry IDs: safe in URLs, file names and logs. */
const ENTRY_ID_RE = /^[A-Za-z0-9._~-]{1,255}$/;
const TOKEN_ID_RE = /^[A-Za-z0-9._~-]{1,255}$/;
const TOKEN_HASH_RE = /^[0-9a-f]{64}$/;
const DNS_NAME_RE = /^[A-Za-z0-9*_.-]{1,253}$/;
const MAX_HINT_BYTES = 1024;
const MAX_ATTESTATION_TYPE = 64;

function invalid(reason: string, message: string, cause?: unknown): SigilError {
  return new SigilError('ERR_INVALID_ARGUMENT', message, cause === undefined ? { reason } : { reason, cause });
}

function quote(s: unknown): string {
  const text = typeof s === 'string' ? s : String(s);
  return JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text);
}

/** An entry's fields after validation, with selectors normalised and their set fingerprinted. */
export interface ValidEntryFields {
  readonly spiffeId: string;
  readonly parentId: string;
  readonly selectors: Selector[];
  /** SHA-256 (hex) of the canonical selector set: equal sets, equal hashes. */
  readonly selectorsHash: string;
  readonly x509SvidTtlSeconds: number;
  readonly jwtSvidTtlSeconds: number;
  readonly dnsNames: string[];
  readonly federatesWith: string[];
  readonly admin: boolean;
  readonly downstream: boolean;
  readonly hint: string;
  readonly entryExpiresAt: number;
}

/** Validates an entry ID (assigned or caller-chosen); throws reason `invalid-entry-id`. */
export function validateEntryId(id: unknown): string {
  if (typeof id !== 'string' || !ENTRY_ID_RE.test(id)) {
    throw invalid('invalid-entry-id', `invalid entry id ${quote(id)}: use 1 to 255 of [A-Za-z0-9._~-]`);
  }
  return id;
}

/** Parses a SPIFFE ID field; throws ERR_INVALID_ARGUMENT with `reason` and the parse error as cause. */
export function validateSpiffeIdField(value: unknown, reason: string, field: string): string {
  if (typeof value !== 'string') throw invalid(reason, `${field} must be a string`);
  try {
    return SpiffeId.parse(value).toString();
  } catch (err) {
    throw invalid(reason, `invalid ${field} ${quote(value)}: ${spiffeIdReason(err)}`, err);
  }
}

/** Validates a trust domain ID (`spiffe://example.org`, no path). */
export function validateTrustDomainId(value: unknown, reason = 'invalid-trust-domain-id'): string {
  const id = validateSpiffeIdField(value, reason, 'trust domain id');
  if (!SpiffeId.parse(id).isTrustDomainId) throw invalid(reason, `trust domain id ${quote(id)} must not have a path`);
  return id;
}

/** A server ID: 1-64 of `[a-z0-9._-]` starting with a letter or digit, or '' (the legacy owner). */
export const SERVER_ID_PATTERN = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/** Validates a server ID (reason `invalid-server-id`). */
export function validateServerId(value: unknown): string {
  if (typeof value !== 'string' || (value !== '' && !SERVER_ID_PATTERN.test(value))) {
    throw invalid('invalid-server-id', `server id ${typeof value === 'string' ? quote(value) : 'of the wrong type'} must be 1-64 of [a-z0-9._-] starting with a letter or digit`);
  }
  return value;
}

/** Validates and normalises selectors; `requireOne` rejects an empty list with reason `no-selectors`. */
export function validateSelectors(selectors: unknown, requireOne: boolean): Selector[] {
  if (!Array.isArray(selectors)) throw invalid('invalid-selectors', 'selectors must be a list');
  const checked = selectors.map((s: unknown) => {
    const { type, value } = (s ?? {}) as { type?: unknown; value?: unknown };
    return makeSelector(type as string, value as string);
  });
  if (requireOne && checked.length === 0) throw invalid('no-selectors', 'at least one selector is required');
  return normalizeSelectors(checked);
}

/** The fingerprint of a normalised selector set, used for duplicate detection and exact match. */
export function selectorsHash(normalized: readonly Selector[]): string {
  return createHash('sha256')
    .update(JSON.stringify(normalized.map((s) => [s.type, s.value])))
    .digest('hex');
}

function nonNegativeInt(value: unknown, reason: string, field: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw invalid(reason, `${field} must be a non-negative integer, got ${quote(value)}`);
  }
  return value;
}

function bool(value: unknown, field: string): boolean {
  if (typeof value !== 'boolean') throw invalid('invalid-flag', `${field} must be a boolean`);
  return value;
}

function hasControlChar(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

/** Validates the caller-supplied fields of an entry (not its id, revision or createdAt). */
export function validateEntryFields(entry: NewRegistrationEntry | Omit<RegistrationEntry, 'revision' | 'createdAt'>): ValidEntryFields {
  if (entry === null || typeof entry !== 'object') throw invalid('invalid-entry', 'entry must be an object');
  const spiffeId = validateSpiffeIdField(entry.spiffeId, 'invalid-spiffe-id', 'spiffe id');
  const parentId = validateSpiffeIdField(entry.parentId, 'invalid-parent-id', 'parent id');
  const selectors = validateSelectors(entry.selectors, true);
  const x509SvidTtlSeconds = nonNegativeInt(entry.x509SvidTtlSeconds, 'invalid-ttl', 'x509 svid ttl');
  const jwtSvidTtlSeconds = nonNegativeInt(entry.jwtSvidTtlSeconds, 'invalid-ttl', 'jwt svid ttl');
  const entryExpiresAt = nonNegativeInt(entry.entryExpiresAt, 'invalid-expiry', 'entry expiry');
  if (!Array.isArray(entry.dnsNames)) throw invalid('invalid-dns-name', 'dns names must be a list');
  // Order is kept: the first DNS name becomes the X.509-SVID subject's common name.
  const dnsNames: string[] = [];
  for (const name of entry.dnsNames as unknown[]) {
    if (typeof name !== 'string' || !DNS_NAME_RE.test(name)) throw invalid('invalid-dns-name', `invalid dns name ${quote(name)}`);
    if (!dnsNames.includes(name)) dnsNames.push(name);
  }
  if (!Array.isArray(entry.federatesWith)) throw invalid('invalid-federates-with', 'federates with must be a list');
  const federatesWith = [...new Set((entry.federatesWith as unknown[]).map((td) => validateTrustDomainId(td, 'invalid-federates-with')))].sort();
  const admin = bool(entry.admin, 'admin');
  const downstream = bool(entry.downstream, 'downstream');
  if (typeof entry.hint !== 'string' || Buffer.byteLength(entry.hint, 'utf8') > MAX_HINT_BYTES || hasControlChar(entry.hint)) {
    throw invalid('invalid-hint', `hint must be a string of at most ${MAX_HINT_BYTES} bytes without control characters`);
  }
  return {
    spiffeId,
    parentId,
    selectors,
    selectorsHash: selectorsHash(selectors),
    x509SvidTtlSeconds,
    jwtSvidTtlSeconds,
    dnsNames,
    federatesWith,
    admin,
    downstream,
    hint: entry.hint,
    entryExpiresAt,
  };
}

/** An attested node's fields after validation. */
export type ValidNodeFields = Omit<AttestedNode, 'createdAt' | 'updatedAt' | 'selectors'> & { readonly selectors: Selector[] };

/** Validates an attested node (its selectors may be empty). */
export function validateNode(node: Omit<AttestedNode, 'createdAt' | 'updatedAt'>): ValidNodeFields {
  if (node === null || typeof node !== 'object') throw invalid('invalid-node', 'node must be an object');
  const spiffeId = validateSpiffeIdField(node.spiffeId, 'invalid-spiffe-id', 'agent spiffe id');
  const t = node.attestationType;
  if (typeof t !== 'string' || t.length === 0 || t.length > MAX_ATTESTATION_TYPE || !/^[a-z0-9_]+$/.test(t)) {
    throw invalid('invalid-attestation-type', `invalid attestation type ${quote(t)}`);
  }
  for (const [field, serial] of [['cert serial', node.certSerial], ['new cert serial', node.newCertSerial]] as const) {
    if (typeof serial !== 'string' || !/^[0-9a-f]{0,128}$/.test(serial)) {
      throw invalid('invalid-cert-serial', `${field} must be lowercase hex, got ${quote(serial)}`);
    }
  }
  return {
    spiffeId,
    attestationType: t,
    certSerial: node.certSerial,
    certNotAfter: nonNegativeInt(node.certNotAfter, 'invalid-expiry', 'cert not after'),
    newCertSerial: node.newCertSerial,
    newCertNotAfter: nonNegativeInt(node.newCertNotAfter, 'invalid-expiry', 'new cert not after'),
    selectors: validateSelectors(node.selectors, false),
    banned: bool(node.banned, 'banned'),
    canReattest: bool(node.canReattest, 'can reattest'),
  };
}

/** Validates a join token record; the hash is never echoed in messages. */
export function validateJoinToken(token: Omit<JoinTokenRecord, 'createdAt' | 'spentBy'>): Omit<JoinTokenRecord, 'createdAt' | 'spentBy'> {
  if (token === null || typeof token !== 'object') throw invalid('invalid-join-token', 'join token must be an object');
  if (typeof token.tokenId !== 'string' || !TOKEN_ID_RE.test(token.tokenId)) {
    throw invalid('invalid-token-id', `invalid join token id ${quote(token.tokenId)}`);
  }
  if (typeof token.tokenHash !== 'string' || !TOKEN_HASH_RE.test(token.tokenHash)) {
    throw invalid('invalid-token-hash', 'join token hash must be 64 lowercase hex characters');
  }
  return {
    tokenId: token.tokenId,
    tokenHash: token.tokenHash,
    expiresAt: nonNegativeInt(token.expiresAt, 'invalid-expiry', 'join token expiry'),
  };
}

/** Validates a bundle document: a JSON object (its SPIFFE rules are checked by src/spiffe). */
export function validateBundleDocument(document: unknown): string {
  if (typeof document !== 'string') throw invalid('invalid-bundle-document', 'bundle document must be a string');
  let parsed: unknown;
  try {
    parsed = JSON.parse(document);
  } catch (err) {
    throw invalid('invalid-bundle-document', 'bundle document is not json', err);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw invalid('invalid-bundle-document', 'bundle document must be a json object');
  }
  return document;
}

/** Validates a timestamp argument (epoch ms). */
export function validateTime(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw invalid('invalid-time', `${field} must be a finite number`);
  return value;
}

/** Longest bundle endpoint URL stored. */
const MAX_URL_BYTES = 2048;
/** Longest refresh error kept. */
export const MAX_FEDERATION_ERROR = 512;

/** Validates a federation relationship's operator fields; reasons `invalid-trust-domain-id`, `invalid-bundle-endpoint-url`, `invalid-federation-profile`, `invalid-endpoint-spiffe-id`. */
export function validateFederationFields(rel: FederationRelationshipFields): FederationRelationshipFields {
  const trustDomainId = validateTrustDomainId(rel.trustDomainId);
  const url = rel.bundleEndpointUrl;
  let parsed: URL | undefined;
  try {
    parsed = typeof url === 'string' && Buffer.byteLength(url) <= MAX_URL_BYTES ? new URL(url) : undefined;
  } catch {
    parsed = undefined;
  }
  if (parsed === undefined || parsed.protocol !== 'https:' || parsed.hostname === '' || parsed.username !== '' || parsed.password !== '' || parsed.hash !== '') {
    throw invalid('invalid-bundle-endpoint-url', `invalid bundle endpoint url ${quote(url)}: use an https URL with a host, no user info or fragment`);
  }
  if (rel.profile !== 'https_web' && rel.profile !== 'https_spiffe') throw invalid('invalid-federation-profile', `invalid bundle endpoint profile ${quote(rel.profile)}: use https_web or https_spiffe`);
  let endpointSpiffeId = '';
  if (rel.profile === 'https_spiffe') {
    endpointSpiffeId = validateSpiffeIdField(rel.endpointSpiffeId, 'invalid-endpoint-spiffe-id', 'endpoint spiffe id');
    if (SpiffeId.parse(endpointSpiffeId).trustDomain.idString !== trustDomainId) {
      throw invalid('invalid-endpoint-spiffe-id', `endpoint spiffe id ${quote(endpointSpiffeId)} must be in ${trustDomainId}`);
    }
  } else if (rel.endpointSpiffeId !== '' && rel.endpointSpiffeId !== undefined) {
    throw invalid('invalid-endpoint-spiffe-id', 'an endpoint spiffe id is only used with profile https_spiffe');
  }
  return { trustDomainId, bundleEndpointUrl: url, profile: rel.profile, endpointSpiffeId };
}
