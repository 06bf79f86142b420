/**
 * /proc reading (src/agent/peer/process-info.ts): stat parsing with hostile command names,
 * status parsing, and the real procfs on child processes (start time, gone processes,
 * executable path and digest). Lives beside the Workload API tests, its only user.
 */
import test from 'ava';
import { createHash } from 'node:crypto';
import { readFileSync, realpathSync } from 'node:fs';
import { isSigilError } from '../../../src/common/errors.js';
import { ProcfsProcessInfo, parseProcStat, parseProcStatus } from '../../../src/agent/peer/process-info.js';
import { startSleeper } from './support/sleeper.js';

const AS_ROOT = process.getuid?.() === 0;
const rootOnly = AS_ROOT ? test : test.skip;
const processes = new ProcfsProcessInfo();

/** A stat line whose fields 3.. are `S 1 2 …`, with start time `start` in field 22. */
function statLine(pid: number, comm: string, start: number): string {
  const rest = ['S', '1'];
  for (let field = 5; field <= 21; field++) rest.push(String(field));
  rest.push(String(start));
  for (let field = 23; field <= 52; field++) rest.push('0');
  return `${pid} (${comm}) ${rest.join(' ')}\n`;
}

test('stat: command names with spaces and parentheses do not shift the fields', (t) => {
  for (const comm of ['node', 'a b', ') (', 'x) (y z', '((', '))', ') 1 2 3 (', '']) {
    const parsed = parseProcStat(statLine(4242, comm, 987654321));
    t.is(parsed.pid, 4242, comm);
    t.is(parsed.comm, comm, comm);
    t.is(parsed.state, 'S', comm);
    t.is(parsed.ppid, 1, comm);
    t.is(parsed.startTime, 987654321, comm);
  }
});

test('stat: malformed lines are refused with reason proc-malformed', (t) => {
  for (const bad of ['', 'garbage', '12 (x S 1', 'abc (x) S 1 2', statLine(1, 'x', 5).replace(' 5 0 ', ' -5 0 '), '1 (x) S 1 2 3']) {
    const err = t.throws(() => parseProcStat(bad), undefined, JSON.stringify(bad));
    t.true(isSigilError(err) && err.reason === 'proc-malformed', JSON.stringify(bad));
  }
});

test('status: real, effective, saved and filesystem ids, and supplementary groups', (t) => {
  const text = ['Name:\tnode', 'Umask:\t0022', 'Uid:\t1000\t0\t1000\t0', 'Gid:\t100\t101\t102\t103', 'Groups:\t4 24 4242 ', 'NStgid:\t7'].join('\n');
  const st = parseProcStatus(text);
  t.deepEqual(st.uid, { real: 1000, effective: 0, saved: 1000, filesystem: 0 });
  t.deepEqual(st.gid, { real: 100, effective: 101, saved: 102, filesystem: 103 });
  t.deepEqual(st.groups, [4, 24, 4242]);
  t.deepEqual(parseProcStatus('Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t\n').groups, []);
  for (const bad of ['Gid:\t0\t0\t0\t0\n', 'Uid:\t0\t0\t0\nGid:\t0\t0\t0\t0\n', 'Uid:\tx\t0\t0\t0\nGid:\t0\t0\t0\t0\n', 'Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t1 -2\n']) {
    const err = t.throws(() => parseProcStatus(bad));
    t.true(isSigilError(err) && err.reason === 'proc-malformed');
  }
});

test('a real process named ") (" has its start time read correctly; once gone it has none', async (t) => {
  const p = await startSleeper({ code: "process.title = 'x) (y z'" });
  const stat = parseProcStat(readFileSync(`/proc/${p.pid}/stat`, 'utf8'));
  t.is(stat.comm, 'x) (y z');
  t.is(stat.ppid, process.pid);
  const start = processes.startTime(p.pid);
  t.is(start, stat.startTime);
  const self = processes.startTime(process.pid);
  t.true(start !== undefined && self !== undefined && start >= self, 'the child started after the test process');
  await p.stop();
  t.is(processes.startTime(p.pid), undefined);
  const err = t.throws(() => processes.status(p.pid));
  t.true(isSigilError(err, 'ERR_NOT_FOUND'));
  t.true(isSigilError(t.throws(() => processes.exePath(p.pid)), 'ERR_NOT_FOUND'));
  t.true(isSigilError(await t.throwsAsync(processes.hashExecutable(p.pid, { limitBytes: 0 })), 'ERR_NOT_FOUND'));
  t.true(isSigilError(t.throws(() => processes.startTime(0)), 'ERR_INVALID_ARGUMENT'));
});

rootOnly('status of a process run as nobody with supplementary groups', async (t) => {
  const p = await startSleeper({ uid: 65534, gid: 65534, groups: [4242, 7] });
  t.teardown(() => p.stop());
  const st = processes.status(p.pid);
  t.deepEqual(st.uid, { real: 65534, effective: 65534, saved: 65534, filesystem: 65534 });
  t.is(st.gid.effective, 65534);
  t.deepEqual([...st.groups].sort((a, b) => a - b), [7, 4242]);
});

test('executable path and SHA-256 of a real process; the size limit is enforced', async (t) => {
  const p = await startSleeper();
  t.teardown(() => p.stop());
  const exe = realpathSync(process.execPath);
  t.is(processes.exePath(p.pid), exe);
  const digest = createHash('sha256').update(readFileSync(exe)).digest('hex');
  t.is(await processes.hashExecutable(p.pid, { limitBytes: 0 }), digest);
  t.is(await processes.hashExecutable(p.pid, { limitBytes: 512 * 1024 * 1024 }), digest, 'second call (cached) agrees');
  const err = await t.throwsAsync(processes.hashExecutable(p.pid, { limitBytes: 1 }));
  t.true(isSigilError(err) && err.reason === 'executable-too-large');
  const aborted = new AbortController();
  aborted.abort();
  const cancelled = await t.throwsAsync(processes.hashExecutable(p.pid, { limitBytes: 0 }, aborted.signal));
  t.true(isSigilError(cancelled, 'ERR_CANCELLED'));
});
