/** The one permission rule for files that hold a secret the operator wrote (a join token), checked synchronously. */
import { statSync } from 'node:fs';
import { SigilError } from './errors.js';

/**
 * Throws ERR_CONFIG_INVALID (reason `insecure-secret-file`) when `path` exists and group or
 * others may read or write it: the same rule, and the same message, as the server's KEK file
 * (0600 or stricter). A missing file passes: reading it reports that where it matters.
 */
export function checkSecretFileMode(path: string, what: string): void {
  let mode: number;
  try {
    mode = statSync(path).mode;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new SigilError('ERR_CONFIG_INVALID', `cannot read ${what} ${path}`, { reason: 'secret-file-unreadable', cause: err });
  }
  if ((mode & 0o077) !== 0) {
    const octal = `0${(mode & 0o777).toString(8).padStart(3, '0')}`;
    throw new SigilError('ERR_CONFIG_INVALID', `${what} ${path} has mode ${octal}, want 0600 or stricter (chmod 600 ${path})`, {
      reason: 'insecure-secret-file',
    });
  }
}
