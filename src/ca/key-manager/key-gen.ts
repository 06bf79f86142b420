/** Key generation and in-memory signing shared by the memory and disk key managers. */
import { generateKeyPair, sign, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { SigilError } from '../../common/errors.js';
import { hashForKeyType, type KeyType, type ManagedKey } from '../../plugin/key-manager.js';

const generateKeyPairAsync = promisify(generateKeyPair);

/** Every key type a key manager can create. */
export const KEY_TYPES: readonly KeyType[] = ['ec-p256', 'ec-p384', 'rsa-2048', 'rsa-4096'];

/** True when `value` names a KeyType. */
export function isKeyType(value: unknown): value is KeyType {
  return typeof value === 'string' && (KEY_TYPES as readonly string[]).includes(value);
}

const KEY_ID = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

/** Throws ERR_INVALID_ARGUMENT (reason `bad-key-id`) unless the ID is 1-128 of `[A-Za-z0-9._-]`, not starting with a dot or dash (IDs become file names). */
export function checkKeyId(id: string): void {
  if (typeof id !== 'string' || !KEY_ID.test(id)) {
    throw new SigilError('ERR_INVALID_ARGUMENT', `invalid key id ${JSON.stringify(String(id).slice(0, 80))}`, { reason: 'bad-key-id' });
  }
}

/** Generates a fresh key pair of the given type. */
export async function generateKeyPairOfType(type: KeyType): Promise<{ privateKey: KeyObject; publicKey: KeyObject }> {
  switch (type) {
    case 'ec-p256':
      return generateKeyPairAsync('ec', { namedCurve: 'P-256' });
    case 'ec-p384':
      return generateKeyPairAsync('ec', { namedCurve: 'P-384' });
    case 'rsa-2048':
      return generateKeyPairAsync('rsa', { modulusLength: 2048 });
    case 'rsa-4096':
      return generateKeyPairAsync('rsa', { modulusLength: 4096 });
    default:
      throw new SigilError('ERR_INVALID_ARGUMENT', `unknown key type ${JSON.stringify(String(type))}`, { reason: 'bad-key-type' });
  }
}

/** True when a private key really is of the given type (curve or modulus size). */
export function keyMatchesType(key: KeyObject, type: KeyType): boolean {
  const d = key.asymmetricKeyDetails;
  switch (type) {
    case 'ec-p256':
      return key.asymmetricKeyType === 'ec' && d?.namedCurve === 'prime256v1';
    case 'ec-p384':
      return key.asymmetricKeyType === 'ec' && d?.namedCurve === 'secp384r1';
    case 'rsa-2048':
      return key.asymmetricKeyType === 'rsa' && d?.modulusLength === 2048;
    case 'rsa-4096':
      return key.asymmetricKeyType === 'rsa' && d?.modulusLength === 4096;
  }
}

/** Private keys behind the ManagedKeys made here, for Sigil's own signing threads only. */
const privateKeys = new WeakMap<ManagedKey, KeyObject>();

/**
 * The private KeyObject behind a ManagedKey made by inMemoryManagedKey (memory and disk key
 * managers), so the CA can clone it to its signing threads; undefined for keys held
 * elsewhere (an HSM), which are then used through `sign` on the main thread.
 */
export function inMemoryPrivateKey(key: ManagedKey): KeyObject | undefined {
  return privateKeys.get(key);
}

/**
 * A ManagedKey over an in-memory private KeyObject. Signing is synchronous inside (the
 * one-shot crypto.sign is the fastest path in Node; the threadpool variant costs more
 * than a P-256 signature) and wrapped in a resolved promise for the interface.
 */
export function inMemoryManagedKey(id: string, type: KeyType, privateKey: KeyObject, publicKey: KeyObject): ManagedKey {
  const hash = hashForKeyType(type);
  const ec = type === 'ec-p256' || type === 'ec-p384';
  const der = { key: privateKey, dsaEncoding: 'der' as const };
  const p1363 = { key: privateKey, dsaEncoding: 'ieee-p1363' as const };
  const managed: ManagedKey = {
    id,
    type,
    publicKey,
    sign(data, options) {
      try {
        const key = ec ? (options?.dsaEncoding === 'ieee-p1363' ? p1363 : der) : privateKey;
        return Promise.resolve(sign(hash, data, key));
      } catch (err) {
        return Promise.reject(new SigilError('ERR_INTERNAL', `signing with key ${id} failed`, { cause: err }));
      }
    },
  };
  privateKeys.set(managed, privateKey);
  return managed;
}
