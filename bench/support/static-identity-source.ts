/**
 * A small WorkloadIdentitySource for driving the real Workload API server before (or
 * without) the agent: every caller whose selectors include `unix:uid:<uid>` gets one SVID
 * signed by a real CaManager, with the CA's bundle; `pushBundleChange()` swaps the bundle
 * (adding or removing a second authority) and pushes the new state to every subscriber,
 * as the agent's cache does on a bundle rotation.
 */
import { generateKeyPairSync } from 'node:crypto';
import type { CaManager } from '../../src/ca/ca-manager.js';
import { Secret } from '../../src/common/secret.js';
import type {
  IssuedJwtSvid,
  TrustDomainBundle,
  Unsubscribe,
  ValidatedJwtSvid,
  WorkloadIdentitySource,
  WorkloadUpdate,
} from '../../src/agent/workload-api/identity-source.js';
import { Bundle } from '../../src/spiffe/bundle.js';
import { SigilError } from '../../src/common/errors.js';
import type { Selector } from '../../src/spiffe/selector.js';
import { SpiffeId, TrustDomain } from '../../src/spiffe/spiffe-id.js';

/** One SVID for everyone with the entitled selector; bundle changes on demand. */
export class StaticIdentitySource implements WorkloadIdentitySource {
  readonly #entitled: Selector;
  readonly #subscribers = new Map<(u: WorkloadUpdate) => void, boolean>();
  readonly #bundles: [TrustDomainBundle, TrustDomainBundle];
  readonly #svid: WorkloadUpdate['svids'][number];
  #which = 0;

  private constructor(entitled: Selector, svid: WorkloadUpdate['svids'][number], bundles: [TrustDomainBundle, TrustDomainBundle]) {
    this.#entitled = entitled;
    this.#svid = svid;
    this.#bundles = bundles;
  }

  /** Signs one SVID with `ca` for callers with selector `entitled` (e.g. unix uid:0). */
  static async create(ca: CaManager, trustDomain: string, entitled: Selector): Promise<StaticIdentitySource> {
    const td = TrustDomain.parse(trustDomain);
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const issued = await ca.signX509Svid({ publicKey, spiffeId: SpiffeId.parse(`spiffe://${trustDomain}/workload/bench`) });
    const jwt = ca.jwtAuthorities().map((a) => [a.kid, a.publicKey] as [string, typeof a.publicKey]);
    const extra = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
    const wire = (b: Bundle): TrustDomainBundle => ({ trustDomainId: td.idString, x509AuthoritiesDer: Buffer.from(b.x509ToDer()), jwtKeysJwks: Buffer.from(b.jwtToJwksBytes()) });
    const a = Bundle.create(td, { x509Authorities: ca.x509Authorities(), jwtAuthorities: jwt });
    // The second state adds a JWT authority: a bundle change of the size a key rotation makes.
    const b = Bundle.create(td, { x509Authorities: ca.x509Authorities(), jwtAuthorities: [...jwt, ['bench-next', extra]] });
    const svid = {
      spiffeId: issued.spiffeId.toString(),
      chainDer: Buffer.concat(issued.chain),
      keyPkcs8Der: new Secret(privateKey.export({ format: 'der', type: 'pkcs8' })),
      hint: '',
    };
    return new StaticIdentitySource(entitled, svid, [wire(a), wire(b)]);
  }

  #update(entitled: boolean): WorkloadUpdate {
    return { svids: entitled ? [this.#svid] : [], bundle: this.#bundles[this.#which]!, federatedBundles: [] };
  }

  /** Swaps the bundle and pushes the new state to every open subscription. */
  pushBundleChange(): void {
    this.#which ^= 1;
    const yes = this.#update(true);
    const no = this.#update(false);
    for (const [push, entitled] of this.#subscribers) push(entitled ? yes : no);
  }

  /** Open subscriptions (one per Workload API stream). */
  get subscribers(): number {
    return this.#subscribers.size;
  }

  subscribe(selectors: readonly Selector[], onUpdate: (update: WorkloadUpdate) => void): Unsubscribe {
    const entitled = selectors.some((s) => s.type === this.#entitled.type && s.value === this.#entitled.value);
    const push = (u: WorkloadUpdate): void => onUpdate(u);
    this.#subscribers.set(push, entitled);
    onUpdate(this.#update(entitled));
    return () => this.#subscribers.delete(push);
  }

  fetchJwtSvids(): Promise<IssuedJwtSvid[]> {
    return Promise.resolve([]);
  }

  validateJwtSvid(): Promise<ValidatedJwtSvid> {
    return Promise.reject(new SigilError('ERR_UNAVAILABLE', 'JWT validation is not part of this benchmark'));
  }
}
