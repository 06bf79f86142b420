/**
 * A CI runner attested by its platform's OIDC token, through the real server and the real
 * agent: the agent presents a GitHub-Actions-shaped job token from its token file, the server
 * checks it against the issuer's JWKS file and its allow rule, and the agent becomes the job
 * run's agent ID. A node alias on `jwt:repository:org/app` gives a workload entry to every
 * runner of that repository; the workload gets it over the Workload API. A token of another
 * owner's repository attests nothing, and the token never appears in a log.
 */
import test from 'ava';
import { randomUUID } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { memoryLogger } from '../../src/common/logger.js';
import { startAgent } from '../../src/agent/agent.js';
import { X509Source } from '../../src/client/index.js';
import { agentConfigFor, refusedAttestation, writeBootstrapBundle } from '../agent/support/agent-harness.js';
import { startTestServer } from '../helpers/server.js';

const UID = process.getuid?.() ?? 0;
const ISSUER = 'https://token.actions.githubusercontent.com';

test('a CI job attests with its OIDC token; a node alias by repository serves a workload on its agent', async (t) => {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const kid = randomUUID();
  const jobToken = async (owner: string): Promise<string> => {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ sub: `repo:${owner}/app:ref:refs/heads/main`, repository: `${owner}/app`, repository_owner: owner, repository_id: '777', run_id: '31337', run_attempt: '2', jti: randomUUID() })
      .setProtectedHeader({ alg: 'RS256', kid, typ: 'JWT' })
      .setIssuer(ISSUER)
      .setAudience('sigil-ci')
      .setIssuedAt(now)
      .setExpirationTime(now + 300)
      .sign(privateKey);
  };
  const dir = mkdtempSync(join(tmpdir(), 'sigil-jwt-e2e-'));
  chmodSync(dir, 0o755);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'jwks.json'), JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' }] }));
  const server = await startTestServer({
    config: { nodeAttestors: { joinToken: {}, jwt: { issuers: { github: { profile: 'github', audience: ['sigil-ci'], jwksFile: join(dir, 'jwks.json'), allow: { repository_owner: ['org'] } } } } } },
  });
  t.teardown(() => server.destroy());
  writeBootstrapBundle(server, join(dir, 'bootstrap.pem'));
  const aliasId = 'spiffe://example.org/ci/org-app/runners';
  await server.createEntry({ spiffeId: aliasId, parentId: 'spiffe://example.org/sigil/server', selectors: ['jwt:repository:org/app'] });
  await server.createEntry({ spiffeId: 'spiffe://example.org/ci/org-app/deployer', parentId: aliasId, selectors: [`unix:uid:${UID}`] });

  const tokenFile = join(dir, 'oidc-token');
  const config = (): ReturnType<typeof agentConfigFor> => agentConfigFor(server, dir, tokenFile, { nodeAttestor: { jwt: { issuer: 'github', tokenFile } } });
  // A job of another owner's repository: refused by the allow rule, the agent does not come up.
  writeFileSync(tokenFile, await jobToken('mallory'), { mode: 0o600 });
  const refusedLines = await refusedAttestation(server, config(), 'jwt-not-allowed');
  t.true(server.auditLines.some((l) => l.includes('jwt-not-allowed')), server.auditLines.join('\n'));

  const token = await jobToken('org');
  writeFileSync(tokenFile, token, { mode: 0o600 });
  const { logger, lines } = memoryLogger('debug');
  const agent = await startAgent(config(), { logger });
  t.teardown(() => agent.stop());
  t.is(agent.agentId(), 'spiffe://example.org/sigil/agent/jwt/github/777/31337/2');

  const source = await X509Source.create({ address: agent.address, timeoutMs: 20_000 });
  t.teardown(() => source.close());
  t.is(source.svid.id.toString(), 'spiffe://example.org/ci/org-app/deployer');
  t.false([...lines, ...server.logLines, ...server.auditLines, ...refusedLines].some((l) => l.includes(token)), 'the token appears in a log');
});
