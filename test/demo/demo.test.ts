/**
 * `sigil demo` end to end, as a newcomer would use it: start it as a child process, wait
 * for "ready", run the printed `api fetch x509 --write` command in another process,
 * `openssl verify` what it wrote, see the two demo services exchange mTLS requests, then
 * SIGINT and check that every process the demo started has exited and the socket is gone.
 * SIGTERM, as a supervisor or `kill` sends it, ends it the same way (src/cli/service.ts), whether
 * the demo is up or still starting: exit 0, nothing left running.
 */
import test, { type ExecutionContext } from 'ava';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const SIGIL = join(ROOT, 'bin/sigil.js');
const run = promisify(execFile);

/** A running demo with its output so far. */
interface Demo {
  readonly child: ChildProcess;
  readonly dir: string;
  readonly socket: string;
  output(): string;
  waitFor(re: RegExp, timeoutMs: number): Promise<RegExpExecArray>;
  exited: Promise<number | string>;
}

function startDemo(args: string[] = []): Demo {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-demo-test-'));
  const socket = join(dir, 'agent.sock');
  const child = spawn(process.execPath, [SIGIL, 'demo', '--data-dir', join(dir, 'demo'), '--socket', socket, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const waiters = new Set<() => void>();
  const onData = (d: Buffer): void => {
    out += d.toString();
    for (const w of waiters) w();
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const exited = new Promise<number | string>((r) => child.once('exit', (code, signal) => r(code ?? signal ?? 'unknown')));
  return {
    child,
    dir,
    socket,
    output: () => out,
    exited,
    waitFor: (re, timeoutMs) =>
      new Promise((resolvePromise, reject) => {
        const check = (): void => {
          const m = re.exec(out);
          if (m === null) return;
          cleanup();
          resolvePromise(m);
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`timed out waiting for ${re}; output so far:\n${out}`));
        }, timeoutMs);
        const cleanup = (): void => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        void exited.then(() => {
          if (waiters.has(check)) {
            cleanup();
            reject(new Error(`demo exited while waiting for ${re}; output:\n${out}`));
          }
        });
        check();
      }),
  };
}

/** Resolves to the demo's exit code, or 'timeout' (without keeping the process alive). */
function exitWithin(demo: Demo, ms: number): Promise<number | string> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([demo.exited, new Promise<string>((r) => (timer = setTimeout(() => r('timeout'), ms)))]).finally(() => clearTimeout(timer));
}

/** Every live descendant of `pid` (by parent pid in /proc). */
function descendants(pid: number): number[] {
  const parentOf = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parentOf.set(Number(name), ppid);
    } catch {
      // exited meanwhile
    }
  }
  const out: number[] = [];
  const walk = (p: number): void => {
    for (const [child, parent] of parentOf) {
      if (parent === p) {
        out.push(child);
        walk(child);
      }
    }
  };
  walk(pid);
  return out;
}

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/**
 * Teardown: kills the demo and everything it started. Its children are in process groups of their
 * own, so killing the demo alone (a test that failed before it stopped) would leave them running.
 */
function killAll(demo: Demo): void {
  if (demo.child.exitCode !== null || demo.child.signalCode !== null) return;
  const pids = descendants(demo.child.pid as number);
  demo.child.kill('SIGKILL');
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // exited meanwhile
    }
  }
}

test.serial('the demo comes up, serves a verifiable SVID to a second process, runs mTLS between its services, and stops cleanly on SIGINT', async (t) => {
  const demo = startDemo();
  t.teardown(() => {
    killAll(demo);
    rmSync(demo.dir, { recursive: true, force: true });
  });
  await demo.waitFor(/^Sigil demo is ready\.$/m, 120_000);
  const out = demo.output();
  t.true(out.includes(`Workload API socket ${demo.socket}`));

  // The exact command the demo prints, run in another process (writing to our own dir).
  const m = /^ {2}SPIFFE_ENDPOINT_SOCKET=(\S+) node (\S+) api fetch x509 --write (\S+)$/m.exec(out);
  if (m === null) return t.fail(`no fetch command in:\n${out}`);
  t.is(m[1], `unix://${demo.socket}`);
  const verifyLine = /^ {2}openssl verify -CAfile (\S+)\/(bundle\.0\.pem) (\S+)\/(svid\.0\.pem)$/m.exec(out);
  t.truthy(verifyLine, 'the openssl verify line matches the files api fetch writes');
  const written = join(demo.dir, 'x');
  const fetched = await run(process.execPath, [m[2] as string, 'api', 'fetch', 'x509', '--write', written], { cwd: ROOT, env: { ...process.env, SPIFFE_ENDPOINT_SOCKET: m[1] as string }, timeout: 30_000 });
  t.true(fetched.stdout.includes('spiffe://demo.example.org/demo/greeter-server'));
  const ids: string[] = [];
  for (const n of [0, 1]) {
    const v = await run('openssl', ['verify', '-CAfile', join(written, `bundle.${n}.pem`), join(written, `svid.${n}.pem`)]);
    t.regex(v.stdout, /: OK$/m);
    t.is(statSync(join(written, `svid.${n}.key`)).mode & 0o777, 0o600);
    ids.push(new X509Certificate(readFileSync(join(written, `svid.${n}.pem`))).subjectAltName ?? '');
  }
  t.deepEqual(ids.sort(), ['URI:spiffe://demo.example.org/demo/greeter-client', 'URI:spiffe://demo.example.org/demo/greeter-server']);

  // The services talk mTLS, each side seeing the other's SPIFFE ID.
  await demo.waitFor(/^\[greeter-client\] mTLS ok: server spiffe:\/\/demo\.example\.org\/demo\/greeter-server serial \S+, me serial \S+$/m, 60_000);
  t.false(demo.output().includes('call failed'), 'the client starts only once the server listens');
  await demo.waitFor(/^\[greeter-server\] mTLS request #1 from spiffe:\/\/demo\.example\.org\/demo\/greeter-client, client serial \S+$/m, 10_000);

  // A second demo on the same data dir refuses instead of wiping the first one's state.
  const second = await run(process.execPath, [SIGIL, 'demo', '--data-dir', join(demo.dir, 'demo'), '--socket', join(demo.dir, 'other.sock')], { cwd: ROOT, timeout: 30_000 }).then(
    () => ({ code: 0, stderr: '' }),
    (err: { code?: number; stderr?: string }) => ({ code: err.code, stderr: err.stderr ?? '' }),
  );
  t.is(second.code, 1);
  t.true(second.stderr.includes('ERR_ALREADY_EXISTS'), second.stderr);

  // The join token never appears in a child's argv or environment, nor in any output or log.
  const token = readFileSync(join(demo.dir, 'demo', 'join-token'), 'utf8').trim();
  t.is(statSync(join(demo.dir, 'demo', 'join-token')).mode & 0o777, 0o600);
  const pids = descendants(demo.child.pid as number);
  t.true(pids.length >= 4, `expected server, agent and two services, found ${pids.length} processes`);
  for (const pid of pids) {
    t.false(readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(token), `token in argv of ${pid}`);
    t.false(readFileSync(`/proc/${pid}/environ`, 'utf8').includes(token), `token in env of ${pid}`);
  }

  // `npm run demo`: one Ctrl-C reaches the demo twice at once (the terminal's and npm's forward); that is one stop, not a forced one.
  demo.child.kill('SIGINT');
  demo.child.kill('SIGINT');
  const code = await exitWithin(demo, 40_000);
  t.is(code, 0, demo.output());
  t.regex(demo.output(), /sigil demo: stopped/);
  t.false(demo.output().includes('received again'), demo.output());
  t.deepEqual(pids.filter(alive), [], 'processes left running after the demo stopped');
  t.false(existsSync(demo.socket), 'the Workload API socket was removed');
  t.false(existsSync(join(demo.dir, 'demo', 'demo.pid')));
  const logs = ['server.log', 'agent.log'].map((f) => readFileSync(join(demo.dir, 'demo', f), 'utf8')).join('\n') + demo.output();
  t.false(logs.includes(token));
  t.false(logs.includes('PRIVATE KEY'));
});

/** Sends SIGTERM to the demo and checks how it ended: 0, every process it started gone, no socket, no pid file. */
async function terminated(t: ExecutionContext, demo: Demo): Promise<void> {
  const pids = descendants(demo.child.pid as number);
  demo.child.kill('SIGTERM');
  const code = await exitWithin(demo, 40_000);
  t.is(code, 0, demo.output());
  t.regex(demo.output(), /sigil demo: SIGTERM received; stopping/);
  t.regex(demo.output(), /sigil demo: stopped/);
  t.false(/^sigil: /m.test(demo.output()), `a requested stop is no error: ${demo.output()}`);
  t.deepEqual(pids.filter(alive), [], 'processes left running after the demo stopped');
  t.false(existsSync(demo.socket), 'the Workload API socket was removed');
  t.false(existsSync(join(demo.dir, 'demo', 'demo.pid')));
}

test.serial('SIGTERM stops the running demo (services, agent, server) and it exits 0', async (t) => {
  const demo = startDemo();
  t.teardown(() => {
    killAll(demo);
    rmSync(demo.dir, { recursive: true, force: true });
  });
  await demo.waitFor(/^Sigil demo is ready\.$/m, 120_000);
  await demo.waitFor(/^\[greeter-client\] mTLS ok: /m, 60_000);
  t.true(descendants(demo.child.pid as number).length >= 4, 'server, agent and two services run');
  await terminated(t, demo);
});

test.serial('SIGTERM while the demo is still starting stops what it started and exits 0', async (t) => {
  const demo = startDemo();
  t.teardown(() => {
    killAll(demo);
    rmSync(demo.dir, { recursive: true, force: true });
  });
  // The agent has been started and the demo waits for it to serve both identities.
  await demo.waitFor(/^sigil demo: starting the agent/m, 120_000);
  // the line is printed just before the agent is spawned
  for (let i = 0; i < 200 && descendants(demo.child.pid as number).length < 2; i++) await new Promise((r) => setTimeout(r, 50));
  t.true(descendants(demo.child.pid as number).length >= 2, 'server and agent run');
  await terminated(t, demo);
  t.false(demo.output().includes('Sigil demo is ready.'), 'it stopped before it was ready');
});

test.serial('when a child dies the demo stops the rest, removes the socket and exits non-zero', async (t) => {
  const demo = startDemo();
  t.teardown(() => {
    killAll(demo);
    rmSync(demo.dir, { recursive: true, force: true });
  });
  const ready = await demo.waitFor(/^ {2}agent {11}pid (\d+),/m, 120_000);
  await demo.waitFor(/^Sigil demo is ready\.$/m, 10_000);
  const pids = descendants(demo.child.pid as number);
  process.kill(Number(ready[1]), 'SIGKILL');
  const code = await exitWithin(demo, 40_000);
  t.is(code, 1, demo.output());
  t.regex(demo.output(), /agent \(pid \d+\) exited unexpectedly/);
  t.deepEqual(pids.filter(alive), []);
  t.false(existsSync(demo.socket));
});

test('bad flags are usage errors (exit 2) and start nothing', async (t) => {
  for (const args of [['--svid-ttl', '10s'], ['--svid-ttl', 'soon'], ['--bogus'], ['extra']]) {
    const r = await run(process.execPath, [SIGIL, 'demo', ...args], { cwd: ROOT, timeout: 20_000 }).then(
      () => ({ code: 0, stderr: '' }),
      (err: { code?: number; stderr?: string }) => ({ code: err.code, stderr: err.stderr ?? '' }),
    );
    t.is(r.code, 2, args.join(' '));
    // one line naming the problem, with the hint to the help
    t.regex(r.stderr, /^sigil: [^\n]+; see "sigil demo --help"\n$/, r.stderr);
  }
});
