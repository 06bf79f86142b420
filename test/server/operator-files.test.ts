import test from 'ava';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SigilError } from '../../src/common/errors.js';
import { MAX_OPERATOR_FILE_BYTES, readOperatorFile, readOperatorFileSync } from '../../src/ca/operator-file.js';
import { loadUpstreamAuthority } from '../../src/ca/upstream-authority.js';
import { makeServerDir, startTestServer } from '../helpers/server.js';
import { createCa } from '../helpers/pki.js';
import { rejectionOf } from './support/rejection.js';

test('an x509pop CA bundle file over 1 MiB stops the server with ERR_CONFIG_INVALID/file-too-large naming the path', async (t) => {
  const dir = await makeServerDir();
  const ca = await createCa({ name: 'CN=Node CA', id: null });
  const path = join(dir, 'huge-node-ca.pem');
  // a valid bundle padded with comment text past the cap: only the size is wrong
  await writeFile(path, ca.pem + '#'.repeat(MAX_OPERATOR_FILE_BYTES));
  const err = await t.throwsAsync(startTestServer({ dir, config: { nodeAttestors: { x509pop: { caBundleFile: path } } } }), { instanceOf: SigilError });
  t.is(err?.code, 'ERR_CONFIG_INVALID');
  t.is((err as SigilError).reason, 'file-too-large');
  t.true(err?.message.includes(path));

  // exactly at the cap is still read
  const atCap = join(dir, 'at-cap.pem');
  await writeFile(atCap, ca.pem + '#'.repeat(MAX_OPERATOR_FILE_BYTES - Buffer.byteLength(ca.pem)));
  const s = await startTestServer({ dir, config: { nodeAttestors: { x509pop: { caBundleFile: atCap } } } });
  await s.destroy();
});

test('an upstream certificate file over the cap is refused before parsing (file-too-large)', async (t) => {
  const dir = await makeServerDir();
  const certPath = join(dir, 'upstream.pem');
  await writeFile(certPath, Buffer.alloc(MAX_OPERATOR_FILE_BYTES + 1, 0x41));
  const r = await rejectionOf(loadUpstreamAuthority({ certPath, keyPath: join(dir, 'absent.key') }));
  t.deepEqual(r, { code: 'ERR_CONFIG_INVALID', reason: 'file-too-large' });
  const missing = await rejectionOf(loadUpstreamAuthority({ certPath: join(dir, 'absent.pem'), keyPath: join(dir, 'absent.key') }));
  t.deepEqual(missing, { code: 'ERR_CONFIG_INVALID', reason: 'upstream-file-unreadable' });
});

test('the cap holds for files whose stat size says nothing (/dev/zero)', async (t) => {
  const sync = t.throws(() => readOperatorFileSync('/dev/zero', 'test file', 4096), { instanceOf: SigilError });
  t.is(sync?.code, 'ERR_CONFIG_INVALID');
  t.is((sync as SigilError).reason, 'file-too-large');
  const r = await rejectionOf(readOperatorFile('/dev/zero', 'test file', 4096));
  t.deepEqual(r, { code: 'ERR_CONFIG_INVALID', reason: 'file-too-large' });
});
