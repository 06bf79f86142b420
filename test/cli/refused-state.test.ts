/**
 * State that is not what it should be is refused, never silently replaced (issue 11, item 5),
 * as a supervisor sees it: the real `bin/sigil.js server run` / `agent run` as child
 * processes, exit code 1 and a message that names what is wrong and how to put it right.
 * - a datastore file that is gone or empty while keys/ holds the CA: no new trust domain;
 * - a datastore whose CA journal is gone (what a wiped PostgreSQL looks like), the same;
 * - a first start with an empty data dir still initialises;
 * - a join token file others can read is refused like the KEK file;
 * - a port out of range in any address key is a config error naming the key.
 * And, on the admin API (issue 11, item 7): numbers that do not fit their field are refused
 * with InvalidArgument and reported as sent, never wrapped to 32 bits on the way.
 */
import test from 'ava';
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { isSigilError } from '../../src/common/errors.js';
import { eventually } from '../agent/support/agent-harness.js';
import { Daemon, runSigil, SIGIL_BIN } from '../agent/support/processes.js';
import { makeServerDir, startTestServer, writeServerConfig } from '../helpers/server.js';

/** Starts `sigil server run` and waits until it serves; stops it with SIGTERM. */
async function serveOnce(config: string): Promise<void> {
  const d = new Daemon(process.execPath, [SIGIL_BIN, 'server', 'run', '--config', config]);
  try {
    await eventually(() => (d.stderr.includes('sigil server: serving') ? true : undefined), 60_000, 'the server to serve').catch((err: unknown) => {
      throw new Error(`${String(err)}: ${d.stderr.slice(-3000)}`);
    });
  } finally {
    await d.stop();
  }
}

function removeDatastore(data: string): void {
  for (const f of ['datastore.sqlite3', 'datastore.sqlite3-wal', 'datastore.sqlite3-shm']) if (existsSync(join(data, f))) unlinkSync(join(data, f));
}

test('a datastore file that is empty or gone while keys/ holds the CA is refused at start, and nothing replaces it', async (t) => {
  const dir = await makeServerDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const config = await writeServerConfig(dir);
  const data = join(dir, 'data');
  const keys = join(data, 'keys');
  const sqlite = join(data, 'datastore.sqlite3');

  // A first start with an empty data dir initialises: a datastore and the CA keys appear.
  await serveOnce(config);
  t.true(statSync(sqlite).size > 0);
  const keyFiles = readdirSync(keys).filter((n) => n.endsWith('.key.json')).sort();
  t.true(keyFiles.length >= 2, keyFiles.join(', '));

  removeDatastore(data);
  writeFileSync(sqlite, '');
  const empty = await runSigil(['server', 'run', '--config', config], { timeoutMs: 60_000 });
  t.is(empty.code, 1, empty.stderr);
  t.true(empty.stderr.includes(`the datastore file ${sqlite} is empty (0 bytes)`), empty.stderr);
  t.true(empty.stderr.includes(`${keys} still holds the CA keys`), empty.stderr);
  t.true(empty.stderr.includes(`Restore ${sqlite} from the backup`), empty.stderr);
  t.true(empty.stderr.includes('ERR_FAILED_PRECONDITION'), empty.stderr);
  t.is(statSync(sqlite).size, 0, 'the empty file is left as it was');

  unlinkSync(sqlite);
  const gone = await runSigil(['server', 'run', '--config', config], { timeoutMs: 60_000 });
  t.is(gone.code, 1, gone.stderr);
  t.true(gone.stderr.includes(`the datastore file ${sqlite} does not exist`), gone.stderr);
  t.true(gone.stderr.includes(`${keys} still holds the CA keys`), gone.stderr);
  t.false(existsSync(sqlite), 'no new datastore was created');
  t.deepEqual(readdirSync(keys).filter((n) => n.endsWith('.key.json')).sort(), keyFiles, 'the CA keys are untouched');
});

test('a datastore that lost its CA journal (a wiped database) is refused too; moving keys/ away starts a new trust domain on purpose', async (t) => {
  const dir = await makeServerDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const config = await writeServerConfig(dir);
  const data = join(dir, 'data');
  await serveOnce(config);
  const db = new Database(join(data, 'datastore.sqlite3'));
  const removed = db.prepare('DELETE FROM server_ca_journals').run().changes;
  db.close();
  t.is(removed, 1);

  const r = await runSigil(['server', 'run', '--config', config], { timeoutMs: 60_000 });
  t.is(r.code, 1, r.stderr);
  t.true(r.stderr.includes(`the datastore ${join(data, 'datastore.sqlite3')} holds no CA journal`), r.stderr);
  t.true(r.stderr.includes('still holds the CA keys'), r.stderr);
  t.true(r.stderr.includes('move '), r.stderr);

  // The operator's decision, as the message says: keys/ moved away, a new CA is made.
  rmSync(join(data, 'keys'), { recursive: true, force: true });
  removeDatastore(data);
  await serveOnce(config);
  t.true(readdirSync(join(data, 'keys')).some((n) => n.startsWith('x509-ca-')));
});

function agentConfig(dir: string, extra = ''): string {
  const path = join(dir, 'agent.yaml');
  writeFileSync(
    path,
    `trustDomain: example.org\nserverAddress: 127.0.0.1:9\ntrustBundleFile: bootstrap.pem\ndataDir: data\nsocketPath: ${join(dir, 'agent.sock')}\nnodeAttestor:\n  joinToken:\n    tokenFile: join-token\n${extra}`,
  );
  return path;
}

test('a join token file that group or others can read is refused like the KEK file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-token-mode-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const token = join(dir, 'join-token');
  writeFileSync(token, 'not-a-real-token\n');
  writeFileSync(join(dir, 'bootstrap.pem'), '');
  const config = agentConfig(dir);
  for (const mode of [0o644, 0o640, 0o604]) {
    chmodSync(token, mode);
    const r = await runSigil(['agent', 'run', '--config', config], { timeoutMs: 30_000 });
    const octal = `0${mode.toString(8)}`;
    t.is(r.code, 1, `${octal}: ${r.stderr}`);
    t.true(r.stderr.includes(`join token file ${token} has mode ${octal}, want 0600 or stricter (chmod 600 ${token})`), r.stderr);
    t.true(r.stderr.includes('ERR_CONFIG_INVALID'), r.stderr);
    t.false(existsSync(join(dir, 'agent.sock')));
  }
  // the KEK file's rule, for comparison: the same words
  const kekDir = await makeServerDir();
  t.teardown(() => rmSync(kekDir, { recursive: true, force: true }));
  chmodSync(join(kekDir, 'kek'), 0o644);
  const kek = await runSigil(['server', 'run', '--config', await writeServerConfig(kekDir)], { timeoutMs: 30_000 });
  t.is(kek.code, 1, kek.stderr);
  t.true(kek.stderr.includes('has mode 0644, want 0600 or stricter'), kek.stderr);
});

test('a port out of range in any address key is a config error naming the key', async (t) => {
  const dir = await makeServerDir();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const serverConfig = await writeServerConfig(dir);
  const cases: { args: string[]; key: string; port: string }[] = [
    { args: ['server', 'run', '--config', serverConfig, '--agent-address', '127.0.0.1:99999'], key: 'agentApi.address', port: '99999' },
    { args: ['server', 'run', '--config', serverConfig, '--health-address', '127.0.0.1:65536'], key: 'health.address', port: '65536' },
  ];
  const agentDir = mkdtempSync(join(tmpdir(), 'sigil-agent-port-'));
  t.teardown(() => rmSync(agentDir, { recursive: true, force: true }));
  writeFileSync(join(agentDir, 'join-token'), 'x\n', { mode: 0o600 });
  writeFileSync(join(agentDir, 'bootstrap.pem'), '');
  cases.push({ args: ['agent', 'run', '--config', agentConfig(agentDir), '--server-address', '127.0.0.1:99999'], key: 'serverAddress', port: '99999' });
  cases.push({ args: ['agent', 'run', '--config', agentConfig(agentDir), '--server-address', 'sigil-server:0'], key: 'serverAddress', port: '0' });
  cases.push({ args: ['agent', 'run', '--config', agentConfig(agentDir, 'health:\n  address: 127.0.0.1:70000\n')], key: 'health.address', port: '70000' });
  for (const c of cases) {
    const r = await runSigil(c.args, { timeoutMs: 30_000 });
    t.is(r.code, 1, `${c.key}: ${r.stderr}`);
    t.true(r.stderr.includes(`${c.key}: port ${c.port} is out of range`), r.stderr);
    t.true(r.stderr.includes('ERR_CONFIG_INVALID'), r.stderr);
  }
});

test('admin numbers that do not fit their field are refused with InvalidArgument as sent, never wrapped to 32 bits', async (t) => {
  const s = await startTestServer();
  t.teardown(() => s.destroy());
  const err = await t.throwsAsync(s.admin.call('JoinTokens', 'CreateJoinToken', { ttl_seconds: 1e12 }));
  t.true(isSigilError(err, 'ERR_INVALID_ARGUMENT'), String(err));
  t.true(err?.message.includes('got 1000000000000'), err?.message);
  // The CLI's own path to it: a TTL of 277777778 hours is 1,000,000,000,800 seconds.
  const cli = await runSigil(['token', 'generate', '--socket', s.server.adminSocketPath, '--ttl', '277777778h']);
  t.is(cli.code, 1, cli.stderr);
  t.true(cli.stderr.includes('got 1000000000800'), cli.stderr);
  t.true(cli.stderr.includes('ERR_INVALID_ARGUMENT'), cli.stderr);

  // An int32 field: refused before it is encoded, naming the field, instead of arriving wrapped.
  const entry = await runSigil([
    'entry', 'create', '--socket', s.server.adminSocketPath,
    '--spiffe-id', 'spiffe://example.org/big', '--parent-id', 'spiffe://example.org/sigil/agent/join_token/x',
    '--selector', 'unix:uid:1', '--x509-svid-ttl', '1000000h',
  ]);
  t.is(entry.code, 1, entry.stderr);
  t.true(entry.stderr.includes('entries[0].x509_svid_ttl_seconds: 3600000000 is not an integer from -2147483648 to 2147483647'), entry.stderr);
  t.true(entry.stderr.includes('ERR_INVALID_ARGUMENT'), entry.stderr);
  t.is(Number((await s.admin.call<{ count: string }>('Entries', 'CountEntries', {})).count), 0, 'nothing was created');
});
