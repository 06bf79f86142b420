/**
 * The `disk` key manager: each private key in its own 0600 JSON file in a 0700 directory,
 * envelope-encrypted. A random per-key 256-bit data key encrypts the PKCS#8 DER with
 * AES-256-GCM (random 96-bit nonce, AAD binding key ID and type); the KEK wraps the data key
 * with AES-256-GCM (same AAD binding) — in this process for a KEK file, inside the token for a
 * PKCS#11 KEK (see pkcs11-kek.ts). Rotating the KEK re-wraps only the data keys.
 * No plaintext private key is ever written: PKCS#8 bytes exist only in memory, briefly.
 */
import { createPrivateKey, createPublicKey, randomBytes, type KeyObject } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { SigilError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { Secret } from '../../common/secret.js';
import type { KeyManager, KeyType, ManagedKey } from '../../plugin/key-manager.js';
import { fileKekWrapper, readKekFile } from './kek.js';
import { aad, isBox, open, seal, type DataKeyWrapper, type SealedBox } from './sealed-box.js';
import { checkKeyId, generateKeyPairOfType, inMemoryManagedKey, isKeyType, keyMatchesType } from './key-gen.js';
import { ensurePrivateDir, removeFileDurably, writeFileAtomic } from './secure-file.js';

const FILE_SUFFIX = '.key.json';
const FORMAT_VERSION = 1;

/** The JSON stored per key. */
interface KeyFile {
  version: number;
  id: string;
  type: KeyType;
  /** DER SPKI, base64; checked against the decrypted private key on load. */
  publicKey: string;
  /** Fingerprint of the KEK that wrapped the data key. */
  kek: string;
  /** The data key, wrapped by the KEK. */
  dataKey: SealedBox;
  /** The PKCS#8 DER private key, encrypted by the data key. */
  privateKey: SealedBox;
}

function fileNameOf(id: string): string {
  return id + FILE_SUFFIX;
}

function corrupt(path: string, cause?: unknown): SigilError {
  return new SigilError('ERR_FAILED_PRECONDITION', `key file ${path} is malformed`, { reason: 'key-file-corrupt', cause });
}

function tampered(path: string): SigilError {
  return new SigilError('ERR_FAILED_PRECONDITION', `key file ${path} failed authentication: it was modified or damaged`, {
    reason: 'key-file-tampered',
  });
}

function wrongKek(path: string): SigilError {
  return new SigilError('ERR_CONFIG_INVALID', `key file ${path} was wrapped by a different kek than the one configured`, {
    reason: 'wrong-kek',
  });
}

async function readKeyFile(path: string, expectedId: string): Promise<KeyFile> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw corrupt(path, err);
  }
  const f = parsed as KeyFile;
  if (
    typeof f !== 'object' ||
    f === null ||
    f.version !== FORMAT_VERSION ||
    f.id !== expectedId ||
    !isKeyType(f.type) ||
    typeof f.publicKey !== 'string' ||
    typeof f.kek !== 'string' ||
    !isBox(f.dataKey) ||
    !isBox(f.privateKey)
  ) {
    throw corrupt(path);
  }
  return f;
}

async function listKeyFiles(dir: string): Promise<Array<{ id: string; path: string }>> {
  const names = await readdir(dir);
  return names
    .filter((n) => n.endsWith(FILE_SUFFIX) && !n.startsWith('.'))
    .sort()
    .map((n) => ({ id: n.slice(0, -FILE_SUFFIX.length), path: join(dir, n) }));
}

/** Unwraps a file's data key with the KEK, telling a wrong KEK apart from a damaged file. */
async function unwrapDataKey(file: KeyFile, kek: DataKeyWrapper, path: string): Promise<Buffer> {
  if (file.kek !== kek.fingerprint) throw wrongKek(path);
  const dek = await kek.unwrap(file.dataKey, aad('dek', file.id, file.type));
  if (dek === undefined || dek.length !== 32) throw tampered(path);
  return dek;
}

async function decryptKeyFile(file: KeyFile, kek: DataKeyWrapper, path: string): Promise<{ privateKey: KeyObject; publicKey: KeyObject }> {
  const dek = await unwrapDataKey(file, kek, path);
  const pkcs8 = open(dek, file.privateKey, aad('key', file.id, file.type));
  dek.fill(0);
  if (pkcs8 === undefined) throw tampered(path);
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
  } finally {
    pkcs8.fill(0);
  }
  const publicKey = createPublicKey(privateKey);
  const spki = publicKey.export({ format: 'der', type: 'spki' });
  if (!spki.equals(Buffer.from(file.publicKey, 'base64')) || !keyMatchesType(privateKey, file.type)) throw tampered(path);
  return { privateKey, publicKey };
}

/** A KEK given as bytes (a KEK file's content) or as a wrapper (a KEK file or a PKCS#11 token). */
export type Kek = Secret<Buffer> | DataKeyWrapper;

function wrapperOf(kek: Kek): DataKeyWrapper {
  return kek instanceof Secret ? fileKekWrapper(kek) : kek;
}

/** Options of DiskKeyManager.open. */
export interface DiskKeyManagerOptions {
  /** Directory of the key files; created 0700 if missing, refused if group/other can access it. */
  readonly dir: string;
  /** The KEK, e.g. from readKekFile or a PKCS#11 token's wrapper; give this or `kekPath`. */
  readonly kek?: Kek;
  /** Path of the KEK file (mode 0600 or stricter). */
  readonly kekPath?: string;
  readonly logger?: Logger;
}

/** Result of a KEK rotation. */
export interface RewrapResult {
  /** Key files re-wrapped under the new KEK. */
  readonly rewrapped: number;
  /** Key files already under the new KEK (an interrupted earlier run). */
  readonly alreadyCurrent: number;
}

/**
 * Re-wraps every data key in `dir` from `oldKek` to `newKek`, leaving the encrypted private
 * keys untouched. Every file is checked first, so a wrong old KEK changes nothing; files
 * already under the new KEK are skipped, so an interrupted run can simply be repeated.
 * Run it while no server uses the directory (or through DiskKeyManager#rewrapKeys).
 */
export async function rewrapKeys(dir: string, oldKek: Kek, newKek: Kek): Promise<RewrapResult> {
  const from = wrapperOf(oldKek);
  const to = wrapperOf(newKek);
  const pending: Array<{ path: string; file: KeyFile; dek: Buffer }> = [];
  let alreadyCurrent = 0;
  try {
    for (const { id, path } of await listKeyFiles(dir)) {
      const file = await readKeyFile(path, id);
      if (file.kek === to.fingerprint) {
        alreadyCurrent++;
        continue;
      }
      pending.push({ path, file, dek: await unwrapDataKey(file, from, path) });
    }
    for (const p of pending) {
      const next: KeyFile = { ...p.file, kek: to.fingerprint, dataKey: await to.wrap(p.dek, aad('dek', p.file.id, p.file.type)) };
      await writeFileAtomic(p.path, Buffer.from(JSON.stringify(next, null, 2) + '\n'), 0o600);
    }
  } finally {
    for (const p of pending) p.dek.fill(0);
  }
  return { rewrapped: pending.length, alreadyCurrent };
}

/** Keys in envelope-encrypted files; all are decrypted into memory when opened. */
export class DiskKeyManager implements KeyManager {
  readonly #dir: string;
  #kek: DataKeyWrapper;
  readonly #keys = new Map<string, ManagedKey>();
  readonly #logger: Logger | undefined;

  private constructor(dir: string, kek: DataKeyWrapper, logger: Logger | undefined) {
    this.#dir = dir;
    this.#kek = kek;
    this.#logger = logger;
  }

  /** Opens (creating if needed) the key directory and decrypts every key in it; a wrong KEK fails here. */
  static async open(options: DiskKeyManagerOptions): Promise<DiskKeyManager> {
    let given = options.kek;
    if (given === undefined) {
      if (options.kekPath === undefined) {
        throw new SigilError('ERR_CONFIG_INVALID', 'disk key manager needs a kek file', { reason: 'kek-file-missing' });
      }
      given = await readKekFile(options.kekPath);
    }
    const kek = wrapperOf(given);
    await ensurePrivateDir(options.dir, 'key directory');
    const km = new DiskKeyManager(options.dir, kek, options.logger);
    for (const { id, path } of await listKeyFiles(options.dir)) {
      const file = await readKeyFile(path, id);
      const { privateKey, publicKey } = await decryptKeyFile(file, kek, path);
      km.#keys.set(id, inMemoryManagedKey(id, file.type, privateKey, publicKey));
    }
    options.logger?.info({ dir: options.dir, keys: km.#keys.size }, 'disk key manager opened');
    return km;
  }

  async generateKey(id: string, type: KeyType): Promise<ManagedKey> {
    checkKeyId(id);
    const { privateKey, publicKey } = await generateKeyPairOfType(type);
    const dek = randomBytes(32);
    const pkcs8 = privateKey.export({ format: 'der', type: 'pkcs8' });
    let file: KeyFile;
    try {
      const dataKey = await this.#kek.wrap(dek, aad('dek', id, type));
      file = {
        version: FORMAT_VERSION,
        id,
        type,
        publicKey: publicKey.export({ format: 'der', type: 'spki' }).toString('base64'),
        kek: this.#kek.fingerprint,
        dataKey,
        privateKey: seal(dek, pkcs8, aad('key', id, type)),
      };
    } finally {
      pkcs8.fill(0);
      dek.fill(0);
    }
    await writeFileAtomic(join(this.#dir, fileNameOf(id)), Buffer.from(JSON.stringify(file, null, 2) + '\n'), 0o600);
    const key = inMemoryManagedKey(id, type, privateKey, publicKey);
    this.#keys.set(id, key);
    this.#logger?.info({ keyId: id, keyType: type }, 'key generated');
    return key;
  }

  async getKey(id: string): Promise<ManagedKey | undefined> {
    return this.#keys.get(id);
  }

  async listKeys(): Promise<ManagedKey[]> {
    return [...this.#keys.values()];
  }

  async deleteKey(id: string): Promise<void> {
    checkKeyId(id);
    await removeFileDurably(join(this.#dir, fileNameOf(id)));
    this.#keys.delete(id);
    this.#logger?.info({ keyId: id }, 'key deleted');
  }

  /** Rotates the KEK of this directory (see rewrapKeys); `oldKek` must be the one this manager was opened with. */
  async rewrapKeys(oldKek: Kek, newKek: Kek): Promise<RewrapResult> {
    if (wrapperOf(oldKek).fingerprint !== this.#kek.fingerprint) {
      throw new SigilError('ERR_CONFIG_INVALID', `old kek is not the kek of key directory ${this.#dir}`, { reason: 'wrong-kek' });
    }
    const result = await rewrapKeys(this.#dir, oldKek, newKek);
    this.#kek = wrapperOf(newKek);
    this.#logger?.info({ dir: this.#dir, rewrapped: result.rewrapped }, 'kek rotated');
    return result;
  }
}
