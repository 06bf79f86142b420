/** CPU time of a process (every thread) from /proc/<pid>/stat: utime + stime. */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

let ticksPerSecond: number | undefined;

/** The kernel's clock ticks per second (getconf CLK_TCK; 100 when that fails). */
function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
    const n = Number((r.stdout ?? '').trim());
    ticksPerSecond = r.status === 0 && Number.isInteger(n) && n > 0 ? n : 100;
  }
  return ticksPerSecond;
}

/** utime + stime, in clock ticks, from the text of a /proc/<pid>/stat file. */
export function statCpuTicks(stat: string): number {
  // Fields after "(comm)", which may itself hold spaces or parentheses: state is field 3, utime 14, stime 15.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  if (!/^[A-Za-z]$/.test(rest[0] ?? '') || !Number.isInteger(utime) || !Number.isInteger(stime)) throw new Error('unreadable /proc stat line');
  return utime + stime;
}

/** Seconds of CPU the process has used in user and kernel mode, all threads, so far. */
export function processCpuSeconds(pid: number): number {
  return statCpuTicks(readFileSync(`/proc/${pid}/stat`, 'utf8')) / clockTicks();
}
