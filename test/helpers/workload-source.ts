/**
 * A small in-test agent: the real Workload API server (src/agent/workload-api) driven by a
 * WorkloadIdentitySource whose identities the test sets and rotates, backed by certificates
 * made at test time with test/helpers/pki.ts. It is the seam where the agent's SVID cache
 * plugs in later; tests written against it then run unchanged against the real agent.
 *
 * Callers are told apart by a `test:pid:<pid>` selector (from an attestor that reports the
 * kernel's pid), so each child process gets its own SVID; `test:any` matches everyone.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Secret } from '../../src/common/secret.js';
import { silentLogger } from '../../src/common/logger.js';
import { startWorkloadApiServer } from '../../src/agent/workload-api/workload-api-server.js';
import type {
  IssuedJwtSvid,
  TrustDomainBundle,
  Unsubscribe,
  ValidatedJwtSvid,
  WorkloadIdentitySource,
  WorkloadUpdate,
} from '../../src/agent/workload-api/identity-source.js';
import type { WorkloadAttestor } from '../../src/plugin/workload-attestor.js';
import { Bundle } from '../../src/spiffe/bundle.js';
import { parseAndValidateJwtSvid } from '../../src/spiffe/jwt-svid.js';
import { makeSelector, type Selector } from '../../src/spiffe/selector.js';
import { TrustDomain } from '../../src/spiffe/spiffe-id.js';
import { createCa, createJwtKey, createLeaf, jwtClaims, signJwt, type TestCert, type TestJwtKey } from './pki.js';

/** A trust domain with a root CA and a JWT signing key, minting SVIDs on demand. */
export class TestTrustDomain {
  readonly td: TrustDomain;
  readonly root: TestCert;
  readonly jwtKey: TestJwtKey;

  private constructor(td: TrustDomain, root: TestCert, jwtKey: TestJwtKey) {
    this.td = td;
    this.root = root;
    this.jwtKey = jwtKey;
  }

  /** Makes a trust domain `name` with a fresh root and JWT key. */
  static async create(name: string): Promise<TestTrustDomain> {
    const root = await createCa({ id: `spiffe://${name}`, name: `CN=${name} root` });
    return new TestTrustDomain(TrustDomain.parse(name), root, createJwtKey('ES256'));
  }

  /** The bundle in the two forms the Workload API serves. */
  wireBundle(): TrustDomainBundle {
    const bundle = Bundle.create(this.td, { x509Authorities: [this.root.der], jwtAuthorities: [[this.jwtKey.kid, this.jwtKey.publicKey]] });
    return { trustDomainId: this.td.idString, x509AuthoritiesDer: Buffer.from(bundle.x509ToDer()), jwtKeysJwks: Buffer.from(bundle.jwtToJwksBytes()) };
  }

  /** The bundle value (both kinds of authority). */
  bundle(): Bundle {
    return Bundle.create(this.td, { x509Authorities: [this.root.der], jwtAuthorities: [[this.jwtKey.kid, this.jwtKey.publicKey]] });
  }

  /** A leaf X509-SVID for `path` signed by the root. */
  issue(path: string, notAfter?: Date): Promise<TestCert> {
    return createLeaf({ issuer: this.root, id: `spiffe://${this.td.name}${path}`, ...(notAfter === undefined ? {} : { notAfter }) });
  }
}

/** One identity a caller gets. */
export interface TestIdentity {
  readonly domain: TestTrustDomain;
  readonly cert: TestCert;
  readonly hint?: string;
}

/** What one selector key is entitled to. */
export interface TestEntitlement {
  readonly identities: readonly TestIdentity[];
  /** Foreign trust domains whose bundles are sent as federated. */
  readonly federatesWith?: readonly TestTrustDomain[];
}

/** The selector the test attestor gives a process. */
export function pidSelectorKey(pid: number): string {
  return `test:pid:${pid}`;
}

/** The selector every caller has. */
export const ANY_SELECTOR_KEY = 'test:any';

/** An attestor reporting the kernel-given pid (and `test:any`). */
export const pidAttestor: WorkloadAttestor = {
  name: 'test',
  attest: (peer) => Promise.resolve([makeSelector('test', `pid:${peer.pid}`), makeSelector('test', 'any')]),
};

function keyOf(s: Selector): string {
  return `${s.type}:${s.value}`;
}

/** A WorkloadIdentitySource whose state the test sets; pushes every change to open streams. */
export class TestIdentitySource implements WorkloadIdentitySource {
  readonly #entitlements = new Map<string, TestEntitlement>();
  readonly #subscribers = new Set<{ selectors: readonly Selector[]; onUpdate: (u: WorkloadUpdate) => void }>();
  /** The agent's own trust domain: its bundle goes with every update, entitled or not. */
  readonly domain: TestTrustDomain;
  /** Calls of fetchJwtSvids seen (for tests on the request). */
  jwtRequests = 0;

  constructor(domain: TestTrustDomain) {
    this.domain = domain;
  }

  /** Sets (or replaces, as a rotation does) what callers with `selectorKey` get, and pushes it. */
  set(selectorKey: string, entitlement: TestEntitlement): void {
    this.#entitlements.set(selectorKey, entitlement);
    this.#pushAll();
  }

  /** Removes an entitlement; its callers get an empty update. */
  delete(selectorKey: string): void {
    this.#entitlements.delete(selectorKey);
    this.#pushAll();
  }

  #find(selectors: readonly Selector[]): TestEntitlement | undefined {
    for (const s of selectors) {
      const e = this.#entitlements.get(keyOf(s));
      if (e !== undefined) return e;
    }
    return undefined;
  }

  #update(selectors: readonly Selector[]): WorkloadUpdate {
    const e = this.#find(selectors);
    // As the agent's cache does, a caller with no entry gets an update without SVIDs.
    if (e === undefined) return { svids: [], bundle: this.domain.wireBundle(), federatedBundles: [] };
    return {
      svids: e.identities.map((i) => ({
        spiffeId: i.cert.x509.subjectAltName?.replace(/^URI:/, '') ?? '',
        chainDer: Buffer.from(i.cert.der),
        keyPkcs8Der: new Secret(Buffer.from(i.cert.key.pkcs8Der)),
        hint: i.hint ?? '',
      })),
      bundle: this.domain.wireBundle(),
      federatedBundles: (e.federatesWith ?? []).map((d) => d.wireBundle()),
    };
  }

  #pushAll(): void {
    for (const sub of this.#subscribers) sub.onUpdate(this.#update(sub.selectors));
  }

  subscribe(selectors: readonly Selector[], onUpdate: (update: WorkloadUpdate) => void): Unsubscribe {
    const sub = { selectors, onUpdate };
    this.#subscribers.add(sub);
    onUpdate(this.#update(selectors));
    return () => this.#subscribers.delete(sub);
  }

  fetchJwtSvids(selectors: readonly Selector[], audience: readonly string[], spiffeId: string | undefined): Promise<IssuedJwtSvid[]> {
    this.jwtRequests++;
    const e = this.#find(selectors);
    const out: IssuedJwtSvid[] = [];
    for (const i of e?.identities ?? []) {
      const id = i.cert.x509.subjectAltName?.replace(/^URI:/, '') ?? '';
      if (spiffeId !== undefined && spiffeId !== id) continue;
      const token = signJwt(i.domain.jwtKey, jwtClaims(id, audience.length === 1 ? audience[0]! : [...audience]));
      out.push({ spiffeId: id, token: new Secret(token), hint: i.hint ?? '' });
    }
    return Promise.resolve(out);
  }

  async validateJwtSvid(selectors: readonly Selector[], token: string, audience: string): Promise<ValidatedJwtSvid> {
    const e = this.#find(selectors);
    const domains = [this.domain, ...(e?.federatesWith ?? [])];
    const svid = await parseAndValidateJwtSvid(token, { getBundleForTrustDomain: (td) => domains.find((d) => d.td.name === td.name)?.bundle() }, audience);
    return { spiffeId: svid.id.toString(), claims: svid.claims };
  }
}

/** A running test agent: the real Workload API server on a socket in a fresh 0700 temp dir. */
export interface TestAgent {
  /** `unix:///…/agent.sock`, for SPIFFE_ENDPOINT_SOCKET. */
  readonly address: string;
  readonly identities: TestIdentitySource;
  close(): Promise<void>;
}

/** Starts the Workload API server with a TestIdentitySource (for `domain`, or the one given) and the pid attestor. */
export async function startTestAgent(domainOrSource: TestTrustDomain | TestIdentitySource): Promise<TestAgent> {
  const identities = domainOrSource instanceof TestIdentitySource ? domainOrSource : new TestIdentitySource(domainOrSource);
  const dir = mkdtempSync(join(tmpdir(), 'sigil-client-'));
  const server = await startWorkloadApiServer({
    socketPath: join(dir, 'agent.sock'),
    attestors: [pidAttestor],
    identities,
    logger: silentLogger(),
  });
  return {
    address: server.address,
    identities,
    async close() {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
