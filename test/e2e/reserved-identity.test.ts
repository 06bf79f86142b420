/**
 * The attack of issue 10, end to end, now refused at each step. An admin of one team's
 * entries asks for an entry (and a mint) for the server's ID: refused. A certificate for
 * the server's ID minted any other way (here by openssl, under a CA the agent's bootstrap
 * bundle trusts, with the X509-SVID profile a workload SVID has) backs a fake agent API:
 * a real `sigil agent run` child refuses it during the TLS handshake, keeps running, and its
 * join token never reaches the fake server. The control: the same fake server with a
 * certificate that carries the server marker does receive the attestation (and the token),
 * so the harness would see a leak.
 */
import test from 'ava';
import { Server, ServerCredentials, type ServerDuplexStream } from '@grpc/grpc-js';
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { toPem } from '../../src/common/x509.js';
import { serviceDefinition } from '../../src/grpc/proto.js';
import { generateKeyAndCsr } from '../../src/server/server-svid.js';
import { SERVER_SVID_MARKER, SERVER_SVID_MARKER_OID } from '../../src/spiffe/reserved-id.js';
import { eventually } from '../agent/support/agent-harness.js';
import { Daemon, SIGIL_BIN, runSigil } from '../agent/support/processes.js';
import { startTestServer } from '../helpers/server.js';
import { rejectionOf } from '../server/support/rejection.js';

const SERVER_ID = 'spiffe://example.org/sigil/server';
const run = promisify(execFile);

async function openssl(args: string[], cwd: string): Promise<void> {
  await run('openssl', args, { cwd });
}

/** An openssl CA for example.org and a leaf for the server's ID with a workload SVID's profile, with or without the marker. */
async function fakeServerCertificate(dir: string, withMarker: boolean): Promise<{ caPem: string; certPem: string; keyPem: string }> {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  await openssl(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/O=Attacker',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-addext', 'subjectAltName=URI:spiffe://example.org'], dir);
  await openssl(['req', '-new', ...ec, '-keyout', 'leaf.key', '-out', 'leaf.csr', '-subj', '/O=Sigil/C=US'], dir);
  const ext = [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature',
    'extendedKeyUsage=serverAuth,clientAuth',
    `subjectAltName=URI:${SERVER_ID}`,
    ...(withMarker ? [`${SERVER_SVID_MARKER_OID}=ASN1:UTF8String:${SERVER_SVID_MARKER}`] : []),
  ];
  writeFileSync(join(dir, 'leaf.ext'), `${ext.join('\n')}\n`);
  await openssl(['x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'leaf.pem', '-days', '1', '-extfile', 'leaf.ext'], dir);
  return { caPem: readFileSync(join(dir, 'ca.pem'), 'utf8'), certPem: readFileSync(join(dir, 'leaf.pem'), 'utf8'), keyPem: readFileSync(join(dir, 'leaf.key'), 'utf8') };
}

/** A fake agent API: records every AttestAgent message it is sent, answers none. */
async function fakeAgentApi(certPem: string, keyPem: string): Promise<{ port: number; received: unknown[]; calls: () => number; close: () => Promise<void> }> {
  const received: unknown[] = [];
  let calls = 0;
  const server = new Server();
  server.addService(serviceDefinition('sigil/agent/v1/agent.proto', 'sigil.agent.v1.Agent'), {
    AttestAgent: (call: ServerDuplexStream<unknown, unknown>) => {
      calls++;
      call.on('data', (m: unknown) => received.push(m));
      call.on('error', () => undefined);
    },
  });
  const creds = ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(certPem), private_key: Buffer.from(keyPem) }], false);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', creds, (err, p) => (err ? reject(err) : resolve(p))));
  return {
    port,
    received,
    calls: () => calls,
    close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
}

/** Starts `sigil agent run` against `address` trusting `bundlePem`, with `token` in its token file. */
function startAgentChild(dir: string, address: string, bundlePem: string, token: string): Daemon {
  writeFileSync(join(dir, 'bootstrap.pem'), bundlePem);
  writeFileSync(join(dir, 'join-token'), `${token}\n`, { mode: 0o600 });
  writeFileSync(
    join(dir, 'agent.yaml'),
    `trustDomain: example.org\nserverAddress: ${address}\ntrustBundleFile: bootstrap.pem\ndataDir: data\nsocketPath: ${join(dir, 'agent.sock')}\nnodeAttestor:\n  joinToken:\n    tokenFile: join-token\nlogLevel: debug\n`,
  );
  return new Daemon(process.execPath, [SIGIL_BIN, 'agent', 'run', '--config', join(dir, 'agent.yaml')]);
}

test('the server-ID attack: no entry or mint for the server ID, and a real agent refuses a fake agent API with a certificate for it', async (t) => {
  const s = await startTestServer();
  t.teardown(() => s.destroy());
  const dir = mkdtempSync(join(tmpdir(), 'sigil-reserved-'));
  chmodSync(dir, 0o700);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));

  // step 1 of the attack: an entry (or a minted SVID) for the server's ID
  const tok = await s.createJoinToken(600);
  const created = await runSigil(['entry', 'create', '--socket', s.server.adminSocketPath, '--spiffe-id', SERVER_ID, '--parent-id', tok.agentId, '--selector', 'unix:uid:0']);
  t.is(created.code, 1);
  t.regex(created.stderr, /reserved for Sigil/);
  const { csr } = await generateKeyAndCsr();
  t.is((await rejectionOf(s.admin.call('Mint', 'MintX509Svid', { spiffe_id: SERVER_ID, csr, ttl_seconds: 0, dns_names: [] }))).code, 'ERR_INVALID_ARGUMENT');

  // step 2: a certificate for the server's ID minted another way, trusted by the agent's bootstrap bundle
  const fakeDir = join(dir, 'fake');
  const markedDir = join(dir, 'marked');
  mkdirSync(fakeDir);
  mkdirSync(markedDir);
  const realRoots = s.server.x509Authorities().map((c) => toPem(c, 'CERTIFICATE')).join('');
  const workloadLike = await fakeServerCertificate(fakeDir, false);
  const fake = await fakeAgentApi(workloadLike.certPem, workloadLike.keyPem);
  t.teardown(() => fake.close());
  const agentDir = join(dir, 'agent');
  mkdirSync(agentDir);
  const token = tok.token.reveal();
  const agent = startAgentChild(agentDir, `127.0.0.1:${fake.port}`, realRoots + workloadLike.caPem, token);
  t.teardown(() => agent.stop());

  await eventually(
    () => (agent.stdout.includes('server unreachable for node attestation') ? true : undefined),
    60_000,
    'the agent to refuse the fake server',
  ).catch((err: unknown) => {
    throw new Error(`${String(err)}: ${agent.stdout.slice(-3000)}${agent.stderr.slice(-3000)}`);
  });
  t.regex(agent.stdout, /lacks the server SVID marker/, 'the agent says why');
  t.is(agent.child.exitCode, null, 'the agent keeps running and retrying');
  t.is(fake.calls(), 0, 'no AttestAgent call reached the fake server');
  t.deepEqual(fake.received, []);
  t.false(agent.stdout.includes(token) || agent.stderr.includes(token), 'the token is not in the agent output');
  // (its exit code on SIGTERM while still attesting is the daemons' exit-code work, not this test's)
  await agent.stop();

  // the control: with the marker (which only our CA's server issuance adds) the same fake server gets the token
  const marked = await fakeServerCertificate(markedDir, true);
  const control = await fakeAgentApi(marked.certPem, marked.keyPem);
  t.teardown(() => control.close());
  const controlDir = join(dir, 'control');
  mkdirSync(controlDir);
  const controlAgent = startAgentChild(controlDir, `127.0.0.1:${control.port}`, realRoots + marked.caPem, token);
  t.teardown(() => controlAgent.stop());
  await eventually(() => (control.received.length > 0 ? true : undefined), 60_000, 'the control fake server to receive an attestation').catch((err: unknown) => {
    throw new Error(`${String(err)}: ${controlAgent.stdout.slice(-3000)}`);
  });
  const payloads = control.received.map((m) => Buffer.from((m as { params?: { payload?: Uint8Array } }).params?.payload ?? []).toString('utf8'));
  t.true(payloads.includes(token), 'a server the agent accepts does receive the token');
  await controlAgent.stop();
});
