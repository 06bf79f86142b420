/**
 * X.509-SVIDs (SPIFFE X509-SVID standard): a leaf certificate carrying one SPIFFE ID,
 * optionally followed by intermediates, with or without its private key. Values can only
 * exist valid: the parsers check every leaf rule and name the broken one in `reason`.
 */
import { createPrivateKey, createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import { inspect } from 'node:util';
import { KeyUsage, Oid, ParsedCertificate } from './certificate.js';
import { concatBytes, splitConcatenatedDer } from './der.js';
import { SigilError } from './errors.js';
import { decodePem, encodeCertificatesPem, encodePem } from './pem.js';
import { SpiffeId } from './spiffe-id.js';

/** A certificate chain as callers hold it: DER list, concatenated DER, PEM text, or Node certificates. */
export type X509ChainInput = readonly (Uint8Array | X509Certificate)[] | Uint8Array | string;

/** A private key as callers hold it: PKCS#8 DER, PEM text, or a KeyObject. */
export type PrivateKeyInput = Uint8Array | string | KeyObject;

function svidError(reason: string, message: string, cause?: unknown): SigilError {
  return new SigilError('ERR_INVALID_X509_SVID', message, { reason, cause });
}

/** Turns any accepted chain form into parsed certificates, leaf first. */
export function parseCertificates(chain: X509ChainInput): ParsedCertificate[] {
  let items: readonly (Uint8Array | X509Certificate)[];
  if (typeof chain === 'string') {
    let blocks;
    try {
      blocks = decodePem(chain);
    } catch (err) {
      throw svidError('malformed-pem', 'certificate chain PEM is malformed', err);
    }
    items = blocks.filter((b) => b.label === 'CERTIFICATE').map((b) => b.der);
  } else if (chain instanceof Uint8Array) {
    try {
      items = splitConcatenatedDer(chain);
    } catch (err) {
      throw svidError('malformed-der', 'certificate chain DER is malformed', err);
    }
  } else items = chain;
  if (items.length === 0) throw svidError('empty-chain', 'certificate chain is empty');
  return items.map((item, i) => {
    try {
      return item instanceof X509Certificate ? ParsedCertificate.fromX509(item) : ParsedCertificate.fromDerCached(item);
    } catch (err) {
      throw svidError('malformed-der', `certificate ${i} of the chain is not valid DER`, err);
    }
  });
}

/**
 * Checks the leaf rules of X509-SVID sections 2, 3.1, 4.1, 4.3, 4.4 and 5.2; returns the
 * leaf's SPIFFE ID. Exported for the chain verifier.
 */
export function checkLeafRules(leaf: ParsedCertificate): SpiffeId {
  const f = leaf.facts;
  const uris = f.subjectAltName?.uris ?? [];
  if (uris.length === 0) throw svidError('no-uri-san', 'leaf certificate has no URI SAN');
  if (uris.length > 1) throw svidError('multiple-uri-sans', `leaf certificate has ${uris.length} URI SANs`);
  let id: SpiffeId;
  try {
    id = SpiffeId.parse(uris[0]!);
  } catch (err) {
    throw svidError('bad-spiffe-id', `leaf URI SAN is not a valid SPIFFE ID: ${JSON.stringify(uris[0]!.slice(0, 100))}`, err);
  }
  if (id.isTrustDomainId) throw svidError('id-without-path', `leaf SPIFFE ID has no path: ${id.toString()}`);
  if (f.subjectEmpty && f.subjectAltName?.critical !== true) {
    throw svidError('san-not-critical', 'leaf has an empty subject but its SAN extension is not critical');
  }
  if (f.basicConstraints?.ca === true) throw svidError('leaf-ca-true', 'leaf certificate has cA=true');
  if (f.keyUsage === undefined) throw svidError('no-key-usage', 'leaf certificate has no key usage extension');
  if (!f.keyUsage.critical) throw svidError('key-usage-not-critical', 'leaf key usage extension is not critical');
  if (f.keyUsage.bits & KeyUsage.keyCertSign) throw svidError('leaf-key-cert-sign', 'leaf key usage has keyCertSign');
  if (f.keyUsage.bits & KeyUsage.cRLSign) throw svidError('leaf-crl-sign', 'leaf key usage has cRLSign');
  if (!(f.keyUsage.bits & KeyUsage.digitalSignature)) {
    throw svidError('no-digital-signature', 'leaf key usage lacks digitalSignature');
  }
  const eku = f.extKeyUsage;
  if (eku !== undefined && !(eku.purposes.includes(Oid.serverAuth) && eku.purposes.includes(Oid.clientAuth))) {
    throw svidError('bad-eku', 'leaf extended key usage must include serverAuth and clientAuth');
  }
  return id;
}

/** Checks the rules every signing certificate of a chain must meet (X509-SVID 3.2, 4.1, 4.3). */
export function checkSigningCertRules(cert: ParsedCertificate, index: number): void {
  const f = cert.facts;
  if (f.basicConstraints?.ca !== true) throw svidError('intermediate-not-ca', `certificate ${index} of the chain is not a CA`);
  if (f.keyUsage !== undefined && !(f.keyUsage.bits & KeyUsage.keyCertSign)) {
    throw svidError('intermediate-no-key-cert-sign', `certificate ${index} of the chain lacks keyCertSign`);
  }
  for (const uri of f.subjectAltName?.uris ?? []) {
    if (!uri.startsWith('spiffe://')) continue;
    let id: SpiffeId;
    try {
      id = SpiffeId.parse(uri);
    } catch (err) {
      throw svidError('bad-spiffe-id', `certificate ${index} of the chain has an invalid SPIFFE ID`, err);
    }
    if (!id.isTrustDomainId) {
      throw svidError('signing-cert-id-has-path', `signing certificate ${index} has a SPIFFE ID with a path: ${id.toString()}`);
    }
  }
}

/** A validated X.509-SVID certificate chain without a private key (a peer's, typically). */
export class X509SvidChain {
  /** The SPIFFE ID of the leaf. */
  readonly id: SpiffeId;
  /** The chain, leaf first, each parsed once. */
  readonly certificates: readonly ParsedCertificate[];

  protected constructor(id: SpiffeId, certificates: readonly ParsedCertificate[]) {
    this.id = id;
    this.certificates = certificates;
  }

  /** @internal parses and checks a chain; used by X509Svid.parseChainOnly. */
  static parseChain(chain: X509ChainInput | X509SvidChain): X509SvidChain {
    if (chain instanceof X509SvidChain) return chain;
    const certs = parseCertificates(chain);
    const id = checkLeafRules(certs[0]!);
    for (let i = 1; i < certs.length; i++) checkSigningCertRules(certs[i]!, i);
    return new X509SvidChain(id, certs);
  }

  /** The leaf certificate. */
  get leaf(): ParsedCertificate {
    return this.certificates[0]!;
  }

  /** The leaf's notAfter. */
  get notAfter(): Date {
    return this.leaf.facts.notAfter;
  }

  /** The leaf's notBefore. */
  get notBefore(): Date {
    return this.leaf.facts.notBefore;
  }

  /** The leaf's serial number, uppercase hex. */
  get serial(): string {
    return this.leaf.serial;
  }

  /** The chain as concatenated DER, leaf first (the Workload API's `x509_svid`). */
  certificatesDer(): Uint8Array {
    return concatBytes(this.certificates.map((c) => c.der));
  }

  /** The chain as CERTIFICATE PEM blocks, leaf first (svid.pem). */
  certificatesPem(): string {
    return encodeCertificatesPem(this.certificates.map((c) => c.der));
  }

  /** Log-safe summary. */
  toJSON(): { id: string; serial: string; notAfter: string } {
    return { id: this.id.toString(), serial: this.serial, notAfter: this.notAfter.toISOString() };
  }
}

/** An X.509-SVID with its private key: what the agent hands a workload. */
export class X509Svid extends X509SvidChain {
  /** The private key matching the leaf's public key. */
  readonly privateKey: KeyObject;
  /** Operator-chosen hint for the workload (Workload API `hint`), `''` when unset. */
  readonly hint: string;

  private constructor(chain: X509SvidChain, privateKey: KeyObject, hint: string) {
    super(chain.id, chain.certificates);
    this.privateKey = privateKey;
    this.hint = hint;
  }

  /** Parses and validates a chain and its private key; throws ERR_INVALID_X509_SVID with a reason. */
  static parse(chain: X509ChainInput, key: PrivateKeyInput, options: { hint?: string } = {}): X509Svid {
    const parsed = X509SvidChain.parseChain(chain);
    const privateKey = parsePrivateKey(key);
    const want = parsed.leaf.publicKey.export({ type: 'spki', format: 'der' });
    const have = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
    if (!want.equals(have)) throw svidError('key-mismatch', 'private key does not match the leaf certificate');
    return new X509Svid(parsed, privateKey, options.hint ?? '');
  }

  /** Parses and validates a chain without a key (a peer's); throws ERR_INVALID_X509_SVID. */
  static parseChainOnly(chain: X509ChainInput): X509SvidChain {
    return X509SvidChain.parseChain(chain);
  }

  /** The private key as unencrypted PKCS#8 DER (the Workload API's `x509_svid_key`). */
  privateKeyDer(): Uint8Array {
    return new Uint8Array(this.privateKey.export({ type: 'pkcs8', format: 'der' }));
  }

  /** The private key as a PKCS#8 PEM block (key.pem; write it 0600). */
  privateKeyPem(): string {
    return encodePem('PRIVATE KEY', this.privateKeyDer());
  }

  /** Concatenated DER chain and PKCS#8 DER key, as the Workload API carries them. */
  toDer(): { certificates: Uint8Array; privateKey: Uint8Array } {
    return { certificates: this.certificatesDer(), privateKey: this.privateKeyDer() };
  }

  /** PEM chain and PEM key, as svid.pem and key.pem hold them. */
  toPem(): { certificates: string; privateKey: string } {
    return { certificates: this.certificatesPem(), privateKey: this.privateKeyPem() };
  }

  /** Log-safe summary (never the key). */
  override toJSON(): { id: string; serial: string; notAfter: string; hint?: string } {
    return this.hint === '' ? super.toJSON() : { ...super.toJSON(), hint: this.hint };
  }

  [inspect.custom](): string {
    return `X509Svid(${this.id.toString()}, serial ${this.serial}, key [redacted])`;
  }
}

function parsePrivateKey(key: PrivateKeyInput): KeyObject {
  let k: KeyObject;
  try {
    if (typeof key === 'string') k = createPrivateKey({ key, format: 'pem' });
    else if (key instanceof Uint8Array) k = createPrivateKey({ key: Buffer.from(key), format: 'der', type: 'pkcs8' });
    else k = key;
  } catch (err) {
    // Node's parse errors carry no key material, but keep them out of the message anyway.
    throw svidError('malformed-key', 'private key is not a valid PKCS#8 key', err);
  }
  if (k.type !== 'private') throw svidError('malformed-key', `expected a private key, got a ${k.type} key`);
  return k;
}
