/** The certificate authority: CA manager, journal store, upstream authority, key managers. */
export {
  CaManager,
  DEFAULT_CA_TTL_MS,
  DEFAULT_JWT_SVID_TTL_MS,
  DEFAULT_X509_SVID_TTL_MS,
  NOT_BEFORE_CUSHION_MS,
  type AuthorityKind,
  type CaManagerOptions,
  type IssuedX509Svid,
  type JwtAuthority,
  type MintedJwtSvid,
  type SlotInfo,
} from './ca-manager.js';
export type { AuthorityPhase, CaJournalStore } from './ca-journal.js';
export { loadUpstreamAuthority, makeUpstreamAuthority, type UpstreamAuthority, type UpstreamAuthorityFiles } from './upstream-authority.js';
export { MemoryKeyManager } from './key-manager/memory-key-manager.js';
export { DiskKeyManager, rewrapKeys, type DiskKeyManagerOptions, type RewrapResult } from './key-manager/disk-key-manager.js';
export { generateKekFile, readKekFile, KEK_BYTES } from './key-manager/kek.js';
export { KEY_TYPES, isKeyType } from './key-manager/key-gen.js';
