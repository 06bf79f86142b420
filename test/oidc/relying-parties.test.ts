/**
 * Independent relying parties against a running `sigil oidc serve` over HTTPS with a test CA
 * (issue 15): openid-client (discovery, with its issuer and metadata checks), jose's
 * createRemoteJWKSet + jwtVerify, and Debian's PyJWT (PyJWKClient). Each accepts a fresh
 * JWT-SVID (RS256: the server runs with ca.jwtKeyType rsa-2048) with the right issuer and
 * audience and refuses a wrong audience, a wrong issuer, an expired token and one signed by a
 * key not in the JWKS. Then a JWT key rotation seen by a relying party that caches the JWKS:
 * the prepared key is published before it signs, and the old key stays after the switch.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { SignJWT, createRemoteJWKSet, customFetch, decodeProtectedHeader, jwtVerify, type FetchImplementation } from 'jose';
import * as client from 'openid-client';
import { eventually, fetchUrl, readyJwks, startOidcStack } from './support/oidc-stack.js';

const AUD = 'rp.example.org';

/** fetch over node:https trusting only the test CA (global fetch cannot take a CA). */
function fetchWithCa(ca: Buffer): FetchImplementation & ((url: string | URL, init?: RequestInit) => Promise<Response>) {
  return (async (url: string | URL, init?: { method?: string; headers?: unknown }) => {
    const a = await fetchUrl(String(url), { ca, method: init?.method ?? 'GET' });
    const headers = new Headers();
    for (const [k, v] of Object.entries(a.headers)) if (typeof v === 'string') headers.set(k, v);
    return new Response(a.status === 304 ? null : a.body, { status: a.status, headers });
  }) as FetchImplementation & ((url: string | URL, init?: RequestInit) => Promise<Response>);
}

const PYJWT = `
import json, sys, jwt
req = json.load(sys.stdin)
client = jwt.PyJWKClient(req["jwks_uri"], cache_keys=True)
out = {}
for name, c in req["cases"].items():
    try:
        key = client.get_signing_key_from_jwt(c["token"])
        claims = jwt.decode(c["token"], key.key, algorithms=["RS256", "ES256"], audience=c["audience"], issuer=c["issuer"], leeway=c.get("leeway", 0), options={"require": ["exp", "iss", "sub", "aud"], "verify_iat": c.get("verify_iat", True)})
        out[name] = "ok:" + claims["sub"]
    except Exception as e:
        out[name] = type(e).__name__
print(json.dumps(out))
`;

function pyjwt(caFile: string, input: unknown): Promise<Record<string, string>> {
  return new Promise((resolve, reject) => {
    // Debian's python3 (where python3-jwt lives), not whatever python3 PATH finds first
    const child = execFile('/usr/bin/python3', ['-c', PYJWT], { env: { PATH: '/usr/bin:/bin', SSL_CERT_FILE: caFile }, timeout: 60_000 }, (err, stdout, stderr) => {
      if (err !== null) return reject(new Error(`pyjwt: ${err.message} ${stderr}`));
      resolve(JSON.parse(stdout) as Record<string, string>);
    });
    child.stdin?.end(JSON.stringify(input));
  });
}

test.serial('openid-client, jose and PyJWT accept a fresh RS256 JWT-SVID and refuse wrong aud, wrong iss, expired and unknown-key tokens; a rotation with a caching relying party', async (t) => {
  const stack = await startOidcStack(t, { jwtKeyType: 'rsa-2048' });
  const oidc = await stack.serve(stack.writeConfig('oidc.yaml'));
  const jwks = await readyJwks(stack);
  t.true(jwks.keys.every((k) => k.kty === 'RSA' && k.alg === 'RS256'), JSON.stringify(jwks.keys));
  const fetchCa = fetchWithCa(stack.tls.ca);

  // openid-client: discovery over HTTPS, which checks that the document's issuer is the URL asked
  const config = await client.discovery(new URL(stack.issuer), 'sigil-test', undefined, undefined, { [client.customFetch]: fetchCa } as client.DiscoveryRequestOptions);
  const meta = config.serverMetadata();
  t.is(meta.issuer, stack.issuer);
  t.is(meta.jwks_uri, `${stack.issuer}/keys`);
  t.deepEqual(meta.id_token_signing_alg_values_supported, ['RS256']);
  // a relying party that expects another issuer refuses the document
  await t.throwsAsync(client.discovery(new URL(`https://127.0.0.1:${stack.port}`), 'sigil-test', undefined, undefined, { [client.customFetch]: fetchCa } as client.DiscoveryRequestOptions));

  const good = (await stack.jwtSvid(AUD)).marshal();
  t.is(decodeProtectedHeader(good).alg, 'RS256');
  const wrongAud = (await stack.jwtSvid('someone-else.example.org')).marshal();
  const claims = JSON.parse(Buffer.from(good.split('.')[1] as string, 'base64url').toString()) as Record<string, unknown>;
  const stranger = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const kidOfGood = decodeProtectedHeader(good).kid as string;
  const unknownKid = await new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: 'not-in-the-jwks', typ: 'JWT' }).sign(stranger);
  const forgedKnownKid = await new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: kidOfGood, typ: 'JWT' }).sign(stranger);

  // jose: remote JWKS from the discovered jwks_uri
  const remote = createRemoteJWKSet(new URL(meta.jwks_uri as string), { [customFetch]: fetchCa });
  const opts = { issuer: stack.issuer, audience: AUD };
  t.is((await jwtVerify(good, remote, opts)).payload.sub, 'spiffe://example.org/oidc/workload');
  await t.throwsAsync(jwtVerify(wrongAud, remote, opts), { code: 'ERR_JWT_CLAIM_VALIDATION_FAILED' });
  await t.throwsAsync(jwtVerify(good, remote, { ...opts, issuer: 'https://other.example.org' }), { code: 'ERR_JWT_CLAIM_VALIDATION_FAILED' });
  await t.throwsAsync(jwtVerify(good, remote, { ...opts, currentDate: new Date(Date.now() + 3_600_000) }), { code: 'ERR_JWT_EXPIRED' });
  await t.throwsAsync(jwtVerify(unknownKid, remote, opts), { code: 'ERR_JWKS_NO_MATCHING_KEY' });
  await t.throwsAsync(jwtVerify(forgedKnownKid, remote, opts), { code: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' });

  // PyJWT with PyJWKClient, trusting the test CA through SSL_CERT_FILE
  const base = { audience: AUD, issuer: stack.issuer };
  const py = await pyjwt(stack.tls.caFile, {
    jwks_uri: meta.jwks_uri,
    cases: {
      good: { ...base, token: good },
      wrongAud: { ...base, token: wrongAud },
      wrongIss: { ...base, token: good, issuer: 'https://other.example.org' },
      // a negative leeway is the clock an hour ahead (iat, then in the past, is not what is checked here)
      expired: { ...base, token: good, leeway: -3600, verify_iat: false },
      unknownKid: { ...base, token: unknownKid },
      forgedKnownKid: { ...base, token: forgedKnownKid },
    },
  });
  t.deepEqual(py, {
    good: 'ok:spiffe://example.org/oidc/workload',
    wrongAud: 'InvalidAudienceError',
    wrongIss: 'InvalidIssuerError',
    expired: 'ExpiredSignatureError',
    unknownKid: 'PyJWKClientError',
    forgedKnownKid: 'InvalidSignatureError',
  });

  // rotation: the prepared key is in the JWKS before it signs anything
  t.is((await stack.server.admin(['localauthority', 'jwt', 'prepare'])).code, 0);
  const two = await eventually('the prepared key published', async () => {
    const j = JSON.parse((await fetchUrl(`${stack.issuer}/keys`, { ca: stack.tls.ca })).body) as { keys: { kid: string }[] };
    return j.keys.length === 2 ? j : undefined;
  });
  const newKid = (two.keys.find((k) => k.kid !== kidOfGood) as { kid: string }).kid;
  t.is(decodeProtectedHeader((await stack.jwtSvid(AUD)).marshal()).kid, kidOfGood, 'the prepared key does not sign yet');
  // a relying party that fetched the JWKS now and never fetches again
  let fetches = 0;
  const counting = (async (...a: Parameters<typeof fetchCa>) => {
    fetches++;
    return fetchCa(...a);
  }) as FetchImplementation;
  const cached = createRemoteJWKSet(new URL(meta.jwks_uri as string), { [customFetch]: counting, cacheMaxAge: Infinity, cooldownDuration: 3_600_000 });
  await jwtVerify(good, cached, opts);
  t.is(fetches, 1);
  t.is((await stack.server.admin(['localauthority', 'jwt', 'activate'])).code, 0);
  const fresh = await eventually('a JWT-SVID from the new key', async () => {
    const s = (await stack.client.fetchJwtSvid({ audience: [`${AUD}`, `rotation-${Date.now()}`] })).marshal();
    return decodeProtectedHeader(s).kid === newKid ? s : undefined;
  });
  t.is((await jwtVerify(fresh, cached, opts)).protectedHeader.kid, newKid, 'the caching RP knows the new key already');
  t.is((await jwtVerify(good, cached, opts)).protectedHeader.kid, kidOfGood, 'tokens of the old key still verify');
  t.is(fetches, 1, 'without fetching the JWKS again');
  const after = JSON.parse((await fetchUrl(`${stack.issuer}/keys`, { ca: stack.tls.ca })).body) as { keys: { kid: string }[] };
  t.deepEqual(after.keys.map((k) => k.kid).sort(), [kidOfGood, newKid].sort(), 'the old key stays while its tokens live');
  const pyAfter = await pyjwt(stack.tls.caFile, { jwks_uri: meta.jwks_uri, cases: { fresh: { ...base, token: fresh }, old: { ...base, token: good } } });
  t.deepEqual(pyAfter, { fresh: 'ok:spiffe://example.org/oidc/workload', old: 'ok:spiffe://example.org/oidc/workload' });
  t.false(oidc.output.includes(good));
  t.is(await oidc.stop(), 0);
});
