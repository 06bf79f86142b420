/**
 * The key-encryption key (KEK) of the disk key manager: 32 random bytes in a file only its
 * owner can read. Only a short HMAC fingerprint of it is ever stored, to tell "wrong KEK"
 * apart from "tampered file".
 */
import { createHmac, randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { SigilError } from '../../common/errors.js';
import { Secret } from '../../common/secret.js';
import { open as openBox, seal, type DataKeyWrapper } from './sealed-box.js';
import { checkSecretFile } from './secure-file.js';

/** Length of a KEK in bytes (AES-256). */
export const KEK_BYTES = 32;

/** Reads a KEK file: must be a regular file of mode 0600 or stricter holding exactly 32 bytes. */
export async function readKekFile(path: string): Promise<Secret<Buffer>> {
  await checkSecretFile(path, 'kek file', 'kek-file');
  const bytes = await readFile(path);
  if (bytes.length !== KEK_BYTES) {
    bytes.fill(0);
    throw new SigilError('ERR_CONFIG_INVALID', `kek file ${path} must hold exactly ${KEK_BYTES} bytes`, { reason: 'bad-kek-file' });
  }
  return new Secret(bytes);
}

/** Writes a new KEK file (32 random bytes, mode 0600); refuses to overwrite an existing file. */
export async function generateKekFile(path: string): Promise<void> {
  let fh;
  try {
    fh = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new SigilError('ERR_ALREADY_EXISTS', `kek file ${path} already exists`, { reason: 'kek-file-exists', cause: err });
    }
    throw new SigilError('ERR_CONFIG_INVALID', `cannot create kek file ${path}`, { reason: 'kek-file-unwritable', cause: err });
  }
  const kek = randomBytes(KEK_BYTES);
  try {
    await fh.chmod(0o600);
    await fh.writeFile(kek);
    await fh.sync();
  } finally {
    kek.fill(0);
    await fh.close();
  }
}

/** Checks a KEK held in memory has the right length. */
export function checkKek(kek: Secret<Buffer>): Buffer {
  const k = kek.reveal();
  if (!Buffer.isBuffer(k) || k.length !== KEK_BYTES) {
    throw new SigilError('ERR_CONFIG_INVALID', `kek must be ${KEK_BYTES} bytes`, { reason: 'bad-kek-file' });
  }
  return k;
}

/** A short, non-reversible identifier of a KEK (first 8 bytes of an HMAC under it), stored beside wrapped keys. */
export function kekFingerprint(kek: Secret<Buffer>): string {
  return createHmac('sha256', checkKek(kek)).update('sigil kek fingerprint v1').digest().subarray(0, 8).toString('hex');
}

/** The KEK file's bytes as the disk key manager's wrapper (AES-256-GCM in this process). */
export function fileKekWrapper(kek: Secret<Buffer>): DataKeyWrapper {
  const key = checkKek(kek);
  return {
    fingerprint: kekFingerprint(kek),
    description: 'kek file',
    wrap: (dataKey, aad) => Promise.resolve(seal(key, dataKey, aad)),
    unwrap: (box, aad) => Promise.resolve(openBox(key, box, aad)),
  };
}
