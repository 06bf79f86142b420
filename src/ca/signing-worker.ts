/**
 * One thread of the SigningPool: verifies CSRs and signs X.509-SVID leaves with the CA keys
 * the pool hands it. Keys arrive as KeyObjects cloned over postMessage and live only in this
 * thread's memory; nothing here logs, and failures travel back as code, reason and message
 * (never a key or a cause object). The leaf is built by the same LeafTemplate as on the main
 * thread, so both paths emit the same certificate for the same inputs.
 */
import { sign, type KeyObject } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import { isSigilError, type ErrorCode } from '../common/errors.js';
import { checkSvidPublicKey, type SignatureScheme } from './algorithms.js';
import { verifyCsr } from './csr.js';
import { LeafTemplate } from './leaf-template.js';
import { subjectKeyIdentifier } from './spki.js';

/** A CA key as the pool registers it with each thread. */
export interface WorkerKey {
  readonly ref: number;
  /** The key manager's key ID (not secret), for error messages. */
  readonly keyId: string;
  readonly privateKey: KeyObject;
  readonly issuerName: Uint8Array;
  readonly authorityKeyId: Uint8Array;
  readonly scheme: SignatureScheme;
}

/** One leaf to sign: everything but the CSR's key is decided by the main thread. */
export interface LeafJob {
  readonly id: number;
  readonly keyRef: number;
  /** [offset, length] of the DER CSR in the message's `bytes`. */
  readonly csr: readonly [number, number];
  /** [offset, length] of the serial (positive, big-endian magnitude) in the message's `bytes`. */
  readonly serial: readonly [number, number];
  readonly notBeforeMs: number;
  readonly notAfterMs: number;
  readonly spiffeId: string;
  readonly dnsNames: readonly string[];
}

/** Messages from the pool to a thread. */
export type ToSigningWorker =
  | { readonly type: 'key'; readonly key: WorkerKey }
  | { readonly type: 'forget'; readonly ref: number }
  /** Jobs whose CSRs and serials sit back to back in `bytes` (one transferred buffer per message). */
  | { readonly type: 'jobs'; readonly jobs: readonly LeafJob[]; readonly bytes: Uint8Array };

/** A job's outcome: the leaf's [offset, length] in the reply's `bytes`, or an error. */
export type LeafResult =
  | { readonly id: number; readonly leaf: readonly [number, number] }
  | { readonly id: number; readonly error: { readonly code: ErrorCode; readonly reason: string | undefined; readonly message: string } };

/** A thread's reply to one `jobs` message. */
export interface FromSigningWorker {
  readonly type: 'results';
  readonly results: readonly LeafResult[];
  readonly bytes: Uint8Array;
}

interface LoadedKey {
  readonly keyId: string;
  readonly template: LeafTemplate;
  readonly hash: string | null;
  readonly keyArg: KeyObject | { key: KeyObject; dsaEncoding: 'der' };
}

const buf = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

const keys = new Map<number, LoadedKey>();

function load(k: WorkerKey): void {
  const scheme: SignatureScheme = { hash: k.scheme.hash, algorithmId: buf(k.scheme.algorithmId) };
  keys.set(k.ref, {
    keyId: k.keyId,
    template: new LeafTemplate({ issuerName: buf(k.issuerName), authorityKeyId: buf(k.authorityKeyId), scheme }),
    hash: scheme.hash,
    // as inMemoryManagedKey signs: DER ECDSA signatures, PKCS#1 v1.5 for RSA
    keyArg: k.privateKey.asymmetricKeyType === 'ec' ? { key: k.privateKey, dsaEncoding: 'der' } : k.privateKey,
  });
}

function signOne(job: LeafJob, bytes: Buffer): Buffer {
  const k = keys.get(job.keyRef);
  if (k === undefined) throw new Error(`signing key ${job.keyRef} is not loaded`);
  const { spki, publicKey } = verifyCsr(bytes.subarray(job.csr[0], job.csr[0] + job.csr[1]));
  const { rsa } = checkSvidPublicKey(publicKey);
  const tbs = k.template.tbs({
    serial: bytes.subarray(job.serial[0], job.serial[0] + job.serial[1]),
    notBeforeMs: job.notBeforeMs,
    notAfterMs: job.notAfterMs,
    spki,
    subjectKeyId: subjectKeyIdentifier(spki),
    spiffeId: job.spiffeId,
    dnsNames: job.dnsNames,
    rsa,
  });
  let signature: Buffer;
  try {
    signature = sign(k.hash, tbs, k.keyArg);
  } catch {
    // the cause stays here: only this message crosses back
    throw new Error(`signing with key ${k.keyId} failed`);
  }
  return k.template.certificate(tbs, signature);
}

function run(jobs: readonly LeafJob[], bytes: Buffer): FromSigningWorker {
  const leaves: Buffer[] = [];
  const results: LeafResult[] = [];
  let offset = 0;
  for (const job of jobs) {
    try {
      const leaf = signOne(job, bytes);
      results.push({ id: job.id, leaf: [offset, leaf.length] });
      leaves.push(leaf);
      offset += leaf.length;
    } catch (err) {
      const error = isSigilError(err)
        ? { code: err.code, reason: err.reason, message: err.message }
        : { code: 'ERR_INTERNAL' as const, reason: 'signing-failed', message: err instanceof Error ? err.message : 'signing failed' };
      results.push({ id: job.id, error });
    }
  }
  // one fresh buffer, transferred: pooled Buffers would drag their whole slab along
  const out = new Uint8Array(offset);
  let at = 0;
  for (const l of leaves) {
    out.set(l, at);
    at += l.length;
  }
  return { type: 'results', results, bytes: out };
}

const port = parentPort;
if (port !== null) {
  port.on('message', (m: ToSigningWorker) => {
    if (m.type === 'key') load(m.key);
    else if (m.type === 'forget') keys.delete(m.ref);
    else {
      const reply = run(m.jobs, buf(m.bytes));
      port.postMessage(reply, [reply.bytes.buffer as ArrayBuffer]);
    }
  });
}
