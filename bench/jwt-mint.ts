/**
 * Benchmark 3: JWT-SVID mint in process through CaManager.mintJwtSvid, against the floor of
 * one raw ES256 crypto.sign (IEEE P1363 signature) over a signing input of the same length.
 */
import { generateKeyPairSync, sign } from 'node:crypto';
import { SpiffeId } from '../src/spiffe/spiffe-id.js';
import { createBenchCa } from './support/ca.js';
import { median, rate, type Benchmark, type BenchOutcome } from './support/result.js';

const TARGET = 0.5;

const jwtMint: Benchmark = {
  id: 3,
  name: 'JWT-SVID mint in process',
  async run(options, log): Promise<BenchOutcome> {
    const perRound = options.quick ? 500 : 5000;
    const rounds = options.quick ? 3 : 7;
    const bench = await createBenchCa();
    const { ca } = bench;
    try {
      const req = { spiffeId: SpiffeId.parse('spiffe://example.org/workload/web'), audience: ['spiffe://example.org/db'] };
      const sample = await ca.mintJwtSvid(req);
      const signingInput = Buffer.from(sample.token.slice(0, sample.token.lastIndexOf('.')), 'latin1');
      const key = { key: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, dsaEncoding: 'ieee-p1363' as const };

      const floorRound = (): number => {
        const t0 = process.hrtime.bigint();
        for (let i = 0; i < perRound; i++) sign('sha256', signingInput, key);
        return perRound / (Number(process.hrtime.bigint() - t0) / 1e9);
      };
      const figureRound = async (): Promise<number> => {
        const t0 = process.hrtime.bigint();
        for (let i = 0; i < perRound; i++) await ca.mintJwtSvid(req);
        return perRound / (Number(process.hrtime.bigint() - t0) / 1e9);
      };
      floorRound();
      await figureRound();
      const floors: number[] = [];
      const figures: number[] = [];
      for (let r = 0; r < rounds; r++) {
        floors.push(floorRound());
        figures.push(await figureRound());
        log(`round ${r + 1}/${rounds}: mint ${Math.round(figures.at(-1)!)}/s, raw ES256 ${Math.round(floors.at(-1)!)}/s`);
      }
      const figure = median(figures);
      const floor = median(floors);
      const ratio = figure / floor;
      return {
        rows: [{ bench: 3, what: 'JWT-SVID mint, in process', figure: rate(figure), floor: rate(floor), ratio, target: `>= ${TARGET}`, met: ratio >= TARGET }],
        details: { perRound, rounds, figures, floors, signingInputBytes: signingInput.length },
        notes: [],
      };
    } finally {
      await bench.close();
    }
  },
};

export default jwtMint;
