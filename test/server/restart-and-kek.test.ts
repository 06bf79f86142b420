import test from 'ava';
import { execFile } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { readdir, readFile } from 'node:fs/promises';
import { generateKekFile } from '../../src/ca/key-manager/kek.js';
import { SigilError } from '../../src/common/errors.js';
import { makeServerDir, startTestServer, writeServerConfig } from '../helpers/server.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

test('a restart keeps the CA and the entries; rewrap-keys moves the keys to a new KEK', async (t) => {
  const dir = await makeServerDir();
  const first = await startTestServer({ dir });
  const authorities = first.server.x509Authorities();
  const entryId = await first.createEntry({ spiffeId: 'spiffe://example.org/kept', parentId: 'spiffe://example.org/sigil/agent/x', selectors: ['unix:uid:1'] });
  await first.stop();

  // no plaintext private key on disk
  for (const f of await readdir(join(dir, 'data', 'keys'))) {
    t.false((await readFile(join(dir, 'data', 'keys', f), 'utf8')).includes('PRIVATE KEY'));
  }

  const second = await startTestServer({ dir });
  t.deepEqual(second.server.x509Authorities(), authorities);
  const e = await second.admin.call<{ id: string; spiffe_id: string }>('Entries', 'GetEntry', { id: entryId });
  t.is(e.spiffe_id, 'spiffe://example.org/kept');
  await second.stop();

  // KEK rotation through the CLI, as a child process
  const config = await writeServerConfig(dir);
  await generateKekFile(join(dir, 'kek2'));
  const r = await promisify(execFile)(process.execPath, [join(ROOT, 'bin/sigil.js'), 'server', 'rewrap-keys', '--config', config, '--new-kek', join(dir, 'kek2'), '--output', 'json'], { cwd: ROOT });
  const result = JSON.parse(r.stdout) as { rewrapped: number };
  t.true(result.rewrapped >= 2);

  // the old KEK no longer opens the keys; the new one gives the same CA
  const stale = await startTestServer({ dir }).then(
    async (s) => {
      await s.stop();
      return undefined;
    },
    (err: unknown) => err,
  );
  t.true(stale instanceof SigilError);
  const third = await startTestServer({ dir, config: { keyManager: { type: 'disk', kekFile: join(dir, 'kek2') } } });
  t.teardown(() => third.destroy());
  t.deepEqual(third.server.x509Authorities(), authorities);
});
