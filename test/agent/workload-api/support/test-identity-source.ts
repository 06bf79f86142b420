/**
 * A small WorkloadIdentitySource for the Workload API tests, standing in for the agent's SVID
 * cache (not written yet): entries with selectors, certificates generated at test time, and
 * pushes to every subscriber when the test changes something.
 */
import { verify } from 'node:crypto';
import { SigilError } from '../../../../src/common/errors.js';
import { Secret } from '../../../../src/common/secret.js';
import { selectorsSatisfiedBy, type Selector, parseSelector } from '../../../../src/spiffe/selector.js';
import type {
  IssuedJwtSvid,
  TrustDomainBundle,
  Unsubscribe,
  ValidatedJwtSvid,
  WorkloadIdentitySource,
  WorkloadUpdate,
  WorkloadX509Svid,
} from '../../../../src/agent/workload-api/identity-source.js';
import { createCa, createJwtKey, createLeaf, jwtClaims, signJwt, type TestCert, type TestJwtKey } from '../../../helpers/pki.js';

/** A registration entry as the test sees it. */
export interface TestEntry {
  readonly selectors: readonly Selector[];
  readonly svid: WorkloadX509Svid;
}

/** Generated trust material for one trust domain. */
export interface TestTrustDomain {
  readonly id: string;
  readonly ca: TestCert;
  readonly jwtKey: TestJwtKey;
  readonly bundle: TrustDomainBundle;
}

/** Creates a CA and JWT key for `spiffe://<name>` and its bundle in both wire forms. */
export async function createTrustDomain(name: string): Promise<TestTrustDomain> {
  const id = `spiffe://${name}`;
  const ca = await createCa({ id });
  const jwtKey = createJwtKey('ES256');
  const jwk = { ...jwtKey.publicKey.export({ format: 'jwk' }), kid: jwtKey.kid, use: 'jwt-svid' };
  const bundle: TrustDomainBundle = {
    trustDomainId: id,
    x509AuthoritiesDer: Buffer.from(ca.der),
    jwtKeysJwks: Buffer.from(JSON.stringify({ keys: [jwk] })),
  };
  return { id, ca, jwtKey, bundle };
}

/** Issues an X.509-SVID for `spiffeId` from the trust domain's CA. */
export async function issueSvid(td: TestTrustDomain, spiffeId: string, hint = ''): Promise<WorkloadX509Svid> {
  const leaf = await createLeaf({ issuer: td.ca, id: spiffeId });
  return { spiffeId, chainDer: Buffer.from(leaf.der), keyPkcs8Der: new Secret(Buffer.from(leaf.key.pkcs8Der)), hint };
}

/** Parses `unix:uid:0`-style strings. */
export function selectors(...texts: string[]): Selector[] {
  return texts.map(parseSelector);
}

interface Subscriber {
  readonly selectors: readonly Selector[];
  readonly onUpdate: (u: WorkloadUpdate) => void;
}

/** The in-test identity source. */
export class TestIdentitySource implements WorkloadIdentitySource {
  readonly td: TestTrustDomain;
  entries: TestEntry[] = [];
  federated: TrustDomainBundle[] = [];
  /** Selector sets of every subscribe call, in order. */
  readonly subscribeCalls: Array<readonly Selector[]> = [];
  readonly #subscribers = new Set<Subscriber>();

  constructor(td: TestTrustDomain) {
    this.td = td;
  }

  get subscriberCount(): number {
    return this.#subscribers.size;
  }

  #stateFor(sel: readonly Selector[]): WorkloadUpdate {
    const svids = this.entries.filter((e) => selectorsSatisfiedBy(e.selectors, sel)).map((e) => e.svid);
    return { svids, bundle: this.td.bundle, federatedBundles: [...this.federated] };
  }

  subscribe(sel: readonly Selector[], onUpdate: (u: WorkloadUpdate) => void): Unsubscribe {
    this.subscribeCalls.push(sel);
    const sub = { selectors: sel, onUpdate };
    this.#subscribers.add(sub);
    onUpdate(this.#stateFor(sel));
    return () => void this.#subscribers.delete(sub);
  }

  /** Replaces the entries and/or federated bundles and pushes the new state to every subscriber. */
  update(change: { entries?: TestEntry[]; federated?: TrustDomainBundle[] } = {}): void {
    if (change.entries !== undefined) this.entries = change.entries;
    if (change.federated !== undefined) this.federated = change.federated;
    for (const s of [...this.#subscribers]) s.onUpdate(this.#stateFor(s.selectors));
  }

  async fetchJwtSvids(sel: readonly Selector[], audience: readonly string[], spiffeId: string | undefined): Promise<IssuedJwtSvid[]> {
    return this.#stateFor(sel)
      .svids.filter((s) => spiffeId === undefined || s.spiffeId === spiffeId)
      .map((s) => ({
        spiffeId: s.spiffeId,
        hint: s.hint,
        token: new Secret(signJwt(this.td.jwtKey, { ...jwtClaims(s.spiffeId, audience.length === 1 ? (audience[0] as string) : [...audience]), custom: { n: [1, null, true] } })),
      }));
  }

  async validateJwtSvid(_sel: readonly Selector[], token: string, audience: string): Promise<ValidatedJwtSvid> {
    const invalid = (reason: string): SigilError => new SigilError('ERR_INVALID_JWT_SVID', `invalid jwt-svid: ${reason}`, { reason });
    const [h, p, sig] = token.split('.');
    if (h === undefined || p === undefined || sig === undefined) throw invalid('malformed');
    const ok = verify('sha256', Buffer.from(`${h}.${p}`), { key: this.td.jwtKey.publicKey, dsaEncoding: 'ieee-p1363' }, Buffer.from(sig, 'base64url'));
    if (!ok) throw invalid('bad-signature');
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
    const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
    if (!aud.includes(audience)) throw invalid('audience');
    return { spiffeId: String(claims.sub), claims };
  }
}
