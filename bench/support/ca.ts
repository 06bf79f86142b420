/** An in-memory CaManager for the in-process benchmarks (memory key manager, system clock, no logs). */
import { CaManager } from '../../src/ca/ca-manager.js';
import { MemoryCaJournalStore } from '../../src/ca/ca-journal.js';
import { MemoryKeyManager } from '../../src/ca/key-manager/memory-key-manager.js';
import { systemClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import { TrustDomain } from '../../src/spiffe/spiffe-id.js';

/** The trust domain every benchmark uses. */
export const BENCH_TRUST_DOMAIN = 'example.org';

/** A fresh CA for `example.org` (or `trustDomain`) with P-256 keys held in memory. */
export function createBenchCa(trustDomain = BENCH_TRUST_DOMAIN): Promise<CaManager> {
  return CaManager.create({
    trustDomain: TrustDomain.parse(trustDomain),
    keyManager: new MemoryKeyManager(),
    journal: new MemoryCaJournalStore(),
    clock: systemClock,
    logger: silentLogger(),
  });
}
