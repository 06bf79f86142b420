import test from 'ava';
import { attestationReasonOf as reasonOf } from '../../server/support/rejection.js';
import { X509PopAgentAttestor } from '../../../attestors/node/x509pop/agent.js';
import { X509PopServerAttestor } from '../../../attestors/node/x509pop/server.js';
import { ManualClock } from '../../../src/common/clock.js';
import { TrustDomain } from '../../../src/spiffe/spiffe-id.js';
import { formatSelector } from '../../../src/spiffe/selector.js';
import { createCa, createLeaf, generateKeyPair } from '../../helpers/pki.js';

const td = TrustDomain.parse('example.org');

async function run(server: X509PopServerAttestor, agent: X509PopAgentAttestor) {
  const session = server.begin(td);
  const first = await session.next(await agent.payload());
  if (first.kind !== 'challenge') throw new Error('expected a challenge');
  return session.next(await agent.respond(first.challenge));
}


test('a chain through an intermediate to a trusted CA attests, with certificate selectors', async (t) => {
  const root = await createCa({ name: 'CN=Root', id: null });
  const inter = await createCa({ name: 'CN=Inter', issuer: root, id: null });
  const leaf = await createLeaf({ issuer: inter, subject: 'CN=node-7', uris: [], dns: ['node-7.example'] });
  const server = new X509PopServerAttestor({ trustedCas: [root.der], clock: new ManualClock(Date.now()) });
  const step = await run(server, new X509PopAgentAttestor({ certificates: [leaf.der, inter.der], privateKey: leaf.key.privateKey }));
  if (step.kind !== 'done') return t.fail();
  t.true(step.result.agentId.toString().startsWith('spiffe://example.org/sigil/agent/x509pop/'));
  const sels = step.result.selectors.map(formatSelector);
  t.true(sels.includes('x509pop:subject:cn:node-7'));
  t.true(sels.includes('x509pop:san:dns:node-7.example'));
  t.true(sels.some((s) => s.startsWith('x509pop:ca:fingerprint:')));
});

test('refusals: untrusted CA, wrong key, expired certificate, CA as leaf, malformed payload', async (t) => {
  const root = await createCa({ name: 'CN=Root', id: null });
  const other = await createCa({ name: 'CN=Other', id: null });
  const clock = new ManualClock(Date.now());
  const server = new X509PopServerAttestor({ trustedCas: [root.der], clock });
  const stranger = await createLeaf({ issuer: other, subject: 'CN=x', uris: [] });
  t.is(await reasonOf(run(server, new X509PopAgentAttestor({ certificates: [stranger.der], privateKey: stranger.key.privateKey }))), 'x509pop-untrusted');
  const leaf = await createLeaf({ issuer: root, subject: 'CN=y', uris: [] });
  const wrong = await generateKeyPair();
  t.is(await reasonOf(run(server, new X509PopAgentAttestor({ certificates: [leaf.der], privateKey: wrong.privateKey }))), 'x509pop-bad-proof');
  const old = await createLeaf({ issuer: root, subject: 'CN=z', uris: [], notBefore: new Date(Date.now() - 7200_000), notAfter: new Date(Date.now() - 3600_000) });
  t.is(await reasonOf(run(server, new X509PopAgentAttestor({ certificates: [old.der], privateKey: old.key.privateKey }))), 'x509pop-expired');
  const caLeaf = await createCa({ name: 'CN=Sub', issuer: root, id: null });
  t.is(await reasonOf(run(server, new X509PopAgentAttestor({ certificates: [caLeaf.der], privateKey: caLeaf.key.privateKey }))), 'x509pop-untrusted');
  t.is(await reasonOf(server.begin(td).next(Buffer.from('{"certificates":"x"}'))), 'x509pop-malformed');
  t.is(await reasonOf(server.begin(td).next(Buffer.from('not json'))), 'x509pop-malformed');
});

test('payloads and responses that are valid JSON but not objects are refused as malformed, not thrown as TypeErrors', async (t) => {
  const root = await createCa({ name: 'CN=Root', id: null });
  const server = new X509PopServerAttestor({ trustedCas: [root.der], clock: new ManualClock(Date.now()) });
  for (const body of ['null', '42', '"s"', '[]', '[{"certificates":[]}]']) {
    t.is(await reasonOf(server.begin(td).next(Buffer.from(body))), 'x509pop-malformed', `payload ${body}`);
  }
  const leaf = await createLeaf({ issuer: root, subject: 'CN=n', uris: [] });
  const agent = new X509PopAgentAttestor({ certificates: [leaf.der], privateKey: leaf.key.privateKey });
  for (const body of ['null', '7', '{"signature":5}']) {
    const session = server.begin(td);
    t.is((await session.next(await agent.payload())).kind, 'challenge');
    t.is(await reasonOf(session.next(Buffer.from(body))), 'x509pop-malformed', `response ${body}`);
  }
  t.is(await reasonOf(server.begin(td).next(Buffer.alloc(64 * 1024 + 1, 0x20))), 'x509pop-malformed', 'oversized payload');
});
