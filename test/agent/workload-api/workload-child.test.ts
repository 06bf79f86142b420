/**
 * The test workload's harness: a child that cannot start (here one that fails the way a
 * workload does when its uid cannot read the checkout) fails the waiting test at once with the
 * child's exit status and its own stderr, not after a timeout with "saw []".
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { Workload } from './support/workload-child.js';

test('a workload that exits before the awaited event fails the wait with its exit code and stderr', async (t) => {
  const child = spawn(process.execPath, ['-e', "process.stderr.write('Error: EACCES: permission denied, open dist/src/client/index.js'); process.exit(3)"], { stdio: ['pipe', 'pipe', 'pipe'] });
  const w = new Workload(child);
  const err = await t.throwsAsync(w.next((e) => e.event === 'ready', 60_000));
  t.regex(err?.message ?? '', /exited with code 3 before a matching event/);
  t.regex(err?.message ?? '', /EACCES: permission denied, open dist\/src\/client\/index\.js/);
});
