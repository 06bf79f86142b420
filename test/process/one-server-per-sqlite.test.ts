/**
 * SQLite serves one server: a second `sigil server run` (a real child) pointed at the same SQLite
 * file exits 1 at once, saying to use PostgreSQL, and leaves the first one serving. The lock dies
 * with its holder: after kill -9 of the first, the second starts.
 */
import test from 'ava';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Daemon } from '../agent/support/processes.js';
import { freePort, serverHome, supervise } from './support/under-test.js';

test('a second server on the same SQLite file is refused with a message naming PostgreSQL', async (t) => {
  const home = await serverHome();
  const running: Daemon[] = [];
  t.teardown(async () => {
    for (const d of running) if (d.running) d.child.kill('SIGKILL');
    await Promise.all(running.map((d) => d.closed));
    rmSync(home.dir, { recursive: true, force: true });
  });
  const first = await home.start();
  running.push(first);

  const port = await freePort();
  const secondArgs = ['server', 'run', '--config', home.config, '--agent-address', `127.0.0.1:${port}`, '--admin-socket', join(home.dir, 'second.sock')];
  const second = supervise(secondArgs);
  running.push(second);
  // bounded: a build without the lock lets the second server serve, and this must fail, not hang
  let bound: NodeJS.Timeout | undefined;
  const ending = await Promise.race([second.closed, new Promise<'still running'>((r) => (bound = setTimeout(() => r('still running'), 60_000)))]);
  clearTimeout(bound);
  t.deepEqual(ending, { code: 1, signal: null }, second.output.slice(-2000));
  if (ending === 'still running') return;
  t.regex(second.stderr, /in use by another server/);
  t.regex(second.stderr, /PostgreSQL/);
  t.true(first.running, 'the first server goes on serving');
  const shown = await home.admin(['bundle', 'show']);
  t.is(shown.code, 0, shown.stderr);

  // kill -9 drops the lock with the process: the next server starts on the same file
  first.child.kill('SIGKILL');
  await first.closed;
  const third = supervise(secondArgs);
  running.push(third);
  await third.until('the server to serve', () => third.stderr.includes('sigil server: serving'), 60_000);
  t.true(third.running);
});
