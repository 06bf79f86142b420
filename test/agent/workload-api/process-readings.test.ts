/**
 * ProcessReadings (src/agent/peer/process-readings.ts): checks of one turn share one /proc
 * reading per pid, a fresh reading always reads, the next turn reads again, and a process
 * that exited or whose pid names another start time is gone for every kind of reading.
 */
import test from 'ava';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { ProcfsProcessInfo, type ProcessInfo, type ProcessStatus } from '../../../src/agent/peer/process-info.js';
import { ProcessReadings } from '../../../src/agent/peer/process-readings.js';
import { startSleeper } from './support/sleeper.js';

/** The real procfs, counting the reads that reach it. */
class CountingProcfs implements ProcessInfo {
  readonly #real = new ProcfsProcessInfo();
  statusReads = 0;
  startTimeReads = 0;

  startTime(pid: number): number | undefined {
    this.startTimeReads++;
    return this.#real.startTime(pid);
  }

  status(pid: number): ProcessStatus {
    this.statusReads++;
    return this.#real.status(pid);
  }

  exePath(pid: number): string {
    return this.#real.exePath(pid);
  }

  hashExecutable(pid: number, options: { limitBytes: number }, signal?: AbortSignal): Promise<string> {
    return this.#real.hashExecutable(pid, options, signal);
  }
}

test('shared readings: one read per pid per turn, fresh ones always read, the next turn reads again', async (t) => {
  const sleeper = await startSleeper();
  t.teardown(() => sleeper.stop());
  const procfs = new CountingProcfs();
  const readings = new ProcessReadings(procfs);
  const startTime = procfs.startTime(sleeper.pid) as number;
  procfs.startTimeReads = 0;

  const first = readings.shared(sleeper.pid, startTime);
  t.is(first?.uid.real, process.getuid?.());
  for (let i = 0; i < 100; i++) t.is(readings.shared(sleeper.pid, startTime), first);
  t.is(procfs.statusReads, 1);
  t.is(procfs.startTimeReads, 1);

  // Promise continuations of the same turn still share it.
  await Promise.resolve();
  t.is(readings.shared(sleeper.pid, startTime), first);
  t.is(procfs.statusReads, 1);

  t.truthy(readings.fresh(sleeper.pid, startTime));
  t.is(procfs.statusReads, 2);

  await nextTurn();
  t.truthy(readings.shared(sleeper.pid, startTime));
  t.is(procfs.statusReads, 3);
  t.is(procfs.startTimeReads, 3);
});

test('a start time other than the known one, or an exited process, is gone for shared and fresh readings', async (t) => {
  const sleeper = await startSleeper();
  const procfs = new CountingProcfs();
  const readings = new ProcessReadings(procfs);
  const startTime = procfs.startTime(sleeper.pid) as number;

  t.is(readings.shared(sleeper.pid, startTime + 1), undefined);
  t.is(readings.fresh(sleeper.pid, startTime + 1), undefined);
  t.truthy(readings.shared(sleeper.pid, startTime));

  await sleeper.stop();
  // This turn's reading was taken while it ran; a fresh one sees it gone, and so does the turn after.
  t.is(readings.fresh(sleeper.pid, startTime), undefined);
  t.is(readings.shared(sleeper.pid, startTime), undefined);
  await nextTurn();
  t.is(readings.shared(sleeper.pid, startTime), undefined);
});
