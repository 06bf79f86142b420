/**
 * Shared helpers of the CA tests: CSRs from real keys, openssl, temp dirs, a CA over a
 * ManualClock journaling to a real SQLite datastore in a temp dir (through the server's own
 * datastoreCaJournal), so a CA test restarts over what the server would really have stored.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { KeyObject, webcrypto } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ManualClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import { toPem, x509 } from '../../src/common/x509.js';
import { CaManager, type CaManagerOptions } from '../../src/ca/ca-manager.js';
import type { CaJournalStore } from '../../src/ca/ca-journal.js';
import { openSqliteDatastore } from '../../src/datastore/sqlite/sqlite-datastore.js';
import { datastoreCaJournal } from '../../src/server/ca-journal-store.js';
import { MemoryKeyManager } from '../../src/ca/key-manager/memory-key-manager.js';
import { TrustDomain } from '../../src/spiffe/spiffe-id.js';

const execFileAsync = promisify(execFile);

/** Leaf key kinds the tests sign for. */
export type LeafKeyKind = 'ec-p256' | 'ec-p384' | 'rsa-2048' | 'ed25519';

/** The trust domain of the tests. */
export const TD = TrustDomain.parse('example.org');

function algorithmOf(kind: LeafKeyKind): { gen: webcrypto.EcKeyGenParams | webcrypto.RsaHashedKeyGenParams | webcrypto.Algorithm; sign: webcrypto.Algorithm | webcrypto.EcdsaParams } {
  switch (kind) {
    case 'ec-p256':
      return { gen: { name: 'ECDSA', namedCurve: 'P-256' } as webcrypto.EcKeyGenParams, sign: { name: 'ECDSA', hash: 'SHA-256' } as webcrypto.EcdsaParams };
    case 'ec-p384':
      return { gen: { name: 'ECDSA', namedCurve: 'P-384' } as webcrypto.EcKeyGenParams, sign: { name: 'ECDSA', hash: 'SHA-384' } as webcrypto.EcdsaParams };
    case 'rsa-2048':
      return {
        gen: { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' } as webcrypto.RsaHashedKeyGenParams,
        sign: { name: 'RSASSA-PKCS1-v1_5' },
      };
    case 'ed25519':
      return { gen: { name: 'Ed25519' }, sign: { name: 'Ed25519' } };
  }
}

type CsrParams = Parameters<typeof x509.Pkcs10CertificateRequestGenerator.create>[0];

/** A fresh key pair and a DER CSR for it, with names the CA must ignore. */
export async function makeCsr(kind: LeafKeyKind = 'ec-p256'): Promise<{ csr: Buffer; publicKey: KeyObject; privateKey: KeyObject }> {
  const alg = algorithmOf(kind);
  const keys = (await webcrypto.subtle.generateKey(alg.gen, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const req = await x509.Pkcs10CertificateRequestGenerator.create({
    name: 'CN=ignored.example.com, O=Evil',
    keys: keys as unknown as CsrParams['keys'],
    signingAlgorithm: alg.sign as CsrParams['signingAlgorithm'],
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: 'spiffe://evil.org/admin' }, { type: 'dns', value: 'evil.example.com' }])],
  });
  return { csr: Buffer.from(req.rawData), publicKey: KeyObject.from(keys.publicKey), privateKey: KeyObject.from(keys.privateKey) };
}

/** Runs openssl; resolves with stdout, rejects with its stderr. */
export async function openssl(args: string[]): Promise<string> {
  const { stdout } = await execFileAsync('openssl', args, { timeout: 20_000 });
  return stdout;
}

/** A temp dir (0700 by mkdtemp), removed by the returned cleanup. */
export async function tempDir(prefix = 'sigil-ca-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Writes DER certificates as one PEM file. */
export async function writePemCerts(path: string, ders: readonly Uint8Array[]): Promise<void> {
  await writeFile(path, ders.map((d) => toPem(d, 'CERTIFICATE')).join(''));
}

/**
 * `openssl verify` of a leaf against bundle roots, with intermediates untrusted, at the
 * given time (the CA runs on a ManualClock). Resolves with openssl's output.
 */
export async function opensslVerify(dir: string, chain: readonly Buffer[], roots: readonly Buffer[], atMs: number): Promise<string> {
  const leaf = join(dir, 'leaf.pem');
  const bundle = join(dir, 'bundle.pem');
  const untrusted = join(dir, 'untrusted.pem');
  await writePemCerts(leaf, [chain[0] as Buffer]);
  await writePemCerts(bundle, roots);
  const args = ['verify', '-CAfile', bundle, '-attime', String(Math.floor(atMs / 1000)), '-x509_strict'];
  if (chain.length > 1) {
    await writePemCerts(untrusted, chain.slice(1));
    args.push('-untrusted', untrusted);
  }
  args.push(leaf);
  return openssl(args);
}

/** Default start time of the tests' clocks: a fixed instant, so results do not depend on today. */
export const T0 = Date.UTC(2026, 0, 1);

const openJournals: { close: () => Promise<void> }[] = [];
test.after.always(async () => {
  for (const j of openJournals.splice(0)) await j.close();
});

/** A CA journal in a fresh SQLite datastore file (temp dir), closed and removed after the file's tests. */
export async function sqliteJournal(): Promise<CaJournalStore> {
  const { dir, cleanup } = await tempDir('sigil-ca-journal-');
  const ds = await openSqliteDatastore({ path: join(dir, 'datastore.sqlite3'), logger: silentLogger() });
  openJournals.push({
    close: async () => {
      await ds.close();
      await cleanup();
    },
  });
  return datastoreCaJournal(ds, TD, 'test-server');
}

/** A CaManager over a memory key manager, a SQLite-backed journal and a ManualClock; extra options override. */
export async function makeCa(extra: Partial<CaManagerOptions> = {}): Promise<{
  ca: CaManager;
  clock: ManualClock;
  journal: CaJournalStore;
  keyManager: MemoryKeyManager;
}> {
  const clock = (extra.clock as ManualClock | undefined) ?? new ManualClock(T0);
  const journal = extra.journal ?? (await sqliteJournal());
  const keyManager = (extra.keyManager as MemoryKeyManager | undefined) ?? new MemoryKeyManager();
  const ca = await CaManager.create({ trustDomain: TD, keyManager, journal, clock, logger: silentLogger(), ...extra });
  return { ca, clock, journal, keyManager };
}
