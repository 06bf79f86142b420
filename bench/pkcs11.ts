/**
 * Benchmark 11: keys in a PKCS#11 token (SoftHSM2), each against the in-memory key in the same run.
 * - X.509-SVID issuance with the CA key in the token (`sign` mode: every signature a C_Sign
 *   through the session pool, 16 requests in flight) vs the same CA code with its key in memory
 *   signing on the main thread (signingThreads 0, the same path minus the token).
 * - `wrap` mode start-up: opening a key directory of 20 keys whose data keys the token unwraps
 *   (C_Decrypt per key) vs the same directory under a KEK file.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CaManager } from '../src/ca/ca-manager.js';
import { DiskKeyManager, rewrapKeys } from '../src/ca/key-manager/disk-key-manager.js';
import { generateKekFile, readKekFile } from '../src/ca/key-manager/kek.js';
import { tokenKekWrapper } from '../src/ca/key-manager/pkcs11-kek.js';
import { Pkcs11KeyManager } from '../src/ca/key-manager/pkcs11-key-manager.js';
import { Pkcs11Token } from '../src/ca/key-manager/pkcs11-token.js';
import { SpiffeId } from '../src/spiffe/spiffe-id.js';
import { SOFTHSM_MODULE, softHsm } from '../test/helpers/softhsm.js';
import { createBenchCa, type BenchCa } from './support/ca.js';
import { makeCsrs } from './support/csr.js';
import { median, millis, rate, unmeasured, type Benchmark, type BenchOutcome } from './support/result.js';

const ISSUE_ROW = 'X.509-SVID issuance, CA key in SoftHSM2 (sign mode, 16 in flight) vs in memory';
const START_ROW = 'wrap-mode start-up: open 20 key files, data keys unwrapped by SoftHSM2 vs by a KEK file';
const IN_FLIGHT = 16;
const KEYS = 20;

const pkcs11: Benchmark = {
  id: 11,
  name: 'keys in a PKCS#11 token (SoftHSM2)',
  async run(options, log): Promise<BenchOutcome> {
    if (!existsSync(SOFTHSM_MODULE)) {
      return { rows: [unmeasured(11, ISSUE_ROW, '(no target)'), unmeasured(11, START_ROW, '(no target)')], details: {}, notes: ['softhsm2 is not installed (scripts/ci-prepare.sh installs it)'] };
    }
    const h = await softHsm('sigil-bench');
    h.use();
    const token = await Pkcs11Token.open({ module: SOFTHSM_MODULE, tokenLabel: h.label, pinFile: h.pinFile, sessions: 4 });
    const work = await mkdtemp(join(tmpdir(), 'sigil-bench-p11-'));
    let inToken: BenchCa | undefined;
    let inMemory: BenchCa | undefined;
    try {
      const perRound = options.quick ? 200 : 2000;
      const rounds = options.quick ? 3 : 5;
      const csrs = makeCsrs(perRound);
      const ids = csrs.map((_, i) => SpiffeId.parse(`spiffe://example.org/workload/${i}`));
      inToken = await createBenchCa({ keyManager: await Pkcs11KeyManager.open(token) });
      inMemory = await createBenchCa();
      const issueRound = async (c: CaManager): Promise<number> => {
        const t0 = process.hrtime.bigint();
        let next = 0;
        await Promise.all(
          Array.from({ length: IN_FLIGHT }, async () => {
            for (let i = next++; i < csrs.length; i = next++) await c.signX509SvidFromCsr({ csr: csrs[i]!.der, spiffeId: ids[i]! });
          }),
        );
        return csrs.length / (Number(process.hrtime.bigint() - t0) / 1e9);
      };
      await issueRound(inToken.ca);
      await issueRound(inMemory.ca);
      const tokenRates: number[] = [];
      const memoryRates: number[] = [];
      for (let r = 0; r < rounds; r++) {
        tokenRates.push(await issueRound(inToken.ca));
        memoryRates.push(await issueRound(inMemory.ca));
        log(`round ${r + 1}/${rounds}: issuance with the key in SoftHSM2 ${Math.round(tokenRates.at(-1)!)}/s, in memory ${Math.round(memoryRates.at(-1)!)}/s`);
      }
      await inToken.close();
      inToken = undefined;
      await inMemory.close();
      inMemory = undefined;

      // wrap-mode start-up: the same 20 key files under a KEK file, then under the token's KEK
      const fileDir = join(work, 'file-keys');
      const tokenDir = join(work, 'token-keys');
      const kekPath = join(work, 'kek');
      await generateKekFile(kekPath);
      const kek = await readKekFile(kekPath);
      for (const dir of [fileDir, tokenDir]) {
        const km = await DiskKeyManager.open({ dir, kek });
        for (let i = 0; i < KEYS; i++) await km.generateKey(`x509-ca-${i}`, 'ec-p256');
      }
      const tokenKek = await tokenKekWrapper(token, 'sigil-kek', true);
      await rewrapKeys(tokenDir, kek, tokenKek);
      const openMs = async (dir: string, k: typeof kek | typeof tokenKek): Promise<number> => {
        const t0 = process.hrtime.bigint();
        await DiskKeyManager.open({ dir, kek: k });
        return Number(process.hrtime.bigint() - t0) / 1e6;
      };
      const startRounds = options.quick ? 3 : 15;
      const tokenOpen: number[] = [];
      const fileOpen: number[] = [];
      for (let r = 0; r < startRounds; r++) {
        tokenOpen.push(await openMs(tokenDir, tokenKek));
        fileOpen.push(await openMs(fileDir, kek));
      }
      const issueToken = median(tokenRates);
      const issueMemory = median(memoryRates);
      const openToken = median(tokenOpen);
      const openFile = median(fileOpen);
      log(`wrap start-up (${KEYS} keys): token ${openToken.toFixed(1)} ms, KEK file ${openFile.toFixed(1)} ms`);
      return {
        rows: [
          { bench: 11, what: ISSUE_ROW, figure: rate(issueToken), floor: rate(issueMemory), ratio: issueToken / issueMemory, target: '(no target)', met: null },
          { bench: 11, what: START_ROW, figure: millis(openToken), floor: millis(openFile), ratio: openToken / openFile, target: '(no target)', met: null },
        ],
        details: { perRound, rounds, inFlight: IN_FLIGHT, sessions: 4, tokenRates, memoryRates, keys: KEYS, tokenOpen, fileOpen },
        notes: ['benchmark 11 measures SoftHSM2, a software token: a network HSM adds a round trip per signature, a USB token is slower still'],
      };
    } finally {
      await inToken?.close();
      await inMemory?.close();
      await token.close();
      await rm(work, { recursive: true, force: true });
      await h.remove();
    }
  },
};

export default pkcs11;
