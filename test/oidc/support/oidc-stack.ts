/**
 * A real trust domain for the OIDC tests: `sigil server run` (with `svid.jwtIssuer`),
 * `sigil agent run`, an entry for this test's uid (the oidc process and the test itself are
 * its workloads), a test CA with a localhost certificate, and `sigil oidc serve` over HTTPS,
 * all real child processes of bin/sigil.js.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { WorkloadApiClient } from '../../../src/client/workload-api-client.js';
import type { JwtSvid } from '../../../src/spiffe/jwt-svid.js';
import type { Daemon } from '../../agent/support/processes.js';
import { agentHome, freePort, serverHome, sigil, supervise, UID, type AgentHome, type ServerHome } from '../../process/support/under-test.js';

/** The SPIFFE ID of this test's workloads. */
export const WORKLOAD_ID = 'spiffe://example.org/oidc/workload';

/** A test CA and a certificate for localhost/127.0.0.1 it signed. */
export interface TestTls {
  readonly dir: string;
  readonly caFile: string;
  readonly ca: Buffer;
  readonly certFile: string;
  readonly keyFile: string;
  /** Signs a new localhost certificate into certFile/keyFile (written to temporary names, then renamed). */
  renew(): void;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Makes a test CA and a localhost server certificate with openssl. */
export function makeTestTls(): TestTls {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-oidc-tls-'));
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=Sigil OIDC test CA'], dir);
  let n = 0;
  const renew = (): void => {
    n++;
    writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n');
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `new.key`, '-out', 'new.csr', '-subj', `/CN=localhost ${n}`], dir);
    openssl(['x509', '-req', '-in', 'new.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'new.pem', '-days', '1', '-extfile', 'ext.cnf'], dir);
    chmodSync(join(dir, 'new.key'), 0o600);
    execFileSync('mv', [join(dir, 'new.key'), join(dir, 'server.key')]);
    execFileSync('mv', [join(dir, 'new.pem'), join(dir, 'server.pem')]);
  };
  renew();
  return { dir, caFile: join(dir, 'ca.pem'), ca: readFileSync(join(dir, 'ca.pem')), certFile: join(dir, 'server.pem'), keyFile: join(dir, 'server.key'), renew };
}

/** An HTTP answer. */
export interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
  /** The serial of the server certificate (HTTPS only). */
  readonly certSerial?: string;
}

/** One request (a fresh connection each time, so a reloaded certificate shows). */
export function fetchUrl(url: string, o: { ca?: Buffer; method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Answer> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const opts = { method: o.method ?? 'GET', headers: o.headers ?? {}, agent: false as const, ...(o.ca === undefined ? {} : { ca: o.ca }) };
    const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(u, opts, (res) => {
      const chunks: Buffer[] = [];
      // read the certificate now: by the end the socket may be gone
      const sock = res.socket as unknown as { getPeerCertificate?: () => { serialNumber?: string } | null };
      const serial = sock.getPeerCertificate === undefined ? undefined : (sock.getPeerCertificate()?.serialNumber ?? '');
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString('utf8'),
          ...(serial === undefined ? {} : { certSerial: serial }),
        });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(o.body);
  });
}

/** Polls `check` every 100 ms until it holds (a generous bound, not a timing assertion). */
export async function eventually<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last === undefined ? '' : `: ${String(last)}`}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A running trust domain with its OIDC provider. */
export interface OidcStack {
  readonly server: ServerHome;
  readonly agent: AgentHome;
  serverDaemon: Daemon;
  agentDaemon: Daemon;
  readonly tls: TestTls;
  readonly issuer: string;
  readonly port: number;
  readonly dir: string;
  /** Writes an oidc.yaml (the defaults of this stack plus `extra` YAML) and returns its path. */
  writeConfig(name: string, extra?: string, base?: string): string;
  /** Starts `sigil oidc serve --config path` and waits until it says it serves. */
  serve(config: string): Promise<Daemon>;
  /** A JWT-SVID for `audience` from the agent (retried until the entry reached it). */
  jwtSvid(audience: string): Promise<JwtSvid>;
  readonly client: WorkloadApiClient;
  /** Restarts the agent (after it was stopped). */
  restartAgent(): Promise<void>;
  readonly daemons: Daemon[];
}

/** Starts a server (JWT keys of `jwtKeyType`), an agent and the workload entry; registers teardown on `t`. */
export async function startOidcStack(t: ExecutionContext, o: { jwtKeyType?: string; jwtTtl?: string } = {}): Promise<OidcStack> {
  const port = await freePort();
  const issuer = `https://localhost:${port}`;
  // the tests show a prepared key published before they activate it, so no propagation margin is waited
  const server = await serverHome(
    `svid:\n  jwtIssuer: ${issuer}\n${o.jwtTtl === undefined ? '' : `  defaultJwtTtl: ${o.jwtTtl}\n`}` +
      `ca:\n  propagationMargin: 0s\n${o.jwtKeyType === undefined ? '' : `  jwtKeyType: ${o.jwtKeyType}\n`}`,
  );
  const daemons: Daemon[] = [];
  const tls = makeTestTls();
  const dir = mkdtempSync(join(tmpdir(), 'sigil-oidc-'));
  const clientRef: { c?: WorkloadApiClient } = {};
  t.teardown(async () => {
    clientRef.c?.close();
    for (const d of daemons) if (d.running) await d.stop();
    for (const p of [server.dir, tls.dir, dir]) rmSync(p, { recursive: true, force: true });
  });
  const serverDaemon = await server.start();
  daemons.push(serverDaemon);
  const agent = await agentHome(server);
  t.teardown(() => rmSync(agent.dir, { recursive: true, force: true }));
  const entry = await server.admin(['entry', 'create', '--parent-id', agent.agentId, '--spiffe-id', WORKLOAD_ID, '--selector', `unix:uid:${UID}`]);
  if (entry.code !== 0) throw new Error(`entry create: ${entry.stderr}`);
  const agentDaemon = agent.start();
  daemons.push(agentDaemon);
  const c = new WorkloadApiClient({ address: `unix://${agent.socket}` });
  clientRef.c = c;
  const stack: OidcStack = {
    server,
    agent,
    serverDaemon,
    agentDaemon,
    tls,
    issuer,
    port,
    dir,
    daemons,
    client: c,
    writeConfig(name, extra = '', base) {
      const path = join(dir, name);
      writeFileSync(
        path,
        base ??
          `issuer: ${issuer}\ntrustDomain: example.org\nlisten: 127.0.0.1:${port}\ntls:\n  certFile: ${tls.certFile}\n  keyFile: ${tls.keyFile}\nagentAddress: unix://${agent.socket}\ncacheMaxAge: 1m\nlogLevel: debug\n${extra}`,
      );
      return path;
    },
    async serve(config) {
      const d = supervise(['oidc', 'serve', '--config', config]);
      daemons.push(d);
      await d.until('oidc serve to serve', () => d.stderr.includes('sigil oidc serve: serving'), 30_000);
      return d;
    },
    jwtSvid: (audience) => eventually(`a JWT-SVID for ${audience}`, () => c.fetchJwtSvid({ audience: [audience] })),
    async restartAgent() {
      const d = agent.start();
      daemons.push(d);
      stack.agentDaemon = d;
      await eventually('the agent to answer again', async () => (await sigil(['api', 'fetch', 'x509', '--socket', agent.socket, '--timeout', '5s'])).code === 0 || undefined);
    },
  };
  return stack;
}

/** Waits until `/ready` of the stack's provider answers 200 and returns the JWKS. */
export async function readyJwks(stack: OidcStack, base = `https://localhost:${stack.port}`): Promise<{ keys: Record<string, unknown>[] }> {
  await eventually('the provider to be ready', async () => ((await fetchUrl(`${base}/ready`, { ca: stack.tls.ca })).status === 200 ? true : undefined));
  return JSON.parse((await fetchUrl(`${base}/keys`, { ca: stack.tls.ca })).body) as { keys: Record<string, unknown>[] };
}
