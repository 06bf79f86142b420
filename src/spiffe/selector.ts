/**
 * Selectors: `type:value` facts about a node or a workload (`unix:uid:1000`,
 * `join_token:id:…`). An entry matches when all its selectors are among the caller's.
 */
import { SigilError } from './errors.js';

/** A selector such as `{ type: 'unix', value: 'uid:1000' }`. */
export interface Selector {
  readonly type: string;
  readonly value: string;
}

const TYPE_RE = /^[a-z0-9_]{1,64}$/;
const MAX_VALUE_BYTES = 1024;

function selectorError(reason: string, message: string): SigilError {
  return new SigilError('ERR_INVALID_ARGUMENT', message, { reason });
}

/** Validates a selector's type and value; throws ERR_INVALID_ARGUMENT. */
export function makeSelector(type: string, value: string): Selector {
  if (typeof type !== 'string' || !TYPE_RE.test(type)) {
    throw selectorError('selector-type', `invalid selector type ${JSON.stringify(type)}: use [a-z0-9_], at most 64 characters`);
  }
  if (typeof value !== 'string' || value.length === 0) throw selectorError('selector-value', `selector ${type} has an empty value`);
  if (Buffer.byteLength(value, 'utf8') > MAX_VALUE_BYTES) {
    throw selectorError('selector-value', `selector ${type} value is longer than ${MAX_VALUE_BYTES} bytes`);
  }
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) throw selectorError('selector-value', `selector ${type} value contains a control character`);
  }
  return Object.freeze({ type, value });
}

/** Parses `type:value` (the value may itself contain colons, e.g. `unix:uid:1000`). */
export function parseSelector(text: string): Selector {
  const colon = typeof text === 'string' ? text.indexOf(':') : -1;
  if (colon <= 0) throw selectorError('selector-format', `invalid selector ${JSON.stringify(text)}: expected type:value`);
  return makeSelector(text.slice(0, colon), text.slice(colon + 1));
}

/** Formats a selector as `type:value`. */
export function formatSelector(s: Selector): string {
  return `${s.type}:${s.value}`;
}

/** A stable key for sets and maps of selectors. */
export function selectorKey(s: Selector): string {
  return `${s.type}\u0000${s.value}`;
}

/** True when every selector of `required` is in `have` (an entry with no selectors never matches). */
export function selectorsSatisfiedBy(required: readonly Selector[], have: ReadonlySet<string> | readonly Selector[]): boolean {
  if (required.length === 0) return false;
  const set = have instanceof Set ? have : new Set((have as readonly Selector[]).map(selectorKey));
  return required.every((s) => set.has(selectorKey(s)));
}

/** Sorted, de-duplicated copy (the canonical order used in storage and on the wire). */
export function normalizeSelectors(selectors: readonly Selector[]): Selector[] {
  const seen = new Map<string, Selector>();
  for (const s of selectors) seen.set(selectorKey(s), s);
  return [...seen.values()].sort((a, b) => (a.type === b.type ? (a.value < b.value ? -1 : a.value > b.value ? 1 : 0) : a.type < b.type ? -1 : 1));
}
