/**
 * Zero-code AWS credentials from a JWT-SVID file (issue 15): a real `sigil helper` keeps the
 * JWT-SVID for `sts.amazonaws.com` in a file; the real AWS SDK (`fromTokenFile` of
 * @aws-sdk/credential-providers, configured only by AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN)
 * calls AssumeRoleWithWebIdentity on a local stand-in STS, which verifies the token as
 * docs/oidc.md's AWS rules say: `iss` is the registered provider URL, its discovery document
 * (over HTTPS, from `sigil oidc serve`) names that issuer, the signature verifies with a key of
 * its `jwks_uri`, `aud` is the client ID, `sub` the trust policy's subject, and answers with dummy
 * credentials. The SDK must present the current JWT-SVID, and after the helper rotated the file,
 * the new one; a token not from the trust domain is refused.
 */
import test from 'ava';
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fromTokenFile } from '@aws-sdk/credential-providers';
import { SignJWT, createLocalJWKSet, decodeJwt, jwtVerify } from 'jose';
import { supervise } from '../process/support/under-test.js';
import { eventually, fetchUrl, readyJwks, startOidcStack, WORKLOAD_ID } from './support/oidc-stack.js';

const ROLE = 'arn:aws:iam::111122223333:role/sigil-test';

function body(req: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}

const xmlError = (code: string, message: string): string =>
  `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>${code}</Code><Message>${message}</Message></Error><RequestId>r</RequestId></ErrorResponse>`;

test.serial('the AWS SDK presents the helper-written JWT-SVID to STS, which verifies it through sigil oidc serve; after rotation the new one', async (t) => {
  const stack = await startOidcStack(t, { jwtKeyType: 'rsa-2048', jwtTtl: '1m' });
  const oidc = await stack.serve(stack.writeConfig('oidc.yaml'));
  await readyJwks(stack);
  const providerUrl = stack.issuer;

  // the stand-in STS: the AWS checks, nothing else
  const received: string[] = [];
  const sts = createServer((req, res) => {
    void (async () => {
      const form = new URLSearchParams(await body(req));
      res.setHeader('Content-Type', 'text/xml');
      if (form.get('Action') !== 'AssumeRoleWithWebIdentity' || form.get('RoleArn') !== ROLE) {
        res.statusCode = 400;
        return res.end(xmlError('InvalidAction', 'unexpected request'));
      }
      const token = form.get('WebIdentityToken') ?? '';
      received.push(token);
      try {
        const iss = decodeJwt(token).iss;
        if (iss !== providerUrl) throw new Error(`no OIDC provider ${String(iss)}`);
        const disc = JSON.parse((await fetchUrl(`${iss}/.well-known/openid-configuration`, { ca: stack.tls.ca })).body) as { issuer: string; jwks_uri: string };
        if (disc.issuer !== iss || !disc.jwks_uri.startsWith('https://')) throw new Error('discovery document mismatch');
        const keys = JSON.parse((await fetchUrl(disc.jwks_uri, { ca: stack.tls.ca })).body) as { keys: [] };
        const { payload } = await jwtVerify(token, createLocalJWKSet(keys), { issuer: iss, audience: 'sts.amazonaws.com', algorithms: ['RS256', 'ES256', 'ES384'] });
        if (payload.sub !== WORKLOAD_ID) throw new Error('trust policy: sub does not match');
        const exp = new Date(Date.now() + 3_600_000).toISOString();
        res.end(
          `<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleWithWebIdentityResult>` +
            `<Credentials><AccessKeyId>ASIATESTKEY${received.length}</AccessKeyId><SecretAccessKey>dummy</SecretAccessKey><SessionToken>dummy</SessionToken><Expiration>${exp}</Expiration></Credentials>` +
            `<SubjectFromWebIdentityToken>${payload.sub}</SubjectFromWebIdentityToken><AssumedRoleUser><Arn>${ROLE}/s</Arn><AssumedRoleId>AROA:s</AssumedRoleId></AssumedRoleUser>` +
            `<Audience>sts.amazonaws.com</Audience><Provider>${iss}</Provider></AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></AssumeRoleWithWebIdentityResponse>`,
        );
      } catch (err) {
        res.statusCode = 400;
        res.end(xmlError('InvalidIdentityToken', err instanceof Error ? err.message.replace(/[<>&]/g, '') : 'invalid'));
      }
    })();
  });
  await new Promise<void>((r) => sts.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => sts.close(() => r())));
  const endpoint = `http://127.0.0.1:${(sts.address() as AddressInfo).port}`;

  // sigil helper keeps the token file
  const certDir = join(stack.dir, 'identity');
  const helperConfig = join(stack.dir, 'helper.yaml');
  writeFileSync(helperConfig, `agentAddress: unix://${stack.agent.socket}\ncertDir: ${certDir}\njwtSvids:\n  - audience: [sts.amazonaws.com]\n    fileName: aws.jwt\n`);
  const helper = supervise(['helper', '--config', helperConfig]);
  stack.daemons.push(helper);
  const tokenFile = join(certDir, 'aws.jwt');
  const first = await eventually('the token file', async () => {
    const s = readFileSync(tokenFile, 'utf8').trim();
    return s.length > 0 ? s : undefined;
  });

  // the SDK reads only the environment
  const saved = { ...process.env };
  t.teardown(() => {
    for (const k of ['AWS_WEB_IDENTITY_TOKEN_FILE', 'AWS_ROLE_ARN', 'AWS_ROLE_SESSION_NAME', 'AWS_REGION']) delete process.env[k];
    Object.assign(process.env, saved);
  });
  process.env.AWS_WEB_IDENTITY_TOKEN_FILE = tokenFile;
  process.env.AWS_ROLE_ARN = ROLE;
  process.env.AWS_ROLE_SESSION_NAME = 'sigil-test';
  process.env.AWS_REGION = 'us-east-1';
  const provider = (): ReturnType<ReturnType<typeof fromTokenFile>> => fromTokenFile({ clientConfig: { endpoint, region: 'us-east-1' } })();

  const creds1 = await provider();
  t.is(creds1.accessKeyId, 'ASIATESTKEY1');
  t.is(received.at(-1), first, 'the SDK sent the token in the file');

  // the helper replaces the file at half the JWT-SVID's life; the SDK then sends the new one
  const second = await eventually('the rotated token file', async () => {
    const s = readFileSync(tokenFile, 'utf8').trim();
    return s.length > 0 && s !== first ? s : undefined;
  }, 90_000);
  const creds2 = await provider();
  t.is(creds2.accessKeyId, `ASIATESTKEY${received.length}`);
  t.is(received.at(-1), second);
  t.not(decodeJwt(second).jti, decodeJwt(first).jti);

  // a token signed by a key outside the JWKS is refused, so the stand-in really checks
  const forged = await new SignJWT({ ...decodeJwt(second) })
    .setProtectedHeader({ alg: 'RS256', kid: 'forged', typ: 'JWT' })
    .sign(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey);
  const forgedFile = join(stack.dir, 'forged.jwt');
  writeFileSync(forgedFile, forged);
  process.env.AWS_WEB_IDENTITY_TOKEN_FILE = forgedFile;
  await t.throwsAsync(provider(), { message: /no applicable key|JWKS|key/i });
  t.is(await helper.stop(), 0);
  t.false(helper.output.includes(first));
  t.is(await oidc.stop(), 0);
});
