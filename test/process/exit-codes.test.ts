/**
 * The exit-code contract of docs/cli.md ("Exit codes and signals"), as a supervisor reads it
 * from real `sigil` children: 2 for a usage error, 1 for a config the daemon cannot run with
 * or a port it cannot have, 0 for a command that did its job; and the signal rules of
 * src/cli/service.ts in a real process receiving real signals: a second signal stops at once
 * (128 + its number), a stop that overruns its bound exits 1, and a handle left open after the
 * stop cannot keep the process (it exits with its code and names what was open).
 *
 * SIGIL_TEST_BIN runs these against another build (test/process/support/under-test.ts).
 */
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Daemon } from '../agent/support/processes.js';
import { makeServerDir, writeServerConfig } from '../helpers/server.js';
import { BIN_ROOT, plainEnv, sigil } from './support/under-test.js';

let dir: string;
test.before(() => {
  dir = mkdtempSync(join(tmpdir(), 'sigil-exit-codes-'));
  writeFileSync(join(dir, 'bad-helper.yaml'), 'certDir: /tmp/x\nnoSuchKey: 1\n');
  writeFileSync(join(dir, 'agent-no-bundle.yaml'), `trustDomain: example.org\nserverAddress: 127.0.0.1:1\ntrustBundleFile: ${join(dir, 'missing.pem')}\ndataDir: ${join(dir, 'agent-data')}\nsocketPath: ${join(dir, 'agent.sock')}\nnodeAttestor:\n  joinToken:\n    tokenFile: ${join(dir, 'token')}\n`);
  writeFileSync(join(dir, 'token'), 'x\n', { mode: 0o600 });
});
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

const USAGE_ERRORS: readonly (readonly string[])[] = [
  [],
  ['nosuch'],
  ['server', 'run', '--no-such-flag'],
  ['agent', 'run', '--no-such-flag'],
  ['helper'],
  ['helper', '--config', '/dev/null', '--no-such-flag'],
  ['api', 'watch', '--no-such-flag'],
  ['api', 'nosuch'],
];

for (const args of USAGE_ERRORS) {
  test(`usage error exits 2: sigil ${args.join(' ')}`, async (t) => {
    const r = await sigil(args);
    t.is(r.code, 2, r.stdout + r.stderr);
    t.not(r.stdout + r.stderr, '', 'it says what is wrong');
  });
}

test('a config the daemon cannot run with exits 1, naming the problem', async (t) => {
  const serverDir = await makeServerDir();
  t.teardown(() => rmSync(serverDir, { recursive: true, force: true }));
  const badServer = await writeServerConfig(serverDir, 'bogusKey: 1\n');
  const cases: [readonly string[], RegExp][] = [
    [['server', 'run', '--config', badServer], /bogusKey/],
    [['server', 'run', '--config', join(dir, 'missing.yaml')], /missing\.yaml/],
    [['agent', 'run', '--config', join(dir, 'missing.yaml')], /missing\.yaml/],
    [['agent', 'run', '--config', join(dir, 'agent-no-bundle.yaml')], /missing\.pem/],
    [['helper', '--config', join(dir, 'bad-helper.yaml')], /noSuchKey/],
  ];
  for (const [args, says] of cases) {
    const r = await sigil(args);
    t.is(r.code, 1, `sigil ${args.join(' ')}: ${r.stderr}`);
    t.regex(r.stderr, says);
  }
});

test('a server whose agent API port is taken exits 1', async (t) => {
  const taken: Server = createServer();
  await new Promise<void>((res) => taken.listen(0, '127.0.0.1', () => res()));
  t.teardown(() => new Promise<void>((res) => taken.close(() => res())));
  const port = (taken.address() as { port: number }).port;
  const serverDir = await makeServerDir();
  t.teardown(() => rmSync(serverDir, { recursive: true, force: true }));
  const r = await sigil(['server', 'run', '--config', await writeServerConfig(serverDir), '--agent-address', `127.0.0.1:${port}`]);
  t.is(r.code, 1, r.stdout.slice(-2000) + r.stderr);
});

test('a one-shot command that did its job exits 0', async (t) => {
  t.is((await sigil(['--help'])).code, 0);
  const r = await sigil(['server', 'generate-kek', '--path', join(dir, 'kek')]);
  t.is(r.code, 0, r.stderr);
});

/**
 * A real process running the service module of the build under test with a body that does
 * what `behaviour` says once asked to stop; it prints `up` when its handlers are in place.
 */
function service(behaviour: 'never-stops' | 'leaves-a-timer', stopTimeoutMs = 30_000, repeatWithinMs = 0): Daemon {
  const module = pathToFileURL(join(BIN_ROOT, 'dist/src/cli/service.js')).href;
  const script = `import { runService } from ${JSON.stringify(module)};
    const io = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) };
    const code = await runService({ name: 'test-daemon', io, stopTimeoutMs: ${stopTimeoutMs}, exitGraceMs: 1000, repeatWithinMs: ${repeatWithinMs} }, (stop) => new Promise((resolve) => {
      const keepAlive = setInterval(() => {}, 1000);
      stop.addEventListener('abort', () => {
        if (${JSON.stringify(behaviour)} === 'leaves-a-timer') resolve(); // keepAlive stays: a leaked handle
      });
      console.log('up');
    }));
    process.exitCode = code;`;
  return new Daemon(process.execPath, ['--input-type=module', '-e', script], plainEnv());
}

test('a second signal while stopping stops the process at once, with 128 + the signal number', async (t) => {
  for (const [signal, code] of [['SIGTERM', 143], ['SIGINT', 130]] as const) {
    const d = service('never-stops');
    t.teardown(() => d.stop('SIGKILL'));
    await d.until('it to be up', () => d.stdout.includes('up'), 20_000);
    d.child.kill(signal);
    await d.until('the stop to begin', () => d.stderr.includes('stopping'), 20_000);
    t.true(d.running, 'the first signal waits for the graceful stop');
    d.child.kill(signal);
    t.deepEqual(await d.closed, { code, signal: null }, d.output);
    t.regex(d.stderr, /received again; stopping at once/);
  }
});

test('with repeatWithinMs a second signal soon after the first is the same request (npm run demo), not a forced stop', async (t) => {
  const d = service('never-stops', 2000, 60_000);
  t.teardown(() => d.stop('SIGKILL'));
  await d.until('it to be up', () => d.stdout.includes('up'), 20_000);
  d.child.kill('SIGINT');
  await d.until('the stop to begin', () => d.stderr.includes('stopping'), 20_000);
  d.child.kill('SIGINT');
  // not 130: the stop goes on, and this body never stops, so the bound ends it
  t.deepEqual(await d.closed, { code: 1, signal: null }, d.output);
  t.false(d.stderr.includes('received again'), d.stderr);
  t.regex(d.stderr, /did not stop within 2 s of SIGINT; exiting/);
});

test('a graceful stop that overruns its bound exits 1, saying so', async (t) => {
  const d = service('never-stops', 1000);
  t.teardown(() => d.stop('SIGKILL'));
  await d.until('it to be up', () => d.stdout.includes('up'), 20_000);
  d.child.kill('SIGTERM');
  t.deepEqual(await d.closed, { code: 1, signal: null }, d.output);
  t.regex(d.stderr, /did not stop within 1 s of SIGTERM; exiting/);
});

test('a handle left open after the stop cannot keep the process: it exits 0 and names the handle', async (t) => {
  const d = service('leaves-a-timer');
  t.teardown(() => d.stop('SIGKILL'));
  await d.until('it to be up', () => d.stdout.includes('up'), 20_000);
  d.child.kill('SIGTERM');
  t.deepEqual(await d.closed, { code: 0, signal: null }, d.output);
  t.regex(d.stderr, /stopped, but .*Timeout.* still open after 1000 ms; exiting/);
});
