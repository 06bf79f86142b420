/**
 * Atomic file replacement for the helper: the new content goes to a temporary file in the
 * same folder with its final mode, then rename(2) swaps it in, so a reader (nginx reloading,
 * PostgreSQL reading its key) sees either the old file or the new one, never a torn one.
 */
import { closeSync, constants, fchmodSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/** Writes `data` to `dir/name` atomically with `mode`. */
export function writeFileAtomic(dir: string, name: string, data: string | Buffer, mode: number): void {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const final = join(dir, name);
  const tmp = join(dir, `.${name}.${process.pid}.tmp`);
  // A leftover temp file (or a symlink planted there) would otherwise be reused as is: its
  // wider mode would hold a private key until the chmod, and a symlink would be written through.
  rmSync(tmp, { force: true });
  try {
    const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode & 0o600);
    try {
      const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
      for (let off = 0; off < bytes.length; ) off += writeSync(fd, bytes, off, bytes.length - off);
      fchmodSync(fd, mode); // the umask must not narrow it either (a cert may be meant 0644)
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, final);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}
