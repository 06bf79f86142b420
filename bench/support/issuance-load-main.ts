/** The child side of IssuanceLoad. */
import { Agent, request } from 'node:https';
import { credentials, Metadata, type Client, type ServiceError } from '@grpc/grpc-js';
import { serviceClient } from '../../src/grpc/proto.js';
import { toPem } from '../../src/common/x509.js';
import { makeCsrs, type BenchCsr } from './csr.js';
import type { LoadCommand, LoadReply, LoadResult, LoadSetup } from './issuance-load.js';

let setup: LoadSetup;
let csrs: BenchCsr[] = [];
let csrPems: string[] = [];
/** Sigil clients, each on a connection of its own, one pool per connection count (kept across runs). */
const pools = new Map<number, Client[]>();
let clients: Client[] = [];
let httpsAgent: Agent | undefined;
let httpsSockets = 0;

/**
 * One agent-API client with the bench agent's mTLS identity. A local subchannel pool per
 * client gives each its own HTTP/2 connection (grpc-js shares one per target otherwise).
 */
function makeClient(): Client {
  const s = setup.sigil;
  const Ctor = serviceClient('sigil/agent/v1/agent.proto', 'sigil.agent.v1.Agent');
  const creds = credentials.createSsl(
    Buffer.from(s.rootsDer.map((r) => toPem(Buffer.from(r), 'CERTIFICATE')).join('')),
    Buffer.from(s.keyPem),
    Buffer.from(s.chainDer.map((c) => toPem(Buffer.from(c), 'CERTIFICATE')).join('')),
    {
      checkServerIdentity: (_host: string, cert: { subjectaltname?: string }): Error | undefined =>
        cert.subjectaltname === `URI:spiffe://${s.trustDomain}/sigil/server` ? undefined : new Error(`unexpected server identity ${cert.subjectaltname}`),
    },
  );
  return new Ctor(s.target, creds, { 'grpc.ssl_target_name_override': 'sigil-server', 'grpc.default_authority': 'sigil-server', 'grpc.use_local_subchannel_pool': 1 });
}

/** Uses the pool of exactly `n` Sigil connections (made on first use, then kept, so runs after the warm-up reuse them). */
function sigilConnections(n: number): void {
  let pool = pools.get(n);
  if (pool === undefined) {
    pool = Array.from({ length: n }, makeClient);
    pools.set(n, pool);
  }
  clients = pool;
}

/** An HTTPS agent for cfssl holding at most `n` keep-alive connections. */
function cfsslConnections(n: number): void {
  if (httpsAgent !== undefined && httpsSockets === n) return;
  httpsAgent?.destroy();
  httpsAgent = new Agent({ keepAlive: true, maxSockets: n, maxFreeSockets: n, ca: setup.cfssl!.tlsCertPem });
  httpsSockets = n;
}

function reply(r: LoadReply): void {
  process.send?.(r);
}

interface BatchResponse {
  results: { status: { code: number; message: string } }[];
}

/** Runs `total` units of work, `inflight` at a time (worker w passes w to `unit`), each unit `size` CSRs. */
async function drive(total: number, size: number, inflight: number, unit: (first: number, n: number, worker: number) => Promise<{ ok: number; err?: string }>): Promise<LoadResult> {
  let next = 0;
  let issued = 0;
  let errors = 0;
  let firstError: string | undefined;
  const t0 = process.hrtime.bigint();
  const worker = async (w: number): Promise<void> => {
    while (next < total) {
      const first = next;
      const n = Math.min(size, total - next);
      next += n;
      try {
        const r = await unit(first, n, w);
        issued += r.ok;
        errors += n - r.ok;
        if (r.err !== undefined) firstError ??= r.err;
      } catch (err) {
        errors += n;
        firstError ??= err instanceof Error ? err.message : String(err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, inflight) }, (_, w) => worker(w)));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return { seconds, issued, errors, ...(firstError === undefined ? {} : { firstError }) };
}

type Unary = (req: object, md: Metadata, opts: object, cb: (err: ServiceError | null, res?: unknown) => void) => void;

function batchCall(client: Client, params: object[]): Promise<BatchResponse> {
  const fn = (client as unknown as Record<string, Unary>)['BatchNewX509SVID'] as Unary;
  return new Promise((resolve, reject) =>
    fn.call(client, { params }, new Metadata(), { deadline: new Date(Date.now() + 15_000) }, (err, res) => (err ? reject(err) : resolve(res as BatchResponse))),
  );
}

/** Worker w sends on connection w mod the connection count. */
async function sigilUnit(first: number, n: number, worker: number): Promise<{ ok: number; err?: string }> {
  const ids = setup.sigil.entryIds;
  const params = [];
  for (let i = first; i < first + n; i++) params.push({ entry_id: ids[i % ids.length], csr: csrs[i % csrs.length]!.der });
  const res = await batchCall(clients[worker % clients.length]!, params);
  let ok = 0;
  let err: string | undefined;
  for (const r of res.results) {
    if (r.status.code === 0) ok++;
    else err ??= r.status.message;
  }
  return err === undefined ? { ok } : { ok, err };
}

function cfsslUnit(first: number): Promise<{ ok: number; err?: string }> {
  const url = new URL('/api/v1/cfssl/sign', setup.cfssl!.url);
  const body = JSON.stringify({ certificate_request: csrPems[first % csrPems.length], hosts: [`spiffe://example.org/workload/${first}`] });
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', agent: httpsAgent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        try {
          const parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { success?: boolean; result?: { certificate?: string }; errors?: { message: string }[] };
          if (parsed.success === true && typeof parsed.result?.certificate === 'string') resolve({ ok: 1 });
          else resolve({ ok: 0, err: parsed.errors?.[0]?.message ?? `http ${res.statusCode}` });
        } catch (err) {
          reject(err);
        }
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

process.on('message', (m) => {
  const cmd = m as LoadCommand;
  void (async () => {
    try {
      if (cmd.type === 'setup') {
        setup = cmd.setup;
        csrs = makeCsrs(setup.csrCount);
        csrPems = csrs.map((c) => toPem(c.der, 'CERTIFICATE REQUEST'));
        reply({ type: 'ready' });
      } else if (cmd.type === 'sigil') {
        const calls = Math.max(1, Math.round(cmd.inflightCsrs / cmd.batch));
        sigilConnections(cmd.connections);
        reply({ type: 'result', ...(await drive(cmd.total, cmd.batch, calls, sigilUnit)) });
      } else {
        if (setup.cfssl === undefined) throw new Error('cfssl is not running');
        cfsslConnections(cmd.connections);
        reply({ type: 'result', ...(await drive(cmd.total, 1, cmd.inflightCsrs, (first) => cfsslUnit(first))) });
      }
    } catch (err) {
      reply({ type: 'error', error: err instanceof Error ? err.message : String(err) });
    }
  })();
});
process.on('disconnect', () => process.exit(0));
