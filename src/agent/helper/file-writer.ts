/**
 * Atomic file replacement for the helper: the new content goes to a temporary file in the
 * same folder with its final mode, then rename(2) swaps it in, so a reader (nginx reloading,
 * PostgreSQL reading its key) sees either the old file or the new one, never a torn one.
 */
import { chmodSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Writes `data` to `dir/name` atomically with `mode`. */
export function writeFileAtomic(dir: string, name: string, data: string | Buffer, mode: number): void {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const final = join(dir, name);
  const tmp = join(dir, `.${name}.${process.pid}.tmp`);
  try {
    writeFileSync(tmp, data, { mode });
    chmodSync(tmp, mode); // an umask or a leftover file must not widen or narrow it
    renameSync(tmp, final);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}
