/**
 * A stand-in for a cluster's service-account token issuer: its own RS256 key, its JWKS (as
 * `kubectl get --raw /openid/v1/jwks` prints it), and projected tokens with the claim layout
 * the kube-apiserver writes (`kubernetes.io` with namespace, service account, pod and node).
 */
import { randomUUID } from 'node:crypto';
import { SignJWT, exportJWK, generateKeyPair, type JSONWebKeySet, type JWK } from 'jose';

export const ISSUER = 'https://kubernetes.default.svc.cluster.local';
export const NODE_UID = '5b1d1f1e-6a2b-4c3d-8e4f-90a1b2c3d4e5';
export const POD_UID = '0a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d';

/** A test issuer. */
export interface TestIssuer {
  readonly jwks: JSONWebKeySet;
  /** A projected token; `over` replaces claims (undefined values remove them), `kubernetes` the kubernetes.io claim. */
  token(options?: { readonly over?: Record<string, unknown>; readonly kubernetes?: Record<string, unknown>; readonly expiresInSeconds?: number }): Promise<string>;
}

/** The kubernetes.io claim of the agent's pod on node-1. */
export function kubernetesClaim(): Record<string, unknown> {
  return {
    namespace: 'sigil',
    serviceaccount: { name: 'sigil-agent', uid: '11111111-2222-4333-8444-555555555555' },
    pod: { name: 'sigil-agent-x7k2p', uid: POD_UID },
    node: { name: 'node-1', uid: NODE_UID },
  };
}

export async function createTestIssuer(): Promise<TestIssuer> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const kid = randomUUID();
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' };
  return {
    jwks: { keys: [jwk] },
    async token(options = {}) {
      const now = Math.floor(Date.now() / 1000);
      const claims: Record<string, unknown> = {
        iss: ISSUER,
        aud: ['sigil-server'],
        sub: 'system:serviceaccount:sigil:sigil-agent',
        iat: now,
        nbf: now,
        exp: now + (options.expiresInSeconds ?? 600),
        jti: randomUUID(),
        'kubernetes.io': options.kubernetes ?? kubernetesClaim(),
        ...options.over,
      };
      for (const [k, v] of Object.entries(claims)) if (v === undefined) delete claims[k];
      return new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid, typ: 'JWT' }).sign(privateKey);
    },
  };
}
