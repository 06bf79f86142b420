/**
 * Benchmark 2: X.509-SVID issuance through the server's agent API — BatchNewX509SVID over
 * TLS on loopback, with a real attested agent's mTLS identity, in batches of 50 and of 1 —
 * against cfssl's `serve` sign endpoint (HTTPS) on the same machine, with the same CSRs
 * and the same number of CSRs in flight. The load comes from a child process; the Sigil
 * server runs in this one (one Node thread, as `sigil server run` does). When cfssl cannot
 * be installed the floor is the raw per-certificate crypto (as in benchmark 1) instead.
 */
import { createPublicKey, generateKeyPairSync, randomBytes, sign, verify } from 'node:crypto';
import { startBenchServer } from './support/bench-server.js';
import { BENCH_TRUST_DOMAIN } from './support/ca.js';
import { cfsslMissing, startCfssl, type Cfssl } from './support/cfssl.js';
import { makeCsrs } from './support/csr.js';
import { benchEntry } from './support/entries.js';
import { IssuanceLoad, type LoadResult } from './support/issuance-load.js';
import { median, rate, type Benchmark, type BenchOutcome, type BenchRow } from './support/result.js';

const TARGET = 2;
const INFLIGHT_CSRS = 100;
const ENTRIES = 50;

function perSecond(r: LoadResult): number {
  if (r.errors > 0) throw new Error(`${r.errors} of ${r.issued + r.errors} CSRs failed: ${r.firstError ?? ''}`);
  return r.issued / r.seconds;
}

/** The raw crypto per certificate on one core, as in benchmark 1. */
function rawFloor(n: number): number {
  const csrs = makeCsrs(n);
  const key = { key: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, dsaEncoding: 'der' as const };
  const tbs = randomBytes(420);
  const t0 = process.hrtime.bigint();
  for (const c of csrs) {
    const pub = createPublicKey({ key: c.spki, format: 'der', type: 'spki' });
    verify('sha256', c.info, { key: pub, dsaEncoding: 'der' }, c.signature);
    sign('sha256', tbs, key);
  }
  return n / (Number(process.hrtime.bigint() - t0) / 1e9);
}

const agentApiIssuance: Benchmark = {
  id: 2,
  name: 'BatchNewX509SVID over TLS vs cfssl serve',
  async run(options, log): Promise<BenchOutcome> {
    const total = options.quick ? 500 : 3000;
    const rounds = options.quick ? 2 : 5;
    const notes: string[] = [];
    const missing = cfsslMissing();
    let cfssl: Cfssl | undefined;
    if (missing === undefined) cfssl = await startCfssl();
    else {
      log(`cfssl unavailable: ${missing}; measuring the raw sign floor instead`);
      notes.push(`cfssl unavailable (${missing}): floor is the raw crypto per certificate on one core, not cfssl`);
    }
    const srv = await startBenchServer();
    let load: IssuanceLoad | undefined;
    try {
      const agent = await srv.attestAgent();
      const created = await srv.server.datastore.createEntries(
        Array.from({ length: ENTRIES }, (_, i) => benchEntry(`spiffe://${BENCH_TRUST_DOMAIN}/workload/${i}`, agent.spiffeId, [`unix:uid:${1000 + i}`])),
      );
      load = await IssuanceLoad.start({
        csrCount: 1000,
        sigil: {
          target: srv.agentTarget,
          rootsDer: srv.server.x509Authorities(),
          trustDomain: BENCH_TRUST_DOMAIN,
          chainDer: agent.chain,
          keyPem: agent.keyPem,
          entryIds: created.map((e) => e.id),
        },
        ...(cfssl === undefined ? {} : { cfssl: { url: cfssl.url, tlsCertPem: cfssl.tlsCertPem } }),
      });
      // Warm-up: JIT, TLS sessions, cfssl's Go runtime.
      await load.sigil(50, INFLIGHT_CSRS, 300);
      await load.sigil(1, INFLIGHT_CSRS, 300);
      if (cfssl !== undefined) await load.cfssl(INFLIGHT_CSRS, 300);
      const b50: number[] = [];
      const b1: number[] = [];
      const floors: number[] = [];
      for (let r = 1; r <= rounds; r++) {
        floors.push(cfssl !== undefined ? perSecond(await load.cfssl(INFLIGHT_CSRS, total)) : rawFloor(Math.min(total, 1000)));
        b50.push(perSecond(await load.sigil(50, INFLIGHT_CSRS, total)));
        b1.push(perSecond(await load.sigil(1, INFLIGHT_CSRS, total)));
        log(`round ${r}/${rounds}: batch 50 ${Math.round(b50.at(-1)!)}/s, batch 1 ${Math.round(b1.at(-1)!)}/s, ${cfssl !== undefined ? 'cfssl' : 'raw floor'} ${Math.round(floors.at(-1)!)}/s`);
      }
      const floor = median(floors);
      const target = cfssl !== undefined ? `>= ${TARGET} (x cfssl)` : `>= ${TARGET} x cfssl (not measured)`;
      const row = (what: string, v: number): BenchRow => ({
        bench: 2,
        what,
        figure: rate(v),
        floor: { ...rate(floor), text: `${rate(floor).text} ${cfssl !== undefined ? 'cfssl' : 'raw'}` },
        ratio: v / floor,
        target,
        met: cfssl !== undefined ? v / floor >= TARGET : null,
      });
      const rows = [row('BatchNewX509SVID over TLS, batch 50', median(b50)), row('BatchNewX509SVID over TLS, batch 1', median(b1))];
      notes.push(`${INFLIGHT_CSRS} CSRs in flight on every side (batch 50: 2 calls; batch 1: 100 calls on one HTTP/2 connection; cfssl: 100 keep-alive HTTPS connections)`);
      return {
        rows,
        details: { total, rounds, inflightCsrs: INFLIGHT_CSRS, batch50: b50, batch1: b1, floors, floorKind: cfssl !== undefined ? `cfssl serve (${cfssl.version})` : 'raw crypto' },
        notes,
      };
    } finally {
      load?.stop();
      cfssl?.close();
      await srv.close();
    }
  },
};

export default agentApiIssuance;
