/**
 * How a CaManager rebuilds its authorities from its stored CA journal at start: refuses a
 * journal that is missing while CA keys remain, that belongs to another trust domain or to a
 * server removed from it; retires authorities whose key is gone or whose upstream changed,
 * and all but the newest of two actives; deletes keys the journal does not know. The
 * manager (ca-manager.ts) takes the slots and saves the journal.
 */
import { SigilError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { KeyManager } from '../plugin/key-manager.js';
import type { TrustDomain } from '../spiffe/spiffe-id.js';
import { JWT_KEY_PREFIX, X509_KEY_PREFIX, jwtSlotFromRecord, x509SlotFromRecord, type JwtSlot, type X509Slot } from './authority.js';
import { decodeCaJournal, type CaJournalStore } from './ca-journal.js';

/** What restoring needs from its CaManager. */
export interface RestoreDeps {
  readonly trustDomain: TrustDomain;
  readonly keyManager: KeyManager;
  readonly journal: CaJournalStore;
  readonly logger: Logger;
  /** SHA-256 of the upstream CA certificate, null without an upstream authority. */
  readonly upstreamFp: string | null;
}

/** The authorities of a stored journal; `changed` when some were retired (the journal must be saved). */
export interface Restored {
  readonly x509: X509Slot[];
  readonly jwt: JwtSlot[];
  readonly changed: boolean;
}

/** Rebuilds the authorities of the stored journal; undefined when there is none yet (a first start: record an empty one). */
export async function restoreFromJournal(d: RestoreDeps): Promise<Restored | undefined> {
  const bytes = await d.journal.load();
  if (bytes === undefined) {
    // No journal: a first start, or a datastore that lost it (replaced, wiped, restored
    // from the wrong backup). CA keys in the key manager tell the two apart, since a first
    // start records an empty journal before it creates any key: minting a new CA over them
    // would silently start a new trust domain that no agent trusts.
    const theirs = await othersKeyIds(d.journal);
    const keys = (await d.keyManager.listKeys()).filter((k) => isCaKeyId(k.id) && !theirs.has(k.id));
    if (keys.length > 0) {
      throw new SigilError(
        'ERR_FAILED_PRECONDITION',
        `the datastore holds no CA journal, but the key manager holds ${keys.length} CA key${keys.length === 1 ? '' : 's'} (${keys.map((k) => k.id).join(', ')}): the datastore was lost or replaced`,
        { reason: 'ca-journal-missing' },
      );
    }
    return undefined;
  }
  const j = decodeCaJournal(bytes);
  if (j.removedAt !== undefined) {
    throw new SigilError(
      'ERR_FAILED_PRECONDITION',
      `this server was removed from the trust domain at ${new Date(j.removedAt).toISOString()} (sigil server remove on another server): its authorities are leaving the bundle; start it with a new data dir and server ID to join again`,
      { reason: 'server-removed' },
    );
  }
  if (j.trustDomain !== d.trustDomain.name) {
    throw new SigilError('ERR_CONFIG_INVALID', `CA journal belongs to trust domain ${j.trustDomain}, not ${d.trustDomain.name}`, {
      reason: 'journal-trust-domain',
    });
  }
  let changed = false;
  const x509: X509Slot[] = [];
  const jwt: JwtSlot[] = [];
  for (const rec of j.x509) {
    const { slot, keyOk } = x509SlotFromRecord(rec, await d.keyManager.getKey(rec.keyId));
    const modeOk = rec.upstream === d.upstreamFp;
    if (rec.phase !== 'old' && (!keyOk || !modeOk)) {
      d.logger.warn({ authorityId: rec.id, keyId: rec.keyId, keyFound: keyOk, sameUpstream: modeOk }, 'X.509 authority cannot sign any more; retiring it');
      rec.phase = 'old';
      changed = true;
    }
    x509.push(slot);
  }
  for (const rec of j.jwt) {
    const { slot, keyOk } = jwtSlotFromRecord(rec, await d.keyManager.getKey(rec.keyId));
    if (rec.phase !== 'old' && !keyOk) {
      d.logger.warn({ kid: rec.id, keyId: rec.keyId }, 'JWT signing key is missing; retiring it');
      rec.phase = 'old';
      changed = true;
    }
    jwt.push(slot);
  }
  // Two actives (only after manual journal edits) would make signing ambiguous: keep the newest.
  for (const list of [x509, jwt] as Array<Array<X509Slot | JwtSlot>>) {
    const actives = list.filter((s) => s.rec.phase === 'active').sort((a, b) => b.rec.notBefore - a.rec.notBefore);
    for (const extra of actives.slice(1)) {
      extra.rec.phase = 'old';
      changed = true;
    }
  }
  await collectOrphanKeys(d, new Set([...x509.map((s) => s.rec.keyId), ...jwt.map((s) => s.rec.keyId)]));
  return { x509, jwt, changed };
}

function isCaKeyId(id: string): boolean {
  return id.startsWith(X509_KEY_PREFIX) || id.startsWith(JWT_KEY_PREFIX);
}

/** Key IDs named in other servers' journals. */
async function othersKeyIds(journal: CaJournalStore): Promise<Set<string>> {
  const ids = new Set<string>();
  for (const bytes of (await journal.others?.()) ?? []) {
    const j = decodeCaJournal(bytes);
    for (const r of [...j.x509, ...j.jwt]) ids.add(r.keyId);
  }
  return ids;
}

/** Deletes CA/JWT keys the journal does not know (left by a crash between key creation and the journal write). */
async function collectOrphanKeys(d: RestoreDeps, known: Set<string>): Promise<void> {
  // a key folder shared with other servers (the old shared-filesystem setup) holds theirs too
  for (const id of await othersKeyIds(d.journal)) known.add(id);
  for (const key of await d.keyManager.listKeys()) {
    if (isCaKeyId(key.id) && !known.has(key.id)) {
      d.logger.info({ keyId: key.id }, 'deleting key unknown to the CA journal');
      await d.keyManager.deleteKey(key.id);
    }
  }
}
