/**
 * The agent's configuration: one YAML file plus command-line flags (flags win), checked
 * against one schema that rejects unknown keys and reports every problem at once with the
 * key named, then resolved (durations to milliseconds, paths to absolute) and frozen.
 * Secrets are never config values: the join token is read from the file named here.
 */
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
import { TrustDomain } from '../spiffe/spiffe-id.js';
import type { K8sAttestorConfig } from '../../attestors/workload/k8s/k8s-attestor.js';
import type { KubeletConnection } from '../../attestors/workload/k8s/kubelet-client.js';

const duration = durationSchema();

/** The server's agent API: an address to connect to. */
const serverHostPort = hostPortSchema('sigil-server:8081', { dial: true });
/** An address the agent listens on (0: any free port). */
const listenHostPort = hostPortSchema('127.0.0.1:8082');

/** Where Kubernetes mounts a pod's service-account token and cluster CA. */
const K8S_SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** Default Workload API socket (the deploy location; the demo uses /tmp/sigil/agent.sock). */
export const DEFAULT_AGENT_SOCKET = '/run/sigil/agent.sock';

/** The schema of the YAML file (and of flags, merged into it). */
export const agentConfigSchema = z.strictObject({
  trustDomain,
  /** host:port of the server's agent API (the one-element form of serverAddresses). */
  serverAddress: serverHostPort.optional(),
  /** host:port of every server's agent API (several servers on one PostgreSQL); the agent fails over between them. */
  serverAddresses: z.array(serverHostPort).min(1).max(64).optional(),
  /** PEM file with the server's CA certificates, trusted for the first connection (before any bundle is synced). */
  trustBundleFile: z.string().min(1),
  dataDir: z.string().min(1),
  socketPath: z.string().min(1).default(DEFAULT_AGENT_SOCKET),
  logLevel: logLevelSchema.default('info'),
  nodeAttestor: z.strictObject({
    joinToken: z.strictObject({ tokenFile: z.string().min(1) }).optional(),
    x509pop: z.strictObject({ certFile: z.string().min(1), keyFile: z.string().min(1) }).optional(),
    /** A projected service-account token (attestors/node/k8s_psat). */
    k8sPsat: z
      .strictObject({
        cluster: z.string().regex(/^[A-Za-z0-9._-]{1,128}$/, 'cluster names use [A-Za-z0-9._-]'),
        tokenFile: z.string().min(1).default('/var/run/secrets/tokens/sigil-agent'),
      })
      .optional(),
    /** An OpenID identity token of the platform (attestors/node/jwt): CI runners, cloud VMs. */
    jwt: z
      .strictObject({
        /** The name the server's nodeAttestors.jwt.issuers knows the issuer by. */
        issuer: z.string().regex(/^[A-Za-z0-9._-]{1,128}$/, 'issuer names use [A-Za-z0-9._-]'),
        tokenFile: z.string().min(1),
      })
      .optional(),
  }),
  workloadAttestors: z
    .strictObject({
      unix: z
        .strictObject({
          discoverWorkloadPath: z.boolean().default(false),
          workloadSizeLimit: z.number().int().default(128 * 1024 * 1024),
        })
        .default({ discoverWorkloadPath: false, workloadSizeLimit: 128 * 1024 * 1024 }),
      /** Kubernetes pods, read from the kubelet (attestors/workload/k8s); off when absent. */
      k8s: z
        .strictObject({
          kubeletSecurePort: z.number().int().min(1).max(65535).optional(),
          kubeletReadOnlyPort: z.number().int().min(1).max(65535).optional(),
          kubeletCaPath: z.string().min(1).default(K8S_SERVICE_ACCOUNT_DIR + '/ca.crt'),
          skipKubeletVerification: z.boolean().default(false),
          tokenPath: z.string().min(1).default(K8S_SERVICE_ACCOUNT_DIR + '/token'),
          nodeName: z.string().min(1).optional(),
          nodeNameEnv: z.string().min(1).default('MY_NODE_NAME'),
          maxPollAttempts: z.number().int().min(1).max(10_000).default(60),
          pollRetryInterval: duration.default('500ms'),
          reloadInterval: duration.default('1m'),
          disableContainerSelectors: z.boolean().default(false),
        })
        .optional(),
    })
    .default({ unix: { discoverWorkloadPath: false, workloadSizeLimit: 128 * 1024 * 1024 } }),
  svidCache: z
    .strictObject({
      /** Entries minted eagerly (beyond this, only for connected workloads). */
      maxSize: z.number().int().min(1).default(1000),
      /** How long an SVID no connected workload matches stays cached when over maxSize. */
      idleGrace: duration.default('5m'),
    })
    .default({ maxSize: 1000, idleGrace: '5m' }),
  sync: z
    .strictObject({
      pageSize: z.number().int().min(0).max(1000).default(0),
      retryInitial: duration.default('1s'),
      retryMax: duration.default('30s'),
    })
    .default({ pageSize: 0, retryInitial: '1s', retryMax: '30s' }),
  allowUnauthenticatedVerifiers: z.boolean().default(false),
  /** Wait between attestation checks while the server has banned this agent. */
  banRecheckInterval: duration.default('5m'),
  /** HTTP `/live` and `/ready` for probes; off when absent. */
  health: z.strictObject({ address: listenHostPort }).optional(),
});


/** What to set when a required key is missing: the key, and the flag of `sigil agent run` where there is one. */
const AGENT_REQUIRED = {
  trustDomain: 'set trustDomain (e.g. example.org) or pass --trust-domain',
  trustBundleFile: "set trustBundleFile (the server's CA certificates, PEM) or pass --trust-bundle",
  dataDir: 'set dataDir or pass --data-dir',
  nodeAttestor: 'set nodeAttestor.joinToken.tokenFile or pass --join-token-file (or configure nodeAttestor.x509pop, nodeAttestor.k8sPsat or nodeAttestor.jwt)',
};

/** The node attestor the agent uses, as configured. */
export type AgentNodeAttestorConfig =
  | { readonly type: 'join_token'; readonly tokenFile: string }
  | { readonly type: 'x509pop'; readonly certFile: string; readonly keyFile: string }
  | { readonly type: 'k8s_psat'; readonly cluster: string; readonly tokenFile: string }
  | { readonly type: 'jwt'; readonly issuer: string; readonly tokenFile: string };

/** The resolved, frozen agent configuration handed to every component. */
export interface AgentConfig {
  readonly trustDomain: TrustDomain;
  /** The first of serverAddresses (logs, single-server setups). */
  readonly serverAddress: string;
  /** Every server's agent API, host:port; one connection at a time, failing over in turn. */
  readonly serverAddresses: readonly string[];
  readonly trustBundleFile: string;
  readonly dataDir: string;
  readonly socketPath: string;
  readonly logLevel: LogLevel;
  readonly nodeAttestor: AgentNodeAttestorConfig;
  readonly workloadAttestors: {
    readonly unix: { readonly discoverWorkloadPath: boolean; readonly workloadSizeLimit: number };
    /** The k8s attestor, when configured. */
    readonly k8s?: K8sAttestorConfig;
  };
  readonly svidCache: { readonly maxSize: number; readonly idleGraceMs: number };
  readonly sync: { readonly pageSize: number; readonly retryInitialMs: number; readonly retryMaxMs: number };
  readonly allowUnauthenticatedVerifiers: boolean;
  readonly banRecheckIntervalMs: number;
  /** Where `/live` and `/ready` are served; undefined when off. */
  readonly health?: { readonly host: string; readonly port: number };
}

/** Command-line values that override the file; only set ones apply. */
export interface AgentFlags {
  readonly trustDomain?: string;
  readonly serverAddress?: string;
  readonly trustBundleFile?: string;
  readonly dataDir?: string;
  readonly socketPath?: string;
  readonly logLevel?: string;
  readonly joinTokenFile?: string;
}

/** Writes the command-line flags into the raw config (flags win). */
function applyAgentFlags(merged: Record<string, unknown>, flags: AgentFlags): void {
  if (flags.trustDomain !== undefined) merged.trustDomain = flags.trustDomain;
  if (flags.serverAddress !== undefined) {
    // the flag names the one server to use, whatever the file lists
    merged.serverAddress = flags.serverAddress;
    delete merged.serverAddresses;
  }
  if (flags.trustBundleFile !== undefined) merged.trustBundleFile = flags.trustBundleFile;
  if (flags.dataDir !== undefined) merged.dataDir = flags.dataDir;
  if (flags.socketPath !== undefined) merged.socketPath = flags.socketPath;
  if (flags.logLevel !== undefined) merged.logLevel = flags.logLevel;
  if (flags.joinTokenFile !== undefined) {
    // A flag-named token file replaces whatever attestor the file configured.
    merged.nodeAttestor = { joinToken: { tokenFile: flags.joinTokenFile } };
  }
}

/** Validates raw config (parsed YAML) merged with flags; resolves relative paths against `baseDir`. */
export function resolveAgentConfig(raw: unknown, flags: AgentFlags = {}, baseDir = process.cwd()): AgentConfig {
  const { c, abs, problems } = parseRawConfig('agent', agentConfigSchema, raw, { baseDir, hints: AGENT_REQUIRED, flags: (merged) => applyAgentFlags(merged, flags) });
  if (c.serverAddress !== undefined && c.serverAddresses !== undefined) {
    problems.push('serverAddress, serverAddresses: set one of them, not both (serverAddress is the one-element form of serverAddresses)');
  } else if (c.serverAddress === undefined && c.serverAddresses === undefined) {
    problems.push("serverAddress: required: set serverAddress (host:port of the server's agent API), serverAddresses (a list, for several servers) or pass --server-address");
  }
  const serverAddresses = [...new Set(c.serverAddresses ?? (c.serverAddress === undefined ? [] : [c.serverAddress]))];
  const { joinToken, x509pop, k8sPsat, jwt } = c.nodeAttestor;
  if ([joinToken, x509pop, k8sPsat, jwt].filter((a) => a !== undefined).length !== 1) {
    problems.push('nodeAttestor: configure exactly one of joinToken, x509pop, k8sPsat, jwt');
  }
  const k8s = c.workloadAttestors.k8s;
  if (k8s !== undefined && k8s.kubeletSecurePort !== undefined && k8s.kubeletReadOnlyPort !== undefined) {
    problems.push('workloadAttestors.k8s: set kubeletSecurePort or kubeletReadOnlyPort, not both');
  }
  if (problems.length > 0) throw configError('agent', problems);
  const nodeAttestor: AgentNodeAttestorConfig =
    joinToken !== undefined
      ? { type: 'join_token', tokenFile: abs(joinToken.tokenFile) }
      : k8sPsat !== undefined
        ? { type: 'k8s_psat', cluster: k8sPsat.cluster, tokenFile: abs(k8sPsat.tokenFile) }
        : jwt !== undefined
          ? { type: 'jwt', issuer: jwt.issuer, tokenFile: abs(jwt.tokenFile) }
          : { type: 'x509pop', certFile: abs((x509pop as { certFile: string }).certFile), keyFile: abs((x509pop as { keyFile: string }).keyFile) };

  const config: AgentConfig = {
    trustDomain: TrustDomain.parse(c.trustDomain),
    serverAddress: serverAddresses[0] as string,
    serverAddresses,
    trustBundleFile: abs(c.trustBundleFile),
    dataDir: abs(c.dataDir),
    socketPath: abs(c.socketPath),
    logLevel: c.logLevel,
    nodeAttestor,
    workloadAttestors: {
      unix: { ...c.workloadAttestors.unix },
      ...(k8s === undefined ? {} : { k8s: resolveK8s(k8s, abs) }),
    },
    svidCache: { maxSize: c.svidCache.maxSize, idleGraceMs: parseDuration(c.svidCache.idleGrace) },
    sync: { pageSize: c.sync.pageSize, retryInitialMs: parseDuration(c.sync.retryInitial), retryMaxMs: parseDuration(c.sync.retryMax) },
    allowUnauthenticatedVerifiers: c.allowUnauthenticatedVerifiers,
    banRecheckIntervalMs: parseDuration(c.banRecheckInterval),
    ...(c.health === undefined ? {} : { health: splitHostPort(c.health.address) }),
  };
  return deepFreezeConfig(config);
}

/** The k8s attestor's settings: the node name from the config, else from its environment variable (SPIRE's MY_NODE_NAME). */
function resolveK8s(k: NonNullable<z.output<typeof agentConfigSchema>['workloadAttestors']['k8s']>, abs: (p: string) => string): K8sAttestorConfig {
  const nodeName = k.nodeName ?? (process.env[k.nodeNameEnv] || undefined);
  const kubelet: KubeletConnection =
    k.kubeletReadOnlyPort !== undefined
      ? { kind: 'read-only', port: k.kubeletReadOnlyPort }
      : {
          kind: 'secure',
          port: k.kubeletSecurePort ?? 10250,
          skipVerification: k.skipKubeletVerification,
          tokenFile: abs(k.tokenPath),
          ...(k.skipKubeletVerification ? {} : { caFile: abs(k.kubeletCaPath) }),
          ...(nodeName === undefined ? {} : { nodeName }),
        };
  return {
    kubelet,
    maxPollAttempts: k.maxPollAttempts,
    pollRetryIntervalMs: parseDuration(k.pollRetryInterval),
    reloadIntervalMs: parseDuration(k.reloadInterval),
    disableContainerSelectors: k.disableContainerSelectors,
  };
}

/** Splits a host:port the schema accepted; brackets of an IPv6 host are dropped. */
function splitHostPort(text: string): { host: string; port: number } {
  const i = text.lastIndexOf(':');
  return { host: text.slice(0, i).replace(/^\[(.*)\]$/, '$1'), port: Number(text.slice(i + 1)) };
}

/** Reads a YAML config file and resolves it with flags; paths in the file are relative to its folder. */
export function loadAgentConfig(path: string | undefined, flags: AgentFlags = {}): AgentConfig {
  return loadConfigFile(path, 'agent', (raw, baseDir) => resolveAgentConfig(raw, flags, baseDir));
}

/** Where the agent keeps its SVID, key and last-known bundle inside `dataDir`. */
export function agentDataPath(config: Pick<AgentConfig, 'dataDir'>, name: string): string {
  return join(config.dataDir, name);
}
