/**
 * Benchmark 1: X.509-SVID issuance in process, CSR in -> signed DER chain out, on one core.
 * Floor: the crypto no issuer can skip, with raw Node calls on the same CSRs: import the
 * CSR's public key from its SPKI DER, verify the CSR signature, sign a TBS of the same size
 * with the same CA key type (P-256). Rounds of figure and floor alternate so both see the
 * same machine noise; each side reports the median of its rounds.
 */
import { createPublicKey, generateKeyPairSync, randomBytes, sign, verify, X509Certificate } from 'node:crypto';
import { SpiffeId } from '../src/spiffe/spiffe-id.js';
import { createBenchCa } from './support/ca.js';
import { makeCsrs } from './support/csr.js';
import { median, rate, type Benchmark, type BenchOutcome } from './support/result.js';

const TARGET = 0.7;

const issuance: Benchmark = {
  id: 1,
  name: 'X.509-SVID issuance in process',
  async run(options, log): Promise<BenchOutcome> {
    const perRound = options.quick ? 300 : 3000;
    const rounds = options.quick ? 3 : 7;
    const bench = await createBenchCa();
    const { ca } = bench;
    try {
      const csrs = makeCsrs(perRound);
      const ids = csrs.map((_, i) => SpiffeId.parse(`spiffe://example.org/workload/${i}`));
      const sample = await ca.signX509SvidFromCsr({ csr: csrs[0]!.der, spiffeId: ids[0]! });
      const leaf = sample.chain[0]!;
      // The floor signs as much data as a real TBSCertificate (the leaf minus signature and wrapping).
      const tbsLength = leaf.length - 80;
      const tbs = randomBytes(tbsLength);
      const caKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
      const signKey = { key: caKey, dsaEncoding: 'der' as const };
      new X509Certificate(leaf); // the leaf must parse, or the figure means nothing

      const floorRound = (): number => {
        const t0 = process.hrtime.bigint();
        for (const c of csrs) {
          const pub = createPublicKey({ key: c.spki, format: 'der', type: 'spki' });
          if (!verify('sha256', c.info, { key: pub, dsaEncoding: 'der' }, c.signature)) throw new Error('floor: CSR does not verify');
          sign('sha256', tbs, signKey);
        }
        return csrs.length / (Number(process.hrtime.bigint() - t0) / 1e9);
      };
      const figureRound = async (): Promise<number> => {
        const t0 = process.hrtime.bigint();
        for (let i = 0; i < csrs.length; i++) await ca.signX509SvidFromCsr({ csr: csrs[i]!.der, spiffeId: ids[i]! });
        return csrs.length / (Number(process.hrtime.bigint() - t0) / 1e9);
      };
      floorRound();
      await figureRound(); // warm-up: JIT and the CA's first journal write
      const floors: number[] = [];
      const figures: number[] = [];
      for (let r = 0; r < rounds; r++) {
        floors.push(floorRound());
        figures.push(await figureRound());
        log(`round ${r + 1}/${rounds}: issuance ${Math.round(figures.at(-1)!)}/s, floor ${Math.round(floors.at(-1)!)}/s`);
      }
      const figure = median(figures);
      const floor = median(floors);
      const ratio = figure / floor;
      return {
        rows: [{ bench: 1, what: 'X.509-SVID issuance, in process, 1 core', figure: rate(figure), floor: rate(floor), ratio, target: `>= ${TARGET}`, met: ratio >= TARGET }],
        details: { perRound, rounds, figures, floors, leafBytes: leaf.length, tbsBytesSigned: tbsLength },
        notes: ratio >= TARGET ? [] : ['issuance below 0.7 of the floor: profile with `node --cpu-prof dist/bench/child.js 1`'],
      };
    } finally {
      await bench.close();
    }
  },
};

export default issuance;
