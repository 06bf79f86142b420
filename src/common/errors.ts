/** The error type of Sigil (defined beside the SPIFFE value types, which import nothing else). */
export { SigilError, isSigilError, toSigilError, type ErrorCode, type SigilErrorOptions } from '../spiffe/errors.js';
