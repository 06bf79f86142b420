/** Public SPIFFE value types: IDs, trust domains (more are added as they land). */
export { SpiffeId, TrustDomain, MAX_SPIFFE_ID_BYTES, MAX_TRUST_DOMAIN_BYTES } from './spiffe-id.js';
export { SigilError, isSigilError, type ErrorCode } from './errors.js';
export { type Selector, makeSelector, parseSelector, formatSelector, selectorKey, selectorsSatisfiedBy, normalizeSelectors } from './selector.js';
export { ParsedCertificate, KeyUsage, type CertificateFacts } from './certificate.js';
export { decodePem, decodePemBlocks, encodePem, encodeCertificatesPem, type PemBlock } from './pem.js';
export { X509Svid, X509SvidChain, type X509ChainInput, type PrivateKeyInput } from './x509-svid.js';
export { verifyX509SvidChain, type VerifiedX509Svid } from './x509-svid-verify.js';
export { Bundle, X509_SVID_USE, JWT_SVID_USE, type BundleSource, type JwtAuthority, type BundleJwk, type BundleJwks, type BundleContents } from './bundle.js';
export { BundleSet } from './bundle-set.js';
export { JwtSvid, parseAndValidateJwtSvid, parseJwtSvidInsecure, JWT_SVID_ALGORITHMS, DEFAULT_JWT_LEEWAY_SECONDS, MAX_JWT_SVID_LENGTH, type JwtSvidAlgorithm, type JwtSvidHeader, type JwtSvidValidateOptions } from './jwt-svid.js';
