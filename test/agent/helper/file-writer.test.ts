/**
 * The helper's atomic writer on a real folder: final modes exact whatever the umask, and a
 * leftover temp file or a symlink planted at the temp name is neither reused nor followed.
 */
import test from 'ava';
import { chmodSync, lstatSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic } from '../../../src/agent/helper/file-writer.js';

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-fw-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('writes the content with the exact mode, 0600 and 0644 alike, and leaves no temp file', (t) => {
  const dir = tempDir(t);
  const old = process.umask(0o077);
  try {
    writeFileAtomic(dir, 'svid.pem', 'cert', 0o644);
  } finally {
    process.umask(old);
  }
  writeFileAtomic(dir, 'svid.key', Buffer.from('key'), 0o600);
  t.is(statSync(join(dir, 'svid.pem')).mode & 0o777, 0o644);
  t.is(statSync(join(dir, 'svid.key')).mode & 0o777, 0o600);
  t.is(readFileSync(join(dir, 'svid.key'), 'utf8'), 'key');
  t.deepEqual(readdirSync(dir).sort(), ['svid.key', 'svid.pem']);
});

test('a world-readable leftover temp file is not reused for a key', (t) => {
  const dir = tempDir(t);
  const tmp = join(dir, `.svid.key.${process.pid}.tmp`);
  writeFileSync(tmp, 'stale');
  chmodSync(tmp, 0o666);
  writeFileAtomic(dir, 'svid.key', 'secret-key', 0o600);
  const st = statSync(join(dir, 'svid.key'));
  t.is(st.mode & 0o777, 0o600);
  t.is(readFileSync(join(dir, 'svid.key'), 'utf8'), 'secret-key');
});

test('a symlink planted at the temp name is not written through', (t) => {
  const dir = tempDir(t);
  const victim = join(dir, 'victim');
  writeFileSync(victim, 'untouched');
  chmodSync(victim, 0o644);
  symlinkSync(victim, join(dir, `.svid.key.${process.pid}.tmp`));
  writeFileAtomic(dir, 'svid.key', 'secret-key', 0o600);
  t.is(readFileSync(victim, 'utf8'), 'untouched');
  t.is(statSync(victim).mode & 0o777, 0o644);
  t.true(lstatSync(join(dir, 'svid.key')).isFile(), 'the key is a regular file, not the planted link');
  t.is(statSync(join(dir, 'svid.key')).mode & 0o777, 0o600);
});
