/**
 * `sigil server run`: composes the server from its config — datastore, key manager, CA,
 * trust bundle, node attestors, the agent API (gRPC over TCP+TLS with the server's own
 * SVID), the admin API (gRPC on a Unix socket, mode 0770), health and metrics, and the
 * audit log — and stops it again in reverse order.
 */
import { X509Certificate } from 'node:crypto';
import { chmodSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { Server, experimental } from '@grpc/grpc-js';
import type { CertificateProvider } from '@grpc/grpc-js/build/src/certificate-provider.js';
import { systemClock, type Clock } from '../common/clock.js';
import { SigilError, isSigilError } from '../common/errors.js';
import { createLogger, type Logger } from '../common/logger.js';
import { pemBlocks } from '../common/x509.js';
import type { Datastore } from '../datastore/datastore.js';
import { lockSqliteForServer } from '../datastore/sqlite/server-lock.js';
import { serviceDefinition } from '../grpc/proto.js';
import type { KeyManager } from '../plugin/key-manager.js';
import type { NodeAttestorServer } from '../plugin/node-attestor.js';
import { CaManager } from '../ca/ca-manager.js';
import { adoptLegacyCaJournal, datastoreCaJournal } from './ca-journal-store.js';
import { readOperatorFileSync } from '../ca/operator-file.js';
import { openKeyManager } from '../ca/key-manager/open-key-manager.js';
import { loadUpstreamAuthority } from '../ca/upstream-authority.js';
import { JoinTokenServerAttestor } from '../../attestors/node/join_token/server.js';
import { X509PopServerAttestor } from '../../attestors/node/x509pop/server.js';
import { K8sPsatServerAttestor } from '../../attestors/node/k8s_psat/server.js';
import { JwtServerAttestor } from '../../attestors/node/jwt/server.js';
import { createAdminServices } from './admin-api/admin-service.js';
import { listenAdminSocket, type AdminSocket } from './admin-api/admin-socket.js';
import { AgentConnections } from './agent-api/agent-connections.js';
import { createAgentService } from './agent-api/agent-service.js';
import { AuditLog, fileAuditSink, stdoutAuditSink, type AuditSink } from './audit-log.js';
import { AuditShipper } from './audit-shipper.js';
import { JournalAudit } from './journal-audit.js';
import { serverSpiffeId } from './authorized-entries.js';
import { BundleManager } from './bundle-manager.js';
import { ChangeHub } from './change-hub.js';
import type { ServerConfig } from './config.js';
import { startHealthServer, type HealthServer } from './health.js';
import { openServerDatastore } from './open-datastore.js';
import { ServerMetrics } from './metrics.js';
import type { ServerCa } from './server-ca.js';
import { ServerSvidProvider } from './server-svid.js';
import { resolveServerId } from './server-id.js';
import { reportReservedEntries } from './reserved-entries.js';
import { SIGIL_VERSION } from '../common/version.js';
import { startBundleEndpoint, type BundleEndpoint } from './federation/bundle-endpoint.js';
import { FederationRefresher } from './federation/federation-refresher.js';
import { AcmeIdentity } from './federation/acme-identity.js';

/** The proto file of the agent API, relative to proto/. */
export const AGENT_PROTO = 'sigil/agent/v1/agent.proto';
/** The proto file of the admin API, relative to proto/. */
export const ADMIN_PROTO = 'sigil/admin/v1/admin.proto';
/** Names of the admin services in ADMIN_PROTO (package sigil.admin.v1). */
export const ADMIN_SERVICES = ['Entries', 'Agents', 'JoinTokens', 'Bundles', 'Federation', 'LocalAuthority', 'Mint', 'Server'] as const;
/**
 * gRPC message size limits of both APIs, each way. 4 MiB is grpc-js's default receive
 * limit, so Sigil's own clients (agent, CLI) accept anything the server may send; the
 * server keeps its answers inside it by construction (sync pages of at most 1 MiB of
 * entries, at most 500 CSRs or entries per batch, bounded entry sizes) and refuses larger
 * requests with RESOURCE_EXHAUSTED before reading them.
 */
export const GRPC_MESSAGE_LIMITS = { receiveBytes: 4 * 1024 * 1024, sendBytes: 4 * 1024 * 1024 } as const;

const GRPC_SERVER_OPTIONS = {
  'grpc.max_receive_message_length': GRPC_MESSAGE_LIMITS.receiveBytes,
  'grpc.max_send_message_length': GRPC_MESSAGE_LIMITS.sendBytes,
  // nothing reads channelz here, and grpc-js counts every call and socket for it
  'grpc.enable_channelz': 0,
} as const;

/** Creates the data dir 0700, or brings an existing one of ours down to 0700. */
function prepareDataDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = statSync(dir);
  if ((st.mode & 0o077) === 0) return;
  try {
    chmodSync(dir, 0o700);
  } catch (err) {
    throw new SigilError('ERR_CONFIG_INVALID', `data dir ${dir} is open to other users (mode ${(st.mode & 0o777).toString(8)}) and cannot be made 0700`, {
      reason: 'data-dir-mode',
      cause: err,
    });
  }
}

/** The CA and JWT key files (`x509-ca-*.key.json`, `jwt-*.key.json`) in the disk key manager's folder. */
function caKeyFiles(dir: string): string[] {
  try {
    return readdirSync(dir).filter((n) => n.endsWith('.key.json') && (n.startsWith('x509-ca-') || n.startsWith('jwt-')));
  } catch {
    return [];
  }
}

/** True when the CA keys are files in keyManager.dir (disk, or pkcs11 in wrap mode). */
function keyFilesKept(config: ServerConfig): boolean {
  return config.keyManager.type === 'disk' || (config.keyManager.type === 'pkcs11' && config.keyManager.pkcs11?.mode === 'wrap');
}

/**
 * The refusal for a datastore that lost the CA state while the keys are still there. Starting
 * would mint a new CA: a new trust domain that no agent or relying party trusts, every agent
 * unknown. So nothing is created or replaced; the operator restores or decides.
 */
function lostDatastore(config: ServerConfig, what: string, cause?: unknown): SigilError {
  const files = keyFilesKept(config);
  const keys = files ? `${config.keyManager.dir} still holds the CA keys` : 'the key manager still holds the CA keys';
  const datastore = config.datastore.type === 'sqlite' ? config.datastore.sqlitePath : 'the PostgreSQL database';
  return new SigilError(
    'ERR_FAILED_PRECONDITION',
    `${what}, but ${keys}: the CA journal, entries and agents that went with them are missing. ` +
      `Restore ${datastore} from the backup taken with those keys (docs/operations.md, "Backing up the datastore") and start again. ` +
      `To start a new trust domain on purpose instead, move ${files ? config.keyManager.dir : 'the CA keys'} away first: every agent will then have to attest again.`,
    { reason: 'datastore-lost', ...(cause === undefined ? {} : { cause }) },
  );
}

/**
 * Before SQLite opens (and so creates) the file: a missing or zero-byte datastore is a first
 * start only when the key folder holds no CA key either.
 */
function refuseLostSqlite(config: ServerConfig): void {
  if (config.datastore.type !== 'sqlite' || !keyFilesKept(config)) return;
  const path = config.datastore.sqlitePath;
  let size: number | undefined;
  try {
    size = statSync(path).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return; // opening reports it
  }
  if (size !== undefined && size > 0) return;
  const keys = caKeyFiles(config.keyManager.dir);
  if (keys.length === 0) return;
  throw lostDatastore(config, size === undefined ? `the datastore file ${path} does not exist` : `the datastore file ${path} is empty (0 bytes)`);
}

/**
 * The CA journal of this server in the datastore. A journal written before servers had IDs
 * (owner '') becomes this server's when this server's key manager holds one of its keys: the
 * upgrade of a single server. Another server joining finds none of its keys there and starts
 * its own journal, leaving the old one to its owner.
 */
/** Reads the x509pop trust bundle (PEM certificates) named in the config. */
function readX509PopCas(path: string): Buffer[] {
  let pem: string;
  try {
    pem = readOperatorFileSync(path, 'nodeAttestors.x509pop.caBundleFile').toString('utf8');
  } catch (err) {
    if (err instanceof SigilError) throw err;
    throw new SigilError('ERR_CONFIG_INVALID', `cannot read nodeAttestors.x509pop.caBundleFile ${path}`, { reason: 'x509pop-ca-bundle', cause: err });
  }
  const cas = pemBlocks(pem, 'CERTIFICATE');
  if (cas.length === 0) {
    throw new SigilError('ERR_CONFIG_INVALID', `nodeAttestors.x509pop.caBundleFile ${path} holds no certificate`, { reason: 'x509pop-ca-bundle' });
  }
  for (const [i, der] of cas.entries()) {
    try {
      new X509Certificate(der);
    } catch (err) {
      throw new SigilError('ERR_CONFIG_INVALID', `certificate ${i + 1} of nodeAttestors.x509pop.caBundleFile ${path} is malformed`, { reason: 'x509pop-ca-bundle', cause: err });
    }
  }
  return cas;
}

/** Sigil's version as reported by the admin API (one constant for the CLI too). */
export { SIGIL_VERSION };

/** Injected dependencies of a server (all optional). */
export interface StartServerOptions {
  readonly clock?: Clock;
  readonly logger?: Logger;
  /** Audit destination; by default the file at config.auditLog.path. */
  readonly auditSink?: AuditSink;
  /** Key manager to use instead of the configured one (tests that share keys across restarts). */
  readonly keyManager?: KeyManager;
  /** Threads that verify CSRs and sign X.509-SVIDs, over config.ca.signingThreads; default one per core (os.availableParallelism()), 0 signs on the main thread. */
  readonly signingThreads?: number;
  /** Shortest wait between two fetches of a peer's bundle (default 5s; tests go lower, never below 1s). */
  readonly federationMinRefreshMs?: number;
}

/** A running server. */
export interface RunningServer {
  readonly config: ServerConfig;
  /** The agent API's bound address (port resolved when configured as 0). */
  readonly agentAddress: { readonly host: string; readonly port: number };
  readonly adminSocketPath: string;
  /** The federation bundle endpoint, when enabled. */
  readonly bundleEndpoint: BundleEndpoint | undefined;
  /** Health endpoint address, when enabled. */
  readonly healthAddress: { readonly host: string; readonly port: number } | undefined;
  readonly datastore: Datastore;
  /** This server's ID among the servers sharing the datastore. */
  readonly serverId: string;
  readonly ca: CaManager;
  readonly bundles: BundleManager;
  readonly metrics: ServerMetrics;
  readonly serverSvid: ServerSvidProvider;
  readonly federation: FederationRefresher;
  /** The X.509 authorities (DER) agents must trust to reach the agent API. */
  x509Authorities(): Buffer[];
  /**
   * Resolves (never rejects) when the server fails while running and must end: it was removed
   * with `sigil server remove` through another server. It then signs nothing, writes its CA
   * journal no more and reports not ready; the caller stops it and exits non-zero.
   */
  readonly failure: Promise<SigilError>;
  /** Stops everything; idempotent. */
  stop(): Promise<void>;
}

function shutdown(server: Server, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(t);
      resolve();
    });
  });
}

/**
 * Starts a server from a resolved config; rejects (after cleaning up) if any part fails. The
 * health endpoint (when configured) is up first, answering `/live` 200 and `/ready` 503 until
 * everything serves, so a server still waiting for PostgreSQL (src/server/open-datastore.ts) is
 * alive and not ready. `signal` aborts a start in progress (a stop asked while it waits): the
 * start cleans up and rejects with the signal's reason.
 */
export async function startServer(config: ServerConfig, options: StartServerOptions = {}, signal?: AbortSignal): Promise<RunningServer> {
  const clock = options.clock ?? systemClock;
  const logger = options.logger ?? createLogger({ level: config.logLevel, name: 'sigil-server' });
  const cleanups: (() => Promise<void> | void)[] = [];
  const cleanup = async (): Promise<void> => {
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch (err) {
        logger.warn({ err }, 'shutdown step failed');
      }
    }
    cleanups.length = 0;
  };
  try {
    prepareDataDir(config.dataDir);
    if (config.datastore.type === 'sqlite') {
      // before anything reads the file: a second server on it is refused, not let race the first
      const lock = lockSqliteForServer(config.datastore.sqlitePath);
      cleanups.push(() => lock.release());
    }
    refuseLostSqlite(config);
    const audit = new AuditLog(options.auditSink ?? (config.auditLog.path === '-' ? stdoutAuditSink() : fileAuditSink(config.auditLog.path)), clock);
    cleanups.push(() => audit.close());

    // Up before the datastore, which may keep the server waiting: alive, not ready until it serves.
    const metrics = new ServerMetrics();
    // each check is set once its part is up; until then it is false (waiting for PostgreSQL, loading keys)
    let keysAvailable = (): Promise<boolean> => Promise.resolve(false);
    let datastoreAnswers = (): Promise<boolean> => Promise.resolve(false);
    const readiness: { check?: () => Promise<boolean> } = {};
    let health: HealthServer | undefined;
    if (config.health !== undefined) {
      health = await startHealthServer({
        host: config.health.host,
        port: config.health.port,
        metrics,
        logger,
        keysAvailable: () => keysAvailable(),
        datastore: () => datastoreAnswers(),
        ready: () => readiness.check?.() ?? Promise.resolve(false),
      });
      const h = health;
      cleanups.push(() => h.close());
      logger.info({ host: h.host, port: h.port }, 'health endpoint listening');
    }

    const ds = await openServerDatastore(config, { clock, logger }, signal);
    cleanups.push(() => ds.close());
    signal?.throwIfAborted();
    datastoreAnswers = async () => {
      await ds.countEntries();
      return true;
    };

    // before anything can change: first copy what an earlier run committed but never shipped
    const shipper = new AuditShipper({
      store: ds,
      sink: audit.sink,
      cursor: config.auditLog.cursor,
      clock,
      logger,
      intervalMs: config.auditLog.shipIntervalMs,
      retentionMs: config.auditLog.retentionMs,
    });
    await shipper.start();
    audit.attachShipper(shipper);
    // runs after the APIs are shut (cleanups run in reverse), before the datastore closes
    cleanups.push(() => shipper.stop());
    const journalAudit = new JournalAudit();

    let keyManager = options.keyManager;
    // a token's own check once the CA's keys are loaded from it; a key manager handed in has none
    let keyManagerAvailable = (): Promise<boolean> => Promise.resolve(true);
    if (keyManager === undefined) {
      const opened = await openKeyManager(config.keyManager, logger);
      keyManager = opened.keyManager;
      keyManagerAvailable = () => opened.available();
      // runs after the CA has stopped (cleanups run in reverse)
      cleanups.push(() => opened.close());
    }
    const upstream =
      config.ca.upstream === undefined
        ? undefined
        : await loadUpstreamAuthority({
            certPath: config.ca.upstream.certFile,
            keyPath: config.ca.upstream.keyFile,
            ...(config.ca.upstream.bundleFile === undefined ? {} : { bundlePath: config.ca.upstream.bundleFile }),
          });
    const td = config.trustDomain;
    const serverId = resolveServerId(config.dataDir, config.serverId, logger);
    // node aliases hang from the server's ID: their changes may concern every agent
    const hub = new ChangeHub({ nodeAliasParent: serverSpiffeId(td).toString() });
    cleanups.push(() => hub.stop());
    const bundles = new BundleManager({ ds, trustDomain: td, refreshHintSeconds: Math.round(config.bundleRefreshHintMs / 1000), hub, logger, now: () => clock.nowMs() });
    await adoptLegacyCaJournal(ds, td, serverId, keyManager, logger);
    const ca = await CaManager.create({
      trustDomain: td,
      keyManager,
      journal: datastoreCaJournal(ds, td, serverId, () => journalAudit.take()),
      // the journal is saved first; the shared bundle is then merged from every server's journal
      publish: () => bundles.syncOwn(),
      propagationMarginMs: config.ca.propagationMarginMs,
      clock,
      logger,
      x509CaKeyType: config.ca.keyType,
      x509SvidTtlMs: config.svid.defaultX509TtlMs,
      jwtSvidTtlMs: config.svid.defaultJwtTtlMs,
      jwtKeyType: config.ca.jwtKeyType,
      ...(config.svid.jwtIssuer === undefined ? {} : { jwtIssuer: config.svid.jwtIssuer }),
      caTtlMs: config.ca.ttlMs,
      ...(upstream === undefined ? {} : { upstream }),
      signingThreads: options.signingThreads ?? config.ca.signingThreads ?? availableParallelism(),
    }).catch((err: unknown) => {
      if (isSigilError(err) && err.reason === 'ca-journal-missing') {
        throw lostDatastore(config, config.datastore.type === 'sqlite' ? `the datastore ${config.datastore.sqlitePath} holds no CA journal` : 'the PostgreSQL datastore holds no CA journal', err);
      }
      throw err;
    });
    // the CA's keys are loaded (or made): from here the key manager's own state counts
    keysAvailable = keyManagerAvailable;
    ca.start();
    cleanups.push(async () => {
      ca.stop();
      await ca.idle();
      await ca.close();
    });
    const serverCa: ServerCa = ca;
    // taken here, once: only the server SVID provider and agent attestation/renewal hold them
    const issuance = ca.takeReservedIssuance();

    await bundles.start(serverCa);
    cleanups.push(() => bundles.stop());
    // a taint or revoke of this server's authority made through another server's admin socket
    // is in this server's stored journal; the CA takes it in (src/server/remote-authority.ts)
    const reconcile = (): void => void ca.reconcile().catch((err: unknown) => logger.warn({ err }, 'CA journal reconcile failed'));
    const unreconcile = bundles.onChange(reconcile);
    // this server's journal marked removed or deleted (sigil server remove elsewhere): the CA halts
    const unwatchServers = bundles.onServersChanged(reconcile);
    cleanups.push(() => {
      unreconcile();
      unwatchServers();
    });
    await hub.startPolling(ds, logger, 1000, clock);
    const webCa = config.federation.httpsWebCaFile;
    const federation = new FederationRefresher({
      ds,
      bundles,
      hub,
      trustDomain: td,
      clock,
      logger,
      ...(webCa === undefined ? {} : { httpsWebCaPem: readOperatorFileSync(webCa, 'federation.httpsWebCaFile').toString('utf8') }),
      ...(options.federationMinRefreshMs === undefined ? {} : { minRefreshMs: options.federationMinRefreshMs }),
    });
    await federation.applyConfigured(config.federation.relationships, (action, id) => () => ({ who: 'config', action, result: 'ok', spiffeId: id }));
    federation.start();
    cleanups.push(() => federation.stop());
    await reportReservedEntries(ds, td, logger);

    const attestors = new Map<string, NodeAttestorServer>();
    if (config.nodeAttestors.joinToken !== undefined) attestors.set('join_token', new JoinTokenServerAttestor({ store: ds, clock }));
    if (config.nodeAttestors.x509pop !== undefined) {
      const cas = readX509PopCas(config.nodeAttestors.x509pop.caBundleFile);
      attestors.set('x509pop', new X509PopServerAttestor({ trustedCas: cas, clock }));
    }
    if (config.nodeAttestors.k8sPsat !== undefined) attestors.set('k8s_psat', new K8sPsatServerAttestor({ clusters: config.nodeAttestors.k8sPsat, clock }));
    if (config.nodeAttestors.jwt !== undefined) attestors.set('jwt', new JwtServerAttestor({ issuers: config.nodeAttestors.jwt, clock }));

    // agents' SVIDs may chain to any server's CA: the TLS roots are the shared bundle's
    const svid = new ServerSvidProvider({ ca: serverCa, issuance: issuance.server, spiffeId: serverSpiffeId(td).toString(), ttlMs: config.svid.agentTtlMs, clock, logger, roots: () => bundles.x509Anchors() });
    await svid.start();
    const unfollow = bundles.onChange(() => svid.refreshRoots());
    cleanups.push(() => {
      unfollow();
      svid.stop();
    });

    // accepted here and injected into grpc-js, so each connection's agent can be remembered (agent-connections.ts)
    const connections = new AgentConnections({ clock });
    let bundleEndpoint: BundleEndpoint | undefined;
    const be = config.federation.bundleEndpoint;
    if (be !== undefined) {
      let acme: AcmeIdentity | undefined;
      if (be.acme !== undefined) {
        const a = new AcmeIdentity(be.acme, logger);
        await a.start();
        cleanups.push(() => a.stop());
        acme = a;
      }
      bundleEndpoint = await startBundleEndpoint({
        host: be.host,
        port: be.port,
        identity:
          acme !== undefined
            ? { profile: 'https_web', current: () => acme.current(), onChange: (l) => acme.onChange(l) }
            : be.profile === 'https_web' && be.tls !== undefined
              ? { profile: 'https_web', certFile: be.tls.certFile, keyFile: be.tls.keyFile }
              : { profile: 'https_spiffe', current: () => svid.tlsIdentity(), onChange: (l) => svid.onRotated(l) },
        document: async () => (await bundles.own()).document,
        logger,
      });
      const ep = bundleEndpoint;
      cleanups.push(() => ep.close());
    }

    const agentService = createAgentService({
      connections,
      ds,
      ca: serverCa,
      agentIssuance: issuance.agent,
      bundles,
      hub,
      trustDomain: td,
      attestors,
      clock,
      logger,
      audit,
      metrics,
      agentSvidTtlMs: config.svid.agentTtlMs,
      defaultX509SvidTtlMs: config.svid.defaultX509TtlMs,
      defaultJwtSvidTtlMs: config.svid.defaultJwtTtlMs,
    });
    const agentServer = new Server(GRPC_SERVER_OPTIONS);
    agentServer.addService(serviceDefinition(AGENT_PROTO, 'sigil.agent.v1.Agent'), agentService);
    const provider = svid as unknown as CertificateProvider;
    const creds = experimental.createCertificateProviderServerCredentials(provider, provider, false);
    const { host } = config.agentApi;
    const injector = agentServer.createConnectionInjector(creds);
    cleanups.push(async () => {
      connections.stopAccepting();
      agentService.closeStreams();
      await shutdown(agentServer, 2000);
      injector.destroy();
      await connections.destroy();
    });
    const agentPort = await connections.listen(host, config.agentApi.port, (socket) => injector.injectConnection(socket));

    const started = clock.nowMs();
    let ready = false;
    let failed: (err: SigilError) => void = () => undefined;
    const failure = new Promise<SigilError>((resolve) => (failed = resolve));
    const onRemoved = (err: SigilError): void => {
      ready = false;
      logger.error({ serverId, err }, 'this server was removed (sigil server remove): not ready, stopping');
      failed(err);
    };
    ca.on('removed', onRemoved);
    cleanups.push(() => void ca.off('removed', onRemoved));
    const adminServer = new Server(GRPC_SERVER_OPTIONS);
    // handlers are built before the socket exists; calls only arrive once it does
    const admin: { socket?: AdminSocket } = {};
    const adminImpls = createAdminServices({
      ds,
      ca: serverCa,
      localAuthority: ca,
      journalAudit,
      serverId,
      bundles,
      hub,
      trustDomain: td,
      clock,
      logger,
      audit,
      joinTokenTtlMs: config.nodeAttestors.joinToken?.defaultTtlMs ?? 600_000,
      defaultX509SvidTtlMs: config.svid.defaultX509TtlMs,
      defaultJwtSvidTtlMs: config.svid.defaultJwtTtlMs,
      info: () => ({ agentApiAddress: `${host}:${agentPort}`, startedAt: started, ready, version: SIGIL_VERSION }),
      callerOf: (peer) => admin.socket?.callerOf(peer),
      federation,
    });
    for (const name of ADMIN_SERVICES) {
      adminServer.addService(serviceDefinition(ADMIN_PROTO, `sigil.admin.v1.${name}`), adminImpls[name] ?? {});
    }
    const socketPath = config.adminApi.socketPath;
    const adminSocket = await listenAdminSocket({ path: socketPath, grpcServer: adminServer, logger });
    admin.socket = adminSocket;
    cleanups.push(async () => {
      const closed = adminSocket.close();
      await shutdown(adminServer, 1000);
      await closed;
    });

    const refreshGauges = async (): Promise<void> => {
      metrics.entries.set(await ds.countEntries());
      metrics.agents.set(await ds.countAttestedNodes());
      const notAfter = Math.max(0, ...serverCa.x509Authorities().map((c) => new Date(new X509Certificate(c).validTo).getTime()));
      metrics.caExpiry.set(Math.floor(notAfter / 1000));
    };
    readiness.check = async () => {
      if (!ready) return false;
      // the gauges read the datastore: while it does not answer they keep their last values, and
      // the `datastore` check (not this one) says so
      await refreshGauges().catch((err: unknown) => logger.debug({ err }, 'metrics gauges not refreshed'));
      return true;
    };
    signal?.throwIfAborted();
    ready = ca.removal === undefined;
    if (ca.removal !== undefined) onRemoved(ca.removal);
    logger.info({ trustDomain: td.name, serverId, agentApi: `${host}:${agentPort}`, adminSocket: socketPath, health: health === undefined ? null : `${health.host}:${health.port}` }, 'server started');

    let stopping: Promise<void> | undefined;
    return {
      config,
      agentAddress: { host, port: agentPort },
      adminSocketPath: socketPath,
      healthAddress: health === undefined ? undefined : { host: health.host, port: health.port },
      bundleEndpoint,
      datastore: ds,
      serverId,
      ca,
      bundles,
      metrics,
      serverSvid: svid,
      federation,
      x509Authorities: () => bundles.x509Anchors(),
      failure,
      stop: () => {
        stopping ??= (async () => {
          ready = false;
          await cleanup();
          logger.info('server stopped');
        })();
        return stopping;
      },
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
