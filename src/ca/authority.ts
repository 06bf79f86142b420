/**
 * One authority (an X.509 CA or a JWT signing key) of a CaManager: its in-memory slot and how
 * one is minted or rebuilt from its journal record. The manager (ca-manager.ts) owns the
 * lifecycle and the journal, svid-issuer.ts signs with the slots; this file only makes them.
 */
import { randomBytes, sign as nodeSign, createPublicKey, type KeyObject } from 'node:crypto';
import type { Clock } from '../common/clock.js';
import { SigilError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { jwsAlgForKeyType, type KeyManager, type KeyType, type ManagedKey } from '../plugin/key-manager.js';
import type { TrustDomain } from '../spiffe/spiffe-id.js';
import { schemeForKeyObject, schemeForKeyType, type SignatureScheme } from './algorithms.js';
import { assembleCertificate, caTbs, readCertInfo } from './ca-cert.js';
import type { AuthorityPhase, JwtAuthorityRecord, X509AuthorityRecord } from './ca-journal.js';
import { LeafTemplate, randomSerial } from './leaf-template.js';
import { encodeName } from './name.js';
import { spkiOf, subjectKeyIdentifier } from './spki.js';
import type { UpstreamAuthority } from './upstream-authority.js';

/** notBefore is backdated by this much to absorb clock skew between machines (as SPIRE does). */
export const NOT_BEFORE_CUSHION_MS = 10_000;
/** Key manager IDs of X.509 CA keys start with this. */
export const X509_KEY_PREFIX = 'x509-ca-';
/** Key manager IDs of JWT signing keys start with this. */
export const JWT_KEY_PREFIX = 'jwt-';

/** What minting needs from its CaManager. */
export interface MintDeps {
  readonly trustDomain: TrustDomain;
  readonly keyManager: KeyManager;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly x509KeyType: KeyType;
  readonly jwtKeyType: KeyType;
  readonly caTtlMs: number;
  readonly upstream: UpstreamAuthority | undefined;
  readonly upstreamFp: string | null;
  readonly subject: { country: string; organization: string; commonName: string | undefined };
}

/** What an operator sees of one authority. */
export interface SlotInfo {
  /** X.509: the CA's subject key identifier, hex; JWT: the kid. */
  id: string;
  phase: AuthorityPhase;
  keyType: KeyType;
  notBefore: Date;
  notAfter: Date;
  tainted: boolean;
  /** For X.509 authorities: true when signed by an upstream authority. */
  upstream: boolean;
}

/** A JWT signing public key for the bundle. */
export interface JwtAuthority {
  kid: string;
  publicKey: KeyObject;
  notAfter: Date;
}

/** A raised signedUntil bound being journaled. */
export interface PendingBound {
  value: number;
  promise: Promise<void>;
}

/** A live X.509 CA: its record, key and leaf template. */
export interface X509Slot {
  rec: X509AuthorityRecord;
  key: ManagedKey | undefined;
  template: LeafTemplate;
  /** Certificates after the leaf in SVID chains: [] when self-signed, else [CA, ...upstream intermediates]. */
  chainTail: Buffer[];
  anchors: Buffer[];
  pending?: PendingBound | undefined;
  /** The key's reference in the signing pool; null when it cannot go there; unset until first use. */
  poolRef?: number | null;
}

/** A live JWT signing key. */
export interface JwtSlot {
  rec: JwtAuthorityRecord;
  key: ManagedKey | undefined;
  publicKey: KeyObject;
  /** base64url of the JOSE header, fixed per key. */
  header: string;
  pending?: PendingBound | undefined;
}

/** ERR_INVALID_ARGUMENT with a reason. */
export function invalid(reason: string, message: string): SigilError {
  return new SigilError('ERR_INVALID_ARGUMENT', message, { reason });
}

/** ERR_FAILED_PRECONDITION with a reason. */
export function precondition(reason: string, message: string): SigilError {
  return new SigilError('ERR_FAILED_PRECONDITION', message, { reason });
}

/** Base64 of bytes. */
export function b64(buf: Uint8Array): string {
  return Buffer.from(buf).toString('base64');
}

/** Bytes of base64. */
export function unb64(s: string): Buffer {
  return Buffer.from(s, 'base64');
}

/** Rounds down to a whole second (certificates carry seconds). */
export function floorSec(ms: number): number {
  return Math.floor(ms / 1000) * 1000;
}

/** A random key ID suffix. */
export function randomId(): string {
  return randomBytes(8).toString('hex');
}

/** The operator view of a record. */
export function info(rec: X509AuthorityRecord | JwtAuthorityRecord, upstream: boolean): SlotInfo {
  return {
    id: rec.id,
    phase: rec.phase,
    keyType: rec.keyType,
    notBefore: new Date(rec.notBefore),
    notAfter: new Date(rec.notAfter),
    tainted: rec.tainted,
    upstream,
  };
}

/** The base64url JOSE header of a JWT signing key. */
export function jwtHeader(type: KeyType, kid: string): string {
  return Buffer.from(JSON.stringify({ alg: jwsAlgForKeyType(type), kid, typ: 'JWT' })).toString('base64url');
}

/** Mints a new X.509 CA (self-signed, or signed by the upstream authority) with a new key. */
export async function mintX509Slot(d: MintDeps, phase: AuthorityPhase): Promise<X509Slot> {
  const now = d.clock.nowMs();
  const keyId = X509_KEY_PREFIX + randomId();
  const key = await d.keyManager.generateKey(keyId, d.x509KeyType);
  try {
    const spki = spkiOf(key.publicKey);
    const ski = subjectKeyIdentifier(spki);
    const serial = randomSerial();
    const subjectName = encodeName({ ...d.subject, serialNumber: BigInt(`0x${serial.toString('hex')}`).toString(10) });
    const notBefore = floorSec(now - NOT_BEFORE_CUSHION_MS);
    let notAfter = floorSec(now + d.caTtlMs);
    let issuerName: Buffer = subjectName;
    let aki: Buffer = ski;
    let scheme: SignatureScheme = schemeForKeyType(d.x509KeyType);
    let signer: (tbs: Buffer) => Promise<Buffer> = (tbs) => key.sign(tbs);
    const up = d.upstream;
    if (up !== undefined) {
      const upCert = up.certChain[0] as Buffer;
      const upInfo = readCertInfo(upCert);
      if (upInfo.notAfterMs <= now + 60_000) {
        throw precondition('upstream-expired', `upstream CA certificate expired at ${new Date(upInfo.notAfterMs).toISOString()}`);
      }
      notAfter = Math.min(notAfter, upInfo.notAfterMs);
      issuerName = upInfo.subjectName;
      aki = upInfo.subjectKeyId ?? subjectKeyIdentifier(upInfo.spki);
      const upKey = up.privateKey.reveal();
      scheme = schemeForKeyObject(upKey);
      const hash = scheme.hash;
      const keyArg = upKey.asymmetricKeyType === 'ec' ? { key: upKey, dsaEncoding: 'der' as const } : upKey;
      signer = (tbs) => Promise.resolve(nodeSign(hash, tbs, keyArg));
    }
    const tbs = caTbs({
      serial,
      notBeforeMs: notBefore,
      notAfterMs: notAfter,
      subjectName,
      issuerName,
      spki,
      subjectKeyId: ski,
      authorityKeyId: aki,
      trustDomainId: d.trustDomain.idString,
      algorithmId: scheme.algorithmId,
    });
    const cert = assembleCertificate(tbs, scheme.algorithmId, await signer(tbs));
    const intermediates = up === undefined ? [] : [...up.intermediates];
    const anchors = up === undefined ? [cert] : [...up.roots];
    const rec: X509AuthorityRecord = {
      id: ski.toString('hex'),
      keyId,
      keyType: d.x509KeyType,
      phase,
      notBefore,
      notAfter,
      tainted: false,
      signedUntil: 0,
      publishedAt: null,
      cert: b64(cert),
      intermediates: intermediates.map(b64),
      anchors: anchors.map(b64),
      upstream: d.upstreamFp,
    };
    const slot: X509Slot = {
      rec,
      key,
      template: new LeafTemplate({ issuerName: subjectName, authorityKeyId: ski, scheme: schemeForKeyType(d.x509KeyType) }),
      chainTail: up === undefined ? [] : [cert, ...intermediates],
      anchors,
    };
    d.logger.info({ authorityId: rec.id, phase, notAfter: new Date(notAfter).toISOString(), upstream: up !== undefined }, 'X.509 CA minted');
    return slot;
  } catch (err) {
    await d.keyManager.deleteKey(keyId).catch(() => undefined);
    throw err;
  }
}

/** Mints a new JWT signing key. */
export async function mintJwtSlot(d: MintDeps, phase: AuthorityPhase): Promise<JwtSlot> {
  const now = d.clock.nowMs();
  const kid = randomBytes(16).toString('base64url');
  const keyId = JWT_KEY_PREFIX + randomId();
  const key = await d.keyManager.generateKey(keyId, d.jwtKeyType);
  const rec: JwtAuthorityRecord = {
    id: kid,
    keyId,
    keyType: d.jwtKeyType,
    phase,
    notBefore: floorSec(now),
    notAfter: floorSec(now + d.caTtlMs),
    tainted: false,
    signedUntil: 0,
    publishedAt: null,
    publicKey: b64(spkiOf(key.publicKey)),
  };
  const slot: JwtSlot = { rec, key, publicKey: key.publicKey, header: jwtHeader(d.jwtKeyType, kid) };
  d.logger.info({ kid, phase, notAfter: new Date(rec.notAfter).toISOString() }, 'JWT signing key minted');
  return slot;
}

/** Rebuilds the slot of a journaled X.509 CA; `key` is what the key manager holds under its key ID. */
export function x509SlotFromRecord(rec: X509AuthorityRecord, key: ManagedKey | undefined): { slot: X509Slot; keyOk: boolean } {
  const cert = unb64(rec.cert);
  const certInfo = readCertInfo(cert);
  const keyOk = key !== undefined && spkiOf(key.publicKey).equals(certInfo.spki);
  const scheme = schemeForKeyType(rec.keyType);
  const intermediates = rec.intermediates.map(unb64);
  return {
    keyOk,
    slot: {
      rec,
      key: keyOk ? key : undefined,
      template: new LeafTemplate({ issuerName: certInfo.subjectName, authorityKeyId: subjectKeyIdentifier(certInfo.spki), scheme }),
      chainTail: rec.upstream === null ? [] : [cert, ...intermediates],
      anchors: rec.anchors.map(unb64),
    },
  };
}

/** Rebuilds the slot of a journaled JWT signing key. */
export function jwtSlotFromRecord(rec: JwtAuthorityRecord, key: ManagedKey | undefined): { slot: JwtSlot; keyOk: boolean } {
  const spki = unb64(rec.publicKey);
  const keyOk = key !== undefined && spkiOf(key.publicKey).equals(spki);
  return {
    keyOk,
    slot: { rec, key: keyOk ? key : undefined, publicKey: createPublicKey({ key: spki, format: 'der', type: 'spki' }), header: jwtHeader(rec.keyType, rec.id) },
  };
}
