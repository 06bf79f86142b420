/** Public SPIFFE value types: IDs, trust domains (more are added as they land). */
export { SpiffeId, TrustDomain, MAX_SPIFFE_ID_BYTES, MAX_TRUST_DOMAIN_BYTES } from './spiffe-id.js';
export { SigilError, isSigilError, type ErrorCode } from './errors.js';
export { type Selector, makeSelector, parseSelector, formatSelector, selectorKey, selectorsSatisfiedBy, normalizeSelectors } from './selector.js';
