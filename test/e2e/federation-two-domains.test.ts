/**
 * Two trust domains, nothing faked and nothing shared: `sigil server run` and `sigil agent run`
 * children for example.org (A) and other.org (B), each with its own data dir, each publishing
 * an https_spiffe bundle endpoint. A federates with B through `sigil federation create` (with
 * B's bundle as the bootstrap bundle); B federates with A through `federation.federatesWith`
 * in its config file. A workload of A and a workload of B (examples/client, our client
 * library) complete mTLS, each authorizing the other's exact SPIFFE ID; a JWT-SVID of B
 * validates in A. B's CA rotates (prepare, then activate): the new root reaches A's workload
 * through the refresher before B signs with it, and mTLS keeps working after. When B's server
 * goes away, A reports the failed fetch and its workload keeps B's last good bundle.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WorkloadApiClient } from '../../src/client/workload-api-client.js';
import type { X509Context } from '../../src/client/x509-context.js';
import { TrustDomain } from '../../src/spiffe/spiffe-id.js';
import type { Daemon } from '../agent/support/processes.js';
import { ROOT, ServiceProcess } from '../client/service-process.js';
import { makeServerDir, writeServerConfig } from '../helpers/server.js';
import { freePort, sigil, supervise, UID } from '../process/support/under-test.js';
import { secretLeaks } from './support/stack.js';

const A_ID = 'spiffe://example.org/e2e/a-client';
const B_ID = 'spiffe://other.org/e2e/b-server';
const B_JWT_ID = 'spiffe://other.org/e2e/b-jwt';
const OTHER = TrustDomain.parse('other.org');

interface Domain {
  readonly name: string;
  readonly dir: string;
  readonly adminSocket: string;
  readonly bundleEndpointPort: number;
  readonly server: Daemon;
  agent?: Daemon;
  socket: string;
  agentId: string;
  admin(args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }>;
}

const daemons: Daemon[] = [];
const procs: ServiceProcess[] = [];
const dirs: string[] = [];

async function startDomain(name: string, extra = ''): Promise<Domain> {
  const dir = await makeServerDir();
  dirs.push(dir);
  const agentPort = await freePort();
  const bundleEndpointPort = await freePort();
  const config = await writeServerConfig(dir, `bundleRefreshHint: 5s\n# a prepared authority may be activated a second after it is published (the default margin is 30s)\nca:\n  propagationMargin: 1s\nfederation:\n  bundleEndpoint:\n    address: 127.0.0.1:${bundleEndpointPort}\n    profile: https_spiffe\n${extra}`);
  const server = supervise(['server', 'run', '--config', config, '--trust-domain', name, '--agent-address', `127.0.0.1:${agentPort}`]);
  daemons.push(server);
  await server.until(`the ${name} server to serve`, () => server.stderr.includes('sigil server: serving'), 60_000);
  const adminSocket = join(dir, 'admin.sock');
  const d: Domain = {
    name,
    dir,
    adminSocket,
    bundleEndpointPort,
    server,
    socket: '',
    agentId: '',
    admin: (args) => sigil([...args, '--socket', adminSocket]),
  };
  // the agent
  const adir = mkdtempSync(join(tmpdir(), `sigil-fed-agent-${name}-`));
  dirs.push(adir);
  chmodSync(adir, 0o755);
  const bundle = await d.admin(['bundle', 'show']);
  if (bundle.code !== 0) throw new Error(`bundle show: ${bundle.stderr}`);
  writeFileSync(join(adir, 'bootstrap.pem'), bundle.stdout);
  const tok = await d.admin(['token', 'generate', '--ttl', '10m', '--output', 'json']);
  if (tok.code !== 0) throw new Error(`token generate: ${tok.stderr}`);
  const { token, agentId } = (JSON.parse(tok.stdout) as { joinToken: { token: string; agentId: string } }).joinToken;
  writeFileSync(join(adir, 'join-token'), `${token}\n`, { mode: 0o600 });
  d.socket = join(adir, 'agent.sock');
  d.agentId = agentId;
  const agentConfig = join(adir, 'agent.yaml');
  writeFileSync(
    agentConfig,
    `trustDomain: ${name}\nserverAddress: 127.0.0.1:${agentPort}\ntrustBundleFile: bootstrap.pem\ndataDir: data\nsocketPath: ${d.socket}\n` +
      `nodeAttestor:\n  joinToken:\n    tokenFile: join-token\nlogLevel: debug\nsync:\n  retryInitial: 100ms\n  retryMax: 1s\n`,
  );
  const agent = supervise(['agent', 'run', '--config', agentConfig]);
  daemons.push(agent);
  d.agent = agent;
  await agent.until(`the ${name} agent to serve`, () => agent.stderr.includes('serving the Workload API'), 60_000);
  return d;
}

function run(d: Domain, name: string, env: Record<string, string>, stdin = ''): ServiceProcess {
  const proc = spawn(process.execPath, [join(ROOT, 'examples/client', name)], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', SPIFFE_ENDPOINT_SOCKET: `unix://${d.socket}`, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  proc.stdin?.end(stdin);
  const p = new ServiceProcess(proc);
  procs.push(p);
  return p;
}

async function toEnd(d: Domain, name: string, env: Record<string, string>, stdin = ''): Promise<{ code: number | null; out: string }> {
  const p = run(d, name, env, stdin);
  const code = await p.exited;
  return { code, out: p.output };
}

async function eventually<T>(what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

test.after.always(async () => {
  await Promise.all(procs.map((p) => p.stop()));
  for (const d of daemons.reverse()) await d.stop();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

test.serial('two trust domains federated both ways over https_spiffe: mTLS, a JWT-SVID across, and a CA rotation in B that reaches A first', async (t) => {
  const a = await startDomain('example.org');
  const aBundle = join(a.dir, 'a-bundle.pem');
  const aShow = await a.admin(['bundle', 'show']);
  writeFileSync(aBundle, aShow.stdout);
  // B declares its relationship with A in its config file (GitOps)
  const b = await startDomain(
    'other.org',
    `  federatesWith:\n    example.org:\n      bundleEndpointUrl: https://127.0.0.1:${a.bundleEndpointPort}/\n      bundleEndpointProfile: https_spiffe\n      endpointSpiffeId: spiffe://example.org/sigil/server\n      trustDomainBundlePath: ${aBundle}\n      trustDomainBundleFormat: pem\n`,
  );
  // A creates its relationship with B through the CLI, B's bundle as the bootstrap bundle
  const bBundle = join(a.dir, 'b-bundle.pem');
  writeFileSync(bBundle, (await b.admin(['bundle', 'show'])).stdout);
  const created = await a.admin([
    'federation', 'create', '--trust-domain', 'other.org', '--bundle-endpoint-url', `https://127.0.0.1:${b.bundleEndpointPort}/`,
    '--bundle-endpoint-profile', 'https_spiffe', '--endpoint-spiffe-id', 'spiffe://other.org/sigil/server', '--trust-domain-bundle-path', bBundle,
  ]);
  t.is(created.code, 0, created.stderr);
  // both fetched at least once (the JWT keys are only in the fetched bundles, not the PEM bootstrap)
  for (const [d, peer] of [[a, 'other.org'], [b, 'example.org']] as const) {
    await eventually(`${d.name} to fetch ${peer}`, async () => {
      const r = await d.admin(['federation', 'show', '--trust-domain', peer, '--output', 'json']);
      const rel = (JSON.parse(r.stdout) as { relationship: { lastSuccess: string | null } }).relationship;
      return rel.lastSuccess !== null ? true : undefined;
    });
  }

  const entry = async (d: Domain, id: string, hint: string, peer: string, ttl?: string): Promise<void> => {
    const r = await d.admin(['entry', 'create', '--parent-id', d.agentId, '--spiffe-id', id, '--selector', `unix:uid:${UID}`, '--hint', hint, '--federates-with', peer, ...(ttl === undefined ? [] : ['--x509-svid-ttl', ttl])]);
    t.is(r.code, 0, r.stderr);
  };
  await entry(a, A_ID, 'a-client', 'other.org');
  // short-lived, so B's workload moves to the new CA within seconds of its activation
  await entry(b, B_ID, 'b-server', 'example.org', '20s');
  await entry(b, B_JWT_ID, 'b-jwt', 'example.org');

  // A's workload sees B's bundle on its stream
  const api = new WorkloadApiClient({ address: `unix://${a.socket}`, backoff: { initialMs: 50, maxMs: 500 } });
  t.teardown(() => api.close());
  const stop = new AbortController();
  t.teardown(() => stop.abort());
  const contexts: X509Context[] = [];
  void api.watchX509Context({ onUpdate: (c) => contexts.push(c) }, stop.signal);
  await eventually('B in the X509 context of A', () => (contexts.at(-1)?.bundles.has(OTHER) === true ? true : undefined));

  // mTLS, each side authorizing the other's exact ID, over the federated bundles
  const server = run(b, 'tls-server.js', { SVID_HINT: 'b-server', PEER_ID: A_ID });
  const port = (await server.waitFor(/^listening (\d+)$/, 30_000))[1]!;
  const first = await eventually('mTLS A -> B', async () => {
    const r = await toEnd(a, 'tls-client.js', { PORT: port, PEER_ID: B_ID, SVID_HINT: 'a-client' });
    return r.code === 0 ? r : undefined;
  });
  t.true(first.out.includes(`hello ${A_ID} from ${B_ID}`), first.out);
  // the wrong expected ID is refused
  const wrong = await toEnd(a, 'tls-client.js', { PORT: port, PEER_ID: 'spiffe://other.org/e2e/someone-else', SVID_HINT: 'a-client' });
  t.is(wrong.code, 1, wrong.out);

  // a JWT-SVID of B validates in A, offline with the federated JWT keys
  const jwt = await toEnd(b, 'jwt-fetch.js', { SVID_HINT: 'b-jwt', AUDIENCE: 'a-service' });
  t.is(jwt.code, 0, jwt.out);
  const token = jwt.out.split('\n')[0]!.trim();
  t.regex(token, /^eyJ[\w-]+\.[\w-]+\.[\w-]+$/);
  const validated = await toEnd(a, 'jwt-validate.js', { SVID_HINT: 'a-client', AUDIENCE: 'a-service' }, token);
  t.is(validated.code, 0, validated.out);
  t.true(validated.out.includes(`valid ${B_JWT_ID} for a-service`), validated.out);
  // and through A's agent (ValidateJWTSVID): this test process is attested like the workloads
  const viaAgent = await api.validateJwtSvid(token, 'a-service');
  t.is(viaAgent.id.toString(), B_JWT_ID);

  // B's CA rotation: prepare, and the new root reaches A's workload before B signs with it
  const before = new Set(contexts.at(-1)!.bundles.getBundleForTrustDomain(OTHER)!.x509AuthoritiesDer().map((d) => Buffer.from(d).toString('hex')));
  t.is((await b.admin(['localauthority', 'x509', 'prepare'])).code, 0);
  const preparedAt = Date.now();
  const ctx = await eventually('the prepared root of B in A', () => contexts.find((c) => (c.bundles.getBundleForTrustDomain(OTHER)?.x509AuthoritiesDer().length ?? 0) > before.size));
  const newRoot = ctx.bundles.getBundleForTrustDomain(OTHER)!.x509AuthoritiesDer().find((d) => !before.has(Buffer.from(d).toString('hex')))!;
  t.truthy(newRoot);
  // activation is refused until ca.propagationMargin (1s here) has passed since the prepare,
  // and the root can reach A sooner than that
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, 1500 - (Date.now() - preparedAt))));
  const activated = await b.admin(['localauthority', 'x509', 'activate']);
  t.is(activated.code, 0, activated.stderr);
  // B's workload moves to an SVID signed by the new root
  const bApi = new WorkloadApiClient({ address: `unix://${b.socket}`, backoff: { initialMs: 50, maxMs: 500 } });
  t.teardown(() => bApi.close());
  const root = new X509Certificate(Buffer.from(newRoot));
  await eventually('an SVID of B signed by the new root', async () => {
    const c = await bApi.fetchX509Context();
    const svid = c.svids.find((s) => s.id.toString() === B_ID);
    if (svid === undefined) return undefined;
    const leaf = new X509Certificate(Buffer.from(svid.certificates[0]!.der));
    return leaf.verify(root.publicKey) ? true : undefined;
  }, 90_000);
  const after = await eventually('mTLS A -> B after the rotation', async () => {
    const r = await toEnd(a, 'tls-client.js', { PORT: port, PEER_ID: B_ID, SVID_HINT: 'a-client' });
    return r.code === 0 && server.lines.length > 0 ? r : undefined;
  });
  t.true(after.out.includes(`hello ${A_ID} from ${B_ID}`), after.out);

  // B's server goes away: A reports it and its workload keeps B's last good bundle
  const lastGood = contexts.at(-1)!.bundles.getBundleForTrustDomain(OTHER)!.x509AuthoritiesDer().length;
  await b.server.stop();
  const refresh = await a.admin(['federation', 'refresh', '--trust-domain', 'other.org', '--output', 'json']);
  t.is(refresh.code, 1, 'a failed fetch is a runtime failure');
  const rel = (JSON.parse(refresh.stdout) as { relationship: { lastError: string | null; lastSuccess: string | null } }).relationship;
  t.regex(rel.lastError ?? '', /cannot reach/);
  t.truthy(rel.lastSuccess);
  t.is(contexts.at(-1)!.bundles.getBundleForTrustDomain(OTHER)!.x509AuthoritiesDer().length, lastGood);
  t.is((await api.fetchX509Context()).bundles.getBundleForTrustDomain(OTHER)?.x509AuthoritiesDer().length, lastGood);

  for (const d of [a, b]) {
    t.deepEqual(secretLeaks(d.server.output + (d.agent?.output ?? ''), []), [], `${d.name}: no secret in the logs`);
  }
});
