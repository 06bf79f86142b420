/**
 * A node attested by its Kubernetes service-account token, through the real server and the
 * real agent: the agent presents a projected token (signed by a test issuer with the
 * kube-apiserver's claim layout) read from its token file, the server checks it against the
 * cluster's JWKS file, and the agent becomes the node's agent ID. A node alias on
 * `k8s_psat:cluster:prod` then gives a workload entry parented to the alias to the agent — one
 * entry for a workload on every node of the cluster — and the workload gets it over the
 * Workload API. A token of a service account not on the allow list attests nothing.
 */
import test from 'ava';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { memoryLogger } from '../../src/common/logger.js';
import { startAgent } from '../../src/agent/agent.js';
import { X509Source } from '../../src/client/index.js';
import { agentConfigFor, refusedAttestation, writeBootstrapBundle } from '../agent/support/agent-harness.js';
import { startTestServer } from '../helpers/server.js';
import { ISSUER, NODE_UID, createTestIssuer, kubernetesClaim } from '../attestors/node/support/test-issuer.js';

const UID = process.getuid?.() ?? 0;

test('an agent attests with its projected token; a node alias by cluster serves a workload on it', async (t) => {
  const issuer = await createTestIssuer();
  const dir = mkdtempSync(join(tmpdir(), 'sigil-psat-e2e-'));
  chmodSync(dir, 0o755);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'jwks.json'), JSON.stringify(issuer.jwks));
  const server = await startTestServer({
    config: { nodeAttestors: { joinToken: {}, k8sPsat: { clusters: { prod: { serviceAccountAllowList: ['sigil:sigil-agent'], issuer: ISSUER, jwksFile: join(dir, 'jwks.json') } } } } },
  });
  t.teardown(() => server.destroy());
  writeBootstrapBundle(server, join(dir, 'bootstrap.pem'));
  const aliasId = 'spiffe://example.org/k8s/prod/nodes';
  await server.createEntry({ spiffeId: aliasId, parentId: 'spiffe://example.org/sigil/server', selectors: ['k8s_psat:cluster:prod'] });
  await server.createEntry({ spiffeId: 'spiffe://example.org/ns/payments/sa/api', parentId: aliasId, selectors: [`unix:uid:${UID}`] });

  const tokenFile = join(dir, 'psat-token');
  writeFileSync(tokenFile, await issuer.token({ kubernetes: { ...kubernetesClaim(), serviceaccount: { name: 'default', uid: 'x' } }, over: { sub: 'system:serviceaccount:sigil:default' } }), { mode: 0o600 });
  const config = (): ReturnType<typeof agentConfigFor> => agentConfigFor(server, dir, tokenFile, { nodeAttestor: { k8sPsat: { cluster: 'prod', tokenFile } } });
  // A token of a service account that may not attest agents: the agent does not come up.
  await refusedAttestation(server, config(), 'psat-sa-not-allowed');
  t.true(server.auditLines.some((l) => l.includes('psat-sa-not-allowed')), server.auditLines.join('\n'));

  // The agent's own token: attested as this node.
  const token = await issuer.token();
  writeFileSync(tokenFile, token, { mode: 0o600 });
  const { logger, lines } = memoryLogger('debug');
  const agent = await startAgent(config(), { logger });
  t.teardown(() => agent.stop());
  t.is(agent.agentId(), `spiffe://example.org/sigil/agent/k8s_psat/prod/${NODE_UID}`);

  const source = await X509Source.create({ address: agent.address, timeoutMs: 20_000 });
  t.teardown(() => source.close());
  t.is(source.svid.id.toString(), 'spiffe://example.org/ns/payments/sa/api');
  t.false([...lines, ...server.logLines, ...server.auditLines].some((l) => l.includes(token)), 'the token appears in a log');
});
