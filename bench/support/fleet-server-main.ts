/**
 * The server process of benchmark 10: a real Sigil server (bench-server.ts) alone in its own
 * process, so its CPU time can be read from /proc/<pid>/stat without the agents or the driver
 * in it. Driven over IPC: join tokens for the fleet, their entries (in bulk through the
 * datastore, before any agent attaches), single entries through the admin API once they are
 * attached (the path an operator's change takes), and the issuance counters.
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { join } from 'node:path';
import { benchEntry } from './entries.js';
import { makeCsrs } from './csr.js';
import type { FleetSamples } from './bare-fleet-wire.js';
import { bundleToMsg, entryToMsg } from '../../src/server/agent-api/wire.js';
import { SpiffeId } from '../../src/spiffe/spiffe-id.js';
import { startBenchServer, type BenchServer } from './bench-server.js';
import { BENCH_TRUST_DOMAIN } from './ca.js';

/** Commands from the driver. */
export type FleetServerCommand =
  | { readonly type: 'tokens'; readonly count: number; readonly entriesPerAgent: number }
  | { readonly type: 'entry'; readonly parentId: string; readonly n: number }
  | { readonly type: 'stats' }
  /** Samples of this server's messages for the transport floor (bare-fleet.ts). */
  | { readonly type: 'samples'; readonly agentId: string }
  | { readonly type: 'stop' };

/** Replies to the driver. */
export type FleetServerReply =
  | { readonly type: 'ready'; readonly target: string; readonly roots: string[] }
  | { readonly type: 'tokens'; readonly agents: { readonly token: string; readonly agentId: string }[] }
  | { readonly type: 'entry'; readonly entryId: string; readonly createdAtMs: number }
  | { readonly type: 'stats'; readonly x509Ok: number; readonly x509Error: number; readonly agentOk: number }
  | { readonly type: 'samples'; readonly samples: FleetSamples }
  | { readonly type: 'stopped' }
  | { readonly type: 'error'; readonly error: string };

let srv: BenchServer | undefined;
/**
 * With SIGIL_BENCH_PROFILE=<dir>: the server's main-thread CPU profile over the measured part
 * (from the tokens' reply to the stop), written to <dir>/fleet-server.cpuprofile for
 * Chrome's DevTools or any .cpuprofile reader, and a sampled profile of everything allocated
 * meanwhile (collected objects included: what the GC had to do) in fleet-server.heapprofile.
 */
const PROFILE_DIR = process.env['SIGIL_BENCH_PROFILE'];
let profiler: Session | undefined;

async function startProfile(): Promise<void> {
  if (PROFILE_DIR === undefined || profiler !== undefined) return;
  profiler = new Session();
  profiler.connect();
  await profiler.post('Profiler.enable');
  await profiler.post('Profiler.start');
  await profiler.post('HeapProfiler.enable');
  await profiler.post('HeapProfiler.startSampling', { samplingInterval: 32768, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
}

async function writeProfile(): Promise<void> {
  if (PROFILE_DIR === undefined || profiler === undefined) return;
  const { profile } = await profiler.post('Profiler.stop');
  writeFileSync(join(PROFILE_DIR, 'fleet-server.cpuprofile'), JSON.stringify(profile));
  const heap = await profiler.post('HeapProfiler.stopSampling');
  writeFileSync(join(PROFILE_DIR, 'fleet-server.heapprofile'), JSON.stringify(heap.profile));
}

function reply(r: FleetServerReply): void {
  process.send?.(r);
}

async function counter(kind: string, result: string): Promise<number> {
  const m = (await srv?.server.metrics.svidsIssued.get())?.values ?? [];
  return m.filter((v) => v.labels['kind'] === kind && v.labels['result'] === result).reduce((a, v) => a + v.value, 0);
}

async function handle(cmd: FleetServerCommand): Promise<void> {
  const s = srv;
  if (s === undefined) throw new Error('server not started');
  if (cmd.type === 'tokens') {
    const agents: { token: string; agentId: string }[] = [];
    for (let i = 0; i < cmd.count; i++) {
      const t = await s.joinToken();
      agents.push({ token: t.token.reveal(), agentId: t.agentId });
    }
    const entries = agents.flatMap((a, i) =>
      Array.from({ length: cmd.entriesPerAgent }, (_, j) => benchEntry(`spiffe://${BENCH_TRUST_DOMAIN}/fleet/a${i}/w${j}`, a.agentId, [`unix:uid:${1000 + j}`])),
    );
    for (let i = 0; i < entries.length; i += 5000) await s.server.datastore.createEntries(entries.slice(i, i + 5000));
    await startProfile();
    reply({ type: 'tokens', agents });
  } else if (cmd.type === 'entry') {
    const createdAtMs = Date.now();
    const r = await s.admin.call<{ results: { status: { code: number; message: string }; entry?: { id: string } }[] }>('Entries', 'BatchCreateEntry', {
      entries: [
        {
          spiffe_id: `spiffe://${BENCH_TRUST_DOMAIN}/fleet/late/${cmd.n}`,
          parent_id: cmd.parentId,
          selectors: [{ type: 'unix', value: `uid:${5000 + cmd.n}` }],
          x509_svid_ttl_seconds: 0,
          jwt_svid_ttl_seconds: 0,
          dns_names: [],
          hint: '',
          federates_with: [],
          expires_at: 0,
        },
      ],
    });
    const res = r.results[0];
    if (res?.entry === undefined) throw new Error(`entry create failed: ${res?.status.message ?? 'no result'}`);
    reply({ type: 'entry', entryId: res.entry.id, createdAtMs });
  } else if (cmd.type === 'samples') {
    const b = bundleToMsg(await s.server.bundles.ownParsed());
    const csr = (makeCsrs(1)[0] as { der: Buffer }).der;
    const svid = await s.server.ca.signX509SvidFromCsr({ csr, spiffeId: SpiffeId.parse(`spiffe://${BENCH_TRUST_DOMAIN}/fleet/sample`) });
    const entries = await s.server.datastore.listEntriesByParentIds([cmd.agentId]);
    reply({
      type: 'samples',
      samples: {
        bundle: {
          trust_domain_id: b.trust_domain_id,
          document: Buffer.from(b.document).toString('base64'),
          x509_authorities: b.x509_authorities.map((a) => Buffer.from(a).toString('base64')),
          sequence: b.sequence,
          refresh_hint_seconds: b.refresh_hint_seconds,
        },
        entries: entries.map((e) => ({ ...entryToMsg(e) })),
        svidChain: svid.chain.map((c) => Buffer.from(c).toString('base64')),
        csr: csr.toString('base64'),
      },
    });
  } else if (cmd.type === 'stats') {
    reply({ type: 'stats', x509Ok: await counter('x509', 'ok'), x509Error: await counter('x509', 'error'), agentOk: await counter('agent', 'ok') });
  } else {
    await writeProfile();
    await s.close();
    reply({ type: 'stopped' });
    process.exit(0);
  }
}

process.on('message', (m) => {
  handle(m as FleetServerCommand).catch((err: unknown) => reply({ type: 'error', error: err instanceof Error ? err.message : String(err) }));
});
process.on('disconnect', () => process.exit(0));

startBenchServer().then(
  (s) => {
    srv = s;
    reply({ type: 'ready', target: s.agentTarget, roots: s.server.x509Authorities().map((d) => d.toString('base64')) });
  },
  (err: unknown) => {
    reply({ type: 'error', error: err instanceof Error ? err.message : String(err) });
    process.exit(1);
  },
);
