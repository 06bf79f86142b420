/**
 * A foreign trust domain made at test time (test/helpers/pki.ts): a root CA and a JWT signing
 * key, for the peer side of federation and for FakeWorkloadApi's defects. Not a stand-in for
 * Sigil: the client tests get their own trust domain's identities from the real server and
 * agent (test/e2e/support/stack.ts).
 */
import { Bundle } from '../../src/spiffe/bundle.js';
import { TrustDomain } from '../../src/spiffe/spiffe-id.js';
import { createCa, createJwtKey, createLeaf, type TestCert, type TestJwtKey } from './pki.js';

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

  /** The bundle value (both kinds of authority). */
  bundle(): Bundle {
    return Bundle.create(this.td, { x509Authorities: [this.root.der], jwtAuthorities: [[this.jwtKey.kid, this.jwtKey.publicKey]] });
  }

  /** A leaf X509-SVID for `path` signed by the root. */
  issue(path: string, notAfter?: Date): Promise<TestCert> {
    return createLeaf({ issuer: this.root, id: `spiffe://${this.td.name}${path}`, ...(notAfter === undefined ? {} : { notAfter }) });
  }
}
