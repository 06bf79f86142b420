/**
 * The command line as a contract, with real `bin/sigil.js` children: unknown commands and
 * flags exit 2 with one line and a hint, durations are durations (with SPIRE's seconds kept
 * as seconds), `--version`, SPIRE's spellings, the admin socket found where the server puts
 * it (flag, --config, SIGIL_ADMIN_SOCKET, deploy default) and a one-sentence failure naming
 * the path tried, config errors naming the key to set, invalid SPIFFE IDs with their reason.
 */
import test, { type ExecutionContext } from 'ava';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_AGENT_SOCKET } from '../../src/agent/config.js';
import { DEFAULT_ADMIN_SOCKET } from '../../src/cli/commands/admin-client.js';
import { parsedArgs } from '../../src/cli/commands/args.js';
import { adminSocket } from '../../src/cli/commands/output.js';
import { walkCommands } from '../../src/cli/definitions.js';
import { spireSpellings } from '../../src/cli/parser.js';
import { described, ROOT, sigil } from '../helpers/cli.js';
import { startTestServer } from '../helpers/server.js';

const PATH_ONLY = { PATH: process.env.PATH ?? '/usr/bin:/bin' };

/** One line on stderr, nothing on stdout, exit 2, the hint to the help of `command`. */
function usageLine(t: ExecutionContext, args: string[], r: { code: number; stdout: string; stderr: string }, command: string, says: RegExp): void {
  const what = described(args, r);
  t.is(r.code, 2, what);
  t.is(r.stdout, '', what);
  t.is(r.stderr.split('\n').filter((l) => l !== '').length, 1, `one line: ${what}`);
  t.true(r.stderr.endsWith(`; see "sigil${command === '' ? '' : ` ${command}`} --help"\n`), what);
  t.regex(r.stderr, says, what);
}

test('unknown commands, subcommands and flags, bad and missing values: exit 2, one line with the hint', async (t) => {
  const cases: [string[], string, RegExp][] = [
    [['nosuch'], '', /unknown command 'nosuch'/],
    [['entry', 'nosuch'], 'entry', /unknown command 'nosuch'/],
    [['entry', 'create', '--hnt', 'x'], 'entry create', /unknown option '--hnt' \(did you mean --hint\?\)/],
    [['entry', 'count', '-selectr', 'unix:uid:1'], 'entry count', /unknown option '--selectr'/],
    [['agent', 'list', '--banned=yes'], 'agent list', /--banned/],
    [['entry', 'create', '--parent-id'], 'entry create', /--parent-id needs a value \(ID\)/],
    [['entry', 'show', 'a', 'b'], 'entry show', /too many arguments/],
    [['entry', 'list', '--output', 'yaml'], 'entry list', /--output "yaml": must be one of table, json/],
    [['entry', 'create', '--spiffe-id', 'spiffe://example.org/a', '--spiffe-id', 'spiffe://example.org/b'], 'entry create', /given more than once/],
    [['entry', 'create', '--selector', 'uid1000'], 'entry create', /a selector is type:value/],
    [['entry', 'create', '--spiffe-id', 'spiffe://Example.org/x'], 'entry create', /not a SPIFFE ID: trust-domain-uppercase: trust domain must be lowercase/],
    [['bundle', 'set', '--trust-domain', 'Other.org'], 'bundle set', /not a trust domain: trust-domain-uppercase/],
    [['token', 'generate', '--ttl', '0s'], 'token generate', /--ttl "0s": must be longer than 0/],
    [['token', 'generate', '--ttl', '3600'], 'token generate', /a duration needs a unit, such as 3600s or 1h/],
    [['token', 'generate', '--ttl', 'soon'], 'token generate', /not a duration/],
    [['api', 'fetch', 'x509', '--timeout', '5'], 'api fetch x509', /--timeout "5": a duration needs a unit/],
    [['entry', 'create', '-x509SVIDTTL', '1h', '--x509-svid-ttl', '2h'], 'entry create', /given more than once/],
    [['agent', 'run', '--join-token', 'not-a-real-token'], 'agent run', /join-token-file/],
    [['api', 'validate', 'jwt', '--audience', 'a', '-svid', 'eyJhbGciOi.not.real'], 'api validate jwt', /--token-file/],
    [['api', 'fetch', 'jwt', '--socket', '/nonexistent.sock'], 'api fetch jwt', /--audience is required/],
  ];
  await Promise.all(
    cases.map(async ([args, command, says]) => {
      const r = await sigil(args, { env: PATH_ONLY });
      usageLine(t, args, r, command, says);
      for (const secret of ['not-a-real-token', 'eyJhbGciOi']) t.false(r.stderr.includes(secret), `a secret in the error: ${described(args, r)}`);
    }),
  );
  const bare = await sigil([]);
  t.is(bare.code, 2, described([], bare));
  t.regex(bare.stderr, /^Usage: sigil /);
});

test('sigil --version prints the version of package.json', async (t) => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  for (const flag of ['--version', '-V']) {
    const r = await sigil([flag]);
    t.is(r.code, 0, described([flag], r));
    t.is(r.stdout, `${pkg.version}\n`);
    t.is(r.stderr, '');
  }
});

test("SPIRE's spellings become ours: one dash, SPIRE's names, seconds given their unit, Go booleans", (t) => {
  const leaf = (path: string): NonNullable<ReturnType<typeof walkCommands>[number]['def']> => {
    const found = walkCommands().find((c) => c.path.join(' ') === path);
    if (found === undefined) throw new Error(`no ${path}`);
    return found.def;
  };
  const create = leaf('entry create');
  t.deepEqual(
    spireSpellings(['-parentID', 'spiffe://example.org/a', '-spiffeID=spiffe://example.org/b', '-selector', 'unix:uid:1', '-x509SVIDTTL', '3600', '-jwtSVIDTTL=300', '-dns', 'a.example', '-admin', '-downstream=false', '-hint', '-admin'], create),
    ['--parent-id', 'spiffe://example.org/a', '--spiffe-id=spiffe://example.org/b', '--selector', 'unix:uid:1', '--x509-svid-ttl', '3600s', '--jwt-svid-ttl=300s', '--dns', 'a.example', '--admin', '--hint', '-admin'],
    'the value of a flag is never read as a flag',
  );
  // our own duration flags are not in seconds: a bare number stays bare (and is refused)
  t.deepEqual(spireSpellings(['--x509-svid-ttl', '3600', '-entryID', 'e1', '--', '-parentID'], create), ['--x509-svid-ttl', '3600', '--entry-id', 'e1', '--', '-parentID']);
  t.deepEqual(spireSpellings(['-ttl', '3600', '-spiffeID', 'spiffe://example.org/n', '-socketPath', '/s', '-output', 'json'], leaf('token generate')), ['--ttl', '3600s', '--spiffe-id', 'spiffe://example.org/n', '--socket', '/s', '--output', 'json']);
  t.deepEqual(spireSpellings(['-ttl', '1h'], leaf('token generate')), ['--ttl', '1h']);
  t.deepEqual(spireSpellings(['-banned', '-attestationType', 'join_token'], leaf('agent list')), ['--banned', '--attestation-type', 'join_token']);
  t.deepEqual(spireSpellings(['-banned=false'], leaf('agent list')), []);
  t.deepEqual(spireSpellings(['-id', 'spiffe://other.org', '-path', 'b.pem', '-format', 'pem'], leaf('bundle set')), ['--trust-domain', 'spiffe://other.org', '--path', 'b.pem', '--format', 'pem']);
  t.deepEqual(spireSpellings(['-authorityID', 'abc'], leaf('localauthority x509 taint')), ['--id', 'abc']);
  t.deepEqual(spireSpellings(['-write', '/tmp/y', '-bogus', '-h'], leaf('api fetch x509')), ['--write', '/tmp/y', '--bogus', '-h']);
});

test('the admin socket: --socket, else --config, else SIGIL_ADMIN_SOCKET, else the deploy default', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-sock-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const config = join(dir, 'server.yaml');
  writeFileSync(config, `trustDomain: example.org\ndataDir: data\nkeyManager:\n  type: memory\n`);
  const a = (values: Record<string, string>): ReturnType<typeof parsedArgs> => parsedArgs(values, []);
  const env = { SIGIL_ADMIN_SOCKET: '/from/env.sock' };
  t.is(adminSocket(a({ socket: '/flag.sock', config }), env), '/flag.sock');
  t.is(adminSocket(a({ config }), env), join(dir, 'data', 'admin.sock'), "the server's own default: <dataDir>/admin.sock");
  t.is(adminSocket(a({}), env), '/from/env.sock');
  t.is(adminSocket(a({}), {}), DEFAULT_ADMIN_SOCKET);
  t.is(DEFAULT_ADMIN_SOCKET, '/run/sigil-server/admin.sock');
  // where the shipped deployments put the sockets, so the defaults meet
  t.regex(readFileSync(join(ROOT, 'deploy/systemd/server.yaml'), 'utf8'), new RegExp(`socketPath: ${DEFAULT_ADMIN_SOCKET}\\b`));
  t.regex(readFileSync(join(ROOT, 'deploy/kubernetes/server-config.yaml'), 'utf8'), new RegExp(`socketPath: ${DEFAULT_ADMIN_SOCKET}\\b`));
  t.regex(readFileSync(join(ROOT, 'deploy/systemd/agent.yaml'), 'utf8'), new RegExp(`socketPath: ${DEFAULT_AGENT_SOCKET}\\b`));
  t.regex(readFileSync(join(ROOT, 'deploy/kubernetes/agent-config.yaml'), 'utf8'), new RegExp(`socketPath: ${DEFAULT_AGENT_SOCKET}\\b`));
});

test.serial('admin commands reach the server through SIGIL_ADMIN_SOCKET or --config; with none there, one sentence naming the path', async (t) => {
  const s = await startTestServer();
  t.teardown(() => s.destroy());
  const viaEnv = await sigil(['entry', 'count'], { env: { ...PATH_ONLY, SIGIL_ADMIN_SOCKET: s.server.adminSocketPath } });
  t.is(viaEnv.code, 0, described(['entry', 'count'], viaEnv));
  t.is(viaEnv.stdout, '0 registration entries\n');

  const dir = mkdtempSync(join(tmpdir(), 'sigil-sock-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const config = join(dir, 'server.yaml');
  writeFileSync(config, `trustDomain: example.org\ndataDir: data\nkeyManager:\n  type: memory\nadminApi:\n  socketPath: ${s.server.adminSocketPath}\n`);
  const viaConfig = await sigil(['server', 'healthcheck', '--config', config]);
  t.is(viaConfig.code, 0, described(['server', 'healthcheck'], viaConfig));
  // the flag wins over the environment
  const absent = join(dir, 'absent.sock');
  const flagWins = await sigil(['entry', 'count', '--socket', absent], { env: { ...PATH_ONLY, SIGIL_ADMIN_SOCKET: s.server.adminSocketPath } });
  t.is(flagWins.code, 1);
  t.is(flagWins.stderr, `sigil: no server at ${absent} (is it running? set --socket)\n`);

  const noServer = await sigil(['server', 'healthcheck'], { env: PATH_ONLY });
  t.is(noServer.code, 1, described(['server', 'healthcheck'], noServer));
  t.is(noServer.stderr, `sigil: no server at ${DEFAULT_ADMIN_SOCKET} (is it running? set --socket)\n`);
  t.false(noServer.stderr.includes('No connection established'));

  const noAgent = await sigil(['api', 'fetch', 'x509', '-socketPath', absent, '-timeout', '3s']);
  t.is(noAgent.code, 1, described(['api', 'fetch', 'x509'], noAgent));
  t.is(noAgent.stderr, `sigil: no agent at ${absent} (is it running? set --socket or SPIFFE_ENDPOINT_SOCKET)\n`);
  const noAgentHealth = await sigil(['agent', 'healthcheck', '--socket', absent]);
  t.is(noAgentHealth.code, 1);
  t.is(noAgentHealth.stderr, `sigil: no agent at ${absent} (is it running? set --socket or SPIFFE_ENDPOINT_SOCKET)\n`);

  // the server's own refusal of a bad ID carries the value types' reason too (for other clients)
  const r = await s.admin.call<{ results: { status: { message: string; sigil_code: string } }[] }>('Entries', 'BatchCreateEntry', {
    entries: [{ spiffe_id: 'spiffe://example.org/a//b', parent_id: 'spiffe://example.org/p', selectors: [{ type: 'unix', value: 'uid:1' }] }],
  });
  t.is(r.results[0]?.status.sigil_code, 'ERR_INVALID_SPIFFE_ID');
  t.regex(r.results[0]?.status.message ?? '', /empty-segment: path must not contain empty segments/);
});

test('validate checks a config without starting; a missing key names what to set, and its flag', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-validate-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'agent.yaml'), 'trustDomain: example.org\nserverAddress: 127.0.0.1:8081\ntrustBundleFile: b.pem\ndataDir: data\n');
  const agent = await sigil(['agent', 'validate', '-config', join(dir, 'agent.yaml')]);
  t.is(agent.code, 1, described(['agent', 'validate'], agent));
  t.true(agent.stderr.includes('nodeAttestor: required: set nodeAttestor.joinToken.tokenFile or pass --join-token-file'), agent.stderr);
  t.false(agent.stderr.includes('expected object, received undefined'));

  writeFileSync(join(dir, 'agent.yaml'), 'trustDomain: example.org\nserverAddress: 127.0.0.1:8081\ntrustBundleFile: b.pem\ndataDir: data\nnodeAttestor:\n  joinToken:\n    tokenFile: t\n');
  const good = await sigil(['agent', 'validate', '--config', join(dir, 'agent.yaml')]);
  t.is(good.code, 0, described(['agent', 'validate'], good));
  t.regex(good.stdout, /is valid \(trust domain example\.org\)/);
  t.false(existsSync(join(dir, 'data')), 'validate starts nothing: no data dir');

  writeFileSync(join(dir, 'server.yaml'), 'dataDir: data\nkeyManager:\n  type: memory\n');
  const server = await sigil(['server', 'validate', '--config', join(dir, 'server.yaml')]);
  t.is(server.code, 1, described(['server', 'validate'], server));
  t.true(server.stderr.includes('trustDomain: required: set trustDomain (e.g. example.org) or pass --trust-domain'), server.stderr);
  writeFileSync(join(dir, 'server.yaml'), 'trustDomain: example.org\ndataDir: data\nkeyManager:\n  type: memory\n');
  const serverGood = await sigil(['server', 'validate', '--config', join(dir, 'server.yaml')]);
  t.is(serverGood.code, 0, described(['server', 'validate'], serverGood));
  const missing = await sigil(['server', 'validate']);
  t.is(missing.code, 2, described(['server', 'validate'], missing));
  t.is(missing.stderr, 'sigil: --config is required; see "sigil server validate --help"\n');
});
