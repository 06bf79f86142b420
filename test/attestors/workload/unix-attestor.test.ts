/**
 * The unix workload attestor on real processes: selectors from /proc for children run as
 * root and as `nobody` with supplementary groups, path and sha256 when enabled, the size
 * limit, and a process that is gone. Names come from the real /etc/passwd and a group file
 * written by the test (so a supplementary group has a known name).
 */
import test from 'ava';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { ManualClock } from '../../../src/common/clock.js';
import { isSigilError } from '../../../src/common/errors.js';
import { formatSelector, type Selector } from '../../../src/spiffe/selector.js';
import { ProcfsProcessInfo } from '../../../src/agent/peer/process-info.js';
import { UnixWorkloadAttestor } from '../../../attestors/workload/unix/unix-attestor.js';
import { UserDatabase, parseIdNameFile } from '../../../attestors/workload/unix/user-database.js';
import { startSleeper } from '../../agent/workload-api/support/sleeper.js';

const AS_ROOT = process.getuid?.() === 0;
const rootOnly = AS_ROOT ? test : test.skip;
const NOBODY = 65534;

const dir = mkdtempSync(join(tmpdir(), 'sigil-unix-attestor-'));
const groupFile = join(dir, 'group');
writeFileSync(groupFile, ['# test groups', 'root:x:0:', 'users:x:100:', 'nogroup:x:65534:', 'sigil-test:x:4242:nobody', ''].join('\n'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

const processes = new ProcfsProcessInfo();
const users = new UserDatabase({ groupPath: groupFile });
const texts = (s: Selector[]): string[] => s.map(formatSelector);

rootOnly('uid, user, gid, group and supplementary groups of a process run as nobody', async (t) => {
  const p = await startSleeper({ uid: NOBODY, gid: NOBODY, groups: [4242, 100] });
  t.teardown(() => p.stop());
  const attestor = new UnixWorkloadAttestor({ processes, users });
  t.is(attestor.name, 'unix');
  const selectors = await attestor.attest({ pid: p.pid, uid: NOBODY, gid: NOBODY });
  t.true(selectors.every((s) => s.type === 'unix'));
  t.deepEqual(texts(selectors), [
    'unix:uid:65534',
    'unix:user:nobody',
    'unix:gid:65534',
    'unix:group:nogroup',
    'unix:supplementary_gid:100',
    'unix:supplementary_group:users',
    'unix:supplementary_gid:4242',
    'unix:supplementary_group:sigil-test',
  ]);
});

test('uid and gid of a process run as the test user; no path selectors unless enabled', async (t) => {
  const p = await startSleeper();
  t.teardown(() => p.stop());
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  const selectors = texts(await new UnixWorkloadAttestor({ processes, users }).attest({ pid: p.pid, uid, gid }));
  t.true(selectors.includes(`unix:uid:${uid}`));
  t.true(selectors.includes(`unix:gid:${gid}`));
  // The user's name from the passwd database, whoever runs the test (root: unix:user:root).
  t.true(selectors.includes(`unix:user:${userInfo().username}`), selectors.join(' '));
  t.false(selectors.some((s) => s.startsWith('unix:path:') || s.startsWith('unix:sha256:')));
});

rootOnly('the effective uid is reported, as SPIRE does, when real and effective differ', async (t) => {
  // seteuid changes only the effective id; the real one stays root.
  const p = await startSleeper({ code: `process.seteuid(${NOBODY})` });
  t.teardown(() => p.stop());
  const status = processes.status(p.pid);
  t.is(status.uid.real, 0);
  t.is(status.uid.effective, NOBODY);
  const selectors = texts(await new UnixWorkloadAttestor({ processes, users }).attest({ pid: p.pid, uid: 0, gid: 0 }));
  t.true(selectors.includes(`unix:uid:${NOBODY}`));
  t.false(selectors.includes('unix:uid:0'));
});

test('path and sha256 when discoverWorkloadPath is on; the size limit refuses larger executables; a negative limit skips the hash', async (t) => {
  const p = await startSleeper();
  t.teardown(() => p.stop());
  const exe = realpathSync(process.execPath);
  const digest = createHash('sha256').update(readFileSync(exe)).digest('hex');
  const peer = { pid: p.pid, uid: 0, gid: 0 };

  const full = texts(await new UnixWorkloadAttestor({ processes, users, discoverWorkloadPath: true }).attest(peer));
  t.true(full.includes(`unix:path:${exe}`));
  t.true(full.includes(`unix:sha256:${digest}`));

  const err = await t.throwsAsync(new UnixWorkloadAttestor({ processes, users, discoverWorkloadPath: true, workloadSizeLimit: 1024 }).attest(peer));
  t.true(isSigilError(err, 'ERR_ATTESTATION_FAILED'));
  t.is((err as { reason?: string }).reason, 'executable-too-large');

  const noHash = texts(await new UnixWorkloadAttestor({ processes, users, discoverWorkloadPath: true, workloadSizeLimit: -1 }).attest(peer));
  t.true(noHash.includes(`unix:path:${exe}`));
  t.false(noHash.some((s) => s.startsWith('unix:sha256:')));

  const unlimited = texts(await new UnixWorkloadAttestor({ processes, users, discoverWorkloadPath: true, workloadSizeLimit: 0 }).attest(peer));
  t.true(unlimited.includes(`unix:sha256:${digest}`));
});

test('a process that is gone fails attestation with reason process-gone', async (t) => {
  const p = await startSleeper();
  await p.stop();
  const err = await t.throwsAsync(new UnixWorkloadAttestor({ processes, users }).attest({ pid: p.pid, uid: 0, gid: 0 }));
  t.true(isSigilError(err, 'ERR_ATTESTATION_FAILED'));
  t.is((err as { reason?: string }).reason, 'process-gone');
});

test('an invalid size limit is a config error', (t) => {
  const err = t.throws(() => new UnixWorkloadAttestor({ processes, workloadSizeLimit: Number.NaN }));
  t.true(isSigilError(err, 'ERR_CONFIG_INVALID'));
});

test('passwd and group files: first line per id wins; comments, NIS lines and malformed ids are skipped', (t) => {
  const parsed = parseIdNameFile(
    ['# comment', 'root:x:0:0:root:/root:/bin/bash', '+nis::::::', '-bad::::::', 'dup:x:0:0::/:/bin/sh', 'web:x:33:33:www:/var/www:/usr/sbin/nologin', 'neg:x:-1:0::/:', 'huge:x:99999999999:0::/:', 'noid:x::0::/:', '', 'grp:x:4242:alice,bob'].join('\n'),
  );
  t.deepEqual([...parsed.entries()], [
    [0, 'root'],
    [33, 'web'],
    [4242, 'grp'],
  ]);
});

test('names are cached for the TTL of the injected clock, then re-read', async (t) => {
  const file = join(dir, 'passwd-cache');
  writeFileSync(file, 'alice:x:1000:1000::/home/alice:/bin/sh\n');
  const clock = new ManualClock();
  const db = new UserDatabase({ passwdPath: file, groupPath: join(dir, 'missing-group'), ttlMs: 5000, clock });
  t.is(await db.userName(1000), 'alice');
  writeFileSync(file, 'bob:x:1000:1000::/home/bob:/bin/sh\n');
  clock.advance(4999);
  t.is(await db.userName(1000), 'alice');
  clock.advance(1);
  t.is(await db.userName(1000), 'bob');
  t.is(await db.groupName(0), undefined, 'an unreadable group file yields no names');
});
