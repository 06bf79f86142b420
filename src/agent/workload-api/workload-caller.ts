/**
 * The calling process as the Workload API knows it: kernel credentials taken at accept, the
 * process start time recorded then (so a pid that exits or is reused is noticed), and the
 * selectors the workload attestors produced for it.
 */
import { SigilError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import type { PeerCredentials, WorkloadAttestor } from '../../plugin/workload-attestor.js';
import { normalizeSelectors, type Selector } from '../../spiffe/selector.js';
import type { IdSet, ProcessStatus } from '../peer/process-info.js';
import type { ProcessReadings } from '../peer/process-readings.js';

/** What was learned about a connection when it was accepted. */
export interface ConnectionFacts extends PeerCredentials {
  /** Start time of `pid` (clock ticks after boot) read right after accept. */
  readonly startTime: number;
}

/** An attested caller: who it is, what it looked like when attested, and its selectors. */
export interface AttestedCaller {
  readonly facts: ConnectionFacts;
  /** /proc status at attestation; a later difference means the process changed credentials. */
  readonly status: ProcessStatus;
  readonly selectors: readonly Selector[];
}

/** Result of re-checking a caller before sending it anything new. */
export type CallerCheck = 'same' | 'gone' | 'credentials-changed';

/** How many times attestation is retried when the process changes credentials while being attested. */
const MAX_ATTEST_ROUNDS = 3;

function processGone(pid: number): SigilError {
  return new SigilError('ERR_PERMISSION_DENIED', `workload process ${pid} exited or was replaced`, { reason: 'process-gone' });
}

function sameIdSet(a: IdSet, b: IdSet): boolean {
  return a.real === b.real && a.effective === b.effective && a.saved === b.saved && a.filesystem === b.filesystem;
}

function sameIds(a: ProcessStatus, b: ProcessStatus): boolean {
  if (a === b) return true;
  if (!sameIdSet(a.uid, b.uid) || !sameIdSet(a.gid, b.gid) || a.groups.length !== b.groups.length) return false;
  return a.groups.every((g, i) => g === b.groups[i]);
}

/**
 * Runs every attestor on the caller and unions their selectors. An attestor that fails
 * contributes nothing (its error is logged): fewer selectors can only match fewer entries.
 * Throws ERR_PERMISSION_DENIED (`process-gone`) when the process exited or its pid now names
 * another process, checked after the attestors finished.
 */
export async function attestCaller(
  facts: ConnectionFacts,
  attestors: readonly WorkloadAttestor[],
  readings: ProcessReadings,
  logger: Logger,
  signal?: AbortSignal,
): Promise<AttestedCaller> {
  for (let round = 0; round < MAX_ATTEST_ROUNDS; round++) {
    // Both readings are fresh: the one after must postdate everything the attestors read.
    const before = readings.fresh(facts.pid, facts.startTime);
    if (before === undefined) throw processGone(facts.pid);
    const results = await Promise.allSettled(attestors.map((a) => a.attest(facts, signal)));
    // Checked before cancellation: a caller that vanished mid-attestation is the event to record.
    const after = readings.fresh(facts.pid, facts.startTime);
    if (after === undefined) {
      logger.warn({ peerPid: facts.pid, peerUid: facts.uid, reason: 'process-gone' }, 'workload process exited or was replaced during attestation');
      throw processGone(facts.pid);
    }
    signal?.throwIfAborted();
    const selectors: Selector[] = [];
    results.forEach((r, i) => {
      if (r.status === 'fulfilled') selectors.push(...r.value);
      else logger.warn({ peerPid: facts.pid, attestor: attestors[i]?.name, err: r.reason }, 'workload attestor failed');
    });
    if (sameIds(before, after)) return { facts, status: after, selectors: normalizeSelectors(selectors) };
    logger.info({ peerPid: facts.pid }, 'workload credentials changed during attestation; attesting again');
  }
  throw new SigilError('ERR_PERMISSION_DENIED', 'workload credentials kept changing during attestation', { reason: 'credentials-unstable' });
}

/**
 * Re-checks a caller before a send: still the same process, with the credentials it was
 * attested with? Answers from a reading of this turn when one was taken (see ProcessReadings).
 */
export function checkCaller(caller: AttestedCaller, readings: ProcessReadings): CallerCheck {
  const now = readings.shared(caller.facts.pid, caller.facts.startTime);
  if (now === undefined) return 'gone';
  return sameIds(caller.status, now) ? 'same' : 'credentials-changed';
}

/** The error a caller gets when its process is gone. */
export function processGoneError(pid: number): SigilError {
  return processGone(pid);
}
