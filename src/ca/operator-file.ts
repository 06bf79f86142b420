/**
 * Reads files an operator names in the config (trust bundles, upstream certificates and
 * keys) with a size cap, so a wrong path (a log, an image, /dev/zero) fails with a clear
 * config error instead of exhausting memory at startup.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { SigilError } from '../common/errors.js';

/** Largest operator file read whole: 1 MiB, far above any PEM bundle or key. */
export const MAX_OPERATOR_FILE_BYTES = 1024 * 1024;

function tooLarge(path: string, what: string, maxBytes: number): SigilError {
  return new SigilError('ERR_CONFIG_INVALID', `${what} ${path} is larger than ${maxBytes} bytes`, { reason: 'file-too-large' });
}

/**
 * Reads `path` whole, refusing more than `maxBytes` with ERR_CONFIG_INVALID/file-too-large;
 * I/O errors are thrown as they are, for the caller to word. Reads rather than trusting
 * fstat, whose size is 0 for devices and pipes.
 */
export function readOperatorFileSync(path: string, what: string, maxBytes: number = MAX_OPERATOR_FILE_BYTES): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(maxBytes + 1);
    let n = 0;
    while (n < buf.length) {
      const got = readSync(fd, buf, n, buf.length - n, null);
      if (got === 0) break;
      n += got;
    }
    if (n > maxBytes) throw tooLarge(path, what, maxBytes);
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

/** The async twin of `readOperatorFileSync`, same cap and errors. */
export async function readOperatorFile(path: string, what: string, maxBytes: number = MAX_OPERATOR_FILE_BYTES): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const buf = Buffer.alloc(maxBytes + 1);
    let n = 0;
    while (n < buf.length) {
      const { bytesRead } = await handle.read(buf, n, buf.length - n, null);
      if (bytesRead === 0) break;
      n += bytesRead;
    }
    if (n > maxBytes) throw tooLarge(path, what, maxBytes);
    return buf.subarray(0, n);
  } finally {
    await handle.close();
  }
}
