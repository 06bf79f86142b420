/**
 * `sigil demo`: a complete local trust domain in one command. Starts a server (embedded
 * SQLite, disk key manager with a fresh KEK) and an agent as child processes, issues a join
 * token and hands it to the agent through a 0600 file, registers one entry per demo service
 * for the current user's uid, and starts the two demo services of examples/demo/, which talk
 * mTLS with 2-minute SVIDs so rotation is visible. Ctrl-C (SIGINT) or SIGTERM stops it all,
 * under the same service contract as the daemons (src/cli/service.ts): the stop signal aborts
 * a start in progress or ends the run, the children are stopped (services, agent, server) and
 * the demo exits 0; a child that dies on its own or a failed start is exit 1.
 */
import { constants, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync, accessSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateKekFile } from '../../ca/key-manager/kek.js';
import { X509Source } from '../../client/x509-source.js';
import { parseDuration } from '../../common/duration.js';
import { SigilError } from '../../common/errors.js';
import { toPem } from '../../common/x509.js';
import type { CommandIo } from '../io.js';
import { AdminClient } from './admin-client.js';
import { usageError, type ParsedArgs } from './args.js';
import { DemoChildren, type DemoChild } from './demo-children.js';
import { reportError } from './output.js';
import { runService, untilAborted } from '../service.js';

const TRUST_DOMAIN = 'demo.example.org';
const SERVICES = ['greeter-server', 'greeter-client'] as const;
const DEMO_SOCKET = '/tmp/sigil/agent.sock';
/** Unix socket paths longer than this do not fit in sockaddr_un on Linux (108 bytes with the NUL). */
const MAX_SOCKET_PATH = 100;
/** How long one child may take to stop after SIGTERM before it is killed (the daemons bound their own stop at 10 s). */
const STOP_GRACE_MS = 10_000;
/** Bound on the whole stop: the services, then the agent and the server, each within STOP_GRACE_MS. */
const DEMO_STOP_TIMEOUT_MS = 30_000;
/** `npm run demo`: one Ctrl-C reaches the demo twice (the terminal's, and npm's forward); only a later one forces. */
const REPEAT_SIGNAL_MS = 1500;

/** The package root: the folder above this module holding package.json and bin/sigil.js. */
function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'bin', 'sigil.js'))) return dir;
    dir = dirname(dir);
  }
  throw new SigilError('ERR_INTERNAL', 'cannot find the sigil project folder above the demo module', { reason: 'no-project-root' });
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** A free TCP port on 127.0.0.1 (the OS picks; a tiny race with other programs is acceptable for a demo). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      srv.close(() => (typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** Writes a secret to a new file of mode 0600 (never through argv or env). */
async function writeSecretFile(path: string, text: string): Promise<void> {
  const fh = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  try {
    await fh.writeFile(text);
  } finally {
    await fh.close();
  }
}

/** The Workload API socket: DESIGN.md's demo path when usable, else one under the data dir (or a temp dir when that path is too long). */
async function chooseSocket(requested: string | undefined, dataDir: string, tempDirs: string[]): Promise<{ path: string; note?: string }> {
  if (requested !== undefined) return { path: resolve(requested) };
  let why: string | undefined;
  try {
    mkdirSync(dirname(DEMO_SOCKET), { recursive: true, mode: 0o755 });
    accessSync(dirname(DEMO_SOCKET), constants.W_OK);
    if (existsSync(DEMO_SOCKET) && (await socketAnswers(DEMO_SOCKET))) why = `${DEMO_SOCKET} is in use by another agent`;
  } catch {
    why = `${dirname(DEMO_SOCKET)} is not writable`;
  }
  if (why === undefined) return { path: DEMO_SOCKET };
  let path = join(dataDir, 'agent.sock');
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
    const dir = mkdtempSync(join(tmpdir(), 'sigil-demo-'));
    tempDirs.push(dir);
    path = join(dir, 'agent.sock');
  }
  return { path, note: `${why}, so the agent listens on ${path}` };
}

/** A short socket path for the server's admin API (the data dir may be deep). */
function adminSocketPath(serverDir: string, tempDirs: string[]): string {
  const path = join(serverDir, 'admin.sock');
  if (Buffer.byteLength(path) <= MAX_SOCKET_PATH) return path;
  const dir = mkdtempSync(join(tmpdir(), 'sigil-demo-admin-'));
  tempDirs.push(dir);
  return join(dir, 'admin.sock');
}

function logTail(path: string, lines = 15): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Polls `check` until it returns a value; prints a progress line every 5 s; fails when the child exits or time runs out. */
async function waitFor<T>(io: CommandIo, what: string, check: () => Promise<T | undefined>, options: { child?: DemoChild; timeoutMs: number; signal: AbortSignal }): Promise<T> {
  const start = Date.now();
  let nextNote = start + 5000;
  for (;;) {
    if (options.signal.aborted) throw new SigilError('ERR_CANCELLED', 'demo stopped while starting', { reason: 'demo-cancelled' });
    const child = options.child;
    if (child !== undefined && (child.process.exitCode !== null || child.process.signalCode !== null)) {
      throw new SigilError('ERR_UNAVAILABLE', `${child.name} exited while ${what}`, { reason: 'demo-child-exited' });
    }
    const value = await check().catch(() => undefined);
    if (value !== undefined) return value;
    const now = Date.now();
    if (now - start > options.timeoutMs) throw new SigilError('ERR_DEADLINE_EXCEEDED', `timed out after ${Math.round((now - start) / 1000)}s ${what}`, { reason: 'demo-timeout' });
    if (now >= nextNote) {
      io.out(`  … still ${what} (${Math.round((now - start) / 1000)}s)\n`);
      nextNote = now + 5000;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

interface BundleMsg {
  x509_authorities: Buffer[];
}
interface EntryResult {
  status: { code: number; message: string; sigil_code: string };
  entry: { id: string } | null;
}

/** Runs `sigil demo`. */
export async function run(_command: string, args: ParsedArgs, io: CommandIo): Promise<number> {
  let ttlMs: number;
  try {
    const ttlText = args.get('svid-ttl') ?? '2m';
    ttlMs = parseDuration(ttlText);
    if (ttlMs < 60_000) throw usageError(`--svid-ttl must be at least 1m (the server's minimum), got ${JSON.stringify(ttlText)}`);
  } catch (err) {
    return reportError(io, err);
  }

  const root = projectRoot();
  const dataDir = resolve(args.get('data-dir') ?? join(root, '.sigil-demo'));
  const shown = (p: string): string => {
    const rel = relative(process.cwd(), p);
    return rel !== '' && !rel.startsWith('..') && rel.length < p.length ? rel : p;
  };
  const pidFile = join(dataDir, 'demo.pid');
  const children = new DemoChildren();
  // A forced stop (a second signal) or the stop bound exits at once: nothing the demo started outlives it.
  const lastResort = (): void => children.killAll();
  process.on('exit', lastResort);
  try {
    return await runService({ name: 'sigil demo', io, stopTimeoutMs: DEMO_STOP_TIMEOUT_MS, repeatWithinMs: REPEAT_SIGNAL_MS }, (stop) =>
      runDemo({ io, args, root, dataDir, pidFile, children, ttlMs, shown }, stop),
    );
  } finally {
    process.off('exit', lastResort);
  }
}

/** What runDemo works with. */
interface DemoSetup {
  readonly io: CommandIo;
  readonly args: ParsedArgs;
  readonly root: string;
  readonly dataDir: string;
  readonly pidFile: string;
  readonly children: DemoChildren;
  readonly ttlMs: number;
  readonly shown: (path: string) => string;
}

/** The demo as a service body: starts everything, runs until `signal` aborts or a child dies, then stops it all. */
async function runDemo(setup: DemoSetup, signal: AbortSignal): Promise<void> {
  const { io, args, root, dataDir, pidFile, children, ttlMs, shown } = setup;
  const tempDirs: string[] = [];
  let socketPath: string | undefined;
  let ownsPidFile = false;
  let died: DemoChild | undefined;
  try {
    // One demo per data dir: a second one would wipe the first one's state under it.
    if (existsSync(pidFile)) {
      const pid = Number(readFileSync(pidFile, 'utf8').trim());
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && pidAlive(pid)) {
        throw new SigilError('ERR_ALREADY_EXISTS', `a demo is already running in ${shown(dataDir)} (pid ${pid}); stop it with Ctrl-C in its terminal, or pass --data-dir`, { reason: 'demo-running' });
      }
    }
    io.out(`sigil demo: starting a fresh local trust domain in ${shown(dataDir)}/\n`);
    rmSync(dataDir, { recursive: true, force: true });
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    writeFileSync(pidFile, `${process.pid}\n`, { mode: 0o600 });
    ownsPidFile = true;

    const socket = await chooseSocket(args.get('socket'), dataDir, tempDirs);
    socketPath = socket.path;
    if (socket.note !== undefined) io.out(`  note: ${socket.note}\n`);

    // --- server ---
    const serverDir = join(dataDir, 'server');
    const adminSocket = adminSocketPath(serverDir, tempDirs);
    const kekFile = join(dataDir, 'kek');
    await generateKekFile(kekFile);
    const agentPort = await freePort();
    const serverConfig = join(dataDir, 'server.yaml');
    writeFileSync(
      serverConfig,
      [
        '# written by sigil demo; keys are described in docs/configuration.md',
        `trustDomain: ${TRUST_DOMAIN}`,
        'dataDir: server',
        'logLevel: info',
        'agentApi:',
        `  address: 127.0.0.1:${agentPort}`,
        'adminApi:',
        `  socketPath: ${JSON.stringify(adminSocket)}`,
        'keyManager:',
        '  type: disk',
        '  kekFile: kek',
        'svid:',
        `  defaultX509Ttl: ${Math.round(ttlMs / 1000)}s`,
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
    const sigil = join(root, 'bin', 'sigil.js');
    const serverLog = join(dataDir, 'server.log');
    io.out(`sigil demo: starting the server (first start creates the CA; log ${shown(serverLog)})\n`);
    const server = children.start('server', process.execPath, [sigil, 'server', 'run', '--config', serverConfig], { cwd: root, output: { logFile: serverLog } });
    const admin = new AdminClient(adminSocket);
    let agentId: string;
    try {
      await waitFor(
        io,
        'waiting for the server',
        async () => ((await admin.call<{ ready: boolean }>('Server', 'GetInfo', {}, 2000)).ready ? true : undefined),
        { child: server, timeoutMs: 90_000, signal },
      );
      io.out(`  server ready: trust domain ${TRUST_DOMAIN}, agent API 127.0.0.1:${agentPort}\n`);

      // --- trust bundle, join token, entries ---
      const bundle = await admin.call<BundleMsg>('Bundles', 'GetBundle');
      const bundleFile = join(dataDir, 'bundle.pem');
      writeFileSync(bundleFile, bundle.x509_authorities.map((der) => toPem(der, 'CERTIFICATE')).join(''), { mode: 0o644 });
      const token = await admin.call<{ token: string; agent_id: string }>('JoinTokens', 'CreateJoinToken', { ttl_seconds: 600 });
      const tokenFile = join(dataDir, 'join-token');
      await writeSecretFile(tokenFile, `${token.token}\n`);
      agentId = token.agent_id;
      io.out(`  join token issued for ${agentId} (written to ${shown(tokenFile)}, mode 0600)\n`);

      const uid = process.getuid?.() ?? 0;
      for (const name of SERVICES) {
        const r = await admin.call<{ results: EntryResult[] }>('Entries', 'BatchCreateEntry', {
          entries: [
            {
              spiffe_id: `spiffe://${TRUST_DOMAIN}/demo/${name}`,
              parent_id: agentId,
              selectors: [{ type: 'unix', value: `uid:${uid}` }],
              x509_svid_ttl_seconds: Math.round(ttlMs / 1000),
              jwt_svid_ttl_seconds: 0,
              dns_names: [],
              federates_with: [],
              admin: false,
              downstream: false,
              hint: name,
              expires_at: 0,
            },
          ],
        });
        const result = r.results[0];
        if (result === undefined || result.status.code !== 0) {
          throw new SigilError('ERR_INTERNAL', `could not register ${name}: ${result?.status.message ?? 'no result'}`, { reason: 'demo-entry' });
        }
      }
      io.out(`  registered spiffe://${TRUST_DOMAIN}/demo/{${SERVICES.join(',')}} for unix:uid:${uid} (${userInfo().username}), X509-SVID TTL ${Math.round(ttlMs / 1000)}s\n`);
    } finally {
      admin.close();
    }

    // --- agent ---
    const agentConfig = join(dataDir, 'agent.yaml');
    writeFileSync(
      agentConfig,
      [
        '# written by sigil demo; keys are described in docs/configuration.md',
        `trustDomain: ${TRUST_DOMAIN}`,
        `serverAddress: 127.0.0.1:${agentPort}`,
        'trustBundleFile: bundle.pem',
        'dataDir: agent',
        `socketPath: ${JSON.stringify(socketPath)}`,
        'logLevel: info',
        'nodeAttestor:',
        '  joinToken:',
        '    tokenFile: join-token',
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
    const agentLog = join(dataDir, 'agent.log');
    io.out(`sigil demo: starting the agent (attests with the join token; log ${shown(agentLog)})\n`);
    const agent = children.start('agent', process.execPath, [sigil, 'agent', 'run', '--config', agentConfig], { cwd: root, output: { logFile: agentLog } });
    const endpoint = `unix://${socketPath}`;
    const wanted = SERVICES.map((s) => `spiffe://${TRUST_DOMAIN}/demo/${s}`);
    await waitFor(
      io,
      'waiting for the agent to serve both demo identities',
      async () => {
        if (!existsSync(socketPath as string)) return undefined;
        const source = await X509Source.create({ address: endpoint, timeoutMs: 3000 }, signal);
        try {
          const ids = source.context.svids.map((s) => s.id.toString());
          return wanted.every((w) => ids.includes(w)) ? true : undefined;
        } finally {
          await source.close();
        }
      },
      { child: agent, timeoutMs: 90_000, signal },
    );
    io.out(`  agent ready: Workload API on ${socketPath}\n`);

    // --- demo services ---
    const servicePort = await freePort();
    const [serverId, clientId] = wanted as [string, string];
    const serviceEnv = (me: string, peer: string): Record<string, string> => ({
      SPIFFE_ENDPOINT_SOCKET: endpoint,
      MY_SPIFFE_ID: me,
      PEER_SPIFFE_ID: peer,
      PORT: String(servicePort),
      SIGIL_DEMO_CHILD: '1',
    });
    const relay = (name: string) => (line: string) => io.out(`[${name}] ${line}\n`);
    io.out('sigil demo: starting the two demo services (examples/demo/)\n');
    // The client starts once the server listens, so its first call does not fail.
    let listening: () => void = () => undefined;
    const isListening = new Promise<true>((r) => (listening = () => r(true)));
    const greeterServer = children.start('greeter-server', process.execPath, [join(root, 'examples/demo/greeter-server.js')], {
      cwd: root,
      env: serviceEnv(serverId, clientId),
      output: {
        relay: (line) => {
          if (line.startsWith('listening on ')) listening();
          relay('greeter-server')(line);
        },
      },
    });
    await waitFor(io, 'waiting for greeter-server to listen', () => Promise.race([isListening, Promise.resolve(undefined)]), { child: greeterServer, timeoutMs: 30_000, signal });
    children.start('greeter-client', process.execPath, [join(root, 'examples/demo/greeter-client.js')], { cwd: root, env: serviceEnv(clientId, serverId), output: { relay: relay('greeter-client') } });

    const bin = shown(sigil);
    const fetchDir = '/tmp/x';
    io.out(
      [
        '',
        'Sigil demo is ready.',
        '',
        `  server          pid ${server.pid}, trust domain ${TRUST_DOMAIN}, agent API on 127.0.0.1:${agentPort}`,
        `                  admin socket ${adminSocket}`,
        `  agent           pid ${agent.pid}, attested as ${agentId}`,
        `                  Workload API socket ${socketPath}`,
        `  greeter-server  ${serverId}, mTLS on 127.0.0.1:${servicePort}, accepts only greeter-client`,
        `  greeter-client  ${clientId}, calls greeter-server every 3s and prints both serial numbers`,
        `  X509-SVIDs live ${Math.round(ttlMs / 1000)}s and the agent renews them at about half of that: watch the serials change.`,
        `  State and logs: ${shown(dataDir)}/ (server.log, agent.log)`,
        '',
        'Try in a second terminal, from this folder:',
        '',
        `  SPIFFE_ENDPOINT_SOCKET=${endpoint} node ${bin} api fetch x509 --write ${fetchDir}`,
        `  openssl verify -CAfile ${fetchDir}/bundle.0.pem ${fetchDir}/svid.0.pem`,
        // absolute: the admin client dials unix://<path>, where a relative path's first segment would be read as an authority
        `  SIGIL_ADMIN_SOCKET=${adminSocket} node ${bin} entry list`,
        '',
        'The fetch runs as you, so it gets both demo identities (svid.0 and svid.1): the entries select unix:uid.',
        'Press Ctrl-C to stop everything.',
        '',
      ].join('\n'),
    );

    // Runs until a signal, or until a child dies on its own (then the demo is broken: stop).
    died = await Promise.race([untilAborted(signal).then(() => undefined), ...children.all.map((c) => c.exited.then(() => c))]);
    if (died !== undefined && !signal.aborted) io.err(`sigil demo: ${died.name} (pid ${died.pid}) exited unexpectedly; stopping the rest\n`);
    else died = undefined;
  } catch (err) {
    // A failed start (not a requested stop): what the server and agent said last, before the error line.
    if (!signal.aborted) {
      for (const c of children.all.filter((x) => x.name === 'server' || x.name === 'agent')) {
        io.err(`--- last lines of ${c.name}.log ---\n${logTail(join(dataDir, `${c.name}.log`))}\n`);
      }
    }
    throw err;
  } finally {
    if (children.all.length > 0) io.out('sigil demo: stopping the services, then the agent, then the server\n');
    await children.stopAll(STOP_GRACE_MS, (c) => io.out(`  stopping ${c.name} (pid ${c.pid})\n`));
    // The agent removes its socket; if it could not (killed), do it here.
    if (socketPath !== undefined) {
      try {
        if (lstatSync(socketPath).isSocket() && !(await socketAnswers(socketPath))) unlinkSync(socketPath);
      } catch {
        // already gone
      }
    }
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
    if (ownsPidFile) rmSync(pidFile, { force: true });
    if (ownsPidFile) io.out(`sigil demo: stopped; every process exited, socket removed; state kept in ${shown(dataDir)}/\n`);
  }
  if (died !== undefined) throw new SigilError('ERR_UNAVAILABLE', `${died.name} (pid ${died.pid}) exited unexpectedly`, { reason: 'demo-child-exited' });
}
