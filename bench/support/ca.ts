/**
 * A CaManager for the in-process benchmarks (memory key manager unless given, system clock, no
 * logs), journaling to a real SQLite datastore in a temp dir through the server's own
 * datastoreCaJournal, as the server and the CA tests do.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CaManager } from '../../src/ca/ca-manager.js';
import { MemoryKeyManager } from '../../src/ca/key-manager/memory-key-manager.js';
import { systemClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import { openSqliteDatastore } from '../../src/datastore/sqlite/sqlite-datastore.js';
import type { KeyManager } from '../../src/plugin/key-manager.js';
import { datastoreCaJournal } from '../../src/server/ca-journal-store.js';
import { TrustDomain } from '../../src/spiffe/spiffe-id.js';

/** The trust domain every benchmark uses. */
export const BENCH_TRUST_DOMAIN = 'example.org';

/** A benchmark's CA and what it journals to. */
export interface BenchCa {
  readonly ca: CaManager;
  /** Closes the CA and its datastore and removes the temp dir. */
  close(): Promise<void>;
}

/**
 * A fresh CA for `example.org` (or `trustDomain`) with P-256 keys in `keyManager` (held in
 * memory by default), signing on the calling thread.
 */
export async function createBenchCa(options: { trustDomain?: string; keyManager?: KeyManager } = {}): Promise<BenchCa> {
  const trustDomain = TrustDomain.parse(options.trustDomain ?? BENCH_TRUST_DOMAIN);
  const dir = await mkdtemp(join(tmpdir(), 'sigil-bench-ca-'));
  const ds = await openSqliteDatastore({ path: join(dir, 'datastore.sqlite3'), logger: silentLogger() }).catch(async (err: unknown) => {
    await rm(dir, { recursive: true, force: true });
    throw err;
  });
  const cleanup = async (): Promise<void> => {
    await ds.close();
    await rm(dir, { recursive: true, force: true });
  };
  let ca: CaManager;
  try {
    ca = await CaManager.create({
      trustDomain,
      keyManager: options.keyManager ?? new MemoryKeyManager(),
      journal: datastoreCaJournal(ds, trustDomain, 'bench-server'),
      clock: systemClock,
      logger: silentLogger(),
      signingThreads: 0,
    });
  } catch (err) {
    await cleanup();
    throw err;
  }
  return {
    ca,
    async close() {
      await ca.idle();
      await ca.close();
      await cleanup();
    },
  };
}
