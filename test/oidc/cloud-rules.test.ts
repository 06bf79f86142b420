/**
 * docs/oidc.md's per-cloud rules, each checked against what a real server, agent and
 * `sigil oidc serve` publish and mint (issue 15): one check per rule ID of the table, and the
 * table and the checks must name the same IDs. The server signs RS256 (ca.jwtKeyType rsa-2048),
 * the setting the page tells Azure users to choose.
 */
import test from 'ava';
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect } from 'node:tls';
import { join } from 'node:path';
import { decodeProtectedHeader } from 'jose';
import { issuerUrlProblem } from '../../src/common/issuer-url.js';
import { ROOT } from '../helpers/cli.js';
import { fetchUrl, readyJwks, startOidcStack, WORKLOAD_ID } from './support/oidc-stack.js';

const DOC = readFileSync(join(ROOT, 'docs/oidc.md'), 'utf8');
const GCP_AUD = 'https://iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/pool/providers/sigil';

interface Facts {
  issuer: string;
  discovery: Record<string, unknown>;
  jwksStatus: number;
  jwks: { keys: Record<string, unknown>[] };
  tokens: Record<'aws' | 'gcp' | 'azure', { raw: string; header: Record<string, unknown>; claims: Record<string, unknown> }>;
  /** DER of the top certificate the discovery host serves. */
  topCert: Buffer;
  /** Unix seconds, taken after every token was minted. */
  now: number;
}

type Check = (f: Facts) => string | undefined;

const algOk = (allowed: string[]) => (f: Facts): string | undefined => {
  const algs = f.jwks.keys.map((k) => String(k.alg));
  const bad = algs.filter((a) => !allowed.includes(a));
  const inDiscovery = f.discovery.id_token_signing_alg_values_supported as string[];
  if (bad.length > 0) return `keys with ${bad.join(', ')}`;
  if (!inDiscovery.every((a) => allowed.includes(a))) return `discovery lists ${inDiscovery.join(', ')}`;
  return undefined;
};
const audIs = (cloud: keyof Facts['tokens'], aud: string) => (f: Facts): string | undefined => {
  const got = f.tokens[cloud].claims.aud;
  return (Array.isArray(got) ? got : [got]).includes(aud) ? undefined : `aud ${JSON.stringify(got)}`;
};
const DAY = 24 * 3600;
const lifetimeAtMost = (seconds: number) => (f: Facts): string | undefined => {
  for (const [cloud, t] of Object.entries(f.tokens)) {
    const life = (t.claims.exp as number) - (t.claims.iat as number);
    if (!(life > 0 && life <= seconds)) return `${cloud} token lives ${life} s`;
  }
  return undefined;
};

const CHECKS: Record<string, Check> = {
  'issuer-https': (f) =>
    issuerUrlProblem(f.issuer, false) ??
    (f.issuer.length > 600 ? `issuer of ${f.issuer.length} characters (Entra allows 600)` : undefined) ??
    (Object.values(f.tokens).every((t) => t.claims.iss === f.issuer) ? undefined : 'iss differs from the issuer'),
  'discovery-at-well-known': (f) => (f.discovery.issuer === f.issuer ? undefined : `discovery issuer ${String(f.discovery.issuer)}`),
  'jwks-uri-https': (f) => (String(f.discovery.jwks_uri).startsWith('https://') && f.jwksStatus === 200 && f.jwks.keys.length > 0 ? undefined : `jwks_uri ${String(f.discovery.jwks_uri)}`),
  'discovery-id-token': (f) =>
    (f.discovery.response_types_supported as string[]).includes('id_token') && (f.discovery.subject_types_supported as string[]).includes('public') ? undefined : 'response or subject types',
  'keys-have-kid-alg': (f) => {
    if (!f.jwks.keys.every((k) => typeof k.kid === 'string' && typeof k.kty === 'string' && typeof k.alg === 'string')) return 'a key without kid/kty/alg';
    const kids = new Set(f.jwks.keys.map((k) => k.kid));
    return Object.values(f.tokens).every((t) => kids.has(t.header.kid)) ? undefined : 'a token kid not in the JWKS';
  },
  'aws-alg': algOk(['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512']),
  'aws-audience': audIs('aws', 'sts.amazonaws.com'),
  'aws-token-size': (f) => (f.tokens.aws.raw.length >= 4 && f.tokens.aws.raw.length <= 20_000 ? undefined : `${f.tokens.aws.raw.length} characters`),
  'aws-thumbprint': (f) => {
    if (!(/^[0-9a-f]{40}$/.test(createHash('sha1').update(f.topCert).digest('hex')) && new X509Certificate(f.topCert).ca)) return 'no CA certificate at the top of the chain';
    // AWS wants the thumbprint of the jwks_uri host too when it is another host; one host needs one thumbprint
    return new URL(String(f.discovery.jwks_uri)).host === new URL(f.issuer).host ? undefined : `jwks_uri on another host than the issuer: ${String(f.discovery.jwks_uri)}`;
  },
  'gcp-alg': algOk(['RS256', 'ES256']),
  'gcp-audience': audIs('gcp', GCP_AUD),
  'gcp-subject-length': (f) => (Buffer.byteLength(String(f.tokens.gcp.claims.sub)) <= 127 ? undefined : 'sub over 127 bytes'),
  // STS v1: exp less than 48 h after iat; v1beta: refused once iat is over 24 h old. So: iat past, exp at most 24 h on
  'gcp-lifetime': (f) => {
    const { iat } = f.tokens.gcp.claims as { iat: number };
    if (!(iat <= f.now)) return `iat ${iat} is after ${f.now}`;
    return lifetimeAtMost(DAY)({ ...f, tokens: { ...f.tokens, aws: f.tokens.gcp, azure: f.tokens.gcp } });
  },
  'azure-alg': algOk(['RS256']),
  'azure-audience': audIs('azure', 'api://AzureADTokenExchange'),
  'azure-subject': (f) => (f.tokens.azure.claims.sub === WORKLOAD_ID && WORKLOAD_ID.length <= 600 ? undefined : `sub ${String(f.tokens.azure.claims.sub)}`),
  'lifetime-short': lifetimeAtMost(DAY),
};

function documentedRules(): string[] {
  const start = DOC.indexOf('| rule | cloud |');
  const end = DOC.indexOf('\n\n', start);
  return [...DOC.slice(start, end).matchAll(/^\| `([a-z0-9-]+)` \|/gm)].map((m) => m[1] as string);
}

/** The certificates the TLS server sends, leaf first. */
function servedChain(port: number, ca: Buffer): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, servername: 'localhost', ca }, () => {
      const out: Buffer[] = [];
      let c = s.getPeerCertificate(true) as { raw: Buffer; issuerCertificate?: unknown } | null;
      const seen = new Set<string>();
      while (c !== null && c !== undefined && !seen.has(c.raw.toString('hex'))) {
        seen.add(c.raw.toString('hex'));
        out.push(c.raw);
        c = (c.issuerCertificate ?? null) as typeof c;
      }
      s.end();
      resolve(out);
    });
    s.on('error', reject);
  });
}

test('docs/oidc.md lists exactly the rules this test checks', (t) => {
  t.deepEqual(documentedRules().sort(), Object.keys(CHECKS).sort());
});

test.serial('every per-cloud rule of docs/oidc.md holds for the documents and tokens of a running provider', async (t) => {
  const stack = await startOidcStack(t, { jwtKeyType: 'rsa-2048' });
  const oidc = await stack.serve(stack.writeConfig('oidc.yaml'));
  await readyJwks(stack);
  const ca = stack.tls.ca;
  const discovery = JSON.parse((await fetchUrl(`${stack.issuer}/.well-known/openid-configuration`, { ca })).body) as Record<string, unknown>;
  const jwksAnswer = await fetchUrl(String(discovery.jwks_uri), { ca });
  const token = async (aud: string): Promise<Facts['tokens']['aws']> => {
    const raw = (await stack.jwtSvid(aud)).marshal();
    return { raw, header: decodeProtectedHeader(raw) as Record<string, unknown>, claims: JSON.parse(Buffer.from(raw.split('.')[1] as string, 'base64url').toString()) as Record<string, unknown> };
  };
  const chain = await servedChain(stack.port, ca);
  // the test server sends its leaf only; the top of the chain a client builds is the test CA
  const top = chain.length > 1 ? (chain[chain.length - 1] as Buffer) : new X509Certificate(ca).raw;
  const facts: Facts = {
    issuer: stack.issuer,
    discovery,
    jwksStatus: jwksAnswer.status,
    jwks: JSON.parse(jwksAnswer.body) as Facts['jwks'],
    tokens: { aws: await token('sts.amazonaws.com'), gcp: await token(GCP_AUD), azure: await token('api://AzureADTokenExchange') },
    topCert: top,
    now: Math.ceil(Date.now() / 1000),
  };
  for (const id of documentedRules()) {
    const check = CHECKS[id];
    if (check === undefined) {
      t.fail(`no check for rule ${id}`);
      continue;
    }
    t.is(check(facts), undefined, id);
  }
  // the checks can fail: an ES256 key breaks the Azure rule, a wrong audience the AWS one
  t.truthy(CHECKS['azure-alg']?.({ ...facts, jwks: { keys: [{ ...facts.jwks.keys[0], alg: 'ES256' }] } }));
  t.truthy(CHECKS['aws-audience']?.({ ...facts, tokens: { ...facts.tokens, aws: facts.tokens.gcp } }));
  t.truthy(CHECKS['issuer-https']?.({ ...facts, issuer: 'http://oidc.example.org' }));
  t.truthy(CHECKS['issuer-https']?.({ ...facts, issuer: `https://oidc.example.org/${'a'.repeat(600)}` }));
  t.truthy(CHECKS['aws-thumbprint']?.({ ...facts, discovery: { ...facts.discovery, jwks_uri: 'https://keys.example.org/keys' } }));
  const gcp = facts.tokens.gcp;
  const iat = gcp.claims.iat as number;
  t.truthy(CHECKS['gcp-lifetime']?.({ ...facts, tokens: { ...facts.tokens, gcp: { ...gcp, claims: { ...gcp.claims, iat: facts.now + 60, exp: facts.now + 120 } } } }));
  t.truthy(CHECKS['gcp-lifetime']?.({ ...facts, tokens: { ...facts.tokens, gcp: { ...gcp, claims: { ...gcp.claims, exp: iat + DAY + 1 } } } }));
  t.is(CHECKS['gcp-lifetime']?.({ ...facts, tokens: { ...facts.tokens, gcp: { ...gcp, claims: { ...gcp.claims, exp: iat + DAY } } } }), undefined);
  t.truthy(CHECKS['aws-alg']?.({ ...facts, jwks: { keys: [{ ...facts.jwks.keys[0], alg: 'PS256' }] } }));
  t.is(await oidc.stop(), 0);
});
