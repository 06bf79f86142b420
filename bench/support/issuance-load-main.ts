/** The child side of IssuanceLoad. */
import { Agent, request } from 'node:https';
import { toPem } from '../../src/common/x509.js';
import { AgentApiClient } from '../../test/helpers/agent-client.js';
import { makeCsrs, type BenchCsr } from './csr.js';
import type { LoadCommand, LoadReply, LoadResult, LoadSetup } from './issuance-load.js';

let setup: LoadSetup;
let csrs: BenchCsr[] = [];
let csrPems: string[] = [];
let client: AgentApiClient;
let httpsAgent: Agent | undefined;

function reply(r: LoadReply): void {
  process.send?.(r);
}

interface BatchResponse {
  results: { status: { code: number; message: string } }[];
}

/** Runs `total` units of work, `inflight` at a time, each unit `size` CSRs. */
async function drive(total: number, size: number, inflight: number, unit: (first: number, n: number) => Promise<{ ok: number; err?: string }>): Promise<LoadResult> {
  let next = 0;
  let issued = 0;
  let errors = 0;
  let firstError: string | undefined;
  const t0 = process.hrtime.bigint();
  const worker = async (): Promise<void> => {
    while (next < total) {
      const first = next;
      const n = Math.min(size, total - next);
      next += n;
      try {
        const r = await unit(first, n);
        issued += r.ok;
        errors += n - r.ok;
        if (r.err !== undefined) firstError ??= r.err;
      } catch (err) {
        errors += n;
        firstError ??= err instanceof Error ? err.message : String(err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, inflight) }, worker));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return { seconds, issued, errors, ...(firstError === undefined ? {} : { firstError }) };
}

async function sigilUnit(first: number, n: number): Promise<{ ok: number; err?: string }> {
  const ids = setup.sigil.entryIds;
  const params = [];
  for (let i = first; i < first + n; i++) params.push({ entry_id: ids[i % ids.length], csr: csrs[i % csrs.length]!.der });
  const res = await client.call<BatchResponse>('BatchNewX509SVID', { params });
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
        const s = setup.sigil;
        client = new AgentApiClient(s.target, s.rootsDer.map((r) => Buffer.from(r)), s.trustDomain, { chain: s.chainDer.map((c) => Buffer.from(c)), keyPem: s.keyPem });
        if (setup.cfssl !== undefined) httpsAgent = new Agent({ keepAlive: true, maxSockets: 1024, ca: setup.cfssl.tlsCertPem });
        reply({ type: 'ready' });
      } else if (cmd.type === 'sigil') {
        const calls = Math.max(1, Math.round(cmd.inflightCsrs / cmd.batch));
        reply({ type: 'result', ...(await drive(cmd.total, cmd.batch, calls, sigilUnit)) });
      } else {
        if (setup.cfssl === undefined) throw new Error('cfssl is not running');
        reply({ type: 'result', ...(await drive(cmd.total, 1, cmd.inflightCsrs, (first) => cfsslUnit(first))) });
      }
    } catch (err) {
      reply({ type: 'error', error: err instanceof Error ? err.message : String(err) });
    }
  })();
});
process.on('disconnect', () => process.exit(0));
