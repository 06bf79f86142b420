/**
 * Benchmark 5: a bundle change pushed to 1,000 open FetchX509SVID streams (each on its own
 * connection, held by child processes): time from the admin call that changes the bundle
 * (SetFederatedBundle, end to end: admin API, datastore, server push to the agent, agent
 * cache, Workload API) until the last stream has the new message. The in-agent part alone
 * (from the change reaching the agent's cache) is kept in a note. Floor: a bare grpc-js
 * server writing a 2 KB message to 1,000 streams held by the same children. Rounds alternate
 * between the two; each side reports its median.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startFloorServer } from './support/floor-server.js';
import { median, millis, type Benchmark, type BenchOutcome } from './support/result.js';
import { startSigilEndpoint } from './support/sigil-endpoint.js';
import { WorkloadDriver } from './support/workload-driver.js';

const TARGET = 2;
const DRIVERS = 2;

/**
 * Pushes once and resolves with the ms from the push until every driver's last stream had
 * it; `push` resolves with the hrtime the push was asked for (for Sigil: just before the
 * admin call) and, for Sigil, the moment the change reached the agent's cache.
 */
async function round(drivers: readonly WorkloadDriver[], group: string, n: number, push: () => Promise<{ asked: bigint; atAgent?: bigint }>): Promise<{ ms: number; inAgentMs: number }> {
  const done = drivers.map((d) => d.roundDone(group, n));
  const { asked, atAgent } = await push();
  const ends = await Promise.all(done);
  const last = ends.reduce((a, b) => (b > a ? b : a));
  return { ms: Number(last - asked) / 1e6, inAgentMs: Number(last - (atAgent ?? asked)) / 1e6 };
}

const fanOut: Benchmark = {
  id: 5,
  name: 'bundle fan-out to 1,000 streams',
  async run(options, log): Promise<BenchOutcome> {
    const streams = options.quick ? 100 : 1000;
    const rounds = options.quick ? 2 : 11;
    const dir = mkdtempSync(join(tmpdir(), 'sigil-bench-5-'));
    const floor = await startFloorServer(join(dir, 'floor.sock'));
    const sigil = await startSigilEndpoint();
    const drivers = Array.from({ length: DRIVERS }, () => WorkloadDriver.start());
    const per = Math.ceil(streams / DRIVERS);
    try {
      const opened = await Promise.all(drivers.flatMap((d) => [d.open('floor', floor.address, per), d.open('sigil', sigil.address, per)]));
      const bad = opened.find((o) => o.errors > 0);
      if (bad !== undefined) throw new Error(`${bad.errors} streams of ${bad.group} failed to open: ${bad.firstError ?? ''}`);
      log(`${floor.open} bare streams and ${sigil.subscribers} Workload API streams open`);
      await sleep(500);
      const figures: number[] = [];
      const inAgent: number[] = [];
      const floors: number[] = [];
      for (let r = 1; r <= rounds; r++) {
        const f = await round(drivers, 'floor', r, async () => {
          const asked = process.hrtime.bigint();
          floor.pushAll();
          return { asked };
        });
        floors.push(f.ms);
        await sleep(200);
        const s = await round(drivers, 'sigil', r, () => sigil.pushBundleChange());
        figures.push(s.ms);
        inAgent.push(s.inAgentMs);
        await sleep(200);
        log(`round ${r}/${rounds}: admin call -> all streams ${s.ms.toFixed(1)} ms (in the agent ${s.inAgentMs.toFixed(1)} ms), bare ${f.ms.toFixed(1)} ms`);
      }
      const figure = median(figures);
      const base = median(floors);
      return {
        rows: [{ bench: 5, what: `bundle change (admin call) -> ${streams.toLocaleString('en-US')} FetchX509SVID streams`, figure: millis(figure), floor: millis(base), ratio: figure / base, target: `<= ${TARGET}`, met: figure / base <= TARGET }],
        details: { streams, drivers: DRIVERS, rounds, fromAdminCallMs: figures, floors, inAgentMs: inAgent, sigil: sigil.description },
        notes: [
          `timed from the admin SetFederatedBundle call to the last stream (server, sync push, agent, Workload API); of that, from the change reaching the agent's cache to the last stream: ${median(inAgent).toFixed(1)} ms (median)`,
        ],
      };
    } finally {
      await Promise.allSettled(drivers.flatMap((d) => [d.close('floor'), d.close('sigil')]));
      for (const d of drivers) d.stop();
      await Promise.all([floor.close(), sigil.close()]);
      rmSync(dir, { recursive: true, force: true });
    }
  },
};

export default fanOut;
