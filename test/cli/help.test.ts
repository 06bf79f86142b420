/**
 * `--help` never acts, for every command and subcommand, run as real `bin/sigil.js` children
 * with a value for every one of the command's flags (the ones that would act: `--kind jwt`,
 * `--write DIR`, `--socket` of a real server…) and `--help` among them:
 *
 * - exit 0, the command's usage on stdout, nothing on stderr;
 * - nothing changed on the real server: the same authorities, entries, bundles, agents, and
 *   no audit line (every admin change writes one);
 * - no connection: a socket that counts its connections, given as `--socket` to every command,
 *   was never dialled;
 * - no file read or written: every path flag names a file or folder in a sandbox, the ones a
 *   command would read do not exist (a read would fail the run), and the sandbox is the same after.
 */
import test from 'ava';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { walkCommands, type CommandDef, type OptionDef } from '../../src/cli/definitions.js';
import { described, sigil } from '../helpers/cli.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

/** Everything the admin API can tell about the server's state. */
async function serverState(s: TestServer): Promise<string> {
  const call = (service: string, method: string, req: object = {}): Promise<unknown> => s.admin.call(service, method, req);
  return JSON.stringify([
    await call('LocalAuthority', 'GetStatus'),
    await s.admin.listAll('Entries', 'ListEntries', 'entries', { filter: {}, page_size: 500 }),
    await s.admin.listAll('Bundles', 'ListFederatedBundles', 'bundles', { page_size: 100 }),
    await call('Bundles', 'GetBundle'),
    await s.admin.listAll('Agents', 'ListAgents', 'agents', { page_size: 500 }),
    s.auditLines.length,
  ]);
}

/** A plausible value for a flag, one that would make the command act were it run. */
function valueFor(o: OptionDef, sandbox: string, socket: string): string[] {
  if (o.value === undefined) return [`--${o.name}`];
  const v = ((): string => {
    if (o.name === 'socket' || o.name === 'admin-socket') return socket;
    if (o.choices !== undefined) return o.choices.includes('jwt') ? 'jwt' : o.choices.includes('json') ? 'json' : (o.choices[0] as string);
    switch (o.kind) {
      case 'duration':
        return '1h';
      case 'spiffe-id':
        return 'spiffe://example.org/help-must-not-act';
      case 'trust-domain':
        return 'other.example';
      case 'selector':
        return 'unix:uid:1';
      default:
        break;
    }
    // files and folders: inside the sandbox, absent (a read would fail, a write would show)
    if (['FILE', 'DIR', 'PATH', 'PATH|URI'].includes(o.value ?? '')) return join(sandbox, o.name);
    return 'x';
  })();
  return [`--${o.name}`, v];
}

function argsFor(path: string[], def: CommandDef, sandbox: string, socket: string): string[] {
  const flags = (def.options ?? []).flatMap((o) => valueFor(o, sandbox, socket));
  const positionals = (def.args ?? []).map((a) => (a.includes('spiffe') ? 'spiffe://example.org/help-must-not-act' : join(sandbox, 'positional')));
  // --help in the middle of the flags, as a user adds it after typing half a command
  const half = Math.floor(flags.length / 4) * 2;
  return [...path, ...positionals, ...flags.slice(0, half), '--help', ...flags.slice(half)];
}

test.serial('--help on every command and subcommand exits 0 and does nothing: no change, no connection, no file', async (t) => {
  const server = await startTestServer();
  t.teardown(() => server.destroy());
  const work = mkdtempSync(join(tmpdir(), 'sigil-help-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  const box = mkdtempSync(join(work, 'sandbox-'));

  let connections = 0;
  const trap = createServer((c) => {
    connections++;
    c.destroy();
  });
  const trapPath = join(work, 'trap.sock');
  await new Promise<void>((resolve) => trap.listen(trapPath, resolve));
  t.teardown(() => trap.close());

  const before = await serverState(server);
  const runs: { path: string[]; args: string[] }[] = [];
  for (const { path, def } of walkCommands()) {
    // each command twice: its socket flags at the real server, then at the trap
    runs.push({ path, args: argsFor(path, def, box, server.server.adminSocketPath) }, { path, args: argsFor(path, def, box, trapPath) });
  }
  // the spellings of the report: SPIRE's -help and -h, and help before the subcommand's flags
  runs.push(
    { path: ['localauthority', 'prepare'], args: ['localauthority', 'prepare', '--kind', 'jwt', '--socket', server.server.adminSocketPath, '--help'] },
    { path: ['localauthority', 'x509', 'prepare'], args: ['localauthority', 'x509', 'prepare', '-socketPath', server.server.adminSocketPath, '-help'] },
    { path: ['x509', 'mint'], args: ['x509', 'mint', '--help', '--spiffe-id', 'spiffe://example.org/m', '--write', join(box, 'minted'), '--socket', server.server.adminSocketPath] },
    { path: ['bundle', 'show'], args: ['bundle', 'show', '--help', '--socket', trapPath] },
    { path: ['api', 'fetch'], args: ['api', 'fetch', '--help', '-write', join(box, 'y'), '-socketPath', trapPath] },
    { path: ['token', 'generate'], args: ['token', 'generate', '-h', '--socket', server.server.adminSocketPath] },
    { path: ['demo'], args: ['demo', '--data-dir', box, '--help'] },
  );
  // a few at a time: children that each start a Node
  for (let i = 0; i < runs.length; i += 8) {
    await Promise.all(
      runs.slice(i, i + 8).map(async ({ path, args }) => {
        const r = await sigil(args);
        const what = described(args, r);
        t.is(r.code, 0, what);
        t.is(r.stderr, '', what);
        t.true(r.stdout.startsWith(`Usage: ${['sigil', ...path].join(' ')} `), what);
      }),
    );
  }
  t.true(runs.length > 100, `${runs.length} runs`);
  t.is(await serverState(server), before, 'the server state is unchanged (authorities, entries, bundles, agents, audit)');
  t.is(connections, 0, 'no --help run connected to the socket it was given');
  t.deepEqual(readdirSync(box), [], 'no --help run wrote a file');
});
