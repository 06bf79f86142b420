/**
 * The server's configuration: one YAML file plus command-line flags (flags win), checked
 * against one schema that rejects unknown keys and reports every problem at once with
 * the key named, then resolved (durations to milliseconds, paths to absolute) and frozen.
 */
import type { KeyManagerSpec } from '../ca/key-manager/open-key-manager.js';
import { join } from 'node:path';
import { z } from 'zod';
import {
  configError,
  deepFreezeConfig,
  durationSchema,
  hostPortSchema,
  loadConfigFile,
  logLevelSchema,
  parseRawConfig,
  trustDomainSchema as trustDomain,
  type LogLevel,
} from '../common/config.js';
import { parseDuration } from '../common/duration.js';
import { SERVER_ID_PATTERN } from '../datastore/validation.js';
import { issuerUrlProblem } from '../common/issuer-url.js';
import { TrustDomain } from '../spiffe/spiffe-id.js';
import { k8sPsatConfigSchema, resolveK8sPsat, type K8sPsatConfig } from './k8s-psat-config.js';
import { jwtNodeConfigSchema, resolveJwtNode, type JwtNodeConfig } from './jwt-node-config.js';
import { federationConfigSchema, resolveFederation, type FederationConfig } from './federation/federation-config.js';

const KEY_TYPES = ['ec-p256', 'ec-p384', 'rsa-2048'] as const;

const duration = durationSchema();

/** A duration that may be zero (`0s`: no wait, for one server without federation). */
const marginDuration = z.string().refine(
  (s) => {
    try {
      return parseDuration(s) >= 0;
    } catch {
      return false;
    }
  },
  { message: 'must be a duration such as 0s, 30s, 5m' },
);

const hostPort = hostPortSchema('0.0.0.0:8081');

/** A duration's milliseconds for a bound check after `duration`'s own; NaN (so no bound fails too) when it did not parse. */
function durationMs(d: string): number {
  try {
    return parseDuration(d);
  } catch {
    return Number.NaN;
  }
}

/** The schema of the YAML file (and of flags, merged into it). */
export const serverConfigSchema = z.strictObject({
  trustDomain,
  dataDir: z.string().min(1),
  serverId: z.string().regex(SERVER_ID_PATTERN, 'must be 1-64 of [a-z0-9._-] starting with a letter or digit').optional(),
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
      type: z.enum(['disk', 'memory', 'pkcs11']).default('disk'),
      kekFile: z.string().min(1).optional(),
      dir: z.string().min(1).optional(),
      // pkcs11: the token; the PIN only ever comes from pinFile
      module: z.string().min(1).optional(),
      tokenLabel: z.string().min(1).max(32).optional(),
      slot: z.number().int().min(0).optional(),
      pinFile: z.string().min(1).optional(),
      mode: z.enum(['wrap', 'sign']).optional(),
      kekLabel: z.string().min(1).max(64).optional(),
      sessions: z.number().int().min(1).max(64).optional(),
    })
    .default({ type: 'disk' }),
  ca: z
    .strictObject({
      keyType: z.enum(KEY_TYPES).default('ec-p256'),
      jwtKeyType: z.enum(KEY_TYPES).default('ec-p256'),
      ttl: duration.default('24h'),
      // bounded: each thread holds a copy of the CA key and a V8 isolate
      signingThreads: z.number().int().min(0).max(256).optional(),
      propagationMargin: marginDuration.default('30s'),
      upstream: z.strictObject({ certFile: z.string().min(1), keyFile: z.string().min(1), bundleFile: z.string().min(1).optional() }).optional(),
    })
    .default({ keyType: 'ec-p256', jwtKeyType: 'ec-p256', ttl: '24h', propagationMargin: '30s' }),
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
  federation: federationConfigSchema.optional(),
  auditLog: z
    .strictObject({
      path: z.string().min(1).optional(),
      // shipped records stay this long in the datastore; at least a minute, so a restart never races the prune
      retention: duration.refine((d) => !(durationMs(d) < 60_000), 'must be at least 1m').default('7d'),
      shipInterval: duration.refine((d) => !(durationMs(d) > 3_600_000), 'must be at most 1h').default('1s'),
      cursor: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'use 1 to 64 of [A-Za-z0-9._-]').default('default'),
    })
    .default({ retention: '7d', shipInterval: '1s', cursor: 'default' }),
});


/** What to set when a required key is missing: the key, and the flag of `sigil server run`. */
const SERVER_REQUIRED = {
  trustDomain: 'set trustDomain (e.g. example.org) or pass --trust-domain',
  dataDir: 'set dataDir or pass --data-dir',
};

/** The resolved, frozen server configuration handed to every component. */
export interface ServerConfig {
  readonly trustDomain: TrustDomain;
  readonly dataDir: string;
  /** The configured server ID; absent: generated once and kept in the data dir (src/server/server-id.ts). */
  readonly serverId?: string;
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
  /** Where the CA and JWT keys live (see src/ca/key-manager/open-key-manager.ts). */
  readonly keyManager: KeyManagerSpec;
  readonly ca: {
    readonly keyType: (typeof KEY_TYPES)[number];
    readonly jwtKeyType: (typeof KEY_TYPES)[number];
    readonly ttlMs: number;
    /** How long a new authority is in the trust bundle before it signs (agents and peers get it first). */
    readonly propagationMarginMs: number;
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
  /** The bundle endpoint this server publishes and the relationships declared in the file. */
  readonly federation: FederationConfig;
  readonly auditLog: {
    readonly path: string;
    /** How long shipped audit records stay in the datastore. */
    readonly retentionMs: number;
    /** How often the shipper looks for records without being asked. */
    readonly shipIntervalMs: number;
    /** The shipper's cursor name in the datastore (one per server sharing a PostgreSQL database). */
    readonly cursor: string;
  };
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

/** Writes the command-line flags into the raw config (flags win). */
function applyServerFlags(merged: Record<string, unknown>, flags: ServerFlags): void {
  if (flags.trustDomain !== undefined) merged.trustDomain = flags.trustDomain;
  if (flags.dataDir !== undefined) merged.dataDir = flags.dataDir;
  if (flags.logLevel !== undefined) merged.logLevel = flags.logLevel;
  if (flags.agentAddress !== undefined) setIn(merged, ['agentApi', 'address'], flags.agentAddress);
  if (flags.adminSocket !== undefined) setIn(merged, ['adminApi', 'socketPath'], flags.adminSocket);
  if (flags.healthAddress !== undefined) setIn(merged, ['health', 'address'], flags.healthAddress);
}

/** Validates raw config (already parsed YAML) merged with flags; resolves relative paths against `baseDir`. */
export function resolveServerConfig(raw: unknown, flags: ServerFlags = {}, baseDir = process.cwd()): ServerConfig {
  const { c, abs, problems } = parseRawConfig('server', serverConfigSchema, raw, { baseDir, hints: SERVER_REQUIRED, flags: (merged) => applyServerFlags(merged, flags) });
  const dataDir = abs(c.dataDir);
  if (c.keyManager.type === 'disk' && c.keyManager.kekFile === undefined) {
    problems.push('keyManager.kekFile: required when keyManager.type is disk');
  }
  const km = c.keyManager;
  if (km.type === 'pkcs11') {
    if (km.module === undefined) problems.push('keyManager.module: required when keyManager.type is pkcs11 (path of the PKCS#11 library)');
    if (km.pinFile === undefined) problems.push('keyManager.pinFile: required when keyManager.type is pkcs11');
    if (km.mode === undefined) problems.push('keyManager.mode: required when keyManager.type is pkcs11 (wrap or sign)');
    if ((km.tokenLabel === undefined) === (km.slot === undefined)) problems.push('keyManager.tokenLabel: give exactly one of tokenLabel and slot');
    if (km.kekFile !== undefined) problems.push('keyManager.kekFile: only used when keyManager.type is disk');
    if (km.mode === 'sign' && km.kekLabel !== undefined) problems.push('keyManager.kekLabel: only used in mode wrap');
  } else {
    for (const key of ['module', 'tokenLabel', 'slot', 'pinFile', 'mode', 'kekLabel', 'sessions'] as const) {
      if (km[key] !== undefined) problems.push(`keyManager.${key}: only used when keyManager.type is pkcs11`);
    }
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
  const federation = resolveFederation(c.federation, TrustDomain.parse(c.trustDomain), abs, problems);
  if (problems.length > 0) throw configError('server', problems);

  const config: ServerConfig = {
    trustDomain: TrustDomain.parse(c.trustDomain),
    dataDir,
    ...(c.serverId === undefined ? {} : { serverId: c.serverId }),
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
      ...(km.type === 'pkcs11'
        ? {
            pkcs11: {
              module: abs(km.module as string),
              ...(km.tokenLabel === undefined ? {} : { tokenLabel: km.tokenLabel }),
              ...(km.slot === undefined ? {} : { slot: km.slot }),
              pinFile: abs(km.pinFile as string),
              mode: km.mode as 'wrap' | 'sign',
              kekLabel: km.kekLabel ?? 'sigil-kek',
              sessions: km.sessions ?? 4,
            },
          }
        : {}),
    },
    ca: {
      keyType: c.ca.keyType,
      jwtKeyType: c.ca.jwtKeyType,
      ttlMs: parseDuration(c.ca.ttl),
      propagationMarginMs: parseDuration(c.ca.propagationMargin),
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
    federation,
    auditLog: {
      path: c.auditLog.path === '-' ? '-' : abs(c.auditLog.path ?? join(dataDir, 'audit.log')),
      retentionMs: parseDuration(c.auditLog.retention),
      shipIntervalMs: parseDuration(c.auditLog.shipInterval),
      cursor: c.auditLog.cursor,
    },
  };
  return deepFreezeConfig(config);
}

/** Reads and validates a YAML config file plus flags; throws ERR_CONFIG_INVALID naming every bad key. */
export function loadServerConfig(path: string | undefined, flags: ServerFlags = {}): ServerConfig {
  return loadConfigFile(path, 'server', (raw, baseDir) => resolveServerConfig(raw, flags, baseDir));
}
