/**
 * The Workload API address, parsed as the SPIFFE Workload Endpoint standard says:
 * `unix:///absolute/path` (no authority, no query, no fragment) or `tcp://IP:port`
 * (an IP literal, never a name, a port, nothing else). Anything else is refused with a
 * coded error rather than guessed at, so a typo in SPIFFE_ENDPOINT_SOCKET fails loudly.
 */
import { isIP } from 'node:net';
import { SigilError } from '../common/errors.js';

/** The environment variable holding the default Workload API address. */
export const SPIFFE_ENDPOINT_SOCKET = 'SPIFFE_ENDPOINT_SOCKET';

/** A validated Workload API address. */
export type WorkloadEndpoint =
  | { readonly kind: 'unix'; readonly path: string; readonly address: string }
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number; readonly address: string };

function bad(reason: string, message: string): SigilError {
  return new SigilError('ERR_INVALID_ARGUMENT', message, { reason });
}

function decodePath(raw: string, address: string): string {
  try {
    return decodeURIComponent(raw);
  } catch (err) {
    throw new SigilError('ERR_INVALID_ARGUMENT', `workload endpoint path is badly percent-encoded in ${JSON.stringify(address)}`, {
      reason: 'endpoint-bad-path',
      cause: err,
    });
  }
}

/** Parses a Workload API address; throws ERR_INVALID_ARGUMENT with an `endpoint-*` reason. */
export function parseWorkloadEndpoint(address: string): WorkloadEndpoint {
  if (typeof address !== 'string' || address.length === 0) throw bad('endpoint-empty', 'workload endpoint address is empty');
  const q = JSON.stringify(address);
  const colon = address.indexOf(':');
  const scheme = colon === -1 ? '' : address.slice(0, colon);
  if (scheme !== 'unix' && scheme !== 'tcp') {
    throw bad('endpoint-bad-scheme', `workload endpoint address must use the unix or tcp scheme: ${q}`);
  }
  const rest = address.slice(colon + 1);
  if (!rest.startsWith('//')) throw bad('endpoint-opaque', `workload endpoint address must be of the form ${scheme}://…: ${q}`);
  if (rest.includes('?')) throw bad('endpoint-has-query', `workload endpoint address must not have a query: ${q}`);
  if (rest.includes('#')) throw bad('endpoint-has-fragment', `workload endpoint address must not have a fragment: ${q}`);
  const afterSlashes = rest.slice(2);
  const slash = afterSlashes.indexOf('/');
  const authority = slash === -1 ? afterSlashes : afterSlashes.slice(0, slash);
  const path = slash === -1 ? '' : afterSlashes.slice(slash);
  if (authority.includes('@')) throw bad('endpoint-has-userinfo', `workload endpoint address must not have user info: ${q}`);

  if (scheme === 'unix') {
    if (authority.length > 0) {
      throw bad('endpoint-unix-authority', `unix workload endpoint must not have an authority (use unix:///abs/path): ${q}`);
    }
    if (path.length <= 1) throw bad('endpoint-unix-no-path', `unix workload endpoint must have an absolute socket path: ${q}`);
    return { kind: 'unix', path: decodePath(path, address), address };
  }

  if (path.length > 0) throw bad('endpoint-tcp-path', `tcp workload endpoint must not have a path: ${q}`);
  const m = /^(\[[^\]]+\]|[^:[\]]+):(\d{1,5})$/.exec(authority);
  if (m === null) throw bad('endpoint-tcp-host-port', `tcp workload endpoint must be tcp://IP:port: ${q}`);
  const rawHost = m[1] as string;
  const host = rawHost.startsWith('[') ? rawHost.slice(1, -1) : rawHost;
  const family = isIP(host);
  if (family === 0 || (family === 6) !== rawHost.startsWith('[')) {
    throw bad('endpoint-tcp-not-ip', `tcp workload endpoint host must be an IP address: ${q}`);
  }
  const port = Number(m[2]);
  if (port < 1 || port > 65535) throw bad('endpoint-tcp-bad-port', `tcp workload endpoint port is out of range: ${q}`);
  return { kind: 'tcp', host, port, address };
}

/** The address from the environment (`SPIFFE_ENDPOINT_SOCKET`), parsed; throws when unset or invalid. */
export function defaultWorkloadEndpoint(env: NodeJS.ProcessEnv = process.env): WorkloadEndpoint {
  const value = env[SPIFFE_ENDPOINT_SOCKET];
  if (value === undefined || value.length === 0) {
    throw new SigilError('ERR_INVALID_ARGUMENT', `workload endpoint address is not configured: set ${SPIFFE_ENDPOINT_SOCKET}`, {
      reason: 'endpoint-not-configured',
    });
  }
  return parseWorkloadEndpoint(value);
}

/** The grpc-js target string for an endpoint. */
export function grpcTarget(endpoint: WorkloadEndpoint): string {
  if (endpoint.kind === 'unix') return `unix://${endpoint.path}`;
  return endpoint.host.includes(':') ? `ipv6:[${endpoint.host}]:${endpoint.port}` : `ipv4:${endpoint.host}:${endpoint.port}`;
}
