/**
 * Benchmark 5: a bundle change pushed to 1,000 open FetchX509SVID streams (each on its own
 * connection, held by child processes): time from the push until the last stream has the
 * new message. Floor: a bare grpc-js server writing a 2 KB message to 1,000 streams held by
 * the same children. Rounds alternate between the two; each side reports its median.
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
 * it; `push` resolves with the hrtime the clock starts from (for Sigil: the moment the
 * change reached the agent's cache) and, optionally, when it was first asked for.
 */
async function round(drivers: readonly WorkloadDriver[], group: string, n: number, push: () => Promise<{ start: bigint; asked?: bigint }>): Promise<{ ms: number; fromAskMs: number }> {
  const done = drivers.map((d) => d.roundDone(group, n));
  const { start, asked } = await push();
  const ends = await Promise.all(done);
  const last = ends.reduce((a, b) => (b > a ? b : a));
  return { ms: Number(last - start) / 1e6, fromAskMs: Number(last - (asked ?? start)) / 1e6 };
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
      const endToEnd: number[] = [];
      const floors: number[] = [];
      for (let r = 1; r <= rounds; r++) {
        const f = await round(drivers, 'floor', r, async () => {
          const start = process.hrtime.bigint();
          floor.pushAll();
          return { start };
        });
        floors.push(f.ms);
        await sleep(200);
        const s = await round(drivers, 'sigil', r, async () => {
          const { asked, atAgent } = await sigil.pushBundleChange();
          return { start: atAgent, asked };
        });
        figures.push(s.ms);
        endToEnd.push(s.fromAskMs);
        await sleep(200);
        log(`round ${r}/${rounds}: agent ${s.ms.toFixed(1)} ms (admin call -> all streams ${s.fromAskMs.toFixed(1)} ms), bare ${f.ms.toFixed(1)} ms`);
      }
      const figure = median(figures);
      const base = median(floors);
      return {
        rows: [{ bench: 5, what: `bundle change -> ${streams.toLocaleString('en-US')} FetchX509SVID streams`, figure: millis(figure), floor: millis(base), ratio: figure / base, target: `<= ${TARGET}`, met: figure / base <= TARGET }],
        details: { streams, drivers: DRIVERS, rounds, figures, floors, endToEndFromAdminCallMs: endToEnd, sigil: sigil.description },
        notes: [
          `timed from the moment the agent's cache received the bundle change (sync push) to the last stream; from the admin SetFederatedBundle call it was ${median(endToEnd).toFixed(1)} ms (median)`,
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
