/**
 * `sigil/client`: SPIFFE for Node services. The Workload API client, live sources of
 * SVIDs and bundles, mTLS helpers for node:tls, https, http2 and grpc-js that follow
 * rotations, authorizers, and offline JWT-SVID validation. See docs/client.md.
 */
export {
  parseWorkloadEndpoint,
  defaultWorkloadEndpoint,
  SPIFFE_ENDPOINT_SOCKET,
  type WorkloadEndpoint,
} from './address.js';
export {
  WorkloadApiClient,
  DEFAULT_WATCH_BACKOFF,
  type WorkloadApiClientOptions,
  type Watcher,
  type WatchOptions,
  type JwtSvidParams,
} from './workload-api-client.js';
export type { X509Context } from './x509-context.js';
export { DEFAULT_SOURCE_TIMEOUT_MS, type SourceOptions } from './source-support.js';
export { X509Source, type X509SourceOptions, type X509SourceEvents, type SvidPicker } from './x509-source.js';
export { JwtSource, type JwtSourceOptions, type JwtSourceEvents } from './jwt-source.js';
export { BundleSource, type BundleSourceOptions, type BundleSourceEvents } from './bundle-source.js';
export {
  authorizeAny,
  authorizeId,
  authorizeOneOf,
  authorizeMemberOf,
  authorizeIf,
  type Authorizer,
} from './authorizer.js';
export { peerSpiffeId, type SpiffeTlsOptions } from './tls-config.js';
export {
  tlsClientOptions,
  connectTls,
  createTlsServer,
  type ConnectTlsOptions,
  type SpiffeServerOptions,
} from './tls.js';
export { createHttpsServer, createHttp2SecureServer, createHttpsAgent, http2ClientOptions } from './https.js';
export {
  grpcChannelCredentials,
  serveGrpc,
  grpcPeerSpiffeId,
  type ServeGrpcOptions,
  type GrpcSpiffeListener,
} from './grpc.js';
export { validateJwtSvid } from './validate-jwt-svid.js';
// The value types a service meets through this API.
export { SpiffeId, TrustDomain } from '../spiffe/spiffe-id.js';
export { SigilError, isSigilError, type ErrorCode } from '../spiffe/errors.js';
export { X509Svid, X509SvidChain } from '../spiffe/x509-svid.js';
export { Bundle } from '../spiffe/bundle.js';
export { BundleSet } from '../spiffe/bundle-set.js';
export { JwtSvid, type JwtSvidValidateOptions } from '../spiffe/jwt-svid.js';
