/**
 * The agent as an operator runs it, `node bin/sigil.js agent run`, through a server outage:
 * the server stops, the workload's short-lived SVID runs out, the agent is restarted while
 * the server is still down, and the server comes back on the same address. Real gRPC clients
 * (the client library and `sigil api fetch`) talk to the real agent socket throughout.
 *
 * What a supervisor and a workload must see (issue 11, items 4 and 7):
 * - the X509Source never hands out its SVID past notAfter: `svid` throws `svid-expired`, and
 *   the agent does not call the outage a denial (no identityLost);
 * - the restarted agent serves FetchX509Bundles and FetchJWTBundles at once from the bundle it
 *   stored, and answers FetchX509SVID and FetchJWTSVID with UNAVAILABLE (which clients retry)
 *   instead of leaving them waiting; once the server is back the same source has an SVID again;
 * - every line the agent logs is strict JSON (no key twice), the "workload stream denied" line
 *   included; a malformed request is INVALID_ARGUMENT, not INTERNAL;
 * - `sigil api fetch` reports its own --timeout as a timeout, not as a cancellation.
 * Waits are for conditions, with generous bounds; nothing asserts how long anything took.
 */
import test from 'ava';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, credentials, Metadata, Server, ServerCredentials, status, type ServiceError } from '@grpc/grpc-js';
import { WorkloadApiClient } from '../../src/client/workload-api-client.js';
import { X509Source } from '../../src/client/x509-source.js';
import { isSigilError, type SigilError } from '../../src/common/errors.js';
import { serviceDefinition, WORKLOAD_HEADER, WORKLOAD_PROTO, WORKLOAD_SERVICE } from '../../src/grpc/proto.js';
import { eventually, writeBootstrapBundle } from '../agent/support/agent-harness.js';
import { Daemon, runSigil, SIGIL_BIN } from '../agent/support/processes.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { nonStrictJsonLines, parseStrictJson } from '../helpers/strict-json.js';
import { UID_SELECTOR } from './support/stack.js';

const SVID_TTL_SECONDS = 6;
const FAST = { backoff: { initialMs: 100, maxMs: 500, multiplier: 2 } } as const;

interface Agent {
  readonly daemon: Daemon;
}

let server: TestServer;
let serverPort: number;
let dir: string;
let configPath: string;
let socketPath: string;
let agentId: string;
/** Output of every agent run, in order. */
const runs: Daemon[] = [];

async function startAgentChild(): Promise<Agent> {
  const daemon = new Daemon(process.execPath, [SIGIL_BIN, 'agent', 'run', '--config', configPath]);
  runs.push(daemon);
  await eventually(() => (daemon.stderr.includes('serving the Workload API') ? true : undefined), 30_000, 'the agent child to serve').catch((err: unknown) => {
    throw new Error(`${String(err)}: ${daemon.stderr.slice(-2000)} ${daemon.stdout.slice(-3000)}`);
  });
  return { daemon };
}

function agentLog(): string {
  return runs.map((d) => d.stdout).join('');
}

function code(err: unknown): string | undefined {
  return isSigilError(err) ? err.code : undefined;
}

/**
 * Runs a call until the agent itself answers: an UNAVAILABLE without a Sigil reason is the
 * channel (to an agent that was just restarted) and is retried, as any client retries it.
 */
async function answered<T>(call: () => Promise<T>, what: string): Promise<{ value?: T; error?: SigilError }> {
  return eventually(async () => {
    try {
      return { value: await call() };
    } catch (err) {
      if (!isSigilError(err)) throw err;
      if (err.code === 'ERR_UNAVAILABLE' && err.reason === undefined) return undefined;
      return { error: err };
    }
  }, 30_000, what);
}

test.before(async () => {
  server = await startTestServer();
  serverPort = server.server.agentAddress.port;
  dir = mkdtempSync(join(tmpdir(), 'sigil-outage-'));
  chmodSync(dir, 0o755);
  writeBootstrapBundle(server, join(dir, 'bootstrap.pem'));
  const token = await server.createJoinToken(600);
  agentId = token.agentId;
  writeFileSync(join(dir, 'join-token'), `${token.token.reveal()}\n`, { mode: 0o600 });
  socketPath = join(dir, 'agent.sock');
  configPath = join(dir, 'agent.yaml');
  writeFileSync(
    configPath,
    [
      'trustDomain: example.org',
      `serverAddress: 127.0.0.1:${serverPort}`,
      'trustBundleFile: bootstrap.pem',
      'dataDir: data',
      `socketPath: ${socketPath}`,
      'nodeAttestor:',
      '  joinToken:',
      '    tokenFile: join-token',
      'logLevel: debug',
      'sync:',
      '  retryInitial: 200ms',
      '  retryMax: 1s',
      '',
    ].join('\n'),
  );
});

test.after.always(async () => {
  for (const d of runs) await d.stop();
  await server?.destroy();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

/** A raw call whose request bytes are not a protobuf message: field 1, length-delimited, its length varint cut short. */
function malformedCall(method: string, streaming: boolean): Promise<ServiceError> {
  const client = new Client(`unix://${socketPath}`, credentials.createInsecure());
  const md = new Metadata();
  md.set(WORKLOAD_HEADER, 'true');
  const garbage = (): Buffer => Buffer.from([0x0a, 0x85]);
  const same = (b: Buffer): Buffer => b;
  return new Promise<ServiceError>((resolve, reject) => {
    const done = (err: ServiceError | null): void => {
      client.close();
      if (err === null) reject(new Error(`${method} answered a malformed request`));
      else resolve(err);
    };
    if (streaming) {
      const call = client.makeServerStreamRequest(`/${WORKLOAD_SERVICE}/${method}`, garbage, same, Buffer.alloc(0), md);
      call.on('data', () => done(null));
      call.on('error', (e: ServiceError) => done(e));
    } else {
      client.makeUnaryRequest(`/${WORKLOAD_SERVICE}/${method}`, garbage, same, Buffer.alloc(0), md, (e) => done(e));
    }
  });
}

test.serial('a workload with no entry is denied, and the agent logs it as strict JSON; malformed requests are INVALID_ARGUMENT', async (t) => {
  await startAgentChild();
  const client = new WorkloadApiClient({ address: `unix://${socketPath}` });
  try {
    // The first sync may not be in yet: UNAVAILABLE is retried like any client would.
    const denied = await eventually(async () => {
      try {
        await client.fetchX509Context(AbortSignal.timeout(20_000));
        return 'answered';
      } catch (err) {
        return code(err) === 'ERR_UNAVAILABLE' ? undefined : (err as SigilError);
      }
    }, 30_000, 'an answer that is not UNAVAILABLE');
    t.is(code(denied), 'ERR_NO_IDENTITY', String(denied));
  } finally {
    client.close();
  }
  const line = await eventually(() => agentLog().split('\n').find((l) => l.includes('"workload stream denied"')), 20_000, 'the denied line');
  const parsed = parseStrictJson(line) as Record<string, unknown>;
  t.is(parsed.peerPid, process.pid);
  t.is(parsed.peerUid, process.getuid?.());
  t.is(parsed.method, 'FetchX509SVID');

  for (const [method, streaming] of [['FetchX509SVID', true], ['FetchX509Bundles', true], ['FetchJWTSVID', false], ['ValidateJWTSVID', false]] as const) {
    const err = await malformedCall(method, streaming);
    t.is(err.code, status.INVALID_ARGUMENT, `${method}: ${err.code} ${err.details}`);
  }
  t.deepEqual(nonStrictJsonLines(agentLog()), []);
});

test.serial('server down, agent restarted: bundles at once from its data dir, SVIDs UNAVAILABLE, no expired SVID handed out; all back once the server is', async (t) => {
  const entryId = await server.createEntry({ spiffeId: 'spiffe://example.org/outage/svc', parentId: agentId, selectors: [UID_SELECTOR], x509SvidTtlSeconds: SVID_TTL_SECONDS });
  t.truthy(entryId);
  const address = `unix://${socketPath}`;
  const source = await X509Source.create({ address, timeoutMs: 60_000, ...FAST });
  const lost: SigilError[] = [];
  source.on('identityLost', (e) => lost.push(e));
  source.on('watchError', () => undefined);
  const client = new WorkloadApiClient({ address });
  try {
    t.is(source.svid.id.toString(), 'spiffe://example.org/outage/svc');
    const x509Before = (await client.fetchX509Bundles(AbortSignal.timeout(20_000))).get('example.org');
    const jwtBefore = (await client.fetchJwtBundles(AbortSignal.timeout(20_000))).get('example.org');
    t.truthy(x509Before);
    t.true((jwtBefore?.jwtAuthorities.size ?? 0) > 0, 'the server publishes a JWT key');
    t.true(existsSync(join(dir, 'data', 'bundle.json')), 'the agent stored its bundle');

    await server.stop();

    // The SVID runs out with no server to renew it: it is never handed out past notAfter.
    const expired = await eventually(
      () => {
        try {
          const svid = source.svid;
          if (Date.now() > svid.notAfter.getTime()) throw new Error(`source.svid handed out ${svid.serial}, expired at ${svid.notAfter.toISOString()}`);
          return undefined;
        } catch (err) {
          if (!isSigilError(err)) throw err;
          return err;
        }
      },
      SVID_TTL_SECONDS * 1000 * 4 + 20_000,
      'the SVID to run out',
    );
    t.is(expired.code, 'ERR_NO_IDENTITY');
    t.is(expired.reason, 'svid-expired', expired.message);
    t.deepEqual(lost.map((e) => e.reason), [], 'an outage is not a denial: the agent must not withdraw the identity');

    // Restart the agent while the server is still down.
    const first = runs[runs.length - 1] as Daemon;
    t.is(await first.stop(), 0, first.stderr.slice(-2000));
    await startAgentChild();

    const x509 = await answered(() => client.fetchX509Bundles(AbortSignal.timeout(20_000)), 'X.509 bundles');
    t.is(x509.error, undefined, String(x509.error));
    t.deepEqual(
      x509.value?.get('example.org')?.x509AuthoritiesDer().map((d) => Buffer.from(d).toString('base64')),
      x509Before?.x509AuthoritiesDer().map((d) => Buffer.from(d).toString('base64')),
    );
    const jwt = await answered(() => client.fetchJwtBundles(AbortSignal.timeout(20_000)), 'JWT bundles');
    t.is(jwt.error, undefined, String(jwt.error));
    t.deepEqual([...(jwt.value?.get('example.org')?.jwtAuthorities.keys() ?? [])].sort(), [...(jwtBefore?.jwtAuthorities.keys() ?? [])].sort());

    // Answered by the agent (a reason it sent), not by a deadline or a cancellation.
    const x509Err = (await answered(() => client.fetchX509Context(AbortSignal.timeout(30_000)), 'an X509-SVID answer')).error;
    t.is(code(x509Err), 'ERR_UNAVAILABLE', String(x509Err));
    t.is(x509Err?.reason, 'not-synced', String(x509Err));
    const jwtErr = (await answered(() => client.fetchJwtSvids({ audience: 'outage' }, AbortSignal.timeout(30_000)), 'a JWT-SVID answer')).error;
    t.is(code(jwtErr), 'ERR_UNAVAILABLE', String(jwtErr));
    t.is(jwtErr?.reason, 'not-synced', String(jwtErr));

    const cliX509 = await runSigil(['api', 'fetch', 'x509', '--socket', socketPath, '--timeout', '30s'], { timeoutMs: 60_000 });
    t.is(cliX509.code, 1, cliX509.stderr);
    t.true(cliX509.stderr.includes('ERR_UNAVAILABLE'), cliX509.stderr);
    const cliBundles = await runSigil(['api', 'fetch', 'bundles', '--socket', socketPath, '--output', 'json', '--timeout', '30s'], { timeoutMs: 60_000 });
    t.is(cliBundles.code, 0, cliBundles.stderr);
    t.true(cliBundles.stdout.includes('"trustDomain": "example.org"'), cliBundles.stdout);

    t.false(source.hasIdentity);

    // The server comes back on the same address: everything recovers without a restart.
    server = await startTestServer({ dir: server.dir, config: { agentApi: { address: `127.0.0.1:${serverPort}` } } });
    const ctx = await eventually(async () => {
      try {
        return await client.fetchX509Context(AbortSignal.timeout(20_000));
      } catch (err) {
        if (code(err) === 'ERR_UNAVAILABLE') return undefined;
        throw err;
      }
    }, 60_000, 'an X509-SVID once the server is back');
    t.is(ctx.svids[0]?.id.toString(), 'spiffe://example.org/outage/svc');
    await eventually(() => (source.hasIdentity ? true : undefined), 60_000, 'the source to hold an SVID again');
    t.true(source.svid.notAfter.getTime() > Date.now());
  } finally {
    client.close();
    await source.close();
  }
  t.deepEqual(nonStrictJsonLines(agentLog()), []);
  t.false(agentLog().includes('PRIVATE KEY'));
  const token = readFileSync(join(dir, 'join-token'), 'utf8').trim();
  t.false(agentLog().includes(token));
});

test.serial('`sigil api fetch` that gets no answer reports its own timeout as a timeout', async (t) => {
  // An agent that accepts the call and never answers.
  const sockDir = mkdtempSync(join(tmpdir(), 'sigil-silent-'));
  const path = join(sockDir, 'agent.sock');
  const silent = new Server();
  const hang = (): void => undefined;
  silent.addService(serviceDefinition(WORKLOAD_PROTO, WORKLOAD_SERVICE), {
    FetchX509SVID: hang,
    FetchX509Bundles: hang,
    FetchJWTBundles: hang,
    FetchJWTSVID: hang,
    ValidateJWTSVID: hang,
  });
  await new Promise<void>((resolve, reject) => silent.bindAsync(`unix:${path}`, ServerCredentials.createInsecure(), (err) => (err === null ? resolve() : reject(err))));
  try {
    for (const what of [['x509'], ['bundles'], ['jwt', '--audience', 'a']]) {
      const r = await runSigil(['api', 'fetch', ...what, '--socket', path, '--timeout', '1s'], { timeoutMs: 30_000 });
      t.is(r.code, 1, `${what[0]}: ${r.stderr}`);
      t.true(r.stderr.includes('ERR_DEADLINE_EXCEEDED'), r.stderr);
      t.true(r.stderr.includes('timed out'), r.stderr);
      t.false(/cancel/i.test(r.stderr), r.stderr);
    }
  } finally {
    silent.forceShutdown();
    rmSync(sockDir, { recursive: true, force: true });
  }
});
