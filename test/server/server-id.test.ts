/**
 * The server's identity among servers sharing a datastore: generated once into the data dir
 * (0600) and kept across restarts, or taken from `serverId`; a journal from before server IDs
 * (owner '') is adopted by the server whose keys it names, never by another one.
 */
import test from 'ava';
import Database from 'better-sqlite3';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isSigilError } from '../../src/common/errors.js';
import { makeServerDir, startTestServer } from '../helpers/server.js';

test('a generated server id is stored 0600 in the data dir and kept across restarts; serverId overrides it', async (t) => {
  const dir = await makeServerDir();
  const first = await startTestServer({ dir });
  t.teardown(() => first.destroy());
  const id = first.server.serverId;
  t.regex(id, /^srv-[0-9a-f]{12}$/);
  const file = join(dir, 'data', 'server-id');
  t.is(readFileSync(file, 'utf8'), `${id}\n`);
  t.is(statSync(file).mode & 0o777, 0o600);
  t.deepEqual(await first.server.datastore.listCaJournals('spiffe://example.org').then((js) => js.map((j) => j.serverId)), [id]);
  await first.stop();
  const again = await startTestServer({ dir });
  t.is(again.server.serverId, id);
  await again.stop();
  writeFileSync(file, 'Not An Id\n');
  const err = await t.throwsAsync(startTestServer({ dir }));
  t.true(isSigilError(err, 'ERR_CONFIG_INVALID') && err.reason === 'server-id-file', String(err));
  const named = await startTestServer({ dir, config: { serverId: 'sigil-1' } });
  t.is(named.server.serverId, 'sigil-1');
  await named.stop();
});

test('a journal written before server ids is adopted by the server holding its keys, with the same CA', async (t) => {
  const dir = await makeServerDir();
  const first = await startTestServer({ dir });
  t.teardown(() => first.destroy());
  const ca = first.server.ca.status().x509.find((a) => a.phase === 'active')?.id;
  await first.stop();
  // what migration 2 makes of an old database: the one journal, owned by ''
  const db = new Database(join(dir, 'data', 'datastore.sqlite3'));
  db.prepare("UPDATE server_ca_journals SET server_id = ''").run();
  db.close();
  const again = await startTestServer({ dir });
  t.is(again.server.ca.status().x509.find((a) => a.phase === 'active')?.id, ca, 'same CA: nothing retired, nothing minted');
  t.false(again.logLines.some((l) => l.includes('retiring it')));
  t.true(again.logLines.some((l) => l.includes('adopted by this server')));
  t.deepEqual((await again.server.datastore.listCaJournals('spiffe://example.org')).map((j) => j.serverId), [again.server.serverId]);
  await again.stop();
});
