/**
 * The agent's view of kernel-reported peer credentials: the one loader of the native addon
 * lives in src/common/peer-credentials.ts (shared with the server's admin socket). The
 * Workload API trusts only these, never anything the caller sends.
 */
export {
  getPeerCredentials,
  getPeerGroups,
  peerCredentialsAvailable,
  requirePeerCredentials,
  socketFd,
  trimNativeHeap,
} from '../../common/peer-credentials.js';
