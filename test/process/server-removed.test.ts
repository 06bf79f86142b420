/**
 * A server removed while it still runs, as a supervisor sees it: two `sigil server run` children
 * on one PostgreSQL schema (fresh, dropped at the end); `sigil server remove --server-id srv-b`
 * through A. B notices, logs the error, and exits 1 on its own, naming the removal; its journal
 * row is the one the removal left (B wrote nothing back), and A goes on serving.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { admin, serverHomeOnPostgres, startServer, withAdmin, type Home } from './support/ha.js';
import { sigil } from './support/under-test.js';

const SCHEMA = `sigil_hrp${process.pid}_${randomBytes(3).toString('hex')}`;

test.after.always(async () => {
  await withAdmin((c) => c.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`));
});

/** The stored CA journal of `serverId`, as the database holds it (hex), or undefined. */
async function journalRow(serverId: string): Promise<string | undefined> {
  return withAdmin(async (c) => {
    const r = await c.query<{ journal: Buffer }>(`SELECT journal FROM ${SCHEMA}.server_ca_journals WHERE server_id = $1`, [serverId]);
    return r.rows[0]?.journal.toString('hex');
  });
}

test('a running server removed through another logs it, stops signing and exits 1 without writing its journal back', async (t) => {
  const homes: Home[] = [await serverHomeOnPostgres('srv-a', SCHEMA), await serverHomeOnPostgres('srv-b', SCHEMA)];
  t.teardown(async () => {
    for (const h of homes) if (h.daemon?.running === true) h.daemon.child.kill('SIGKILL');
    await Promise.all(homes.map((h) => h.daemon?.closed));
    for (const h of homes) rmSync(h.dir, { recursive: true, force: true });
  });
  const [a, b] = homes as [Home, Home];
  await startServer(a);
  const bd = await startServer(b);
  t.is((await sigil(['server', 'healthcheck', '--config', b.config])).code, 0, 'B is ready before');

  const out = await admin(a, ['server', 'remove', '--server-id', 'srv-b', '--output', 'json']);
  t.false((JSON.parse(out) as { alreadyRemoved: boolean }).alreadyRemoved);
  const row = await journalRow('srv-b');
  t.truthy(row);

  // B ends by itself (a generous bound only guards against a hang)
  const ended = await Promise.race([bd.closed, new Promise<'hang'>((r) => setTimeout(() => r('hang'), 60_000))]);
  t.not(ended, 'hang', `B kept running after its removal: ${bd.output.slice(-3000)}`);
  t.deepEqual(ended, { code: 1, signal: null }, 'a removed server exits 1');
  t.regex(bd.stderr, /sigil: this server was removed from the trust domain at \S+ \(sigil server remove on another server\): it signs nothing/);
  const errors = bd.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { level?: number; msg?: string });
  t.true(errors.some((l) => l.level === 50 && (l.msg ?? '').startsWith('this server was removed')), 'the removal is logged as an error');
  t.is(await journalRow('srv-b'), row, 'B wrote nothing back');

  // A goes on, and the removal stands
  t.is((await sigil(['server', 'healthcheck', '--config', a.config])).code, 0);
  t.regex(await admin(a, ['server', 'remove', '--server-id', 'srv-b']), /already removed/);
  t.true(a.daemon?.running);
});
