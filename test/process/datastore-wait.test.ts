/**
 * `sigil server run` on a PostgreSQL datastore that is not there at start, as a supervisor runs
 * it: a real child pointed at a port where nothing listens stays up, logs one line per attempt
 * ("datastore unreachable; retrying", no stack), answers `/live` and not `/ready` (whose
 * `datastore` and `keyManager` checks are false), and SIGTERM during the wait ends it with 0.
 * Once a TCP proxy to the test PostgreSQL listens on that port the same process carries on and
 * serves (`/ready` 200; 503 naming only `datastore` once the proxy goes away again). What waiting
 * cannot fix — a database that does not exist, a role PostgreSQL refuses, `sslmode=require`
 * against a PostgreSQL without TLS — ends it at once with 1, saying so.
 *
 * SIGIL_TEST_BIN runs these against another build (test/process/support/under-test.ts).
 */
import { get as httpGet } from 'node:http';
import test, { type ExecutionContext } from 'ava';
import { rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { Daemon } from '../agent/support/processes.js';
import { testSchemaPrefix } from '../helpers/postgres.js';
import { makeServerDir, writeServerConfig } from '../helpers/server.js';
import { freePort, supervise } from './support/under-test.js';

const schemaPrefix = testSchemaPrefix('dswait');
let schemas = 0;

/** What the server logs for each failed attempt to reach PostgreSQL. */
const DATASTORE_RETRY = /"msg":"datastore unreachable; retrying"/;

/** A server folder whose datastore is PostgreSQL at `url` (the test database unless told), with a health endpoint. */
async function serverOn(
  t: ExecutionContext,
  dbPort: number,
  options: { database?: string; user?: string; query?: string } = {},
): Promise<{ config: string; health: string; agent: string }> {
  const dir = await makeServerDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const url = `postgres://${options.user ?? 'postgres'}@127.0.0.1:${dbPort}/${options.database ?? 'test'}${options.query ?? ''}`;
  const health = `127.0.0.1:${await freePort()}`;
  const config = await writeServerConfig(dir, `datastore:\n  type: postgres\n  connectionString: ${url}\n  schema: ${schemaPrefix}_${++schemas}\nhealth:\n  address: ${health}\n`);
  return { config, health, agent: `127.0.0.1:${await freePort()}` };
}

function start(t: ExecutionContext, s: { config: string; agent: string }): Daemon {
  const d = supervise(['server', 'run', '--config', s.config, '--agent-address', s.agent]);
  t.teardown(() => d.stop('SIGKILL'));
  return d;
}

/**
 * GET over a new connection each time: a kept-alive one can be closed by the server's idle
 * timer while this process is starved on a loaded machine, and reusing it then fails with
 * "other side closed" though the server answers.
 */
function get(health: string, path: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpGet(`http://${health}${path}`, { agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

async function status(health: string, path: string): Promise<number> {
  return (await get(health, path)).status;
}

/** `/ready`'s status and body. */
async function readiness(health: string): Promise<{ status: number; body: unknown }> {
  const r = await get(health, '/ready');
  return { status: r.status, body: JSON.parse(r.text) as unknown };
}

/** A TCP proxy on `port` to the test PostgreSQL; `close()` (also the teardown) closes it and every connection it relayed. */
async function proxyToPostgres(t: ExecutionContext, port: number): Promise<{ server: Server; close(): Promise<void> }> {
  const open = new Set<Socket>();
  const proxy = createServer((client) => {
    const upstream = connect(5432, '127.0.0.1');
    for (const s of [client, upstream]) {
      open.add(s);
      s.on('close', () => open.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((res, rej) => {
    proxy.once('error', rej);
    proxy.listen(port, '127.0.0.1', () => res());
  });
  let closed: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closed ??= new Promise<void>((res) => {
      for (const s of open) s.destroy();
      proxy.close(() => res());
    }));
  t.teardown(close);
  return { server: proxy, close };
}

/** The server's retry lines so far, parsed. */
function retryLines(d: Daemon): Record<string, unknown>[] {
  return d.stdout
    .split('\n')
    .filter((l) => DATASTORE_RETRY.test(l))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function waitingFor(d: Daemon, attempts: number): Promise<void> {
  await d.until(`${attempts} retry lines`, () => retryLines(d).length >= attempts, 60_000);
}

test('a server whose PostgreSQL is not there waits, alive and not ready, one line per attempt; SIGTERM ends the wait with 0', async (t) => {
  const dbPort = await freePort();
  const s = await serverOn(t, dbPort);
  const d = start(t, s);
  await waitingFor(d, 2);
  t.true(d.running);
  t.is(await status(s.health, '/live'), 200);
  // nothing is up yet: no datastore, and no key loaded (the CA keys are read after the datastore opens)
  t.deepEqual(await readiness(s.health), { status: 503, body: { ready: false, checks: { serving: false, datastore: false, keyManager: false } } });

  const [first] = retryLines(d);
  t.like(first, { level: 40, code: 'ERR_UNAVAILABLE', reason: 'datastore-unavailable', host: '127.0.0.1', port: dbPort, database: 'test', attempt: 1 });
  t.is(typeof first?.['retryInMs'], 'number');
  t.false(d.output.includes('    at '), `no stack trace: ${d.output.slice(-3000)}`);
  t.false(d.stderr.includes('sigil server: serving'));

  d.child.kill('SIGTERM');
  t.deepEqual(await d.closed, { code: 0, signal: null }, d.output.slice(-3000));
  t.regex(d.stderr, /SIGTERM received; stopping/);
  t.false(/^sigil: /m.test(d.stderr), 'a requested stop is no error');
  t.false(d.stderr.includes('still open'), d.stderr);
});

test('the waiting server carries on once PostgreSQL answers on its port, and serves', async (t) => {
  const dbPort = await freePort();
  const s = await serverOn(t, dbPort);
  const d = start(t, s);
  await waitingFor(d, 2);
  t.is(await status(s.health, '/ready'), 503);

  const proxy = await proxyToPostgres(t, dbPort);
  await d.until('the server to serve', () => d.stderr.includes('sigil server: serving'), 90_000);
  t.deepEqual(await readiness(s.health), { status: 200, body: { ready: true, checks: { serving: true, datastore: true, keyManager: true } } });
  t.regex(d.stdout, /"msg":"datastore reached"/);

  // PostgreSQL goes away while it serves: /ready names the datastore, the rest still stands
  await proxy.close();
  // a health endpoint that stops answering is the failure here: say what the server did
  const ready = (): Promise<{ status: number; body: unknown }> =>
    readiness(s.health).catch((err: unknown) => {
      throw new Error(`/ready did not answer (${String(err)}; server running: ${d.running}): ${d.output.slice(-4000)}`);
    });
  let down = await ready();
  for (let i = 0; i < 100 && down.status === 200; i++) {
    await new Promise((res) => setTimeout(res, 100));
    down = await ready();
  }
  t.deepEqual(down, { status: 503, body: { ready: false, checks: { serving: true, datastore: false, keyManager: true } } });

  d.child.kill('SIGTERM');
  t.deepEqual(await d.closed, { code: 0, signal: null }, d.output.slice(-3000));
});

test('what waiting cannot fix ends the server at once with 1: a missing database, a role PostgreSQL refuses, TLS the server does not offer', async (t) => {
  const cases: [{ database?: string; user?: string; query?: string }, RegExp][] = [
    [{ database: 'sigil_no_such_database' }, /^sigil: cannot open datastore sigil_no_such_database on 127\.0\.0\.1: database "sigil_no_such_database" does not exist \(SQLSTATE 3D000\) \(ERR_FAILED_PRECONDITION\)$/m],
    [{ user: 'sigil_no_such_role' }, /^sigil: cannot open datastore test on 127\.0\.0\.1: .*sigil_no_such_role.* \(SQLSTATE 28[0-9A-Z]{3}\) \(ERR_FAILED_PRECONDITION\)$/m],
    // the test PostgreSQL has no TLS: pg's "does not support SSL connections" contains "connection",
    // which an older classification by message text took for an outage and waited on for ever
    [{ query: '?sslmode=require' }, /^sigil: cannot open datastore test on 127\.0\.0\.1: TLS failed: The server does not support SSL connections .*sslmode.* \(ERR_CONFIG_INVALID\)$/m],
  ];
  for (const [where, says] of cases) {
    const s = await serverOn(t, 5432, where);
    const d = start(t, s);
    t.deepEqual(await d.closed, { code: 1, signal: null }, d.output.slice(-3000));
    t.regex(d.stderr, says);
    t.is(retryLines(d).length, 0, 'no retry');
  }
});
