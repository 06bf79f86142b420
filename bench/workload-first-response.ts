/**
 * Benchmark 4: a workload's new connection -> its first X509SVIDResponse, p50 and p99, with
 * the SVID already cached (so the time is the Workload API's: accept, SO_PEERCRED, unix
 * attestation from /proc, matching, encoding). Floor: the same client against a bare
 * grpc-js server-streaming RPC on a Unix socket sending a 2 KB message. A child process
 * connects to both, in alternating blocks, one connection at a time.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFloorServer } from './support/floor-server.js';
import { millis, percentile, type Benchmark, type BenchOutcome } from './support/result.js';
import { startSigilEndpoint } from './support/sigil-endpoint.js';
import { WorkloadDriver } from './support/workload-driver.js';

const P50_TARGET = 1.5;
const P99_TARGET = 2;

const firstResponse: Benchmark = {
  id: 4,
  name: 'Workload API first response',
  async run(options, log): Promise<BenchOutcome> {
    const blocks = options.quick ? 2 : 20;
    const perBlock = options.quick ? 25 : 60;
    const dir = mkdtempSync(join(tmpdir(), 'sigil-bench-4-'));
    const floor = await startFloorServer(join(dir, 'floor.sock'));
    const sigil = await startSigilEndpoint();
    const driver = WorkloadDriver.start();
    try {
      await driver.latency(floor.address, 20);
      const warm = await driver.latency(sigil.address, 20);
      if (warm.samplesMs.length === 0) throw new Error('no workload connection got an X509SVIDResponse from the Workload API');
      const figure: number[] = [];
      const base: number[] = [];
      let errors = 0;
      for (let b = 0; b < blocks; b++) {
        const f = await driver.latency(floor.address, perBlock);
        const s = await driver.latency(sigil.address, perBlock);
        base.push(...f.samplesMs);
        figure.push(...s.samplesMs);
        errors += f.errors + s.errors;
        log(`block ${b + 1}/${blocks}: sigil p50 ${percentile(s.samplesMs, 50).toFixed(2)} ms, bare p50 ${percentile(f.samplesMs, 50).toFixed(2)} ms`);
      }
      const [f50, f99, b50, b99] = [percentile(figure, 50), percentile(figure, 99), percentile(base, 50), percentile(base, 99)];
      return {
        rows: [
          { bench: 4, what: 'Workload API connect -> first X509SVIDResponse, p50', figure: millis(f50), floor: millis(b50), ratio: f50 / b50, target: `<= ${P50_TARGET}`, met: f50 / b50 <= P50_TARGET },
          { bench: 4, what: 'Workload API connect -> first X509SVIDResponse, p99', figure: millis(f99), floor: millis(b99), ratio: f99 / b99, target: `<= ${P99_TARGET}`, met: f99 / b99 <= P99_TARGET },
        ],
        details: { samplesEach: figure.length, errors, sigil: sigil.description, p90: { sigil: percentile(figure, 90), bare: percentile(base, 90) }, max: { sigil: Math.max(...figure), bare: Math.max(...base) } },
        notes: [`served by ${sigil.description}`],
      };
    } finally {
      driver.stop();
      await Promise.all([floor.close(), sigil.close()]);
      rmSync(dir, { recursive: true, force: true });
    }
  },
};

export default firstResponse;
