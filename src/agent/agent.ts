/**
 * The agent daemon: loads or obtains its own SVID, syncs its authorised entries and bundles
 * from the server, keeps an in-memory SVID cache rotated, and serves the Workload API on a
 * Unix socket. Everything is in process and stoppable; `sigil agent run` is a thin shell.
 */
import { readFileSync } from 'node:fs';
import { UnixWorkloadAttestor } from '../../attestors/workload/unix/unix-attestor.js';
import { K8sWorkloadAttestor } from '../../attestors/workload/k8s/k8s-attestor.js';
import { systemClock, type Clock } from '../common/clock.js';
import { SigilError } from '../common/errors.js';
import { startProbeServer, type ProbeServer, type ReadinessChecks } from '../common/health-http.js';
import { createLogger, type Logger } from '../common/logger.js';
import { checkSecretFileMode } from '../common/secret-file.js';
import { pemBlocks } from '../common/x509.js';
import { trimNativeHeap } from './peer/peer-credentials.js';
import { ProcfsProcessInfo, type ProcessInfo } from './peer/process-info.js';
import { startWorkloadApiServer, type WorkloadApiServer } from './workload-api/workload-api-server.js';
import { AgentIdentityManager, type AgentSvid } from './agent-identity.js';
import { AgentStore } from './agent-store.js';
import type { AgentConfig } from './config.js';
import { EntrySync } from './entry-sync.js';
import { AgentServerClient, type HostLookup } from './server-client.js';
import { SvidCache } from './svid-cache.js';

/** Injected dependencies of an agent (all optional). */
export interface StartAgentOptions {
  readonly clock?: Clock;
  readonly logger?: Logger;
  /** Random source for rotation and retry jitter. */
  readonly random?: () => number;
  /** Reader of /proc; the real procfs by default. */
  readonly processInfo?: ProcessInfo;
  /** Wait between checks while the server has banned this agent; overrides config `banRecheckInterval` (tests). */
  readonly bannedRetryMs?: number;
  /** Resolves DNS names among the server addresses; the system resolver by default (tests). */
  readonly lookup?: HostLookup;
}

/** A running agent. */
export interface RunningAgent {
  readonly config: AgentConfig;
  /** `unix:///path` of the Workload API. */
  readonly address: string;
  readonly cache: SvidCache;
  readonly identity: AgentIdentityManager;
  readonly sync: EntrySync;
  /** The health endpoint's bound host and port, when `health` is configured. */
  readonly healthAddress: { readonly host: string; readonly port: number } | undefined;
  /** The agent's SPIFFE ID. */
  agentId(): string;
  /** What `/ready` reports: attested, first entry sync applied, Workload API listening. */
  readiness(): ReadinessChecks;
  /** Stops serving and every loop; idempotent. */
  stop(): Promise<void>;
}

function readBootstrapBundle(path: string): Buffer[] {
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (err) {
    throw new SigilError('ERR_CONFIG_INVALID', `cannot read trust bundle file ${path}`, { reason: 'trust-bundle-file', cause: err });
  }
  const roots = pemBlocks(pem, 'CERTIFICATE');
  if (roots.length === 0) throw new SigilError('ERR_CONFIG_INVALID', `trust bundle file ${path} holds no certificate`, { reason: 'trust-bundle-file' });
  return roots;
}

function union(a: readonly Buffer[], b: readonly Buffer[]): Buffer[] {
  const out = [...a];
  for (const x of b) if (!out.some((y) => y.equals(x))) out.push(x);
  return out;
}

/**
 * Starts an agent: attests (or loads its stored SVID), begins entry sync and serves the
 * Workload API. Resolves once the socket accepts connections; the cache answers workloads
 * as soon as the first entry batch arrives. Rejects when attestation is refused.
 */
export async function startAgent(config: AgentConfig, options: StartAgentOptions = {}, signal?: AbortSignal): Promise<RunningAgent> {
  const clock = options.clock ?? systemClock;
  const logger = options.logger ?? createLogger({ level: config.logLevel, name: 'sigil-agent' });
  // Checked at every start, not only when attesting: a token others can read is refused even
  // while a stored identity means it is not needed now.
  if (config.nodeAttestor.type === 'join_token') checkSecretFileMode(config.nodeAttestor.tokenFile, 'join token file');
  const store = new AgentStore(config.dataDir);
  // Trust the bootstrap file and the last bundle we synced: the server's CA may have rotated since the file was written.
  const roots = union(store.loadBundle(), readBootstrapBundle(config.trustBundleFile));
  const storedBundle = store.loadBundleDocument(config.trustDomain);
  if (storedBundle !== undefined) logger.info({ trustDomain: config.trustDomain.name }, 'trust bundle loaded from data dir; serving it until the server is reached');
  const client = new AgentServerClient({
    addresses: config.serverAddresses,
    trustDomain: config.trustDomain,
    roots,
    onFailover: (from, to, err) => logger.warn({ from, to, code: err.code }, 'server call failed; using the next server'),
    onResolved: (addresses) => logger.info({ servers: config.serverAddresses, addresses }, 'server addresses resolved'),
    ...(options.lookup === undefined ? {} : { lookup: options.lookup }),
  });
  // a DNS name among the servers stands for every address it resolves to
  await client.resolveAddresses();
  const retry = { retryInitialMs: config.sync.retryInitialMs, retryMaxMs: config.sync.retryMaxMs, ...(options.random ? { random: options.random } : {}) };

  const sync = new EntrySync({
    client,
    clock,
    logger,
    pageSize: config.sync.pageSize,
    ...retry,
    onBatch: (b) => cache.applyBatch(b),
    onRejected: () => identity.reattest('rejected'),
    onFailure: (err) => cache.syncFailed(err),
  });
  const onRoots = (r: Buffer[]): void => {
    client.setRoots(r);
    store.saveBundle(r);
  };
  const identity = new AgentIdentityManager({
    attestorConfig: config.nodeAttestor,
    store,
    client,
    clock,
    logger,
    ...retry,
    onRoots,
    bannedRetryMs: options.bannedRetryMs ?? config.banRecheckIntervalMs,
    // A new agent SVID must carry the sync stream at once: the server drops the old one once the new one is used.
    onIdentity: () => sync.reconnect(),
  });
  const cache = new SvidCache({
    trustDomain: config.trustDomain,
    issuer: client,
    clock,
    logger,
    maxSize: config.svidCache.maxSize,
    idleGraceMs: config.svidCache.idleGraceMs,
    ...retry,
    onRejected: () => identity.reattest('rejected'),
    onRoots,
    // The last bundle served before a restart is served again at once after it, server or not.
    ...(storedBundle === undefined ? {} : { storedBundle }),
    onOwnBundle: (b) => {
      try {
        store.saveBundleDocument(b);
      } catch (err) {
        logger.warn({ err }, 'cannot store the trust bundle in the data dir; a restart will wait for the server to serve bundles');
      }
    },
    afterMinting: () => trimNativeHeap(),
    // The agent SVID too must leave a tainted authority before the operator revokes it.
    onTaintedAuthorities: (tainted, delayMs) => void identity.renewIfTainted(tainted, delayMs),
  });

  // Filled in once the socket listens; readiness reads it before then.
  const served: { api?: WorkloadApiServer } = {};
  const readiness = (): ReadinessChecks => ({
    attested: identity.current !== undefined,
    entriesSynced: cache.stats().synced,
    workloadApiListening: served.api?.listening ?? false,
  });
  // Up before attestation: a liveness probe must not kill an agent that waits on the server.
  let probes: ProbeServer | undefined;
  if (config.health !== undefined) {
    try {
      probes = await startProbeServer({ ...config.health, readiness });
    } catch (err) {
      client.close();
      cache.stop();
      throw new SigilError('ERR_CONFIG_INVALID', `cannot listen for health on ${config.health.host}:${config.health.port}`, { reason: 'health-listen', cause: err });
    }
    logger.info({ host: probes.host, port: probes.port }, 'health endpoint listening');
  }

  let svid: AgentSvid;
  try {
    svid = await identity.start(signal);
  } catch (err) {
    await probes?.close();
    identity.stop();
    cache.stop();
    client.close();
    throw err;
  }
  if (!svid.spiffeId.startsWith(`${config.trustDomain.idString}/`)) {
    identity.stop();
    cache.stop();
    client.close();
    await probes?.close();
    throw new SigilError('ERR_ATTESTATION_FAILED', `server issued ${svid.spiffeId}, outside trust domain ${config.trustDomain.name}`, { reason: 'wrong-trust-domain' });
  }

  sync.start();

  const processes = options.processInfo ?? new ProcfsProcessInfo();
  let api: WorkloadApiServer;
  try {
    api = await startWorkloadApiServer({
      socketPath: config.socketPath,
      attestors: [
        new UnixWorkloadAttestor({
          processes,
          discoverWorkloadPath: config.workloadAttestors.unix.discoverWorkloadPath,
          workloadSizeLimit: config.workloadAttestors.unix.workloadSizeLimit,
        }),
        ...(config.workloadAttestors.k8s === undefined ? [] : [new K8sWorkloadAttestor({ ...config.workloadAttestors.k8s, clock })]),
      ],
      identities: cache,
      logger,
      clock,
      processInfo: processes,
      allowUnauthenticatedVerifiers: config.allowUnauthenticatedVerifiers,
    });
  } catch (err) {
    await probes?.close();
    await sync.stop();
    identity.stop();
    cache.stop();
    client.close();
    throw err;
  }
  served.api = api;
  logger.info({ agentId: svid.spiffeId, socket: api.address, server: client.address, servers: client.addresses }, 'agent started');

  let stopping: Promise<void> | undefined;
  return {
    config,
    address: api.address,
    healthAddress: probes === undefined ? undefined : { host: probes.host, port: probes.port },
    cache,
    identity,
    sync,
    agentId: () => identity.current?.spiffeId ?? svid.spiffeId,
    readiness,
    stop: () => {
      stopping ??= (async () => {
        await api.close();
        await probes?.close();
        identity.stop();
        await sync.stop();
        cache.stop();
        client.close();
        logger.info('agent stopped');
      })();
      return stopping;
    },
  };
}
