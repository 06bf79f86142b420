/**
 * The Workload API's clients as a supervisor runs them, started before their agent (issue 11):
 * `sigil helper`, `sigil helper --once`, `sigil api watch` and a program that does
 * `await X509Source.create()` are real children pointed at a socket that does not exist yet.
 * Each stays up retrying; once a real agent (with a real server behind it) listens there, each
 * gets the workload's SVID; the helper leaves exactly its three files (no temporary one), and
 * SIGTERM or a finished `--once` ends each with 0.
 *
 * SIGIL_TEST_BIN runs these against another build (test/process/support/under-test.ts).
 */
import test, { type ExecutionContext } from 'ava';
import { X509Certificate } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Daemon } from '../agent/support/processes.js';
import { startTestAgent } from '../agent/support/agent-harness.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { BIN_ROOT, filesIn, plainEnv, stillWaiting, supervise, UID } from './support/under-test.js';

const WORKLOAD_ID = 'spiffe://example.org/proc/late';

/** A real server now, and the folder whose `run/agent.sock` a real agent will listen on later. */
interface LateAgent {
  readonly server: TestServer;
  readonly dir: string;
  readonly socket: string;
  /** Starts the agent on the socket and registers the workload (this test's uid). */
  appear(): Promise<void>;
}

async function lateAgent(t: ExecutionContext): Promise<LateAgent> {
  const server = await startTestServer();
  const dir = mkdtempSync(join(tmpdir(), 'sigil-late-agent-'));
  t.teardown(async () => {
    await server.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    server,
    dir,
    socket: join(dir, 'run', 'agent.sock'), // where startTestAgent puts it
    async appear() {
      const agent = await startTestAgent(t, server, { dir });
      await server.createEntry({ spiffeId: WORKLOAD_ID, parentId: agent.agentId, selectors: [`unix:uid:${UID}`] });
    },
  };
}

/** A helper.yaml for `socket`, writing into `certDir`. */
function helperConfig(dir: string, socket: string, certDir: string): string {
  const path = join(dir, 'helper.yaml');
  writeFileSync(path, `agentAddress: unix://${socket}\ncertDir: ${certDir}\nlogLevel: info\n`);
  return path;
}

function kill(d: Daemon): Promise<unknown> {
  if (d.running) d.child.kill('SIGKILL');
  return d.closed;
}

/** What the Workload API client logs for each failed try to reach the agent. */
const CLIENT_RETRY = /workload API watch failed/;

test.serial('sigil helper started before its agent stays up, writes the SVID files once the agent appears, and exits 0 on SIGTERM leaving only those files', async (t) => {
  const late = await lateAgent(t);
  const certDir = join(late.dir, 'certs');
  const helper = supervise(['helper', '--config', helperConfig(late.dir, late.socket, certDir)]);
  t.teardown(() => kill(helper));
  await stillWaiting(helper, CLIENT_RETRY, 2, 2000);
  t.deepEqual(filesIn(certDir), []);

  await late.appear();
  await helper.until('the SVID files', () => helper.stdout.includes('x509 svid written'), 60_000);
  t.true(helper.running);
  t.is(new X509Certificate(readFileSync(join(certDir, 'svid.pem'))).subjectAltName, `URI:${WORKLOAD_ID}`);
  t.is(statSync(join(certDir, 'svid_key.pem')).mode & 0o777, 0o600);

  helper.child.kill('SIGTERM');
  t.deepEqual(await helper.closed, { code: 0, signal: null }, helper.output.slice(-3000));
  t.deepEqual(filesIn(certDir), ['bundle.pem', 'svid.pem', 'svid_key.pem'], 'no temporary file left');
  t.false(helper.stderr.includes('still open'), helper.stderr);
});

test.serial('sigil helper --once started before its agent waits for it, writes once and exits 0 by itself', async (t) => {
  const late = await lateAgent(t);
  const certDir = join(late.dir, 'certs');
  const helper = supervise(['helper', '--once', '--config', helperConfig(late.dir, late.socket, certDir)]);
  t.teardown(() => kill(helper));
  await stillWaiting(helper, CLIENT_RETRY, 2, 2000);

  await late.appear();
  t.deepEqual(await helper.closed, { code: 0, signal: null }, helper.output.slice(-3000));
  t.deepEqual(filesIn(certDir), ['bundle.pem', 'svid.pem', 'svid_key.pem']);
  t.is(new X509Certificate(readFileSync(join(certDir, 'svid.pem'))).subjectAltName, `URI:${WORKLOAD_ID}`);
});

test.serial('sigil api watch started before its agent keeps retrying, prints the update once the agent appears, and exits 0 on SIGTERM', async (t) => {
  const late = await lateAgent(t);
  const watch = supervise(['api', 'watch', '--socket', late.socket, '--output', 'json']);
  t.teardown(() => kill(watch));
  await stillWaiting(watch, /^sigil: watch: .*; retrying$/, 2, 2000);

  await late.appear();
  await watch.until('the first update', () => watch.stdout.includes(WORKLOAD_ID), 60_000);
  const update = JSON.parse(watch.stdout.split('\n').find((l) => l.includes(WORKLOAD_ID)) ?? '{}') as { svids?: { spiffeId: string }[] };
  t.deepEqual(update.svids?.map((s) => s.spiffeId), [WORKLOAD_ID]);

  watch.child.kill('SIGTERM');
  t.deepEqual(await watch.closed, { code: 0, signal: null }, watch.output.slice(-3000));
  t.false(watch.stdout.includes('PRIVATE KEY'));
});

test.serial('a program awaiting X509Source.create() before the agent socket exists waits (no exit 13) and gets its SVID once the agent appears', async (t) => {
  const late = await lateAgent(t);
  // The logger prints one line per failed attempt, so the test sees the program outlive them.
  const script = `import { X509Source } from 'sigil/client';
    const logger = { warn: (o) => console.log('retry ' + o.code), error: (o) => console.log('ended ' + o.code), info() {}, debug() {}, trace() {}, fatal() {}, child() { return logger; } };
    const source = await X509Source.create({ logger, timeoutMs: 120000 });
    console.log('got ' + source.svid.id);
    await source.close();`;
  const dir = mkdtempSync(join(tmpdir(), 'sigil-late-client-'));
  chmodSync(dir, 0o755);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // cwd: the package root of the build under test, so 'sigil/client' is that build's.
  const client = new Daemon(process.execPath, ['--input-type=module', '-e', script], plainEnv({ SPIFFE_ENDPOINT_SOCKET: `unix://${late.socket}` }), { cwd: BIN_ROOT });
  t.teardown(() => kill(client));
  await stillWaiting(client, /^retry ERR_UNAVAILABLE$/, 2, 2000);

  await late.appear();
  t.deepEqual(await client.closed, { code: 0, signal: null }, client.output.slice(-3000));
  t.regex(client.stdout, new RegExp(`^got ${WORKLOAD_ID}$`, 'm'));
});
