/**
 * TrustDomain and SpiffeId, parsed and validated exactly as the SPIFFE-ID standard says.
 * Both can only exist valid: constructors are private and only the parsers make one.
 */
import { SigilError } from './errors.js';

const SCHEME = 'spiffe://';
/** Maximum length of a SPIFFE ID in bytes (URI form). */
export const MAX_SPIFFE_ID_BYTES = 2048;
/** Maximum length of a trust domain name in bytes. */
export const MAX_TRUST_DOMAIN_BYTES = 255;

function idError(reason: string, message: string): SigilError {
  return new SigilError('ERR_INVALID_SPIFFE_ID', message, { reason });
}

/**
 * Why a SPIFFE ID or trust domain failed to parse, as people need it next to the value they
 * typed: `trust-domain-uppercase: trust domain must be lowercase` (the reason, then the
 * message without the value it quotes).
 */
export function spiffeIdReason(err: unknown): string {
  if (err instanceof SigilError) return `${err.reason === undefined ? '' : `${err.reason}: `}${err.message.replace(/ in ".*"$/s, '')}`;
  return err instanceof Error ? err.message : String(err);
}

function isTrustDomainChar(c: number): boolean {
  // a-z 0-9 . - _
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x2d || c === 0x5f;
}

function isPathChar(c: number): boolean {
  // a-z A-Z 0-9 . - _
  return isTrustDomainChar(c) || (c >= 0x41 && c <= 0x5a);
}

function quote(s: string): string {
  return JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}…` : s);
}

function validateTrustDomainName(name: string, whole: string): void {
  if (name.length === 0) throw idError('missing-trust-domain', `trust domain is missing in ${quote(whole)}`);
  if (Buffer.byteLength(name, 'utf8') > MAX_TRUST_DOMAIN_BYTES) {
    throw idError('trust-domain-too-long', `trust domain is longer than ${MAX_TRUST_DOMAIN_BYTES} bytes`);
  }
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (isTrustDomainChar(c)) continue;
    if (c === 0x3a) throw idError('has-port', `trust domain must not include a port in ${quote(whole)}`);
    if (c === 0x40) throw idError('has-userinfo', `trust domain must not include user info in ${quote(whole)}`);
    if (c === 0x25) throw idError('percent-encoded', `percent-encoding is not allowed in ${quote(whole)}`);
    if (c === 0x3f) throw idError('has-query', `query is not allowed in ${quote(whole)}`);
    if (c === 0x23) throw idError('has-fragment', `fragment is not allowed in ${quote(whole)}`);
    if (c >= 0x41 && c <= 0x5a) {
      throw idError('trust-domain-uppercase', `trust domain must be lowercase in ${quote(whole)}`);
    }
    throw idError(
      'bad-trust-domain-char',
      `trust domain characters are limited to lowercase letters, numbers, dots, dashes and underscores in ${quote(whole)}`,
    );
  }
}

function validatePath(path: string, whole: string): void {
  if (path.length === 0) return;
  if (path.charCodeAt(0) !== 0x2f) throw idError('bad-path', `path must start with "/" in ${quote(whole)}`);
  let segStart = 1;
  for (let i = 1; i <= path.length; i++) {
    const c = i < path.length ? path.charCodeAt(i) : 0x2f;
    if (c === 0x2f) {
      const seg = path.slice(segStart, i);
      if (seg.length === 0) {
        if (i === path.length) throw idError('trailing-slash', `path must not have a trailing slash in ${quote(whole)}`);
        throw idError('empty-segment', `path must not contain empty segments in ${quote(whole)}`);
      }
      if (seg === '.' || seg === '..') throw idError('dot-segment', `path must not contain dot segments in ${quote(whole)}`);
      segStart = i + 1;
      continue;
    }
    if (isPathChar(c)) continue;
    if (c === 0x25) throw idError('percent-encoded', `percent-encoding is not allowed in ${quote(whole)}`);
    if (c === 0x3f) throw idError('has-query', `query is not allowed in ${quote(whole)}`);
    if (c === 0x23) throw idError('has-fragment', `fragment is not allowed in ${quote(whole)}`);
    throw idError(
      'bad-path-char',
      `path segment characters are limited to letters, numbers, dots, dashes and underscores in ${quote(whole)}`,
    );
  }
}

/** A SPIFFE trust domain, e.g. `example.org`. */
export class TrustDomain {
  /** The trust domain name, e.g. `example.org`. */
  readonly name: string;

  private constructor(name: string) {
    this.name = name;
  }

  /** Parses `example.org` or `spiffe://example.org`; throws ERR_INVALID_SPIFFE_ID. */
  static parse(text: string): TrustDomain {
    if (typeof text !== 'string' || text.length === 0) throw idError('empty', 'trust domain is empty');
    if (text.includes(':/')) {
      const id = SpiffeId.parse(text);
      if (id.path !== '') throw idError('trust-domain-has-path', `trust domain must not have a path: ${quote(text)}`);
      return id.trustDomain;
    }
    validateTrustDomainName(text, text);
    return new TrustDomain(text);
  }

  /** @internal used by SpiffeId.parse after it has validated the name. */
  static fromValidated(name: string): TrustDomain {
    return new TrustDomain(name);
  }

  /** The trust domain's own SPIFFE ID string, e.g. `spiffe://example.org` (bundle map key). */
  get idString(): string {
    return SCHEME + this.name;
  }

  /** The trust domain's own SPIFFE ID (no path). */
  toSpiffeId(): SpiffeId {
    return SpiffeId.fromParts(this, '');
  }

  /** Builds an ID in this trust domain from path segments, each validated. */
  id(...segments: string[]): SpiffeId {
    return SpiffeId.fromPath(this, segments.length === 0 ? '' : `/${segments.join('/')}`);
  }

  equals(other: TrustDomain): boolean {
    return this.name === other.name;
  }

  toString(): string {
    return this.name;
  }

  toJSON(): string {
    return this.name;
  }
}

/** A SPIFFE ID, e.g. `spiffe://example.org/ns/prod/sa/web`. */
export class SpiffeId {
  readonly trustDomain: TrustDomain;
  /** The path with its leading slash, or `''` for a trust domain's own ID. */
  readonly path: string;

  private constructor(trustDomain: TrustDomain, path: string) {
    this.trustDomain = trustDomain;
    this.path = path;
  }

  /** Parses a SPIFFE ID string; throws ERR_INVALID_SPIFFE_ID naming the defect in `reason`. */
  static parse(text: string): SpiffeId {
    if (typeof text !== 'string' || text.length === 0) throw idError('empty', 'SPIFFE ID is empty');
    if (Buffer.byteLength(text, 'utf8') > MAX_SPIFFE_ID_BYTES) {
      throw idError('too-long', `SPIFFE ID is longer than ${MAX_SPIFFE_ID_BYTES} bytes`);
    }
    if (!text.startsWith(SCHEME)) {
      throw idError('bad-scheme', `SPIFFE ID must start with "spiffe://" (lowercase): ${quote(text)}`);
    }
    const rest = text.slice(SCHEME.length);
    const slash = rest.indexOf('/');
    const tdName = slash === -1 ? rest : rest.slice(0, slash);
    const path = slash === -1 ? '' : rest.slice(slash);
    validateTrustDomainName(tdName, text);
    validatePath(path, text);
    return new SpiffeId(TrustDomain.fromValidated(tdName), path);
  }

  /** Builds an ID from a trust domain and a path (`''` or starting with `/`), validating the path. */
  static fromPath(trustDomain: TrustDomain, path: string): SpiffeId {
    const whole = trustDomain.idString + path;
    if (Buffer.byteLength(whole, 'utf8') > MAX_SPIFFE_ID_BYTES) {
      throw idError('too-long', `SPIFFE ID is longer than ${MAX_SPIFFE_ID_BYTES} bytes`);
    }
    validatePath(path, whole);
    return new SpiffeId(trustDomain, path);
  }

  /** @internal for a path already known valid. */
  static fromParts(trustDomain: TrustDomain, path: string): SpiffeId {
    return new SpiffeId(trustDomain, path);
  }

  /** True for the form `spiffe://td` with no path. */
  get isTrustDomainId(): boolean {
    return this.path === '';
  }

  /** True when this ID is in the given trust domain. */
  memberOf(td: TrustDomain): boolean {
    return this.trustDomain.name === td.name;
  }

  equals(other: SpiffeId): boolean {
    return this.trustDomain.name === other.trustDomain.name && this.path === other.path;
  }

  toString(): string {
    return SCHEME + this.trustDomain.name + this.path;
  }

  toJSON(): string {
    return this.toString();
  }
}
