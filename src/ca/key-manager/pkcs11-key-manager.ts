/**
 * The `sign` mode of the pkcs11 key manager: every CA and JWT key pair is generated inside the
 * token (private half CKA_SENSITIVE, not CKA_EXTRACTABLE, CKA_TOKEN) and every signature is a
 * C_Sign in the token; no private key byte ever enters this process. Objects carry the label
 * `sigil/<key id>` and CKA_ID = the key ID, so the manager finds its keys again after a restart
 * and leaves every other object of the token alone.
 *
 * ECDSA is CKM_ECDSA over a digest computed here (tokens differ in which CKM_ECDSA_SHA* they
 * offer; SoftHSM2 offers none), RSA is CKM_SHA256_RSA_PKCS. Signatures run through the token's
 * session pool on libuv's threadpool; the CA's signing threads cannot use these keys, so the CA
 * signs with them from the main thread (see svid-issuer's #poolRef).
 */
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import type * as Pkcs11Types from 'pkcs11js';
import { SigilError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { hashForKeyType, type KeyManager, type KeyType, type ManagedKey } from '../../plugin/key-manager.js';
import { bitString, contentOf, oid, readWhole, sequence, unsignedInteger } from '../der.js';
import { checkKeyId, isKeyType } from './key-gen.js';
import { ckrOf, HANDLE_STALE, pkcs11js, type Handle, type Pkcs11Token } from './pkcs11-token.js';

const LABEL_PREFIX = 'sigil/';
const CURVES = {
  'ec-p256': { oid: '1.2.840.10045.3.1.7', size: 32 },
  'ec-p384': { oid: '1.3.132.0.34', size: 48 },
} as const;

/** An ECDSA r||s signature as DER (SEQUENCE of two INTEGERs), as X.509 wants it. */
export function p1363ToDer(sig: Buffer): Buffer {
  const half = sig.length / 2;
  return sequence(unsignedInteger(sig.subarray(0, half)), unsignedInteger(sig.subarray(half)));
}

function typeOfObject(keyType: number, ecParams: Buffer | undefined, modulusBits: number | undefined): KeyType | undefined {
  const lib = pkcs11js();
  if (keyType === lib.CKK_EC && ecParams !== undefined) {
    for (const [t, c] of Object.entries(CURVES)) if (oid(c.oid).equals(ecParams)) return t as KeyType;
  }
  if (keyType === lib.CKK_RSA && modulusBits !== undefined) {
    const t = `rsa-${modulusBits}`;
    if (isKeyType(t)) return t;
  }
  return undefined;
}

/** A CK_ULONG attribute (native byte order: little-endian on every platform Sigil runs on). */
function numberOf(b: Buffer | undefined): number | undefined {
  if (b === undefined || b.length === 0) return undefined;
  if (b.length === 8) return Number(b.readBigUInt64LE(0));
  if (b.length <= 6) return b.readUIntLE(0, b.length);
  return undefined;
}

/** Builds the public KeyObject from the token's public key object. */
function publicKeyOf(token: Pkcs11Token, session: Handle, obj: Handle, type: KeyType): KeyObject {
  const lib = pkcs11js();
  if (type === 'ec-p256' || type === 'ec-p384') {
    const [point] = token.module.C_GetAttributeValue(session, obj, [{ type: lib.CKA_EC_POINT }]);
    // CKA_EC_POINT is the DER OCTET STRING around the uncompressed point
    const raw = point?.value ?? Buffer.alloc(0);
    const q = raw[0] === 0x04 && raw.length > 2 && raw[1] !== 0x04 ? contentOf(raw, readWhole(raw)) : raw;
    const spki = sequence(sequence(oid('1.2.840.10045.2.1'), oid(CURVES[type].oid)), bitString(q));
    return createPublicKey({ key: spki, format: 'der', type: 'spki' });
  }
  const [n, e] = token.module.C_GetAttributeValue(session, obj, [{ type: lib.CKA_MODULUS }, { type: lib.CKA_PUBLIC_EXPONENT }]);
  const spkiRsa = sequence(sequence(oid('1.2.840.113549.1.1.1'), Buffer.from([0x05, 0x00])), bitString(sequence(unsignedInteger(n?.value ?? Buffer.alloc(0)), unsignedInteger(e?.value ?? Buffer.alloc(0)))));
  return createPublicKey({ key: spkiRsa, format: 'der', type: 'spki' });
}

interface HeldKey {
  readonly managed: ManagedKey;
  privateHandle: Handle;
}

/** Keys that live in a PKCS#11 token; the process holds handles and public keys only. */
export class Pkcs11KeyManager implements KeyManager {
  readonly #token: Pkcs11Token;
  readonly #log: Logger | undefined;
  readonly #keys = new Map<string, HeldKey>();

  private constructor(token: Pkcs11Token, logger: Logger | undefined) {
    this.#token = token;
    this.#log = logger;
  }

  /** Finds every Sigil key pair already in the token. */
  static async open(token: Pkcs11Token, logger?: Logger): Promise<Pkcs11KeyManager> {
    const km = new Pkcs11KeyManager(token, logger);
    await km.#loadAll();
    // while unavailable, the token is back once every key held can be found again
    // (found and signing: a token that lists an object may still fail to use it)
    token.setProbe(async () => {
      for (const [id, held] of km.#keys) held.privateHandle = await km.#findPrivate(id);
      const first = km.#keys.values().next().value;
      if (first !== undefined) await first.managed.sign(Buffer.from('sigil pkcs11 probe'));
      else await token.withSession(() => undefined);
    });
    logger?.info({ token: token.description, keys: km.#keys.size }, 'pkcs11 key manager opened');
    return km;
  }

  async #loadAll(): Promise<void> {
    const lib = pkcs11js();
    const t = this.#token;
    const found = await t.withSession((session) => {
      const out: Array<{ id: string; type: KeyType; priv: Handle; pub: KeyObject }> = [];
      for (const priv of t.find(session, [{ type: lib.CKA_CLASS, value: lib.CKO_PRIVATE_KEY }])) {
        const [label, id] = t.module.C_GetAttributeValue(session, priv, [{ type: lib.CKA_LABEL }, { type: lib.CKA_ID }]);
        const labelText = label?.value.toString('utf8') ?? '';
        if (!labelText.startsWith(LABEL_PREFIX) || id === undefined) continue;
        const keyId = labelText.slice(LABEL_PREFIX.length);
        const pub = t.find(session, [
          { type: lib.CKA_CLASS, value: lib.CKO_PUBLIC_KEY },
          { type: lib.CKA_ID, value: id.value },
        ])[0];
        if (pub === undefined) {
          this.#log?.warn({ keyId }, 'pkcs11 private key without its public key: ignored');
          continue;
        }
        const [kt] = t.module.C_GetAttributeValue(session, pub, [{ type: lib.CKA_KEY_TYPE }]);
        const keyType = numberOf(kt?.value) ?? -1;
        let type: KeyType | undefined;
        if (keyType === lib.CKK_EC) {
          const [ecp] = t.module.C_GetAttributeValue(session, pub, [{ type: lib.CKA_EC_PARAMS }]);
          type = typeOfObject(keyType, ecp?.value, undefined);
        } else if (keyType === lib.CKK_RSA) {
          const [bits] = t.module.C_GetAttributeValue(session, pub, [{ type: lib.CKA_MODULUS_BITS }]);
          type = typeOfObject(keyType, undefined, numberOf(bits?.value));
        }
        if (type === undefined) {
          this.#log?.warn({ keyId }, 'pkcs11 key of a type Sigil does not use: ignored');
          continue;
        }
        out.push({ id: keyId, type, priv, pub: publicKeyOf(t, session, pub, type) });
      }
      return out;
    });
    for (const k of found) this.#keys.set(k.id, this.#hold(k.id, k.type, k.priv, k.pub));
  }

  #hold(id: string, type: KeyType, privateHandle: Handle, publicKey: KeyObject): HeldKey {
    const lib = pkcs11js();
    const t = this.#token;
    const hash = hashForKeyType(type);
    const ec = type === 'ec-p256' || type === 'ec-p384';
    const held: HeldKey = {
      privateHandle,
      managed: {
        id,
        type,
        publicKey,
        sign: async (data, options) => {
          const input = ec ? createHash(hash).update(data).digest() : Buffer.from(data);
          const mechanism = { mechanism: ec ? lib.CKM_ECDSA : lib.CKM_SHA256_RSA_PKCS };
          const once = (): Promise<Buffer> =>
            t.withSession(async (session) => {
              t.module.C_SignInit(session, mechanism, held.privateHandle);
              return t.module.C_SignAsync(session, input, Buffer.alloc(ec ? 2 * CURVES[type as 'ec-p256'].size + 8 : 1024));
            });
          let sig: Buffer;
          try {
            sig = await once();
          } catch (err) {
            const ckr = ckrOf(err);
            if (!HANDLE_STALE.has(ckr ?? '')) throw this.#signError(id, err);
            // the module was re-initialised and handed out new handles: find the key again
            try {
              held.privateHandle = await this.#findPrivate(id);
              sig = await once();
            } catch (again) {
              throw this.#signError(id, again);
            }
          }
          return ec && options?.dsaEncoding !== 'ieee-p1363' ? p1363ToDer(sig) : sig;
        },
      },
    };
    return held;
  }

  #signError(id: string, err: unknown): SigilError {
    if (err instanceof SigilError) return err;
    return new SigilError('ERR_INTERNAL', `signing with key ${id} in ${this.#token.description} failed (${ckrOf(err) ?? 'error'})`, { reason: 'pkcs11-sign-failed' });
  }

  async #findPrivate(id: string): Promise<Handle> {
    const lib = pkcs11js();
    const h = await this.#token.withSession((session) =>
      this.#token.find(session, [
        { type: lib.CKA_CLASS, value: lib.CKO_PRIVATE_KEY },
        { type: lib.CKA_LABEL, value: LABEL_PREFIX + id },
      ]),
    );
    // a key this manager created and never deleted is missing: the token is not the one we had (removed, swapped)
    if (h[0] === undefined) throw this.#token.markUnavailable(`key ${id} not found`);
    return h[0];
  }

  async generateKey(id: string, type: KeyType): Promise<ManagedKey> {
    checkKeyId(id);
    if (!isKeyType(type)) throw new SigilError('ERR_INVALID_ARGUMENT', `unknown key type ${JSON.stringify(String(type))}`, { reason: 'bad-key-type' });
    await this.deleteKey(id);
    const lib = pkcs11js();
    const t = this.#token;
    const label = LABEL_PREFIX + id;
    const ckaId = Buffer.from(id, 'utf8');
    const common = [
      { type: lib.CKA_TOKEN, value: true },
      { type: lib.CKA_LABEL, value: label },
      { type: lib.CKA_ID, value: ckaId },
    ];
    const ec = type === 'ec-p256' || type === 'ec-p384';
    const pubTemplate: Pkcs11Types.Template = [
      ...common,
      { type: lib.CKA_VERIFY, value: true },
      { type: lib.CKA_ENCRYPT, value: false },
      { type: lib.CKA_WRAP, value: false },
      ...(ec
        ? [{ type: lib.CKA_EC_PARAMS, value: oid(CURVES[type].oid) }]
        : [
            { type: lib.CKA_MODULUS_BITS, value: type === 'rsa-2048' ? 2048 : 4096 },
            { type: lib.CKA_PUBLIC_EXPONENT, value: Buffer.from([1, 0, 1]) },
          ]),
    ];
    const privTemplate: Pkcs11Types.Template = [
      ...common,
      { type: lib.CKA_PRIVATE, value: true },
      { type: lib.CKA_SENSITIVE, value: true },
      { type: lib.CKA_EXTRACTABLE, value: false },
      { type: lib.CKA_SIGN, value: true },
      { type: lib.CKA_DECRYPT, value: false },
      { type: lib.CKA_UNWRAP, value: false },
      { type: lib.CKA_DERIVE, value: false },
    ];
    const { priv, pub } = await t.withSession((session) => {
      const pair = t.module.C_GenerateKeyPair(session, { mechanism: ec ? lib.CKM_EC_KEY_PAIR_GEN : lib.CKM_RSA_PKCS_KEY_PAIR_GEN }, pubTemplate, privTemplate);
      return { priv: pair.privateKey, pub: publicKeyOf(t, session, pair.publicKey, type) };
    });
    const held = this.#hold(id, type, priv, pub);
    this.#keys.set(id, held);
    this.#log?.info({ keyId: id, keyType: type, token: t.description }, 'key generated in the token');
    return held.managed;
  }

  async getKey(id: string): Promise<ManagedKey | undefined> {
    return this.#keys.get(id)?.managed;
  }

  async listKeys(): Promise<ManagedKey[]> {
    return [...this.#keys.values()].map((k) => k.managed);
  }

  /** Destroys both halves of the key pair in the token (no error if absent). */
  async deleteKey(id: string): Promise<void> {
    checkKeyId(id);
    const lib = pkcs11js();
    const t = this.#token;
    const destroyed = await t.withSession((session) => {
      const objs = t.find(session, [{ type: lib.CKA_LABEL, value: LABEL_PREFIX + id }]);
      for (const o of objs) t.module.C_DestroyObject(session, o);
      return objs.length;
    });
    this.#keys.delete(id);
    if (destroyed > 0) this.#log?.info({ keyId: id, token: t.description }, 'key destroyed in the token');
  }
}

/** Every object this manager would treat as its own (label `sigil/…`), for tests and audits. */
export const PKCS11_KEY_LABEL_PREFIX = LABEL_PREFIX;
