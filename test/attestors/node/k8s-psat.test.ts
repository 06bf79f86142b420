/**
 * The k8s_psat node attestor, server half, against a test issuer's real RS256 tokens with the
 * kube-apiserver's claim layout: a JWKS file, OIDC discovery over HTTPS with a test CA, and a
 * fake API server answering TokenReview (and the node) over HTTPS. Each refusal is asserted by
 * its reason; no refusal carries the token.
 */
import test, { type ExecutionContext } from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemClock } from '../../../src/common/clock.js';
import { isSigilError } from '../../../src/common/errors.js';
import { formatSelector } from '../../../src/spiffe/selector.js';
import { TrustDomain } from '../../../src/spiffe/spiffe-id.js';
import { K8sPsatAgentAttestor } from '../../../attestors/node/k8s_psat/agent.js';
import { K8sPsatServerAttestor, type PsatClusterConfig } from '../../../attestors/node/k8s_psat/server.js';
import { Secret } from '../../../src/common/secret.js';
import { createCa, createLeaf } from '../../helpers/pki.js';
import { ISSUER, NODE_UID, POD_UID, createTestIssuer, kubernetesClaim, type TestIssuer } from './support/test-issuer.js';

const TD = TrustDomain.parse('example.org');
const dir = mkdtempSync(join(tmpdir(), 'sigil-psat-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

let issuer: TestIssuer;
let jwksFile: string;
test.before(async () => {
  issuer = await createTestIssuer();
  jwksFile = join(dir, 'jwks.json');
  writeFileSync(jwksFile, JSON.stringify(issuer.jwks));
});

const allow = ['sigil:sigil-agent'];

async function attestWith(cluster: PsatClusterConfig, token: string, clusterName = 'prod'): Promise<{ agentId: string; selectors: string[] }> {
  const server = new K8sPsatServerAttestor({ clusters: { prod: cluster }, clock: systemClock });
  const agent = new K8sPsatAgentAttestor(clusterName, new Secret(token));
  const step = await server.begin(TD).next(await agent.payload());
  if (step.kind !== 'done') throw new Error('k8s_psat asked a challenge');
  return { agentId: step.result.agentId.toString(), selectors: step.result.selectors.map(formatSelector) };
}

const fileCluster = (): PsatClusterConfig => ({ serviceAccountAllowList: allow, audience: ['sigil-server'], keys: { kind: 'jwks-file', issuer: ISSUER, jwksFile } });

const EXPECTED_SELECTORS = [
  'k8s_psat:cluster:prod',
  'k8s_psat:agent_ns:sigil',
  'k8s_psat:agent_sa:sigil-agent',
  'k8s_psat:agent_pod_name:sigil-agent-x7k2p',
  `k8s_psat:agent_pod_uid:${POD_UID}`,
  'k8s_psat:agent_node_name:node-1',
  `k8s_psat:agent_node_uid:${NODE_UID}`,
];

test('a projected token checked against the JWKS file attests the node, one agent ID per node', async (t) => {
  const r = await attestWith(fileCluster(), await issuer.token());
  t.is(r.agentId, `spiffe://example.org/sigil/agent/k8s_psat/prod/${NODE_UID}`);
  t.deepEqual(r.selectors, EXPECTED_SELECTORS);
  // A fresh token of another agent pod on the same node is the same agent.
  const again = await attestWith(fileCluster(), await issuer.token({ kubernetes: { ...kubernetesClaim(), pod: { name: 'sigil-agent-new', uid: '99999999-1111-4222-8333-444444444444' } } }));
  t.is(again.agentId, r.agentId);
});

async function refusal(t: ExecutionContext, p: Promise<unknown>, reason: string, token?: string): Promise<void> {
  const err = await t.throwsAsync(p);
  t.true(isSigilError(err) && err.code === 'ERR_ATTESTATION_FAILED' && err.reason === reason, `${String(err)} (wanted ${reason})`);
  if (token !== undefined) t.false(String(err).includes(token) || JSON.stringify(err).includes(token), 'the token is in the error');
}

test('refusals: wrong audience, wrong issuer, expired, unknown key, SA not allowed, unknown cluster, not pod-bound, no node claim', async (t) => {
  const stranger = await createTestIssuer();
  const cases: [string, Promise<string>, string, string?][] = [
    ['wrong audience', issuer.token({ over: { aud: ['vault'] } }), 'psat-wrong-audience'],
    ['wrong issuer', issuer.token({ over: { iss: 'https://other.example' } }), 'psat-wrong-issuer'],
    ['expired', issuer.token({ over: { exp: Math.floor(Date.now() / 1000) - 120 } }), 'psat-expired'],
    ['key not in the JWKS', stranger.token(), 'psat-invalid-token'],
    ['service account not allowed', issuer.token({ over: { sub: 'system:serviceaccount:sigil:default' }, kubernetes: { ...kubernetesClaim(), serviceaccount: { name: 'default', uid: 'u' } } }), 'psat-sa-not-allowed'],
    ['subject and claim disagree', issuer.token({ over: { sub: 'system:serviceaccount:kube-system:admin' } }), 'psat-claims'],
    ['not bound to a pod', issuer.token({ kubernetes: { ...kubernetesClaim(), pod: undefined } }), 'psat-not-pod-bound'],
    ['no node claim (before Kubernetes 1.30)', issuer.token({ kubernetes: { ...kubernetesClaim(), node: undefined } }), 'psat-no-node-claim'],
    ['not a service-account token', issuer.token({ over: { 'kubernetes.io': undefined } }), 'psat-claims'],
    ['not a JWS', Promise.resolve('not-a-token'), 'psat-malformed'],
  ];
  for (const [name, tokenP, reason] of cases) {
    const token = await tokenP;
    await refusal(t, attestWith(fileCluster(), token), reason, token);
    t.log(`refused: ${name}`);
  }
  await refusal(t, attestWith(fileCluster(), await issuer.token(), 'staging'), 'psat-unknown-cluster');
  const server = new K8sPsatServerAttestor({ clusters: { prod: fileCluster() }, clock: systemClock });
  await refusal(t, server.begin(TD).next(Buffer.from('{"cluster":"prod"}')), 'psat-malformed');
  await refusal(t, server.begin(TD).next(Buffer.from('[1,2]')), 'psat-malformed');
});

/** An HTTPS server with a test CA; `routes` answers by path. */
async function httpsServer(routes: (req: IncomingMessage, body: string) => { status: number; body: unknown } | undefined): Promise<{ url: string; caFile: string; seen: { path: string; auth: string | undefined; body: string }[]; close(): Promise<void> }> {
  const ca = await createCa({ name: 'CN=test-cluster-ca', id: null });
  const leaf = await createLeaf({ issuer: ca, subject: 'CN=localhost', uris: [], dns: ['localhost'] });
  const caFile = join(dir, `ca-${Math.random().toString(16).slice(2)}.pem`);
  writeFileSync(caFile, ca.pem);
  const seen: { path: string; auth: string | undefined; body: string }[] = [];
  const server = createServer({ cert: leaf.pem, key: leaf.key.pkcs8Pem }, (req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.setEncoding('utf8').on('data', (d: string) => (body += d));
    req.on('end', () => {
      seen.push({ path: req.url ?? '', auth: req.headers.authorization, body });
      const a = routes(req, body);
      if (a === undefined) res.writeHead(404).end();
      else res.writeHead(a.status, { 'content-type': 'application/json' }).end(JSON.stringify(a.body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `https://localhost:${(server.address() as AddressInfo).port}`;
  return {
    url,
    caFile,
    seen,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

test('discovery: the issuer document and JWKS over HTTPS (test CA) check the token; keys are cached; a document naming another issuer is refused', async (t) => {
  const keys = issuer.jwks;
  const idp = await httpsServer((req) => {
    if (req.url === '/.well-known/openid-configuration') return { status: 200, body: { issuer: `${base}`, jwks_uri: `${base}/openid/v1/jwks` } };
    if (req.url === '/openid/v1/jwks') return { status: 200, body: keys };
    return undefined;
  });
  const base = idp.url;
  t.teardown(() => idp.close());
  const cluster: PsatClusterConfig = { serviceAccountAllowList: allow, audience: ['sigil-server'], keys: { kind: 'discovery', issuer: base, caFile: idp.caFile } };
  const server = new K8sPsatServerAttestor({ clusters: { prod: cluster }, clock: systemClock });
  const run = async (token: string): Promise<string> => {
    const step = await server.begin(TD).next(await new K8sPsatAgentAttestor('prod', new Secret(token)).payload());
    return step.kind === 'done' ? step.result.agentId.toString() : 'challenge';
  };
  t.is(await run(await issuer.token({ over: { iss: base } })), `spiffe://example.org/sigil/agent/k8s_psat/prod/${NODE_UID}`);
  t.is(idp.seen.length, 2);
  // The cached keys serve the next token without asking again.
  await run(await issuer.token({ over: { iss: base } }));
  t.is(idp.seen.length, 2);
  // A discovery document naming another issuer is refused.
  const wrong = await httpsServer((req) => (req.url === '/.well-known/openid-configuration' ? { status: 200, body: { issuer: 'https://evil.example', jwks_uri: 'https://evil.example/jwks' } } : undefined));
  t.teardown(() => wrong.close());
  const bad = new K8sPsatServerAttestor({ clusters: { prod: { ...cluster, keys: { kind: 'discovery', issuer: wrong.url, caFile: wrong.caFile } } }, clock: systemClock });
  const token = await issuer.token({ over: { iss: wrong.url } });
  await refusal(t, bad.begin(TD).next(await new K8sPsatAgentAttestor('prod', new Secret(token)).payload()), 'psat-issuer', token);
});

test('TokenReview: the API server vouches for the token and the node; a token whose pod is gone is refused', async (t) => {
  const apiToken = 'sigil-server-api-token';
  const apiTokenFile = join(dir, 'api-token');
  writeFileSync(apiTokenFile, apiToken, { mode: 0o600 });
  let podAlive = true;
  let liveNodeUid = NODE_UID;
  const api = await httpsServer((req, body) => {
    if (req.headers.authorization !== `Bearer ${apiToken}`) return { status: 401, body: {} };
    if (req.method === 'POST' && req.url === '/apis/authentication.k8s.io/v1/tokenreviews') {
      const spec = (JSON.parse(body) as { spec: { token: string; audiences: string[] } }).spec;
      if (!podAlive || spec.token.length < 10) return { status: 201, body: { kind: 'TokenReview', status: { authenticated: false, error: 'pod not found' } } };
      return {
        status: 201,
        body: {
          kind: 'TokenReview',
          status: {
            authenticated: true,
            audiences: spec.audiences,
            user: {
              username: 'system:serviceaccount:sigil:sigil-agent',
              extra: {
                'authentication.kubernetes.io/pod-name': ['sigil-agent-x7k2p'],
                'authentication.kubernetes.io/pod-uid': [POD_UID],
                'authentication.kubernetes.io/node-name': ['node-1'],
                'authentication.kubernetes.io/node-uid': [NODE_UID],
              },
            },
          },
        },
      };
    }
    if (req.url === '/api/v1/nodes/node-1') return { status: 200, body: { kind: 'Node', metadata: { name: 'node-1', uid: liveNodeUid, labels: { 'topology.kubernetes.io/zone': 'eu-1a' } } } };
    return undefined;
  });
  t.teardown(() => api.close());
  const cluster: PsatClusterConfig = { serviceAccountAllowList: allow, audience: ['sigil-server'], keys: { kind: 'token-review', apiServer: api.url, caFile: api.caFile, tokenFile: apiTokenFile, readNode: true } };
  const token = await issuer.token();
  const r = await attestWith(cluster, token);
  t.is(r.agentId, `spiffe://example.org/sigil/agent/k8s_psat/prod/${NODE_UID}`);
  t.deepEqual(r.selectors, [...EXPECTED_SELECTORS, 'k8s_psat:agent_node_label:topology.kubernetes.io/zone:eu-1a']);
  const review = api.seen.find((s) => s.path.endsWith('/tokenreviews'));
  t.deepEqual((JSON.parse(review?.body ?? '{}') as { spec: unknown }).spec, { token, audiences: ['sigil-server'] });
  // The same token replayed after its pod is gone.
  podAlive = false;
  await refusal(t, attestWith(cluster, token), 'psat-token-rejected', token);
  // A node that was replaced (same name, new UID) is not the node the token was issued on.
  podAlive = true;
  liveNodeUid = '00000000-0000-4000-8000-000000000000';
  await refusal(t, attestWith(cluster, token), 'psat-node-mismatch', token);
  // The API server down: unavailable, not a refusal of the agent.
  await api.close();
  const err = await t.throwsAsync(attestWith(cluster, token));
  t.true(isSigilError(err) && err.code === 'ERR_UNAVAILABLE' && err.reason === 'psat-api-unreachable', String(err));
});
