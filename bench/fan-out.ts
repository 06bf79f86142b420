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

/** Pushes once and resolves with the ms until every driver's last stream had it. */
async function round(drivers: readonly WorkloadDriver[], group: string, n: number, push: () => void): Promise<number> {
  const done = drivers.map((d) => d.roundDone(group, n));
  const t0 = process.hrtime.bigint();
  push();
  const ends = await Promise.all(done);
  const last = ends.reduce((a, b) => (b > a ? b : a));
  return Number(last - t0) / 1e6;
}

const fanOut: Benchmark = {
  id: 5,
  name: 'bundle fan-out to 1,000 streams',
  async run(options, log): Promise<BenchOutcome> {
    const streams = options.quick ? 100 : 1000;
    const rounds = options.quick ? 2 : 11;
    const dir = mkdtempSync(join(tmpdir(), 'sigil-bench-5-'));
    const floor = await startFloorServer(join(dir, 'floor.sock'));
    const sigil = await startSigilEndpoint(join(dir, 'agent.sock'));
    const drivers = Array.from({ length: DRIVERS }, () => WorkloadDriver.start());
    const per = Math.ceil(streams / DRIVERS);
    try {
      const opened = await Promise.all(drivers.flatMap((d) => [d.open('floor', floor.address, per), d.open('sigil', sigil.address, per)]));
      const bad = opened.find((o) => o.errors > 0);
      if (bad !== undefined) throw new Error(`${bad.errors} streams of ${bad.group} failed to open: ${bad.firstError ?? ''}`);
      log(`${floor.open} bare streams and ${sigil.subscribers} Workload API streams open`);
      await sleep(500);
      const figures: number[] = [];
      const floors: number[] = [];
      for (let r = 1; r <= rounds; r++) {
        floors.push(await round(drivers, 'floor', r, () => floor.pushAll()));
        await sleep(200);
        figures.push(await round(drivers, 'sigil', r, () => sigil.pushBundleChange()));
        await sleep(200);
        log(`round ${r}/${rounds}: sigil ${figures.at(-1)!.toFixed(1)} ms, bare ${floors.at(-1)!.toFixed(1)} ms`);
      }
      const figure = median(figures);
      const base = median(floors);
      return {
        rows: [{ bench: 5, what: `bundle change -> ${streams.toLocaleString('en-US')} FetchX509SVID streams`, figure: millis(figure), floor: millis(base), ratio: figure / base, target: `<= ${TARGET}`, met: figure / base <= TARGET }],
        details: { streams, drivers: DRIVERS, rounds, figures, floors, sigil: sigil.description },
        notes: [`served by ${sigil.description}`],
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
