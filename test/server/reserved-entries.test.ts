/**
 * Issue 10 at the admin API and in stored data: no entry may claim a reserved ID (the trust
 * domain ID, the server's ID, an agent's ID, anything under /sigil/), whichever way it comes
 * in; entries the CA would never sign are refused at create; and an entry a datastore
 * written by an older version still holds is reported at start, grants nothing to any agent,
 * is marked by `sigil entry list` and can be deleted. The CLI runs as a child process.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { JoinTokenAgentAttestor } from '../../attestors/node/join_token/agent.js';
import { openSqliteDatastore } from '../../src/datastore/sqlite/sqlite-datastore.js';
import { entryRefusalReason } from '../../src/server/reserved-entries.js';
import { generateKeyAndCsr } from '../../src/server/server-svid.js';
import { Bundle } from '../../src/spiffe/bundle.js';
import { TrustDomain } from '../../src/spiffe/spiffe-id.js';
import { makeServerDir, startTestServer, type TestServer } from '../helpers/server.js';
import { agentClient, attest, itemCodes, type SyncMessage } from '../helpers/agent-client.js';
import { createCa } from '../helpers/pki.js';
import { rejectionOf } from './support/rejection.js';
import { SyncWatch } from './support/sync-watch.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const SIGIL = join(ROOT, 'bin/sigil.js');
const AGENT = 'spiffe://example.org/sigil/agent/join_token/some-agent';

async function sigil(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await promisify(execFile)(process.execPath, [SIGIL, ...args], { cwd: ROOT, timeout: 30_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

interface Status {
  code: number;
  message: string;
  sigil_code: string;
}

function entryMsg(spiffeId: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    spiffe_id: spiffeId,
    parent_id: AGENT,
    selectors: [{ type: 'unix', value: 'uid:1000' }],
    x509_svid_ttl_seconds: 0,
    jwt_svid_ttl_seconds: 0,
    dns_names: [],
    federates_with: [],
    hint: '',
    expires_at: 0,
    ...extra,
  };
}

async function create(s: TestServer, entries: Record<string, unknown>[], allowMissing = false): Promise<{ status: Status; entry: { id: string } | null }[]> {
  const r = await s.admin.call<{ results: { status: Status; entry: { id: string } | null }[] }>('Entries', 'BatchCreateEntry', {
    entries,
    allow_missing_federated_bundle: allowMissing,
  });
  return r.results;
}

const RESERVED = [
  'spiffe://example.org',
  'spiffe://example.org/sigil/server',
  AGENT,
  'spiffe://example.org/sigil/anything',
  'spiffe://example.org/sigil/server/x',
];

test('create, batch create, update and mint refuse every reserved ID with the rule; the CLI shows it', async (t) => {
  const s = await startTestServer();
  t.teardown(() => s.destroy());

  // batch create: the ordinary entry goes in, each reserved one is refused on its own
  const results = await create(s, [entryMsg('spiffe://example.org/web'), ...RESERVED.map((id) => entryMsg(id))]);
  t.is(results[0]?.status.code, 0);
  for (const [i, id] of RESERVED.entries()) {
    const st = results[i + 1]?.status;
    t.is(st?.sigil_code, 'ERR_INVALID_ARGUMENT', id);
    t.true(st?.message.includes(id), `the refusal names ${id}`);
    t.true(st?.message.includes(id === 'spiffe://example.org' ? 'trust domain ID' : 'reserved for Sigil'), `the refusal names the rule: ${st?.message}`);
  }
  t.is(Number((await s.admin.call<{ count: string }>('Entries', 'CountEntries', {})).count), 1);

  // update of an existing entry to the server's ID
  const id = results[0]!.entry!.id;
  const upd = await s.admin.call<{ results: { status: Status }[] }>('Entries', 'BatchUpdateEntry', { entries: [entryMsg('spiffe://example.org/sigil/server', { id })] });
  t.is(upd.results[0]?.status.sigil_code, 'ERR_INVALID_ARGUMENT');
  t.regex(upd.results[0]?.status.message ?? '', /server's own ID/);

  // a parent may still be an agent or the server (node alias)
  const alias = await create(s, [entryMsg('spiffe://example.org/node/group', { parent_id: 'spiffe://example.org/sigil/server' })]);
  t.is(alias[0]?.status.code, 0);

  // the admin mint API
  const { csr } = await generateKeyAndCsr();
  const mintX = await rejectionOf(s.admin.call('Mint', 'MintX509Svid', { spiffe_id: 'spiffe://example.org/sigil/server', csr, ttl_seconds: 0, dns_names: [] }));
  t.deepEqual(mintX, { code: 'ERR_INVALID_ARGUMENT', reason: mintX.reason });
  const mintJ = await rejectionOf(s.admin.call('Mint', 'MintJwtSvid', { spiffe_id: AGENT, audience: ['a'], ttl_seconds: 0 }));
  t.is(mintJ.code, 'ERR_INVALID_ARGUMENT');

  // the CLI prints the reason, not a bare "invalid spiffe id"
  const sock = ['--socket', s.server.adminSocketPath];
  const cli = await sigil(['entry', 'create', ...sock, '--spiffe-id', 'spiffe://example.org/sigil/server', '--parent-id', AGENT, '--selector', 'unix:uid:1000']);
  t.is(cli.code, 1);
  t.regex(cli.stderr, /spiffe:\/\/example\.org\/sigil\/server is the server's own ID: IDs under spiffe:\/\/example\.org\/sigil\/ are reserved for Sigil/);
  t.regex(cli.stderr, /ERR_INVALID_ARGUMENT/);
  t.notRegex(cli.stderr, /invalid spiffe id/);
});

test('entries the CA could never sign are refused at create: bad DNS names, negative TTLs, federation without a bundle', async (t) => {
  const s = await startTestServer();
  t.teardown(() => s.destroy());
  const bad = await create(s, [
    entryMsg('spiffe://example.org/a', { dns_names: ['-bad..name-'] }),
    entryMsg('spiffe://example.org/b', { dns_names: ['ok.example.org', 'under_score.example.org'] }),
    entryMsg('spiffe://example.org/c', { dns_names: ['a'.repeat(64) + '.example.org'] }),
    entryMsg('spiffe://example.org/d', { x509_svid_ttl_seconds: -1 }),
    entryMsg('spiffe://example.org/e', { jwt_svid_ttl_seconds: -5 }),
    entryMsg('spiffe://example.org/f', { federates_with: ['spiffe://other.org'] }),
  ]);
  for (const [i, r] of bad.entries()) t.is(r.status.sigil_code, 'ERR_INVALID_ARGUMENT', `item ${i}: ${r.status.message}`);
  t.regex(bad[0]!.status.message, /-bad\.\.name-/);
  t.regex(bad[5]!.status.message, /no bundle for that trust domain/);
  t.is(Number((await s.admin.call<{ count: string }>('Entries', 'CountEntries', {})).count), 0);

  // explicitly allowed, or once the bundle exists, the federated entry goes in
  const allowed = await create(s, [entryMsg('spiffe://example.org/f', { federates_with: ['spiffe://other.org'] })], true);
  t.is(allowed[0]?.status.code, 0, allowed[0]?.status.message);
  const other = await createCa({ name: 'CN=other', id: 'spiffe://other.org' });
  await s.admin.call('Bundles', 'SetFederatedBundle', { trust_domain: 'other.org', document: Buffer.from(Bundle.fromX509Pem(TrustDomain.parse('other.org'), other.pem).toJwks()), format: 'spiffe', append: false });
  const after = await create(s, [entryMsg('spiffe://example.org/g', { federates_with: ['spiffe://other.org'] })]);
  t.is(after[0]?.status.code, 0, after[0]?.status.message);

  // the CLI flag
  const sock = ['--socket', s.server.adminSocketPath];
  const base = [...sock, '--parent-id', AGENT, '--selector', 'unix:uid:7', '--federates-with', 'spiffe://third.org'];
  const refused = await sigil(['entry', 'create', '--spiffe-id', 'spiffe://example.org/h', ...base]);
  t.is(refused.code, 1);
  t.regex(refused.stderr, /no bundle for that trust domain/);
  const ok = await sigil(['entry', 'create', '--spiffe-id', 'spiffe://example.org/h', ...base, '--allow-missing-bundle']);
  t.is(ok.code, 0, ok.stderr);
  const dns = await sigil(['entry', 'create', '--spiffe-id', 'spiffe://example.org/i', ...sock, '--parent-id', AGENT, '--selector', 'unix:uid:7', '--dns', '-bad..name-']);
  t.is(dns.code, 1);
  t.regex(dns.stderr, /invalid DNS name "-bad\.\.name-"/);
});

test('a stored entry with a reserved ID (written as an older version would) is logged at start, grants nothing, is marked and can be deleted', async (t) => {
  const dir = await makeServerDir();
  let s = await startTestServer({ dir });
  t.teardown(() => s.destroy());
  const roots = s.server.x509Authorities();
  const tokA = await s.createJoinToken();
  const tokB = await s.createJoinToken();
  const a = await attest(s.agentTarget, roots, 'example.org', new JoinTokenAgentAttestor(tokA.token));
  const b = await attest(s.agentTarget, roots, 'example.org', new JoinTokenAgentAttestor(tokB.token));
  const own = await s.createEntry({ spiffeId: 'spiffe://example.org/a/own', parentId: a.spiffeId, selectors: ['unix:uid:1'] });
  const bsEntry = await s.createEntry({ spiffeId: 'spiffe://example.org/b/secret', parentId: b.spiffeId, selectors: ['unix:uid:2'] });
  await s.stop();

  // the old version's write: straight into the datastore, past the admin API
  const ds = await openSqliteDatastore({ path: s.config.datastore.sqlitePath });
  const base = { selectors: [{ type: 'unix', value: 'uid:3' }], x509SvidTtlSeconds: 0, jwtSvidTtlSeconds: 0, dnsNames: [], federatesWith: [], admin: false, downstream: false, hint: '', entryExpiresAt: 0 };
  const asServer = await ds.createEntry({ ...base, spiffeId: 'spiffe://example.org/sigil/server', parentId: a.spiffeId });
  // claims agent B's ID under agent A: without the rule, A would reach everything parented to B
  const asAgentB = await ds.createEntry({ ...base, spiffeId: b.spiffeId, parentId: a.spiffeId });
  await ds.close();

  s = await startTestServer({ dir });
  const errors = s.logLines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.level === 50 || l.level === 'error');
  for (const e of [asServer, asAgentB]) {
    t.true(
      errors.some((l) => l.entryId === e.id && l.spiffeId === e.spiffeId && String(l.msg).includes('reserved')),
      `error logged for ${e.id} ${e.spiffeId}`,
    );
  }

  // agent A: its own entry only; neither reserved entry nor B's entry through one
  const client = agentClient(s.agentTarget, s.server.x509Authorities(), 'example.org', a);
  t.teardown(() => client.close());
  const stream = client.syncEntries(0);
  const full = await new Promise<SyncMessage>((res, rej) => {
    stream.on('data', (m: SyncMessage) => m.kind === 'FULL' && m.batch_complete && res(m));
    stream.on('error', rej);
  });
  stream.cancel();
  t.deepEqual(full.entries.map((e) => e.id), [own]);
  const { csr } = await generateKeyAndCsr();
  const res = await client.batchNewX509Svid([own, asServer.id, asAgentB.id, bsEntry].map((entryId) => ({ entryId, csrDer: csr })));
  t.deepEqual(itemCodes(res), ['', 'ERR_PERMISSION_DENIED', 'ERR_PERMISSION_DENIED', 'ERR_PERMISSION_DENIED']);
  t.is((await rejectionOf(client.newJwtSvid(asServer.id, ['x']))).code, 'ERR_PERMISSION_DENIED');

  // marked by the CLI, in both forms
  const sock = ['--socket', s.server.adminSocketPath];
  const json = await sigil(['entry', 'list', ...sock, '--output', 'json']);
  t.is(json.code, 0, json.stderr);
  const listed = (JSON.parse(json.stdout) as { entries: { id: string; refused?: string }[] }).entries;
  t.regex(listed.find((e) => e.id === asServer.id)?.refused ?? '', /server's own ID/);
  t.regex(listed.find((e) => e.id === asAgentB.id)?.refused ?? '', /agent ID/);
  t.is(listed.find((e) => e.id === own)?.refused, undefined);
  const table = await sigil(['entry', 'list', ...sock]);
  t.is(table.code, 0);
  const line = table.stdout.split('\n').find((l) => l.startsWith(asServer.id)) ?? '';
  t.regex(line, /REFUSED/);
  t.notRegex(table.stdout.split('\n').find((l) => l.startsWith(own)) ?? '', /REFUSED/);
  t.regex(table.stderr, new RegExp(`entry ${asServer.id} is never served`));

  // deleting works as usual
  const del = await sigil(['entry', 'delete', ...sock, '--entry-id', asServer.id, '--entry-id', asAgentB.id]);
  t.is(del.code, 0, del.stderr);
  const after = await sigil(['entry', 'list', ...sock, '--output', 'json']);
  t.deepEqual(
    (JSON.parse(after.stdout) as { entries: { id: string }[] }).entries.map((e) => e.id).sort(),
    [own, bsEntry].sort(),
  );
});

test('a reserved entry written past the admin API while an agent syncs is never pushed, nor what hangs below it', async (t) => {
  const s = await startTestServer();
  t.teardown(() => s.destroy());
  const roots = s.server.x509Authorities();
  const tokA = await s.createJoinToken();
  const tokB = await s.createJoinToken();
  const a = await attest(s.agentTarget, roots, 'example.org', new JoinTokenAgentAttestor(tokA.token));
  const b = await attest(s.agentTarget, roots, 'example.org', new JoinTokenAgentAttestor(tokB.token));
  const client = agentClient(s.agentTarget, roots, 'example.org', a);
  const watch = new SyncWatch(client.syncEntries(0));
  t.teardown(() => {
    watch.cancel();
    client.close();
  });
  await watch.until(() => watch.messages.some((m) => m.kind === 'FULL' && m.batch_complete), 5000, 'first FULL');
  const bsEntry = await s.createEntry({ spiffeId: 'spiffe://example.org/b/secret', parentId: b.spiffeId, selectors: ['unix:uid:2'] });
  // another writer (an older server on the same database) adds an entry for agent B's ID under A
  const base = { selectors: [{ type: 'unix', value: 'uid:3' }], x509SvidTtlSeconds: 0, jwtSvidTtlSeconds: 0, dnsNames: [], federatesWith: [], admin: false, downstream: false, hint: '', entryExpiresAt: 0 };
  const asAgentB = await s.server.datastore.createEntry({ ...base, spiffeId: b.spiffeId, parentId: a.spiffeId });
  // written after it, so once A holds this one the reserved entry's event was handled too
  const after = await s.createEntry({ spiffeId: 'spiffe://example.org/a/after', parentId: a.spiffeId, selectors: ['unix:uid:4'] });
  await watch.holds([after], [asAgentB.id, bsEntry], 10_000);
  t.false(watch.everSent().has(asAgentB.id));
  t.false(watch.everSent().has(bsEntry));
});

test('the start-up scan reports exactly the reserved entries, in entry ID order; IDs that merely contain the reserved words are not reported', async (t) => {
  const dir = await makeServerDir();
  let s = await startTestServer({ dir });
  t.teardown(() => s.destroy());
  await s.stop();

  const ds = await openSqliteDatastore({ path: s.config.datastore.sqlitePath });
  const base = { parentId: 'spiffe://example.org/some/parent', x509SvidTtlSeconds: 0, jwtSvidTtlSeconds: 0, dnsNames: [], federatesWith: [], admin: false, downstream: false, hint: '', entryExpiresAt: 0 };
  const write = (spiffeId: string, i: number): Promise<{ id: string; spiffeId: string }> => ds.createEntry({ ...base, spiffeId, selectors: [{ type: 'unix', value: `uid:${i}` }] });
  const reserved = [
    'spiffe://example.org',
    'spiffe://example.org/sigil',
    'spiffe://example.org/sigil/server',
    'spiffe://example.org/sigil/agent/join_token/x',
    'spiffe://example.org/sigil/later/deeper',
  ];
  const ordinary = [
    'spiffe://example.org/app/sigil/server',
    'spiffe://example.org/team/sigil',
    'spiffe://example.org/sigilx/agent',
    'spiffe://example.org/sigil-agent',
    'spiffe://example.org/sigil.d/server',
    'spiffe://example.org/Sigil/server',
    'spiffe://example.org/web',
    'spiffe://example.orgx/sigil/server',
    'spiffe://other.org/sigil/server',
    'spiffe://other.org',
  ];
  const made = new Map<string, string>();
  for (const [i, id] of [...reserved, ...ordinary].entries()) made.set(id, (await write(id, i)).id);
  await ds.close();

  s = await startTestServer({ dir });
  const lines = s.logLines
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => typeof l.msg === 'string' && l.msg.startsWith('registration entry claims a reserved SPIFFE ID'));
  const td = TrustDomain.parse('example.org');
  const expected = reserved
    .map((spiffeId) => ({ entryId: made.get(spiffeId)!, spiffeId }))
    .sort((a, b) => (a.entryId < b.entryId ? -1 : 1))
    .map((e) => ({ ...e, reason: entryRefusalReason(e, td) }));
  t.deepEqual(
    lines.map((l) => ({ entryId: l.entryId, spiffeId: l.spiffeId, reason: l.reason })),
    expected,
    'one error line per reserved entry, with the rule, in entry ID order, and none for the others',
  );
  t.true(lines.every((l) => l.level === 50 || l.level === 'error'));
});
