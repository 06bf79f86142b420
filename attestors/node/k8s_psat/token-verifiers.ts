/**
 * The three ways the server can tell who a projected service-account token belongs to:
 *
 * - `jwks-file`: the cluster's service-account signing keys as a JWKS file (what
 *   `kubectl get --raw /openid/v1/jwks` prints), with the issuer the tokens carry; no network;
 * - `discovery`: the same keys read from the issuer's OpenID discovery document and JWKS over
 *   HTTPS (kept for 5 minutes, read again when a token names a key not in them);
 * - `token-review`: the API server's TokenReview, which also refuses a token whose pod is gone;
 *   optionally the node object, for its labels and to check its UID.
 *
 * With the first two, a token stays good until it expires even if its pod is deleted: give the
 * projected token a short `expirationSeconds`. Every mode needs the token bound to a pod and a
 * node (the `kubernetes.io.node` claim exists since Kubernetes 1.30).
 */
import type { JWTPayload } from 'jose';
import { z } from 'zod';
import type { Clock } from '../../../src/common/clock.js';
import { httpRequestText, parseJsonAnswer } from '../../../src/common/http-request.js';
import { IssuerTokenVerifier, readSmallFile as readOperatorFile } from '../common/jwt-key-set.js';
import { kubernetesClaimSchema, psatRefused, type PsatIdentity } from './protocol.js';

/** Where a cluster's tokens are checked. */
export type PsatKeySource =
  | { readonly kind: 'jwks-file'; readonly issuer: string; readonly jwksFile: string }
  | { readonly kind: 'discovery'; readonly issuer: string; readonly caFile?: string }
  | { readonly kind: 'token-review'; readonly apiServer: string; readonly caFile?: string; readonly tokenFile: string; readonly readNode: boolean };

/** Checks one token; throws ERR_ATTESTATION_FAILED (`psat-…`) or ERR_UNAVAILABLE when the checker cannot be reached. */
export interface PsatTokenVerifier {
  verify(token: string, audiences: readonly string[], signal?: AbortSignal): Promise<PsatIdentity>;
}

const readSmallFile = (path: string, what: string): string => readOperatorFile(path, `k8s_psat ${what}`, 'psat');

/** The identity in verified token claims. */
function identityOfClaims(payload: JWTPayload): PsatIdentity {
  const parsed = kubernetesClaimSchema.safeParse(payload['kubernetes.io']);
  if (!parsed.success) throw psatRefused('psat-claims', 'the token has no valid kubernetes.io claim (not a service-account token)');
  const k = parsed.data;
  if (payload.sub !== `system:serviceaccount:${k.namespace}:${k.serviceaccount.name}`) {
    throw psatRefused('psat-claims', 'the token subject does not match its kubernetes.io claim');
  }
  if (k.pod === undefined) throw psatRefused('psat-not-pod-bound', 'the token is not bound to a pod: use a projected service-account token');
  if (k.node === undefined) {
    throw psatRefused('psat-no-node-claim', 'the token names no node (Kubernetes 1.30+ adds it); use tokenReview mode on older clusters');
  }
  return { namespace: k.namespace, serviceAccount: k.serviceaccount.name, podName: k.pod.name, podUid: k.pod.uid, nodeName: k.node.name, nodeUid: k.node.uid };
}

/** Verifies tokens against the cluster issuer's signing keys (file or discovery). */
class KeySetVerifier implements PsatTokenVerifier {
  readonly #tokens: IssuerTokenVerifier;

  constructor(tokens: IssuerTokenVerifier) {
    this.#tokens = tokens;
  }

  async verify(token: string, audiences: readonly string[], signal?: AbortSignal): Promise<PsatIdentity> {
    return identityOfClaims(await this.#tokens.verify(token, audiences, signal));
  }
}

const tokenReviewSchema = z.object({
  status: z
    .object({
      authenticated: z.boolean().optional(),
      audiences: z.array(z.string()).optional(),
      error: z.string().optional(),
      user: z
        .object({
          username: z.string().default(''),
          extra: z.record(z.string(), z.array(z.string())).default({}),
        })
        .optional(),
    })
    .default({}),
});

const nodeSchema = z.object({ metadata: z.object({ uid: z.string(), labels: z.record(z.string(), z.string()).default({}) }) });

const EXTRA = 'authentication.kubernetes.io/';

/** Asks the API server's TokenReview (and optionally the node) who a token belongs to. */
class TokenReviewVerifier implements PsatTokenVerifier {
  readonly #source: Extract<PsatKeySource, { kind: 'token-review' }>;

  constructor(source: Extract<PsatKeySource, { kind: 'token-review' }>) {
    this.#source = source;
  }

  async #call(method: 'GET' | 'POST', path: string, body: string | undefined, signal?: AbortSignal): Promise<unknown> {
    const s = this.#source;
    const credential = readSmallFile(s.tokenFile, 'API token file').trim();
    const answer = await httpRequestText({
      url: new URL(path, s.apiServer),
      method,
      headers: { authorization: `Bearer ${credential}` },
      ...(body === undefined ? {} : { body }),
      ...(s.caFile === undefined ? {} : { ca: readSmallFile(s.caFile, 'API server CA file') }),
      reasonPrefix: 'psat-api',
      peerName: 'the Kubernetes API server',
      ...(signal === undefined ? {} : { signal }),
    });
    return parseJsonAnswer(answer.body, 'psat-api', 'the Kubernetes API server');
  }

  async verify(token: string, audiences: readonly string[], signal?: AbortSignal): Promise<PsatIdentity> {
    const review = tokenReviewSchema.safeParse(
      await this.#call('POST', '/apis/authentication.k8s.io/v1/tokenreviews', JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences } }), signal),
    );
    if (!review.success) throw psatRefused('psat-api-response', 'the TokenReview answer is malformed');
    const st = review.data.status;
    if (st.authenticated !== true || st.user === undefined) throw psatRefused('psat-token-rejected', 'the API server did not authenticate the service-account token');
    if (st.audiences !== undefined && !st.audiences.some((a) => audiences.includes(a))) throw psatRefused('psat-wrong-audience', 'the token is not for this server');
    const m = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(st.user.username);
    if (m === null) throw psatRefused('psat-claims', 'the token does not belong to a service account');
    const one = (key: string): string | undefined => st.user?.extra[EXTRA + key]?.[0];
    const podName = one('pod-name');
    const podUid = one('pod-uid');
    if (podName === undefined || podUid === undefined) throw psatRefused('psat-not-pod-bound', 'the token is not bound to a pod: use a projected service-account token');
    const nodeName = one('node-name');
    const nodeUid = one('node-uid');
    if (nodeName === undefined || nodeUid === undefined) throw psatRefused('psat-no-node-claim', 'the token names no node (Kubernetes 1.30+ adds it)');
    let nodeLabels: Record<string, string> | undefined;
    if (this.#source.readNode) {
      const node = nodeSchema.safeParse(await this.#call('GET', `/api/v1/nodes/${encodeURIComponent(nodeName)}`, undefined, signal));
      if (!node.success) throw psatRefused('psat-api-response', 'the node answer is malformed');
      if (node.data.metadata.uid !== nodeUid) throw psatRefused('psat-node-mismatch', `node ${nodeName} is not the node the token was issued on`);
      nodeLabels = node.data.metadata.labels;
    }
    return { namespace: m[1] as string, serviceAccount: m[2] as string, podName, podUid, nodeName, nodeUid, ...(nodeLabels === undefined ? {} : { nodeLabels }) };
  }
}

/** Builds the verifier for a cluster's key source. */
export function tokenVerifierFor(source: PsatKeySource, clock: Clock): PsatTokenVerifier {
  switch (source.kind) {
    case 'jwks-file':
      return new KeySetVerifier(new IssuerTokenVerifier({ issuer: source.issuer, source, clock, reasonPrefix: 'psat' }));
    case 'discovery':
      return new KeySetVerifier(new IssuerTokenVerifier({ issuer: source.issuer, source, clock, reasonPrefix: 'psat' }));
    case 'token-review':
      return new TokenReviewVerifier(source);
  }
}
