/**
 * The jwt node attestor, server half, against real signed identity tokens with the claim
 * layouts of GitHub Actions, GitLab CI and GCP VM identity tokens: keys from a JWKS file or
 * from the issuer's discovery document over HTTPS (test CA). Each refusal is asserted by its
 * reason; no refusal carries the token. The config rules are checked through the real server
 * config loader.
 */
import test, { type ExecutionContext } from 'ava';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, exportJWK, generateKeyPair, type JSONWebKeySet, type JWK } from 'jose';
import { systemClock } from '../../../src/common/clock.js';
import { isSigilError } from '../../../src/common/errors.js';
import { Secret } from '../../../src/common/secret.js';
import { formatSelector } from '../../../src/spiffe/selector.js';
import { TrustDomain } from '../../../src/spiffe/spiffe-id.js';
import { resolveServerConfig } from '../../../src/server/config.js';
import { JwtAgentAttestor } from '../../../attestors/node/jwt/agent.js';
import { JwtServerAttestor, type JwtIssuerConfig } from '../../../attestors/node/jwt/server.js';
import { JWT_PROFILES } from '../../../attestors/node/jwt/profiles.js';
import { createCa, createLeaf } from '../../helpers/pki.js';

const TD = TrustDomain.parse('example.org');
const dir = mkdtempSync(join(tmpdir(), 'sigil-jwt-node-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

interface Issuer {
  readonly url: string;
  readonly jwks: JSONWebKeySet;
  token(claims: Record<string, unknown>, expiresInSeconds?: number): Promise<string>;
}

async function createIssuer(url: string, alg: 'RS256' | 'ES256' = 'RS256'): Promise<Issuer> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const kid = randomUUID();
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return {
    url,
    jwks: { keys: [jwk] },
    async token(claims, expiresInSeconds = 300) {
      const now = Math.floor(Date.now() / 1000);
      const all: Record<string, unknown> = { iss: url, aud: 'sigil-ci', iat: now, nbf: now, exp: now + expiresInSeconds, ...claims };
      for (const [k, v] of Object.entries(all)) if (v === undefined) delete all[k];
      return new SignJWT(all).setProtectedHeader({ alg, kid, typ: 'JWT' }).sign(privateKey);
    },
  };
}

/** The claims of a GitHub Actions job's OIDC token (push to main of org/app). */
function githubClaims(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    sub: 'repo:org/app:ref:refs/heads/main',
    jti: randomUUID(),
    repository: 'org/app',
    repository_id: '74563210',
    repository_owner: 'org',
    repository_owner_id: '1234',
    ref: 'refs/heads/main',
    ref_type: 'branch',
    workflow: 'deploy',
    job_workflow_ref: 'org/app/.github/workflows/deploy.yml@refs/heads/main',
    actor: 'octocat',
    event_name: 'push',
    runner_environment: 'github-hosted',
    run_id: '9876543210',
    run_number: '42',
    run_attempt: '1',
    sha: 'a'.repeat(40),
    ...over,
  };
}

let github: Issuer;
let githubJwks: string;
test.before(async () => {
  github = await createIssuer(JWT_PROFILES.github.issuer as string);
  githubJwks = join(dir, 'github-jwks.json');
  writeFileSync(githubJwks, JSON.stringify(github.jwks));
});

const githubConfig = (over: Partial<JwtIssuerConfig> = {}): JwtIssuerConfig => ({
  issuer: JWT_PROFILES.github.issuer as string,
  audience: ['sigil-ci'],
  keys: { kind: 'jwks-file', jwksFile: githubJwks },
  allow: { repository_owner: ['org'] },
  selectorClaims: JWT_PROFILES.github.selectorClaims,
  agentIdClaims: JWT_PROFILES.github.agentIdClaims,
  requireJti: true,
  ...over,
});

async function attest(server: JwtServerAttestor, issuerName: string, token: string): Promise<{ agentId: string; selectors: string[] }> {
  const step = await server.begin(TD).next(await new JwtAgentAttestor(issuerName, new Secret(token)).payload());
  if (step.kind !== 'done') throw new Error('jwt asked a challenge');
  return { agentId: step.result.agentId.toString(), selectors: step.result.selectors.map(formatSelector) };
}

async function refusal(t: ExecutionContext, p: Promise<unknown>, reason: string, token?: string): Promise<void> {
  const err = await t.throwsAsync(p);
  t.true(isSigilError(err) && err.code === 'ERR_ATTESTATION_FAILED' && err.reason === reason, `${String(err)} (wanted ${reason})`);
  if (token !== undefined) t.false(String(err).includes(token) || JSON.stringify(err).includes(token), 'the token is in the error');
}

test('github profile: a job token attests one agent per job run, with the job claims as selectors', async (t) => {
  const server = new JwtServerAttestor({ issuers: { gh: githubConfig() }, clock: systemClock });
  const r = await attest(server, 'gh', await github.token(githubClaims()));
  t.is(r.agentId, 'spiffe://example.org/sigil/agent/jwt/gh/74563210/9876543210/1');
  t.deepEqual(r.selectors, [
    'jwt:issuer:gh',
    'jwt:sub:repo:org/app:ref:refs/heads/main',
    'jwt:repository:org/app',
    'jwt:repository_id:74563210',
    'jwt:repository_owner:org',
    'jwt:repository_owner_id:1234',
    'jwt:ref:refs/heads/main',
    'jwt:ref_type:branch',
    'jwt:workflow:deploy',
    'jwt:job_workflow_ref:org/app/.github/workflows/deploy.yml@refs/heads/main',
    'jwt:actor:octocat',
    'jwt:event_name:push',
    'jwt:runner_environment:github-hosted',
  ]);
  // Another run of the same repository is another agent.
  const other = await attest(server, 'gh', await github.token(githubClaims({ run_id: '9876543299' })));
  t.is(other.agentId, 'spiffe://example.org/sigil/agent/jwt/gh/74563210/9876543299/1');
});

test('refusals: another owner, wrong audience, wrong issuer, expired, unknown key, replay, no jti, missing ID claim, unknown issuer, malformed', async (t) => {
  const server = new JwtServerAttestor({ issuers: { gh: githubConfig() }, clock: systemClock });
  const stranger = await createIssuer(github.url);
  const replayed = await github.token(githubClaims());
  await attest(server, 'gh', replayed);
  const cases: [string, Promise<string>, string][] = [
    ['a repository of another owner (any repository can mint a token for our audience)', github.token(githubClaims({ repository_owner: 'mallory', repository: 'mallory/app' })), 'jwt-not-allowed'],
    ['wrong audience', github.token(githubClaims({ aud: 'sts.amazonaws.com' })), 'jwt-wrong-audience'],
    ['wrong issuer', github.token(githubClaims({ iss: 'https://gitlab.com' })), 'jwt-wrong-issuer'],
    ['expired', github.token(githubClaims({ exp: Math.floor(Date.now() / 1000) - 120 })), 'jwt-expired'],
    ['key not in the JWKS', stranger.token(githubClaims()), 'jwt-invalid-token'],
    ['replayed', Promise.resolve(replayed), 'jwt-replayed'],
    ['no jti', github.token(githubClaims({ jti: undefined })), 'jwt-claims'],
    ['no run_id to name the agent', github.token(githubClaims({ run_id: undefined })), 'jwt-claims'],
    ['not a JWS', Promise.resolve('not-a-token'), 'jwt-malformed'],
  ];
  for (const [name, tokenP, reason] of cases) {
    const token = await tokenP;
    await refusal(t, attest(server, 'gh', token), reason, token);
    t.log(`refused: ${name}`);
  }
  await refusal(t, attest(server, 'gitlab', await github.token(githubClaims())), 'jwt-unknown-issuer');
  await refusal(t, server.begin(TD).next(Buffer.from('{"issuer":"gh"}')), 'jwt-malformed');
});

test('gitlab profile: project, pipeline and job name the agent; allow rules on any claim (protected refs only)', async (t) => {
  const gitlab = await createIssuer('https://gitlab.example.com', 'ES256');
  const jwksFile = join(dir, 'gitlab-jwks.json');
  writeFileSync(jwksFile, JSON.stringify(gitlab.jwks));
  const config: JwtIssuerConfig = {
    issuer: gitlab.url,
    audience: ['sigil-ci'],
    keys: { kind: 'jwks-file', jwksFile },
    allow: { namespace_path: ['platform'], ref_protected: ['true'] },
    selectorClaims: JWT_PROFILES.gitlab.selectorClaims,
    agentIdClaims: JWT_PROFILES.gitlab.agentIdClaims,
    requireJti: true,
  };
  const server = new JwtServerAttestor({ issuers: { gitlab: config }, clock: systemClock });
  const claims = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
    sub: 'project_path:platform/api:ref_type:branch:ref:main',
    jti: randomUUID(),
    namespace_path: 'platform',
    project_path: 'platform/api',
    project_id: '22',
    pipeline_id: '1001',
    pipeline_source: 'push',
    job_id: '5005',
    ref: 'main',
    ref_type: 'branch',
    ref_protected: 'true',
    user_login: 'alice',
    ...over,
  });
  const r = await attest(server, 'gitlab', await gitlab.token(claims()));
  t.is(r.agentId, 'spiffe://example.org/sigil/agent/jwt/gitlab/22/1001/5005');
  t.true(r.selectors.includes('jwt:project_path:platform/api'));
  t.true(r.selectors.includes('jwt:ref_protected:true'));
  await refusal(t, attest(server, 'gitlab', await gitlab.token(claims({ ref_protected: 'false', ref: 'feature' }))), 'jwt-not-allowed');
});

test('gcp profile through discovery over HTTPS: nested compute_engine claims name the VM; a restarted agent on it is the same agent', async (t) => {
  const ca = await createCa({ name: 'CN=test-idp-ca', id: null });
  const leaf = await createLeaf({ issuer: ca, subject: 'CN=localhost', uris: [], dns: ['localhost'] });
  const caFile = join(dir, 'idp-ca.pem');
  writeFileSync(caFile, ca.pem);
  let base = '';
  const published: { jwks?: JSONWebKeySet } = {};
  const requests: string[] = [];
  const idp = createServer({ cert: leaf.pem, key: leaf.key.pkcs8Pem }, (req, res) => {
    requests.push(req.url ?? '');
    if (req.url === '/.well-known/openid-configuration') res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ issuer: base, jwks_uri: `${base}/oauth2/v3/certs` }));
    else if (req.url === '/oauth2/v3/certs') res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(published.jwks));
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => idp.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    idp.closeAllConnections();
    idp.close();
  });
  base = `https://localhost:${(idp.address() as AddressInfo).port}`;
  const gcp = await createIssuer(base);
  published.jwks = gcp.jwks;
  const config: JwtIssuerConfig = {
    issuer: base,
    audience: ['sigil-ci'],
    keys: { kind: 'discovery', caFile },
    allow: { 'google.compute_engine.project_id': ['prod-project'] },
    selectorClaims: JWT_PROFILES.gcp.selectorClaims,
    agentIdClaims: JWT_PROFILES.gcp.agentIdClaims,
    requireJti: false,
  };
  const server = new JwtServerAttestor({ issuers: { gcp: config }, clock: systemClock });
  const claims = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
    sub: '112233445566778899',
    email: 'vm@prod-project.iam.gserviceaccount.com',
    google: { compute_engine: { project_id: 'prod-project', project_number: 123, zone: 'europe-west1-b', instance_id: '4455667788', instance_name: 'web-1' } },
    ...over,
  });
  const r = await attest(server, 'gcp', await gcp.token(claims()));
  t.is(r.agentId, 'spiffe://example.org/sigil/agent/jwt/gcp/prod-project/4455667788');
  t.true(r.selectors.includes('jwt:google.compute_engine.zone:europe-west1-b'));
  t.true(r.selectors.includes('jwt:email:vm@prod-project.iam.gserviceaccount.com'));
  // Tokens without jti (GCP sets none) attest again: the same VM, the same agent.
  t.is((await attest(server, 'gcp', await gcp.token(claims()))).agentId, r.agentId);
  t.deepEqual(requests, ['/.well-known/openid-configuration', '/oauth2/v3/certs'], 'the keys are cached');
  await refusal(t, attest(server, 'gcp', await gcp.token(claims({ google: { compute_engine: { project_id: 'other', instance_id: '1' } } }))), 'jwt-not-allowed');
  // A token without format=full has no compute_engine claims: nothing names the VM.
  await refusal(t, attest(server, 'gcp', await gcp.token(claims({ google: undefined }))), 'jwt-not-allowed');
  const noAllow = new JwtServerAttestor({ issuers: { gcp: { ...config, allow: { email: ['vm@prod-project.iam.gserviceaccount.com'] } } }, clock: systemClock });
  await refusal(t, attest(noAllow, 'gcp', await gcp.token(claims({ google: undefined }))), 'jwt-claims');
});

test('an ID claim value that is not path-safe names the agent by its sha256', async (t) => {
  const server = new JwtServerAttestor({ issuers: { gh: githubConfig({ agentIdClaims: ['sub'] }) }, clock: systemClock });
  const r = await attest(server, 'gh', await github.token(githubClaims()));
  t.regex(r.agentId, /^spiffe:\/\/example\.org\/sigil\/agent\/jwt\/gh\/sha256\.[0-9a-f]{64}$/);
});

test('server config: profiles fill the issuer and claims; custom needs issuer and selectorClaims; allow is required; keys named', (t) => {
  const base = { trustDomain: 'example.org', dataDir: '/var/lib/sigil', keyManager: { type: 'disk', kekFile: '/k' } };
  const ok = resolveServerConfig({ ...base, nodeAttestors: { jwt: { issuers: { gh: { profile: 'github', audience: ['sigil-ci'], allow: { repository_owner: ['org'] } } } } } }, {}, '/');
  const gh = ok.nodeAttestors.jwt?.gh;
  t.is(gh?.issuer, 'https://token.actions.githubusercontent.com');
  t.deepEqual(gh?.keys, { kind: 'discovery' });
  t.deepEqual(gh?.agentIdClaims, ['repository_id', 'run_id', 'run_attempt']);
  t.true(gh?.requireJti);
  const bad = (jwt: unknown): string => {
    try {
      resolveServerConfig({ ...base, nodeAttestors: { jwt } }, {}, '/');
    } catch (err) {
      return String(err);
    }
    return 'accepted';
  };
  t.regex(bad({ issuers: { ci: { audience: ['a'], allow: { sub: ['x'] }, selectorClaims: ['sub'] } } }), /nodeAttestors\.jwt\.issuers\.ci\.issuer: required with profile custom/);
  t.regex(bad({ issuers: { ci: { issuer: 'https://ci.example', audience: ['a'], allow: { sub: ['x'] } } } }), /nodeAttestors\.jwt\.issuers\.ci\.selectorClaims/);
  t.regex(bad({ issuers: { gh: { profile: 'github', audience: ['a'], allow: {} } } }), /nodeAttestors\.jwt\.issuers\.gh\.allow/);
  t.regex(bad({ issuers: { gh: { profile: 'github', audience: ['a'] } } }), /nodeAttestors\.jwt\.issuers\.gh\.allow/);
  t.regex(bad({ issuers: { gh: { profile: 'github', audience: [], allow: { sub: ['x'] } } } }), /nodeAttestors\.jwt\.issuers\.gh\.audience/);
  t.regex(bad({ issuers: { gh: { profile: 'github', issuer: 'http://insecure', audience: ['a'], allow: { sub: ['x'] } } } }), /nodeAttestors\.jwt\.issuers\.gh\.issuer/);
});
