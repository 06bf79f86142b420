/**
 * SO_PEERCRED through the native addon (src/agent/peer/peer-credentials.ts): the pid, uid
 * and gid the kernel reports for a real child that connects to a real Unix socket.
 */
import test, { type ExecutionContext } from 'ava';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { join } from 'node:path';
import { isSigilError } from '../../../src/common/errors.js';
import { getPeerCredentials, getPeerGroups, peerCredentialsAvailable, socketFd, trimNativeHeap } from '../../../src/agent/peer/peer-credentials.js';
import { startSleeper, type SleeperOptions } from './support/sleeper.js';

const AS_ROOT = process.getuid?.() === 0;
const rootOnly = AS_ROOT ? test.serial : test.serial.skip;

/** Listens on a fresh socket, starts a child that connects to it, and returns the accepted socket. */
async function connectFromChild(t: ExecutionContext, options: SleeperOptions = {}): Promise<{ socket: Socket; pid: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-peercred-'));
  chmodSync(dir, 0o755);
  const path = join(dir, 'peer.sock');
  const accepted = new Promise<Socket>((resolve) => {
    const server = createServer((s) => resolve(s));
    server.listen(path, () => chmodSync(path, 0o777));
    t.teardown(() => new Promise<void>((res) => server.close(() => res())));
  });
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const child = await startSleeper({ ...options, code: `require('net').connect(${JSON.stringify(path)}).on('error', () => {})` });
  t.teardown(() => child.stop());
  const socket = await accepted;
  t.teardown(() => socket.destroy());
  return { socket, pid: child.pid };
}

test.serial('the addon is built and loads', (t) => {
  t.true(peerCredentialsAvailable());
});

test.serial('SO_PEERCRED reports the connecting child’s own pid, uid and gid', async (t) => {
  const { socket, pid } = await connectFromChild(t);
  t.deepEqual(getPeerCredentials(socket), { pid, uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 });
});

rootOnly('a child run as nobody with supplementary groups is reported as such', async (t) => {
  const { socket, pid } = await connectFromChild(t, { uid: 65534, gid: 65534, groups: [4242, 100] });
  t.deepEqual(getPeerCredentials(socket), { pid, uid: 65534, gid: 65534 });
  t.deepEqual(
    getPeerGroups(socket).sort((a, b) => a - b),
    [100, 4242],
  );
});

test.serial('a socket without a descriptor is refused with reason no-fd', async (t) => {
  const { socket } = await connectFromChild(t);
  t.true(socketFd(socket) >= 0);
  socket.destroy();
  const err = t.throws(() => getPeerCredentials(socket));
  t.true(isSigilError(err, 'ERR_FAILED_PRECONDITION'));
  t.is((err as { reason?: string }).reason, 'no-fd');
});

test('trimNativeHeap: the addon hands freed heap pages back (glibc) and says whether it released any', (t) => {
  // Free something worth returning first: many small native blocks, dropped and collected.
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  // (allocated and dropped at once; nothing is asserted about the array, which the test built)
  void Array.from({ length: 20_000 }, () => Buffer.allocUnsafeSlow(512));
  gc();
  gc();
  // The native call released those pages (the fallback without the addon says false).
  t.true(trimNativeHeap(), 'malloc_trim released the freed blocks');
});
