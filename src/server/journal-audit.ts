/**
 * Carries an operator's audit record into the CA journal save its action makes, so
 * `localauthority prepare/activate/taint/revoke` is recorded in the same transaction as the
 * journal change. The CA knows nothing of audits: the record travels in the async context
 * of the admin call (the CA's operation queue and its journal saves run in that context)
 * and is taken by the first journal save made inside it, once.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { AuditFor, AuditRecord } from '../datastore/audit-trail.js';

interface Slot {
  record: AuditRecord | undefined;
}

/** The bridge between an admin call's audit record and the journal save it causes. */
export class JournalAudit {
  readonly #als = new AsyncLocalStorage<Slot>();

  /** Runs `fn`; a journal save inside it carries `record`. `attached` says whether one did. */
  async run<T>(record: AuditRecord, fn: () => Promise<T>): Promise<{ value: T; attached: boolean }> {
    const slot: Slot = { record };
    try {
      const value = await this.#als.run(slot, fn);
      return { value, attached: slot.record === undefined };
    } finally {
      // timers the operation set keep this context: a later save of theirs must not take the record
      slot.record = undefined;
    }
  }

  /** The audit for a journal save happening now: the pending record of the call it belongs to, taken once. */
  take(): AuditFor<string> | undefined {
    const slot = this.#als.getStore();
    const record = slot?.record;
    if (slot === undefined || record === undefined) return undefined;
    slot.record = undefined;
    return () => record;
  }
}
