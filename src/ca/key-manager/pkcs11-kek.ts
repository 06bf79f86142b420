/**
 * The `wrap` mode of the pkcs11 key manager: the KEK is an AES-256 secret key generated inside
 * the token (CKA_SENSITIVE, not CKA_EXTRACTABLE), found by its label; data keys are wrapped and
 * unwrapped by the token with CKM_AES_GCM, which yields exactly the SealedBox a KEK file makes,
 * so key files move between a KEK file and a token with `sigil server rewrap-keys`.
 */
import { randomBytes } from 'node:crypto';
import { SigilError } from '../../common/errors.js';
import type { DataKeyWrapper, SealedBox } from './sealed-box.js';
import { ckrOf, HANDLE_STALE, pkcs11js, type Handle, type Pkcs11Token } from './pkcs11-token.js';

const FINGERPRINT_AAD = Buffer.from('sigil kek fingerprint v1', 'utf8');
const FINGERPRINT_NONCE = Buffer.alloc(12);
/** Return values of a GCM decryption whose tag does not match. */
const AUTH_FAILED = new Set(['CKR_ENCRYPTED_DATA_INVALID', 'CKR_ENCRYPTED_DATA_LEN_RANGE', 'CKR_AEAD_DECRYPT_FAILED']);

function gcm(nonce: Buffer, aad: Buffer): { mechanism: number; parameter: { type: number; iv: Buffer; ivBits: number; aad: Buffer; tagBits: number } } {
  const lib = pkcs11js();
  return { mechanism: lib.CKM_AES_GCM, parameter: { type: lib.CK_PARAMS_AES_GCM, iv: nonce, ivBits: 96, aad, tagBits: 128 } };
}

/** Finds the token's AES KEK by label; creates it (non-extractable, sensitive) when `create` is set and it is missing. */
export async function findOrCreateTokenKek(token: Pkcs11Token, label: string, create: boolean): Promise<Handle> {
  const lib = pkcs11js();
  return token.withSession((session) => {
    const found = token.find(session, [
      { type: lib.CKA_CLASS, value: lib.CKO_SECRET_KEY },
      { type: lib.CKA_LABEL, value: label },
    ]);
    if (found.length > 1) {
      throw new SigilError('ERR_CONFIG_INVALID', `${token.description} holds ${found.length} keys labelled ${JSON.stringify(label)}; keyManager.kekLabel must name one`, {
        reason: 'pkcs11-kek-ambiguous',
      });
    }
    if (found[0] !== undefined) return found[0];
    if (!create) {
      throw new SigilError('ERR_CONFIG_INVALID', `${token.description} has no kek labelled ${JSON.stringify(label)} (keyManager.kekLabel)`, { reason: 'pkcs11-kek-not-found' });
    }
    return token.module.C_GenerateKey(session, { mechanism: lib.CKM_AES_KEY_GEN }, [
      { type: lib.CKA_CLASS, value: lib.CKO_SECRET_KEY },
      { type: lib.CKA_KEY_TYPE, value: lib.CKK_AES },
      { type: lib.CKA_VALUE_LEN, value: 32 },
      { type: lib.CKA_TOKEN, value: true },
      { type: lib.CKA_PRIVATE, value: true },
      { type: lib.CKA_LABEL, value: label },
      { type: lib.CKA_SENSITIVE, value: true },
      { type: lib.CKA_EXTRACTABLE, value: false },
      { type: lib.CKA_ENCRYPT, value: true },
      { type: lib.CKA_DECRYPT, value: true },
      { type: lib.CKA_WRAP, value: false },
      { type: lib.CKA_UNWRAP, value: false },
      { type: lib.CKA_SIGN, value: false },
      { type: lib.CKA_VERIFY, value: false },
      { type: lib.CKA_DERIVE, value: false },
    ]);
  });
}

async function encryptIn(token: Pkcs11Token, session: Handle, key: Handle, nonce: Buffer, plaintext: Buffer, aad: Buffer): Promise<Buffer> {
  token.module.C_EncryptInit(session, gcm(nonce, aad), key);
  return token.module.C_EncryptAsync(session, plaintext, Buffer.alloc(plaintext.length + 16));
}

function encrypt(token: Pkcs11Token, key: () => Handle, nonce: Buffer, plaintext: Buffer, aad: Buffer): Promise<Buffer> {
  return token.withSession((session) => encryptIn(token, session, key(), nonce, plaintext, aad));
}

/**
 * The token's KEK as a DataKeyWrapper. Its fingerprint is the first 8 bytes of a GCM tag the
 * token computes over fixed input with a fixed nonce (the nonce is never drawn for a wrap:
 * wraps use random 96-bit nonces), so it names the key without revealing anything of it.
 */
export async function tokenKekWrapper(token: Pkcs11Token, label: string, create: boolean): Promise<DataKeyWrapper> {
  let handle = await findOrCreateTokenKek(token, label, create);
  // handles can change when the module is re-initialised: find the key again by label then
  const key = (): Handle => handle;
  const refind = async (): Promise<void> => {
    try {
      handle = await findOrCreateTokenKek(token, label, false);
    } catch (err) {
      // the KEK we used is gone: the token is not the one we had (removed, swapped)
      if (err instanceof SigilError && err.reason === 'pkcs11-kek-not-found') throw token.markUnavailable(`kek ${label} not found`);
      throw err;
    }
  };
  token.setProbe(refind);
  const retrying = async <T>(op: () => Promise<T>): Promise<T> => {
    try {
      return await op();
    } catch (err) {
      if (!HANDLE_STALE.has(ckrOf(err) ?? '')) throw err;
      await refind();
      return op();
    }
  };
  const fpTag = await retrying(() => encrypt(token, key, FINGERPRINT_NONCE, Buffer.alloc(16), FINGERPRINT_AAD));
  const fingerprint = fpTag.subarray(16, 24).toString('hex');
  return {
    fingerprint,
    description: `kek ${JSON.stringify(label)} in ${token.description}`,
    async wrap(dataKey: Buffer, aad: Buffer): Promise<SealedBox> {
      const nonce = randomBytes(12);
      const out = await retrying(() => encrypt(token, key, nonce, dataKey, aad));
      return {
        alg: 'A256GCM',
        nonce: nonce.toString('base64'),
        ciphertext: out.subarray(0, out.length - 16).toString('base64'),
        tag: out.subarray(out.length - 16).toString('base64'),
      };
    },
    async unwrap(box: SealedBox, aad: Buffer): Promise<Buffer | undefined> {
      const nonce = Buffer.from(box.nonce, 'base64');
      const input = Buffer.concat([Buffer.from(box.ciphertext, 'base64'), Buffer.from(box.tag, 'base64')]);
      if (nonce.length !== 12 || input.length < 16) return undefined;
      try {
        return await retrying(() =>
          token.withSession(async (session) => {
            token.module.C_DecryptInit(session, gcm(nonce, aad), key());
            try {
              return await token.module.C_DecryptAsync(session, input, Buffer.alloc(input.length));
            } catch (err) {
              // a failed tag check is an answer, not a token fault: keep it from looking like one
              const ckr = ckrOf(err) ?? '';
              if (AUTH_FAILED.has(ckr)) return undefined;
              if (ckr === 'CKR_GENERAL_ERROR') {
                // SoftHSM2 says CKR_GENERAL_ERROR for a bad GCM tag: it was the tag if the key still encrypts here
                const probe = await encryptIn(token, session, key(), FINGERPRINT_NONCE, Buffer.alloc(16), FINGERPRINT_AAD).catch(() => undefined);
                if (probe !== undefined && probe.subarray(16, 24).toString('hex') === fingerprint) return undefined;
              }
              throw err;
            }
          }),
        );
      } catch (err) {
        if (AUTH_FAILED.has(ckrOf(err) ?? '')) return undefined;
        throw err;
      }
    },
  };
}
