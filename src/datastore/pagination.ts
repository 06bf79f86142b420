/**
 * Keyset pagination shared by every Datastore: results are ordered by their key (entry id,
 * agent SPIFFE ID) and a page token is the last key returned, base64url-encoded. Keyset
 * pages never skip or repeat a row that exists across the whole listing, even when rows
 * are added or removed between pages, and cost the same on page 1 and page 100.
 */
import { SigilError } from '../common/errors.js';
import type { PageRequest } from './datastore.js';

/** Page size when the request does not say. */
export const DEFAULT_PAGE_SIZE = 500;
/** Largest page served; larger requests are clamped to it (an agent's full sync of 100k entries is 10 pages). */
export const MAX_PAGE_SIZE = 10_000;

/** A page request after validation: how many rows, and the key to continue after ('' = start). */
export interface ResolvedPage {
  readonly size: number;
  readonly after: string;
}

/** Encodes the last key of a page as the opaque token for the next one. */
export function encodePageToken(lastKey: string): string {
  return Buffer.from(lastKey, 'utf8').toString('base64url');
}

/** Validates a page request: size 0/absent is the default, above the maximum is clamped; a bad token is ERR_INVALID_ARGUMENT. */
export function resolvePage(page: PageRequest | undefined): ResolvedPage {
  const requested = page?.pageSize ?? 0;
  if (typeof requested !== 'number' || !Number.isSafeInteger(requested) || requested < 0) {
    throw new SigilError('ERR_INVALID_ARGUMENT', `invalid page size ${String(requested)}`, { reason: 'invalid-page-size' });
  }
  const size = requested === 0 ? DEFAULT_PAGE_SIZE : Math.min(requested, MAX_PAGE_SIZE);
  const token = page?.pageToken ?? '';
  if (typeof token !== 'string') throw new SigilError('ERR_INVALID_ARGUMENT', 'invalid page token', { reason: 'invalid-page-token' });
  if (token === '') return { size, after: '' };
  const after = Buffer.from(token, 'base64url').toString('utf8');
  // Round-tripping rejects tokens that were not made by encodePageToken (stray characters, padding, bad UTF-8).
  if (after.length === 0 || encodePageToken(after) !== token) {
    throw new SigilError('ERR_INVALID_ARGUMENT', 'invalid page token', { reason: 'invalid-page-token' });
  }
  return { size, after };
}
