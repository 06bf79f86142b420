/**
 * An upstream authority from disk: the operator's CA certificate chain and private key.
 * With one configured, Sigil's signing CA is an intermediate under it and the bundle holds
 * the upstream root(s) instead of Sigil's own certificates.
 */
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { SigilError } from '../common/errors.js';
import { Secret } from '../common/secret.js';
import { parseCertificate, pemBlocks, x509 } from '../common/x509.js';
import { schemeForKeyObject } from './algorithms.js';
import { readCertInfo } from './ca-cert.js';
import { checkSecretFile } from './key-manager/secure-file.js';
import { readOperatorFile } from './operator-file.js';
import { spkiOf } from './spki.js';

/** A loaded, checked upstream authority. */
export interface UpstreamAuthority {
  /** DER certificates: [0] is the upstream signing certificate (its key is `privateKey`), then its issuers. */
  readonly certChain: readonly Buffer[];
  /** The trust anchors published in the bundle (self-signed certificates of the chain, or the given bundle). */
  readonly roots: readonly Buffer[];
  /** Certificates of `certChain` that are not roots; they follow Sigil's CA in every SVID chain. */
  readonly intermediates: readonly Buffer[];
  readonly privateKey: Secret<KeyObject>;
}

/** Where the upstream authority's files are. */
export interface UpstreamAuthorityFiles {
  /** PEM file with the upstream signing certificate first, then its issuers. */
  readonly certPath: string;
  /** PEM private key of the first certificate (PKCS#8, SEC1 or PKCS#1); mode 0600 or stricter. */
  readonly keyPath: string;
  /** Optional PEM trust bundle, when the chain does not end in a self-signed root. */
  readonly bundlePath?: string;
}

function invalid(reason: string, message: string, cause?: unknown): SigilError {
  return new SigilError('ERR_CONFIG_INVALID', message, { reason, cause });
}

/** Checks an upstream chain and key and works out roots and intermediates. */
export function makeUpstreamAuthority(input: { certChain: readonly Uint8Array[]; privateKey: KeyObject; roots?: readonly Uint8Array[] }): UpstreamAuthority {
  const chain = input.certChain.map((c) => Buffer.from(c));
  const first = chain[0];
  if (first === undefined) throw invalid('upstream-no-certificate', 'upstream certificate chain is empty');
  const cert = parseCertificate(first);
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  if (bc === null || !bc.ca) throw invalid('upstream-not-ca', 'upstream certificate is not a CA (basicConstraints cA is not true)');
  const ku = cert.getExtension(x509.KeyUsagesExtension);
  if (ku !== null && (ku.usages & x509.KeyUsageFlags.keyCertSign) === 0) {
    throw invalid('upstream-not-ca', 'upstream certificate may not sign certificates (keyUsage lacks keyCertSign)');
  }
  if (input.privateKey.type !== 'private') throw invalid('upstream-key-mismatch', 'upstream key is not a private key');
  schemeForKeyObject(input.privateKey);
  if (!spkiOf(createPublicKey(input.privateKey)).equals(readCertInfo(first).spki)) {
    throw invalid('upstream-key-mismatch', 'upstream private key does not belong to the first certificate of the chain');
  }
  let roots: Buffer[];
  if (input.roots !== undefined && input.roots.length > 0) {
    roots = input.roots.map((c) => Buffer.from(c));
  } else {
    roots = chain.filter((c) => {
      const info = readCertInfo(c);
      return info.subjectName.equals(info.issuerName);
    });
    if (roots.length === 0) {
      throw invalid('upstream-no-root', 'upstream chain has no self-signed root: give a trust bundle file as well');
    }
  }
  const intermediates = chain.filter((c) => !roots.some((r) => r.equals(c)));
  return { certChain: chain, roots, intermediates, privateKey: new Secret(input.privateKey) };
}

/** Reads an upstream authority from PEM files; the key file must be mode 0600 or stricter. */
export async function loadUpstreamAuthority(files: UpstreamAuthorityFiles): Promise<UpstreamAuthority> {
  const readText = async (path: string, what: string): Promise<string> => {
    try {
      return (await readOperatorFile(path, `upstream ${what}`)).toString('utf8');
    } catch (err) {
      if (err instanceof SigilError) throw err;
      throw invalid('upstream-file-unreadable', `cannot read upstream ${what} ${path}`, err);
    }
  };
  const certChain = pemBlocks(await readText(files.certPath, 'certificate file'), 'CERTIFICATE');
  if (certChain.length === 0) throw invalid('upstream-no-certificate', `no certificate in upstream certificate file ${files.certPath}`);
  await checkSecretFile(files.keyPath, 'upstream key file', 'upstream-key-file');
  let keyBytes: Buffer;
  try {
    keyBytes = await readOperatorFile(files.keyPath, 'upstream key file');
  } catch (err) {
    if (err instanceof SigilError) throw err;
    throw invalid('upstream-file-unreadable', `cannot read upstream key file ${files.keyPath}`, err);
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(keyBytes);
  } catch (err) {
    throw invalid('upstream-key-unreadable', `upstream key file ${files.keyPath} holds no usable private key`, err);
  }
  let roots: Buffer[] | undefined;
  if (files.bundlePath !== undefined) {
    roots = pemBlocks(await readText(files.bundlePath, 'bundle file'), 'CERTIFICATE');
    if (roots.length === 0) throw invalid('upstream-no-root', `no certificate in upstream bundle file ${files.bundlePath}`);
  }
  return makeUpstreamAuthority({ certChain, privateKey, ...(roots === undefined ? {} : { roots }) });
}
