/** File-system helpers for secrets: permission checks, private directories, atomic writes. */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, lstat, mkdir, open, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { SigilError } from '../../common/errors.js';

function octal(mode: number): string {
  return `0${(mode & 0o777).toString(8).padStart(3, '0')}`;
}

function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/**
 * Throws ERR_CONFIG_INVALID unless `path` is a regular file readable by its owner only
 * (mode 0600 or stricter); the error names the path and the mode it found.
 */
export async function checkSecretFile(path: string, what: string, reasonPrefix: string): Promise<void> {
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    if (errno(err) === 'ENOENT') {
      throw new SigilError('ERR_CONFIG_INVALID', `${what} ${path} does not exist`, { reason: `${reasonPrefix}-missing`, cause: err });
    }
    throw new SigilError('ERR_CONFIG_INVALID', `cannot read ${what} ${path}`, { reason: `${reasonPrefix}-unreadable`, cause: err });
  }
  if (!st.isFile()) {
    throw new SigilError('ERR_CONFIG_INVALID', `${what} ${path} is not a regular file`, { reason: `bad-${reasonPrefix}` });
  }
  if ((st.mode & 0o077) !== 0) {
    throw new SigilError(
      'ERR_CONFIG_INVALID',
      `${what} ${path} has mode ${octal(st.mode)}, want 0600 or stricter (chmod 600 ${path})`,
      { reason: `insecure-${reasonPrefix}` },
    );
  }
}

/** Creates `dir` (0700) if missing; refuses an existing one that group or others can access. */
export async function ensurePrivateDir(dir: string, what: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new SigilError('ERR_CONFIG_INVALID', `cannot create ${what} ${dir}`, { reason: 'key-dir-unusable', cause: err });
  }
  const st = await lstat(dir);
  if (!st.isDirectory()) throw new SigilError('ERR_CONFIG_INVALID', `${what} ${dir} is not a directory`, { reason: 'key-dir-unusable' });
  if ((st.mode & 0o077) !== 0) {
    throw new SigilError('ERR_CONFIG_INVALID', `${what} ${dir} has mode ${octal(st.mode)}, want 0700 (chmod 700 ${dir})`, {
      reason: 'insecure-key-dir',
    });
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, constants.O_RDONLY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Writes `data` to `path` atomically with the given mode: temp file in the same dir, fsync, rename, fsync the dir. */
export async function writeFileAtomic(path: string, data: Uint8Array, mode = 0o600): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
  try {
    try {
      await fh.writeFile(data);
      await fh.chmod(mode); // the umask may have narrowed it; never widened, but keep it exact
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fsyncDir(dir);
}

/** Removes a file if present and makes the removal durable. */
export async function removeFileDurably(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (err) {
    if (errno(err) === 'ENOENT') return;
    throw err;
  }
  await fsyncDir(dirname(path));
}

/** Sets a file's mode (used after creating secret files whose mode the umask may have changed). */
export async function setMode(path: string, mode: number): Promise<void> {
  await chmod(path, mode);
}
