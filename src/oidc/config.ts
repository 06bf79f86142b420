/**
 * The configuration of `sigil oidc serve` and `sigil oidc export`: one YAML file checked
 * against one schema that rejects unknown keys and reports every problem at once with the
 * key named, then resolved (durations to milliseconds, paths to absolute) and frozen.
 */
import { z } from 'zod';
import {
  configError,
  deepFreezeConfig,
  durationSchema,
  hostPortSchema,
  loadConfigFile,
  logLevelSchema,
  parseRawConfig,
  trustDomainSchema,
  type LogLevel,
} from '../common/config.js';
import { parseDuration } from '../common/duration.js';
import { issuerUrlProblem } from '../common/issuer-url.js';
import { TrustDomain } from '../spiffe/spiffe-id.js';

/** The path of the discovery document below the issuer (OpenID Connect Discovery 1.0 section 4). */
export const DISCOVERY_SUFFIX = '/.well-known/openid-configuration';

/** The schema of oidc.yaml. */
export const oidcConfigSchema = z.strictObject({
  issuer: z.string().min(1),
  allowInsecureIssuer: z.boolean().default(false),
  trustDomain: trustDomainSchema,
  listen: hostPortSchema('0.0.0.0:443').optional(),
  tls: z.strictObject({ certFile: z.string().min(1), keyFile: z.string().min(1) }).optional(),
  acme: z
    .strictObject({
      directoryUrl: z.url(),
      email: z.email(),
      domain: z.string().regex(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/, 'must be a lowercase DNS name'),
      cacheDir: z.string().min(1),
      caFile: z.string().min(1).optional(),
      httpListen: hostPortSchema('0.0.0.0:80').default('0.0.0.0:80'),
    })
    .optional(),
  insecureListen: hostPortSchema('127.0.0.1:8080').optional(),
  agentAddress: z.string().min(1).optional(),
  adminSocket: z.string().min(1).optional(),
  adminPollInterval: durationSchema().default('10s'),
  jwksPath: z.string().min(1).optional(),
  setKeyUse: z.boolean().default(true),
  cacheMaxAge: durationSchema().default('5m'),
  logLevel: logLevelSchema.default('info'),
});


/** The resolved, frozen configuration. */
export interface OidcConfig {
  /** The issuer URL, exactly as JWT-SVIDs carry it in `iss`. */
  readonly issuer: string;
  readonly trustDomain: TrustDomain;
  /** Where to serve: HTTPS with the files in `tls`, or plain HTTP behind a TLS-terminating proxy. */
  readonly listen?: {
    readonly host: string;
    readonly port: number;
    readonly tls?: { readonly certFile: string; readonly keyFile: string };
    /** A certificate from an ACME server instead of `tls` files; http-01 answered on `httpListen`. */
    readonly acme?: AcmeSettings;
  };
  /** Where the keys come from: the agent's Workload API (`unix:///…` or `tcp://…`; absent: SPIFFE_ENDPOINT_SOCKET) or the server's admin socket. */
  readonly source: { readonly kind: 'agent'; readonly address?: string } | { readonly kind: 'admin'; readonly socketPath: string; readonly pollIntervalMs: number };
  /** The request path of the discovery document. */
  readonly discoveryPath: string;
  /** The request path of the JWKS. */
  readonly jwksPath: string;
  /** `jwks_uri` of the discovery document. */
  readonly jwksUri: string;
  /** Mark every key `use: sig` (SPIRE's `set_key_use`; on by default here, off in SPIRE). */
  readonly setKeyUse: boolean;
  readonly cacheMaxAgeSeconds: number;
  readonly logLevel: LogLevel;
}

/** The resolved `acme` block. */
export interface AcmeSettings {
  readonly directoryUrl: string;
  readonly email: string;
  readonly domain: string;
  readonly cacheDir: string;
  readonly caFile?: string;
  readonly httpListen: { readonly host: string; readonly port: number };
}

const REQUIRED = { issuer: 'set issuer (the svid.jwtIssuer of the server)', trustDomain: 'set trustDomain (e.g. example.org)' };

function splitHostPort(text: string): { host: string; port: number } {
  const i = text.lastIndexOf(':');
  return { host: text.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(text.slice(i + 1)) };
}

/** Validates raw config (parsed YAML); `serve` also requires a listener. Paths resolve against `baseDir`. */
export function resolveOidcConfig(raw: unknown, options: { readonly serve: boolean }, baseDir = process.cwd()): OidcConfig {
  const { c, abs, problems } = parseRawConfig('oidc', oidcConfigSchema, raw, { baseDir, hints: REQUIRED });
  const issuerProblem = issuerUrlProblem(c.issuer, c.allowInsecureIssuer);
  if (issuerProblem !== undefined) problems.push(`issuer: ${issuerProblem}`);
  if (c.listen !== undefined && c.insecureListen !== undefined) problems.push('insecureListen: set either listen (with tls) or insecureListen, not both');
  if (c.listen !== undefined && c.tls === undefined && c.acme === undefined) problems.push('tls: required with listen, or set acme (or use insecureListen behind a TLS-terminating proxy)');
  if (c.tls !== undefined && c.acme !== undefined) problems.push('acme: set either tls or acme, not both');
  if (c.tls !== undefined && c.listen === undefined) problems.push('tls: only used with listen');
  if (c.acme !== undefined && c.listen === undefined) problems.push('acme: only used with listen');
  if (options.serve && c.listen === undefined && c.insecureListen === undefined) problems.push('listen: required (with tls), or set insecureListen');
  if (c.agentAddress !== undefined && c.adminSocket !== undefined) problems.push('adminSocket: set either agentAddress or adminSocket, not both');
  if (c.agentAddress !== undefined && !/^(unix:\/\/\/|tcp:\/\/)/.test(c.agentAddress) && !c.agentAddress.startsWith('/')) {
    problems.push(`agentAddress: must be unix:///absolute/path, tcp://IP:port or an absolute socket path, got ${JSON.stringify(c.agentAddress)}`);
  }
  let issuerPath = '';
  let origin = '';
  if (issuerProblem === undefined) {
    const u = new URL(c.issuer);
    issuerPath = u.pathname.replace(/\/$/, '');
    origin = u.origin;
  }
  const discoveryPath = `${issuerPath}${DISCOVERY_SUFFIX}`;
  const jwksPath = c.jwksPath ?? `${issuerPath}/keys`;
  if (!/^\/[A-Za-z0-9._~\-/]*$/.test(jwksPath) || jwksPath.includes('//') || jwksPath.split('/').some((s) => s === '.' || s === '..')) {
    problems.push(`jwksPath: must be an absolute path of letters, digits and . _ ~ - /, got ${JSON.stringify(jwksPath)}`);
  } else if (jwksPath === discoveryPath || jwksPath === '/ready') {
    problems.push(`jwksPath: ${JSON.stringify(jwksPath)} is taken by another document`);
  }
  if (problems.length > 0) throw configError('oidc', problems);
  const listenAt = c.listen ?? c.insecureListen;
  const config: OidcConfig = {
    issuer: c.issuer,
    trustDomain: TrustDomain.parse(c.trustDomain),
    ...(listenAt === undefined
      ? {}
      : {
          listen: {
            ...splitHostPort(listenAt),
            ...(c.tls === undefined ? {} : { tls: { certFile: abs(c.tls.certFile), keyFile: abs(c.tls.keyFile) } }),
            ...(c.acme === undefined
              ? {}
              : {
                  acme: {
                    directoryUrl: c.acme.directoryUrl,
                    email: c.acme.email,
                    domain: c.acme.domain,
                    cacheDir: abs(c.acme.cacheDir),
                    ...(c.acme.caFile === undefined ? {} : { caFile: abs(c.acme.caFile) }),
                    httpListen: splitHostPort(c.acme.httpListen),
                  },
                }),
          },
        }),
    source:
      c.adminSocket !== undefined
        ? { kind: 'admin', socketPath: abs(c.adminSocket), pollIntervalMs: parseDuration(c.adminPollInterval) }
        : { kind: 'agent', ...(c.agentAddress === undefined ? {} : { address: c.agentAddress.startsWith('/') ? `unix://${c.agentAddress}` : c.agentAddress }) },
    discoveryPath,
    jwksPath,
    jwksUri: `${origin}${jwksPath}`,
    setKeyUse: c.setKeyUse,
    cacheMaxAgeSeconds: Math.floor(parseDuration(c.cacheMaxAge) / 1000),
    logLevel: c.logLevel,
  };
  return deepFreezeConfig(config);
}

/** Reads and validates oidc.yaml; throws ERR_CONFIG_INVALID naming every bad key. */
export function loadOidcConfig(path: string, options: { readonly serve: boolean }): OidcConfig {
  return loadConfigFile(path, 'oidc', (raw, baseDir) => resolveOidcConfig(raw, options, baseDir));
}
