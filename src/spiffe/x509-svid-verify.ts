/**
 * Verifies a peer's X.509-SVID chain against the bundle of the leaf's trust domain: the
 * SPIFFE leaf rules, then RFC 5280 path validation (signatures, validity windows, cA and
 * keyCertSign on signing certificates, pathLen). Trust anchors are the bundle's X.509
 * authorities; the certificates after the leaf are untrusted intermediates.
 */
import type { ParsedCertificate } from './certificate.js';
import type { BundleSource } from './bundle.js';
import { SigilError } from './errors.js';
import type { SpiffeId } from './spiffe-id.js';
import { checkSigningCertRules, X509SvidChain, type X509ChainInput } from './x509-svid.js';

/** A chain that verified: the leaf's SPIFFE ID and the path from leaf to trust anchor inclusive. */
export interface VerifiedX509Svid {
  readonly id: SpiffeId;
  readonly chain: readonly ParsedCertificate[];
}

/** Longest path tried, anchor excluded; far beyond any real SPIFFE hierarchy. */
const MAX_DEPTH = 10;

/** Path failures, most specific first: the best one found is reported. */
const RANK = ['untrusted', 'bad-signature', 'path-len-exceeded', 'intermediate-not-ca', 'intermediate-no-key-cert-sign', 'signing-cert-id-has-path', 'unsupported-critical-extension', 'not-yet-valid', 'expired'];

function fail(reason: string, message: string): SigilError {
  return new SigilError('ERR_INVALID_X509_SVID', message, { reason });
}

/**
 * Verifies `chain` (leaf first) at time `now`; throws ERR_INVALID_X509_SVID with a reason
 * such as 'no-bundle', 'untrusted', 'bad-signature', 'expired', 'not-yet-valid',
 * 'path-len-exceeded', or a leaf rule's reason.
 */
export function verifyX509SvidChain(chain: X509ChainInput | X509SvidChain, bundleSource: BundleSource, now: Date): VerifiedX509Svid {
  // parseChain checks the leaf rules once; an already-parsed chain is trusted to have passed them.
  const parsed = X509SvidChain.parseChain(chain);
  const id = parsed.id;
  const leaf = parsed.leaf;
  const rest = parsed.certificates.slice(1);
  const bundle = bundleSource.getBundleForTrustDomain(id.trustDomain);
  if (bundle === undefined) throw fail('no-bundle', `no bundle for trust domain ${id.trustDomain.name}`);
  const anchors = bundle.x509Authorities;
  if (anchors.length === 0) throw fail('untrusted', `bundle of ${id.trustDomain.name} has no X.509 authorities`);

  let best: { reason: string; message: string } = { reason: 'untrusted', message: `no path from ${id.toString()} to a trust anchor of ${id.trustDomain.name}` };
  const note = (reason: string, message: string): void => {
    if (RANK.indexOf(reason) > RANK.indexOf(best.reason)) best = { reason, message };
  };
  const now_ = now.getTime();

  const checkPath = (path: readonly ParsedCertificate[]): boolean => {
    // path: leaf, intermediates..., anchor
    for (let i = 0; i < path.length; i++) {
      const c = path[i]!;
      const isAnchor = i === path.length - 1;
      if (c.facts.notBefore.getTime() > now_) {
        note('not-yet-valid', `certificate ${i} of the path is not valid before ${c.facts.notBefore.toISOString()}`);
        return false;
      }
      if (c.facts.notAfter.getTime() < now_) {
        note('expired', `certificate ${i} of the path expired at ${c.facts.notAfter.toISOString()}`);
        return false;
      }
      if (!isAnchor && c.facts.unhandledCritical.length > 0) {
        note('unsupported-critical-extension', `certificate ${i} of the path has unsupported critical extension ${c.facts.unhandledCritical[0]!}`);
        return false;
      }
      if (i === 0) continue;
      if (!isAnchor) {
        try {
          checkSigningCertRules(c, i);
        } catch (err) {
          const e = err as SigilError;
          note(e.reason ?? 'untrusted', e.message);
          return false;
        }
      }
      const pathLen = c.facts.basicConstraints?.pathLen;
      if (pathLen !== undefined) {
        // RFC 5280 6.1.4 (l)/(m): self-issued intermediates below do not count.
        let below = 0;
        for (let j = 1; j < i; j++) if (!path[j]!.selfIssued) below++;
        if (below > pathLen) {
          note('path-len-exceeded', `certificate ${i} of the path allows ${pathLen} intermediates below it, found ${below}`);
          return false;
        }
      }
    }
    return true;
  };

  const issuedBy = (child: ParsedCertificate, issuer: ParsedCertificate): boolean => {
    if (!Buffer.from(child.facts.issuerRaw).equals(issuer.facts.subjectRaw)) return false;
    if (!child.isSignedBy(issuer)) {
      note('bad-signature', `signature of ${child === leaf ? 'the leaf' : 'an intermediate'} does not verify with its issuer's key`);
      return false;
    }
    return true;
  };

  const extend = (path: ParsedCertificate[]): readonly ParsedCertificate[] | undefined => {
    const cur = path[path.length - 1]!;
    for (const a of anchors) {
      if (issuedBy(cur, a)) {
        const full = [...path, a];
        if (checkPath(full)) return full;
      }
    }
    if (path.length > MAX_DEPTH) return undefined;
    for (const c of rest) {
      if (path.includes(c) || anchors.includes(c)) continue;
      if (issuedBy(cur, c)) {
        const found = extend([...path, c]);
        if (found !== undefined) return found;
      }
    }
    return undefined;
  };

  const verified = extend([leaf]);
  if (verified === undefined) throw fail(best.reason, best.message);
  return { id, chain: verified };
}
