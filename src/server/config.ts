/**
 * The server's configuration: one YAML file plus command-line flags (flags win), checked
 * against one schema that rejects unknown keys and reports every problem at once with
 * the key named, then resolved (durations to milliseconds, paths to absolute) and frozen.
 */
import { join, resolve } from 'node:path';
import { z } from 'zod';
import {
  configError,
  deepFreezeConfig,
  durationSchema,
  hostPortSchema,
  logLevelSchema,
  parseConfig,
  pathResolver,
  readYamlConfigFile,
  requireConfigMapping,
  trustDomainSchema as trustDomain,
  type LogLevel,
} from '../common/config.js';
import { parseDuration } from '../common/duration.js';
import { issuerUrlProblem } from '../common/issuer-url.js';
import { TrustDomain } from '../spiffe/spiffe-id.js';
import { k8sPsatConfigSchema, resolveK8sPsat, type K8sPsatConfig } from './k8s-psat-config.js';
import { jwtNodeConfigSchema, resolveJwtNode, type JwtNodeConfig } from './jwt-node-config.js';

const KEY_TYPES = ['ec-p256', 'ec-p384', 'rsa-2048'] as const;

const duration = durationSchema();

const hostPort = hostPortSchema('0.0.0.0:8081');

/** The schema of the YAML file (and of flags, merged into it). */
export const serverConfigSchema = z.strictObject({
  trustDomain,
  dataDir: z.string().min(1),
  logLevel: logLevelSchema.default('info'),
  agentApi: z.strictObject({ address: hostPort.default('0.0.0.0:8081') }).default({ address: '0.0.0.0:8081' }),
  adminApi: z.strictObject({ socketPath: z.string().min(1).optional() }).default({}),
  datastore: z
    .strictObject({
      type: z.enum(['sqlite', 'postgres']).default('sqlite'),
      sqlitePath: z.string().min(1).optional(),
      connectionString: z.string().min(1).optional(),
      passwordFile: z.string().min(1).optional(),
      schema: z.string().min(1).optional(),
      maxConnections: z.number().int().min(2).max(200).optional(),
    })
    .default({ type: 'sqlite' }),
  keyManager: z
    .strictObject({
      type: z.enum(['disk', 'memory']).default('disk'),
      kekFile: z.string().min(1).optional(),
      dir: z.string().min(1).optional(),
    })
    .default({ type: 'disk' }),
  ca: z
    .strictObject({
      keyType: z.enum(KEY_TYPES).default('ec-p256'),
      jwtKeyType: z.enum(KEY_TYPES).default('ec-p256'),
      ttl: duration.default('24h'),
      // bounded: each thread holds a copy of the CA key and a V8 isolate
      signingThreads: z.number().int().min(0).max(256).optional(),
      upstream: z.strictObject({ certFile: z.string().min(1), keyFile: z.string().min(1), bundleFile: z.string().min(1).optional() }).optional(),
    })
    .default({ keyType: 'ec-p256', jwtKeyType: 'ec-p256', ttl: '24h' }),
  svid: z
    .strictObject({
      defaultX509Ttl: duration.default('1h'),
      defaultJwtTtl: duration.default('5m'),
      agentTtl: duration.default('1h'),
      // the `iss` of every JWT-SVID, for OIDC federation (docs/oidc.md)
      jwtIssuer: z.string().min(1).optional(),
      // tests only: lets jwtIssuer be an http:// URL
      allowInsecureJwtIssuer: z.boolean().default(false),
    })
    .default({ defaultX509Ttl: '1h', defaultJwtTtl: '5m', agentTtl: '1h', allowInsecureJwtIssuer: false }),
  bundleRefreshHint: duration.default('5m'),
  nodeAttestors: z
    .strictObject({
      joinToken: z.strictObject({ defaultTtl: duration.default('10m') }).optional(),
      x509pop: z.strictObject({ caBundleFile: z.string().min(1) }).optional(),
      k8sPsat: k8sPsatConfigSchema.optional(),
      jwt: jwtNodeConfigSchema.optional(),
    })
    .default({ joinToken: { defaultTtl: '10m' } }),
  health: z.strictObject({ address: hostPort }).optional(),
  auditLog: z.strictObject({ path: z.string().min(1).optional() }).default({}),
});

type RawConfig = z.input<typeof serverConfigSchema>;

/** What to set when a required key is missing: the key, and the flag of `sigil server run`. */
const SERVER_REQUIRED = {
  trustDomain: 'set trustDomain (e.g. example.org) or pass --trust-domain',
  dataDir: 'set dataDir or pass --data-dir',
};

/** The resolved, frozen server configuration handed to every component. */
export interface ServerConfig {
  readonly trustDomain: TrustDomain;
  readonly dataDir: string;
  readonly logLevel: LogLevel;
  readonly agentApi: { readonly host: string; readonly port: number };
  readonly adminApi: { readonly socketPath: string };
  readonly datastore: {
    readonly type: 'sqlite' | 'postgres';
    /** The SQLite file (used when `type` is sqlite). */
    readonly sqlitePath: string;
    /** Present when `type` is postgres; the password, if any, only ever comes from `passwordFile`. */
    readonly postgres?: {
      readonly connectionString: string;
      readonly passwordFile?: string;
      readonly schema?: string;
      readonly maxConnections?: number;
    };
  };
  readonly keyManager: { readonly type: 'disk' | 'memory'; readonly kekFile?: string; readonly dir: string };
  readonly ca: {
    readonly keyType: (typeof KEY_TYPES)[number];
    readonly jwtKeyType: (typeof KEY_TYPES)[number];
    readonly ttlMs: number;
    /** Worker threads that sign X.509-SVIDs; absent = one per core, 0 = the main thread. */
    readonly signingThreads?: number;
    readonly upstream?: { readonly certFile: string; readonly keyFile: string; readonly bundleFile?: string };
  };
  readonly svid: {
    readonly defaultX509TtlMs: number;
    readonly defaultJwtTtlMs: number;
    readonly agentTtlMs: number;
    /** The `iss` claim of every JWT-SVID; absent: JWT-SVIDs carry no `iss`. */
    readonly jwtIssuer?: string;
  };
  readonly bundleRefreshHintMs: number;
  readonly nodeAttestors: {
    readonly joinToken?: { readonly defaultTtlMs: number };
    readonly x509pop?: { readonly caBundleFile: string };
    /** Clusters whose agents attest with projected service-account tokens. */
    readonly k8sPsat?: K8sPsatConfig;
    /** OpenID issuers (CI, cloud VMs) whose identity tokens attest agents. */
    readonly jwt?: JwtNodeConfig;
  };
  readonly health?: { readonly host: string; readonly port: number };
  readonly auditLog: { readonly path: string };
}

/** Command-line values that override the file; only set ones apply. */
export interface ServerFlags {
  readonly trustDomain?: string;
  readonly dataDir?: string;
  readonly logLevel?: string;
  readonly agentAddress?: string;
  readonly adminSocket?: string;
  readonly healthAddress?: string;
}

function splitHostPort(text: string): { host: string; port: number } {
  const i = text.lastIndexOf(':');
  const host = text.slice(0, i).replace(/^\[|\]$/g, '');
  return { host, port: Number(text.slice(i + 1)) };
}

function setIn(obj: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let node = obj;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (next === undefined || next === null || typeof next !== 'object') node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1] as string] = value;
}

/** Validates raw config (already parsed YAML) merged with flags; resolves relative paths against `baseDir`. */
export function resolveServerConfig(raw: unknown, flags: ServerFlags = {}, baseDir = process.cwd()): ServerConfig {
  raw = requireConfigMapping(raw, 'server');
  const merged = structuredClone(raw) as Record<string, unknown>;
  if (flags.trustDomain !== undefined) merged.trustDomain = flags.trustDomain;
  if (flags.dataDir !== undefined) merged.dataDir = flags.dataDir;
  if (flags.logLevel !== undefined) merged.logLevel = flags.logLevel;
  if (flags.agentAddress !== undefined) setIn(merged, ['agentApi', 'address'], flags.agentAddress);
  if (flags.adminSocket !== undefined) setIn(merged, ['adminApi', 'socketPath'], flags.adminSocket);
  if (flags.healthAddress !== undefined) setIn(merged, ['health', 'address'], flags.healthAddress);

  const c = parseConfig(serverConfigSchema, merged as RawConfig, 'server', SERVER_REQUIRED);
  const abs = pathResolver(baseDir);
  const dataDir = abs(c.dataDir);
  const problems: string[] = [];
  if (c.keyManager.type === 'disk' && c.keyManager.kekFile === undefined) {
    problems.push('keyManager.kekFile: required when keyManager.type is disk');
  }
  if (c.datastore.type === 'postgres' && c.datastore.connectionString === undefined) {
    problems.push('datastore.connectionString: required when datastore.type is postgres');
  }
  if (c.svid.jwtIssuer !== undefined) {
    const problem = issuerUrlProblem(c.svid.jwtIssuer, c.svid.allowInsecureJwtIssuer);
    if (problem !== undefined) problems.push(`svid.jwtIssuer: ${problem}`);
  } else if (c.svid.allowInsecureJwtIssuer) {
    problems.push('svid.allowInsecureJwtIssuer: only used with svid.jwtIssuer');
  }
  if (c.datastore.type === 'sqlite') {
    for (const key of ['connectionString', 'passwordFile', 'schema', 'maxConnections'] as const) {
      if (c.datastore[key] !== undefined) problems.push(`datastore.${key}: only used when datastore.type is postgres`);
    }
  } else if (c.datastore.sqlitePath !== undefined) {
    problems.push('datastore.sqlitePath: only used when datastore.type is sqlite');
  }
  const psat = c.nodeAttestors.k8sPsat === undefined ? undefined : resolveK8sPsat(c.nodeAttestors.k8sPsat, abs, problems);
  const jwtNode = c.nodeAttestors.jwt === undefined ? undefined : resolveJwtNode(c.nodeAttestors.jwt, abs, problems);
  if (problems.length > 0) throw configError('server', problems);

  const config: ServerConfig = {
    trustDomain: TrustDomain.parse(c.trustDomain),
    dataDir,
    logLevel: c.logLevel,
    agentApi: splitHostPort(c.agentApi.address),
    adminApi: { socketPath: abs(c.adminApi.socketPath ?? join(dataDir, 'admin.sock')) },
    datastore: {
      type: c.datastore.type,
      sqlitePath: abs(c.datastore.sqlitePath ?? join(dataDir, 'datastore.sqlite3')),
      ...(c.datastore.type === 'postgres'
        ? {
            postgres: {
              connectionString: c.datastore.connectionString as string,
              ...(c.datastore.passwordFile === undefined ? {} : { passwordFile: abs(c.datastore.passwordFile) }),
              ...(c.datastore.schema === undefined ? {} : { schema: c.datastore.schema }),
              ...(c.datastore.maxConnections === undefined ? {} : { maxConnections: c.datastore.maxConnections }),
            },
          }
        : {}),
    },
    keyManager: {
      type: c.keyManager.type,
      ...(c.keyManager.kekFile === undefined ? {} : { kekFile: abs(c.keyManager.kekFile) }),
      dir: abs(c.keyManager.dir ?? join(dataDir, 'keys')),
    },
    ca: {
      keyType: c.ca.keyType,
      jwtKeyType: c.ca.jwtKeyType,
      ttlMs: parseDuration(c.ca.ttl),
      ...(c.ca.signingThreads === undefined ? {} : { signingThreads: c.ca.signingThreads }),
      ...(c.ca.upstream === undefined
        ? {}
        : {
            upstream: {
              certFile: abs(c.ca.upstream.certFile),
              keyFile: abs(c.ca.upstream.keyFile),
              ...(c.ca.upstream.bundleFile === undefined ? {} : { bundleFile: abs(c.ca.upstream.bundleFile) }),
            },
          }),
    },
    svid: {
      defaultX509TtlMs: parseDuration(c.svid.defaultX509Ttl),
      defaultJwtTtlMs: parseDuration(c.svid.defaultJwtTtl),
      agentTtlMs: parseDuration(c.svid.agentTtl),
      ...(c.svid.jwtIssuer === undefined ? {} : { jwtIssuer: c.svid.jwtIssuer }),
    },
    bundleRefreshHintMs: parseDuration(c.bundleRefreshHint),
    nodeAttestors: {
      ...(c.nodeAttestors.joinToken === undefined
        ? {}
        : { joinToken: { defaultTtlMs: parseDuration(c.nodeAttestors.joinToken.defaultTtl) } }),
      ...(c.nodeAttestors.x509pop === undefined ? {} : { x509pop: { caBundleFile: abs(c.nodeAttestors.x509pop.caBundleFile) } }),
      ...(psat === undefined ? {} : { k8sPsat: psat }),
      ...(jwtNode === undefined ? {} : { jwt: jwtNode }),
    },
    ...(c.health === undefined ? {} : { health: splitHostPort(c.health.address) }),
    auditLog: { path: c.auditLog.path === '-' ? '-' : abs(c.auditLog.path ?? join(dataDir, 'audit.log')) },
  };
  return deepFreezeConfig(config);
}

/** Reads and validates a YAML config file plus flags; throws ERR_CONFIG_INVALID naming every bad key. */
export function loadServerConfig(path: string | undefined, flags: ServerFlags = {}): ServerConfig {
  if (path === undefined) return resolveServerConfig({}, flags);
  return resolveServerConfig(readYamlConfigFile(path, 'server'), flags, resolve(path, '..'));
}
