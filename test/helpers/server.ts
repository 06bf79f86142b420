/**
 * Starts a real Sigil server in-process on temporary directories (real SQLite file, disk
 * key manager with a KEK file, agent API on 127.0.0.1 port 0, admin API on a Unix socket),
 * capturing its logs and audit lines so tests can scan them for secrets.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManualClock, sleepWith, systemClock, type Clock, type TimerHandle } from '../../src/common/clock.js';
import type { Secret } from '../../src/common/secret.js';
import { memoryLogger, type Logger } from '../../src/common/logger.js';
import { generateKekFile } from '../../src/ca/key-manager/kek.js';
import { resolveServerConfig, type ServerConfig } from '../../src/server/config.js';
import { startServer, type RunningServer } from '../../src/server/server.js';
import type { AuditSink } from '../../src/server/audit-log.js';
import { AdminClient } from '../../src/cli/commands/admin-client.js';
import { Secret as SecretValue } from '../../src/common/secret.js';

/**
 * Real time that can still be moved ahead: `nowMs()` is the wall clock plus whatever
 * `advance`/`set` added, and timers fire in real time (or at once when a jump passes them).
 * The default clock of startTestServer, so SVIDs minted with short TTLs really expire and
 * TLS (which checks validity against the wall clock) accepts what the CA signs.
 */
export class WallClock extends ManualClock {
  #offsetMs: number;
  readonly #timers = new Set<{ at: number; fire: () => void; cancel: () => void }>();

  /** `offsetMs` shifts this clock from the wall clock (negative: behind). */
  constructor(offsetMs = 0) {
    super(Date.now() + offsetMs);
    this.#offsetMs = offsetMs;
  }
  override nowMs(): number {
    return Date.now() + this.#offsetMs;
  }
  override now(): Date {
    return new Date(this.nowMs());
  }
  override setTimer(fn: () => void, ms: number): TimerHandle {
    let done = false;
    const entry = {
      at: this.nowMs() + Math.max(0, ms),
      fire: (): void => {
        if (done) return;
        done = true;
        handle.cancel();
        this.#timers.delete(entry);
        fn();
      },
      cancel: (): void => {
        done = true;
        handle.cancel();
        this.#timers.delete(entry);
      },
    };
    const handle = systemClock.setTimer(() => entry.fire(), ms);
    this.#timers.add(entry);
    return { cancel: entry.cancel };
  }
  override sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return sleepWith(this, ms, signal);
  }
  override get pendingTimers(): number {
    return this.#timers.size;
  }
  override advance(ms: number): void {
    this.set(this.nowMs() + ms);
  }
  override set(targetMs: number): void {
    if (targetMs <= this.nowMs()) return;
    this.#offsetMs += targetMs - this.nowMs();
    // Timers a jump passes fire now, earliest first, as a ManualClock's would.
    for (const t of [...this.#timers].sort((a, b) => a.at - b.at)) if (t.at <= targetMs) t.fire();
  }
}

/** Options of startTestServer. */
export interface TestServerOptions<C extends Clock = Clock> {
  readonly trustDomain?: string;
  /** Reuse a directory (e.g. to restart a server on the same data). */
  readonly dir?: string;
  /** Extra raw config merged over the defaults (YAML-shaped). */
  readonly config?: Record<string, unknown>;
  /** Any clock; a WallClock (real time) by default. */
  readonly clock?: C;
  /**
   * Without `clock`: start the default WallClock this far behind real time, for tests that
   * advance the server's clock and still need TLS to accept what it signs afterwards.
   */
  readonly behindMs?: number;
}

/** A registration entry to create: selectors as `type:value`; optional fields as in the admin API. */
export interface TestEntrySpec {
  readonly spiffeId: string;
  readonly parentId: string;
  readonly selectors: readonly string[];
  readonly x509SvidTtlSeconds?: number;
  readonly jwtSvidTtlSeconds?: number;
  readonly dnsNames?: readonly string[];
  readonly hint?: string;
  /** Trust domains (`other.org` or `spiffe://other.org`) whose bundles the workload gets. */
  readonly federatesWith?: readonly string[];
  /** When the entry stops being valid, in ms since the epoch (0 or absent: never). */
  readonly expiresAtMs?: number;
  /** Accept federated trust domains that have no bundle yet (the admin API refuses them otherwise). */
  readonly allowMissingFederatedBundle?: boolean;
}

/** A server started for a test, with its captured logs. */
export interface TestServer<C extends Clock = ManualClock> {
  readonly server: RunningServer;
  readonly config: ServerConfig;
  readonly dir: string;
  /** The server's clock: the one passed in, or the default WallClock (a ManualClock). */
  readonly clock: C;
  readonly logger: Logger;
  /** Every log line the server wrote. */
  readonly logLines: string[];
  /** Every audit line the server wrote. */
  readonly auditLines: string[];
  readonly admin: AdminClient;
  /** `127.0.0.1:<port>` of the agent API. */
  readonly agentTarget: string;
  /** Creates a join token through the admin API. */
  createJoinToken(ttlSeconds?: number): Promise<{ token: Secret<string>; tokenId: string; agentId: string }>;
  /** Creates a registration entry through the admin API and returns its ID. */
  createEntry(entry: TestEntrySpec): Promise<string>;
  /** Stops the server (keeps the directory). */
  stop(): Promise<void>;
  /** Stops the server and removes its directory. */
  destroy(): Promise<void>;
}

/** Creates a temp dir with a KEK file (mode 0600). */
export async function makeServerDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sigil-server-'));
  await generateKekFile(join(dir, 'kek'));
  return dir;
}

/** Starts a server on temp dirs with the default WallClock; call `destroy()` in the test's teardown. */
export async function startTestServer(options?: TestServerOptions<never>): Promise<TestServer>;
/** Starts a server on temp dirs driven by `options.clock`; call `destroy()` in the test's teardown. */
export async function startTestServer<C extends Clock>(options: TestServerOptions<C> & { readonly clock: C }): Promise<TestServer<C>>;
export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer<Clock>> {
  const dir = options.dir ?? (await makeServerDir());
  const clock = options.clock ?? new WallClock(-(options.behindMs ?? 0));
  const raw = {
    trustDomain: options.trustDomain ?? 'example.org',
    dataDir: join(dir, 'data'),
    logLevel: 'debug',
    agentApi: { address: '127.0.0.1:0' },
    adminApi: { socketPath: join(dir, 'admin.sock') },
    keyManager: { type: 'disk', kekFile: join(dir, 'kek') },
    // one server in one process: tests activate right after prepare
    ca: { propagationMargin: '0s' },
    ...(options.config ?? {}),
  };
  const config = resolveServerConfig(raw, {}, dir);
  const { logger, lines } = memoryLogger('debug');
  const auditLines: string[] = [];
  const auditSink: AuditSink = { write: (l) => void auditLines.push(l), close: () => undefined };
  const server = await startServer(config, { clock, logger, auditSink });
  const admin = new AdminClient(server.adminSocketPath);
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    admin.close();
    await server.stop();
  };
  return {
    server,
    config,
    dir,
    clock,
    logger,
    logLines: lines,
    auditLines,
    admin,
    agentTarget: `127.0.0.1:${server.agentAddress.port}`,
    async createJoinToken(ttlSeconds = 0) {
      const r = await admin.call<{ token: string; token_id: string; agent_id: string }>('JoinTokens', 'CreateJoinToken', { ttl_seconds: ttlSeconds });
      return { token: new SecretValue(r.token), tokenId: r.token_id, agentId: r.agent_id };
    },
    async createEntry(entry) {
      const r = await admin.call<{ results: { status: { code: number; message: string }; entry?: { id: string } }[] }>('Entries', 'BatchCreateEntry', {
        entries: [
          {
            spiffe_id: entry.spiffeId,
            parent_id: entry.parentId,
            selectors: entry.selectors.map((s) => {
              const i = s.indexOf(':');
              return { type: s.slice(0, i), value: s.slice(i + 1) };
            }),
            x509_svid_ttl_seconds: entry.x509SvidTtlSeconds ?? 0,
            jwt_svid_ttl_seconds: entry.jwtSvidTtlSeconds ?? 0,
            dns_names: [...(entry.dnsNames ?? [])],
            hint: entry.hint ?? '',
            federates_with: (entry.federatesWith ?? []).map((td) => (td.startsWith('spiffe://') ? td : `spiffe://${td}`)),
            expires_at: Math.floor((entry.expiresAtMs ?? 0) / 1000),
          },
        ],
        allow_missing_federated_bundle: entry.allowMissingFederatedBundle === true,
      });
      const res = r.results[0];
      if (res === undefined || res.status.code !== 0 || res.entry === undefined) throw new Error(`entry create failed: ${res?.status.message}`);
      return res.entry.id;
    },
    stop,
    async destroy() {
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Writes a YAML config for a server in `dir` (for CLI tests that run `sigil server run`). */
export async function writeServerConfig(dir: string, extra = ''): Promise<string> {
  const path = join(dir, 'server.yaml');
  await writeFile(
    path,
    `trustDomain: example.org\ndataDir: ${join(dir, 'data')}\nagentApi:\n  address: 127.0.0.1:0\nadminApi:\n  socketPath: ${join(dir, 'admin.sock')}\nkeyManager:\n  type: disk\n  kekFile: ${join(dir, 'kek')}\n${extra}`,
  );
  return path;
}

/**
 * Servers sharing one datastore, one per server ID, in order (each with
 * `ca.propagationMargin: 1s`, so a prepared authority may be activated a second later);
 * destroyed in reverse order at the test's teardown.
 */
export async function startServersOn(
  t: { teardown(fn: () => Promise<void>): void },
  datastore: Record<string, unknown>,
  serverIds: readonly string[],
): Promise<TestServer[]> {
  const started: TestServer[] = [];
  t.teardown(async () => {
    for (const s of [...started].reverse()) await s.destroy();
  });
  for (const serverId of serverIds) started.push(await startTestServer({ config: { datastore, serverId, ca: { propagationMargin: '1s' } } }));
  return started;
}
