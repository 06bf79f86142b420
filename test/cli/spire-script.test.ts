/**
 * A SPIRE user's script, spelled as for spire-server and spire-agent (one dash, SPIRE's flag
 * names, SPIRE's seconds), run against a real server and a real agent, all child processes
 * (`sigil server run`, `sigil agent run`, and every command): healthcheck, bundle show,
 * token generate -spiffeID, entry create/show/count/update/delete, api fetch x509 -write,
 * api fetch jwt, api validate jwt, agent list/ban/evict, bundle set/list/show, localauthority.
 * Every `-output json` on the way is checked against the output contract: times RFC 3339 (or
 * null), serials lowercase hex.
 */
import test, { type ExecutionContext } from 'ava';
import { X509Certificate } from 'node:crypto';
import { chmodSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { eventually } from '../agent/support/agent-harness.js';
import { Daemon } from '../agent/support/processes.js';
import { described, SIGIL, sigil, type SigilRun } from '../helpers/cli.js';
import { createCa } from '../helpers/pki.js';
import { makeServerDir, writeServerConfig } from '../helpers/server.js';

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

/** Every time and serial in a JSON output keeps the contract; returns the problems found. */
function contractProblems(value: unknown, where = '$'): string[] {
  if (Array.isArray(value)) return value.flatMap((v, i) => contractProblems(v, `${where}[${i}]`));
  if (value === null || typeof value !== 'object') return [];
  const out: string[] = [];
  for (const [k, v] of Object.entries(value)) {
    const at = `${where}.${k}`;
    if (/(At|^notAfter)$/.test(k) && !(v === null || (typeof v === 'string' && RFC3339.test(v)))) out.push(`${at} = ${JSON.stringify(v)} is no RFC 3339 time`);
    if (k === 'serial' && !(typeof v === 'string' && /^(0|[1-9a-f][0-9a-f]*)$/.test(v))) out.push(`${at} = ${JSON.stringify(v)} is not lowercase hex`);
    out.push(...contractProblems(v, at));
  }
  return out;
}

test.serial('a SPIRE-style script against a real server and agent (child processes)', async (t) => {
  const uid = process.getuid?.() ?? 0;
  const dir = await makeServerDir();
  chmodSync(dir, 0o755);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const config = await writeServerConfig(dir);
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
  const server = new Daemon(process.execPath, [SIGIL, 'server', 'run', '-config', config], env);
  t.teardown(() => server.stop());
  const started = await eventually(() => /agent API on ([\d.]+:\d+), admin socket (\S+)/.exec(server.stderr) ?? undefined, 20_000, 'the server to start').catch((err: unknown) => {
    throw new Error(`${String(err)}: ${server.stderr}`);
  });
  const [, agentApi, adminSocket] = started as unknown as [string, string, string];
  const S = ['-socketPath', adminSocket];

  const jsons: { args: string[]; value: unknown }[] = [];
  /** Runs a step; it must exit with `code`; its JSON (with -output json) is kept for the contract check. */
  const step = async (tt: ExecutionContext, args: string[], code = 0): Promise<SigilRun> => {
    const r = await sigil(args, { env });
    tt.is(r.code, code, described(args, r));
    if (code === 0 && args.includes('json')) jsons.push({ args, value: JSON.parse(r.stdout) as unknown });
    return r;
  };

  await step(t, ['server', 'healthcheck', ...S]);
  const bundle = await step(t, ['bundle', 'show', ...S]);
  t.true(bundle.stdout.startsWith('-----BEGIN CERTIFICATE-----'));
  writeFileSync(join(dir, 'bootstrap.pem'), bundle.stdout);

  // -ttl in seconds, -spiffeID: a node alias for the agent that uses the token
  const before = Date.now();
  const tok = await step(t, ['token', 'generate', ...S, '-ttl', '600', '-spiffeID', 'spiffe://example.org/node1', '-output', 'json']);
  const { joinToken, alias } = JSON.parse(tok.stdout) as { joinToken: { token: string; agentId: string; expiresAt: string }; alias: { spiffeId: string; parentId: string; selectors: string[] } };
  const ttl = Date.parse(joinToken.expiresAt) - before;
  t.true(ttl > 590_000 && ttl < 620_000, `the token lives 600 s, not ${ttl} ms`);
  t.is(alias.spiffeId, 'spiffe://example.org/node1');
  t.is(alias.parentId, 'spiffe://example.org/sigil/server');

  writeFileSync(join(dir, 'token'), joinToken.token, { mode: 0o600 });
  const agentSocket = join(dir, 'agent.sock');
  writeFileSync(
    join(dir, 'agent.yaml'),
    `trustDomain: example.org\nserverAddress: ${agentApi}\ntrustBundleFile: bootstrap.pem\ndataDir: agent-data\nsocketPath: ${agentSocket}\nnodeAttestor:\n  joinToken:\n    tokenFile: token\n`,
  );
  await step(t, ['agent', 'validate', '-config', join(dir, 'agent.yaml')]);
  const agent = new Daemon(process.execPath, [SIGIL, 'agent', 'run', '-config', join(dir, 'agent.yaml')], env);
  t.teardown(() => agent.stop());
  await eventually(() => (agent.stderr.includes('serving the Workload API') ? true : undefined), 20_000, 'the agent to start').catch((err: unknown) => {
    throw new Error(`${String(err)}: ${agent.stderr}`);
  });
  const A = ['-socketPath', agentSocket];
  await step(t, ['agent', 'healthcheck', ...A]);

  // entries under the node alias, with SPIRE's TTLs in seconds
  const created = await step(t, [
    'entry', 'create', ...S, '-parentID', 'spiffe://example.org/node1', '-spiffeID', 'spiffe://example.org/web', '-selector', `unix:uid:${uid}`,
    '-x509SVIDTTL', '3600', '-jwtSVIDTTL', '300', '-dns', 'web.example.org', '-hint', 'web', '-output', 'json',
  ]);
  const entry = (JSON.parse(created.stdout) as { entry: { id: string; x509SvidTtlSeconds: number; jwtSvidTtlSeconds: number; dnsNames: string[] } }).entry;
  t.is(entry.x509SvidTtlSeconds, 3600);
  t.is(entry.jwtSvidTtlSeconds, 300);
  t.deepEqual(entry.dnsNames, ['web.example.org']);
  const shown = await step(t, ['entry', 'show', ...S, '-entryID', entry.id, '-output', 'json']);
  t.deepEqual((JSON.parse(shown.stdout) as { entries: { id: string }[] }).entries.map((e) => e.id), [entry.id]);
  const full = await step(t, ['entry', 'show', ...S, '-spiffeID', 'spiffe://example.org/web']);
  t.regex(full.stdout, /^Entry ID: +\S+\n/);
  t.regex(full.stdout, /DNS names: +web\.example\.org\n/);
  t.regex(full.stdout, /Hint: +web\n/);
  // -selector filters (it was once ignored)
  t.deepEqual(JSON.parse((await step(t, ['entry', 'count', ...S, '-selector', `unix:uid:${uid}`, '-output', 'json'])).stdout), { count: 1 });
  t.deepEqual(JSON.parse((await step(t, ['entry', 'count', ...S, '-selector', 'unix:uid:4000000', '-output', 'json'])).stdout), { count: 0 });

  // the workload's view: api fetch x509 -write, api fetch jwt, api validate jwt
  const out = join(dir, 'out');
  await eventually(async () => ((await sigil(['api', 'fetch', 'x509', ...A, '-write', out], { env })).code === 0 ? true : undefined), 20_000, 'an SVID for the workload');
  await step(t, ['api', 'fetch', ...A, '-write', out, '-output', 'json']);
  t.is(new X509Certificate(readFileSync(join(out, 'svid.0.pem'))).subjectAltName, 'URI:spiffe://example.org/web, DNS:web.example.org');
  t.is(statSync(join(out, 'svid.0.key')).mode & 0o777, 0o600);
  const jwt = await step(t, ['api', 'fetch', 'jwt', ...A, '-audience', 'spire-script', '-output', 'json']);
  const [svid] = (JSON.parse(jwt.stdout) as { svids: { spiffeId: string; token: string; hint: string }[] }).svids;
  t.is(svid?.spiffeId, 'spiffe://example.org/web');
  t.is(svid?.hint, 'web');
  writeFileSync(join(dir, 'jwt'), svid?.token ?? '', { mode: 0o600 });
  await step(t, ['api', 'validate', 'jwt', ...A, '-audience', 'spire-script', '-token-file', join(dir, 'jwt'), '-output', 'json']);
  await step(t, ['api', 'validate', 'jwt', ...A, '-audience', 'another', '-token-file', join(dir, 'jwt')], 1);
  const refused = await step(t, ['api', 'validate', 'jwt', ...A, '-audience', 'spire-script', '-svid', svid?.token ?? 'x'], 2);
  t.false(refused.stderr.includes(svid?.token ?? 'x'), 'the token is not echoed');

  const updated = await step(t, [
    'entry', 'update', ...S, '-entryID', entry.id, '-parentID', 'spiffe://example.org/node1', '-spiffeID', 'spiffe://example.org/web', '-selector', `unix:uid:${uid}`,
    '-x509SVIDTTL', '7200', '-output', 'json',
  ]);
  t.is((JSON.parse(updated.stdout) as { entry: { x509SvidTtlSeconds: number } }).entry.x509SvidTtlSeconds, 7200);

  // agents: list, -banned (once ignored), ban, evict
  const agents = JSON.parse((await step(t, ['agent', 'list', ...S, '-output', 'json'])).stdout) as { agents: { spiffeId: string; banned: boolean }[] };
  t.deepEqual(agents.agents.map((a) => a.spiffeId), [joinToken.agentId]);
  t.deepEqual(JSON.parse((await step(t, ['agent', 'list', ...S, '-banned', '-output', 'json'])).stdout), { agents: [] });
  await step(t, ['agent', 'show', ...S, '-spiffeID', joinToken.agentId, '-output', 'json']);
  await step(t, ['agent', 'ban', ...S, '-spiffeID', joinToken.agentId]);
  const banned = JSON.parse((await step(t, ['agent', 'list', ...S, '-banned', '-output', 'json'])).stdout) as { agents: { spiffeId: string }[] };
  t.deepEqual(banned.agents.map((a) => a.spiffeId), [joinToken.agentId]);
  await step(t, ['agent', 'evict', ...S, '-spiffeID', joinToken.agentId]);
  t.regex((await step(t, ['agent', 'show', ...S, '-spiffeID', joinToken.agentId], 1)).stderr, /ERR_NOT_FOUND/);

  // federated bundles: PEM is the default format, as in SPIRE
  const ca = await createCa({ id: 'spiffe://other.org' });
  writeFileSync(join(dir, 'other.pem'), ca.pem);
  await step(t, ['bundle', 'set', ...S, '-id', 'spiffe://other.org', '-path', join(dir, 'other.pem')]);
  const listed = JSON.parse((await step(t, ['bundle', 'list', ...S, '-output', 'json'])).stdout) as { bundles: { trustDomain: string; x509Pem: string }[] };
  t.deepEqual(listed.bundles.map((b) => b.trustDomain), ['other.org']);
  t.true(listed.bundles[0]?.x509Pem.includes('BEGIN CERTIFICATE'));
  const doc = await step(t, ['bundle', 'show', ...S, '-id', 'spiffe://other.org', '-format', 'spiffe']);
  t.true(Array.isArray((JSON.parse(doc.stdout) as { keys: unknown[] }).keys));
  await step(t, ['bundle', 'show', ...S, '-output', 'json']);

  // the local authority, in SPIRE's shape
  await step(t, ['localauthority', 'jwt', 'prepare', ...S, '-output', 'json']);
  const jwtAuthorities = JSON.parse((await step(t, ['localauthority', 'jwt', 'show', ...S, '-output', 'json'])).stdout) as { authorities: { kind: string; phase: string }[] };
  t.true(jwtAuthorities.authorities.every((a) => a.kind === 'jwt'));
  t.true(jwtAuthorities.authorities.some((a) => a.phase === 'prepared'));
  await step(t, ['localauthority', 'x509', 'show', ...S, '-output', 'json']);

  await step(t, ['entry', 'delete', ...S, '-entryID', entry.id]);
  t.deepEqual(JSON.parse((await step(t, ['entry', 'count', ...S, '-selector', `unix:uid:${uid}`, '-output', 'json'])).stdout), { count: 0 });
  await step(t, ['server', 'healthcheck', ...S, '-output', 'json']);

  for (const { args, value } of jsons) t.deepEqual(contractProblems(value), [], `sigil ${args.join(' ')}`);
  t.true(jsons.length >= 15, `${jsons.length} JSON outputs checked`);
  t.is(await agent.stop('SIGTERM'), 0);
  t.is(await server.stop('SIGTERM'), 0);
});
