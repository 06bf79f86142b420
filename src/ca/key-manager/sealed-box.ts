/**
 * The envelope format's ciphertext: AES-256-GCM with a random 96-bit nonce and a 128-bit tag,
 * and the key-encryption-key seam (a KEK file or a PKCS#11 token) that wraps the data keys.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { KeyType } from '../../plugin/key-manager.js';

/** One AES-256-GCM ciphertext as stored. */
export interface SealedBox {
  alg: 'A256GCM';
  nonce: string;
  ciphertext: string;
  tag: string;
}

/** Encrypts `plaintext` under `key` (32 bytes) with a fresh nonce. */
export function seal(key: Buffer, plaintext: Buffer, aad: Buffer): SealedBox {
  const nonce = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(aad);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { alg: 'A256GCM', nonce: nonce.toString('base64'), ciphertext: ciphertext.toString('base64'), tag: cipher.getAuthTag().toString('base64') };
}

/** Decrypts a box; returns undefined when authentication fails. */
export function open(key: Buffer, box: SealedBox, aad: Buffer): Buffer | undefined {
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(box.nonce, 'base64'));
    decipher.setAAD(aad);
    decipher.setAuthTag(Buffer.from(box.tag, 'base64'));
    return Buffer.concat([decipher.update(Buffer.from(box.ciphertext, 'base64')), decipher.final()]);
  } catch {
    return undefined;
  }
}

/** The additional authenticated data binding a box to its key ID and type. */
export function aad(purpose: 'dek' | 'key', id: string, type: KeyType): Buffer {
  return Buffer.from(`sigil/${purpose}/v1\0${id}\0${type}`, 'utf8');
}

/** True when `v` has the shape of a SealedBox. */
export function isBox(v: unknown): v is SealedBox {
  const b = v as SealedBox;
  return typeof b === 'object' && b !== null && b.alg === 'A256GCM' && typeof b.nonce === 'string' && typeof b.ciphertext === 'string' && typeof b.tag === 'string';
}

/**
 * Where the KEK lives: it wraps and unwraps the per-key data keys as SealedBoxes, so a key
 * file is the same whether a KEK file or a token wrapped its data key.
 */
export interface DataKeyWrapper {
  /** A short, non-reversible identifier of the KEK, stored beside each wrapped data key. */
  readonly fingerprint: string;
  /** What the KEK is, for messages (a file path, a token and label); never secret. */
  readonly description: string;
  /** Wraps a 32-byte data key. */
  wrap(dataKey: Buffer, aad: Buffer): Promise<SealedBox>;
  /** Unwraps a data key; undefined when the box fails authentication under this KEK. */
  unwrap(box: SealedBox, aad: Buffer): Promise<Buffer | undefined>;
}
