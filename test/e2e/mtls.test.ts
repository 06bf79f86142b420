/**
 * End to end with nothing in between faked: a real server, a real agent, registration
 * entries for the test's uid, and two services from examples/client/ as separate processes
 * completing mutual TLS over node:tls, https and gRPC. A non-authorised peer is refused, a
 * short-lived server SVID rotates under a running service and new connections see the new
 * certificate, and a JWT-SVID fetched by one service validates offline in the other and
 * through the agent's ValidateJWTSVID. A client of another trust domain (a second real server
 * and agent for partner.test, which trusts example.org through federation) is refused in the
 * handshake, and offline validation makes no JWT call to the agent.
 */
import test from 'ava';
import { WorkloadApiClient } from '../../src/client/workload-api-client.js';
import { isSigilError } from '../../src/common/errors.js';
import { eventually } from '../agent/support/agent-harness.js';
import type { ServiceProcess } from '../client/service-process.js';
import { runToEnd, secretLeaks, startStack, type Stack } from './support/stack.js';

const SERVER_ID = 'spiffe://example.org/e2e/server';
const CLIENT_ID = 'spiffe://example.org/e2e/client';
const INTRUDER_ID = 'spiffe://example.org/e2e/intruder';
/** Short enough that the agent rotates the server SVID every few seconds while a test runs. */
const SERVER_TTL_SECONDS = 6;

const PARTNER_CLIENT_ID = 'spiffe://partner.test/e2e/client';

let stack: Stack;
let partner: Stack;

test.before(async () => {
  stack = await startStack();
  partner = await startStack({ server: { trustDomain: 'partner.test' }, agentConfig: { trustDomain: 'partner.test' } });
  // partner.test trusts example.org (one way): its client can check our server, we do not trust it
  const ours = await stack.server.admin.call<{ document: Buffer }>('Bundles', 'GetBundle');
  await partner.server.admin.call('Bundles', 'SetFederatedBundle', { trust_domain: 'example.org', document: ours.document, format: 'spiffe', append: false });
  await partner.entry({ spiffeId: PARTNER_CLIENT_ID, hint: 'client', federatesWith: ['example.org'] });
  await eventually(() => ((partner.agent?.cache.stats().svids ?? 0) >= 1 ? true : undefined), 15_000, 'the partner client SVID');
  await stack.entry({ spiffeId: SERVER_ID, hint: 'server', x509SvidTtlSeconds: SERVER_TTL_SECONDS });
  await stack.entry({ spiffeId: CLIENT_ID, hint: 'client' });
  await stack.entry({ spiffeId: INTRUDER_ID, hint: 'intruder' });
  // Services start once the agent holds all three SVIDs, so their first fetch succeeds.
  await eventually(() => ((stack.agent?.cache.stats().svids ?? 0) >= 3 ? true : undefined), 15_000, 'three SVIDs on the agent');
});

test.after.always(async () => {
  await stack?.close();
  await partner?.close();
});

/** Every serial a running service announced for its own SVID (it prints one line per update). */
function announcedSerials(p: ServiceProcess): string[] {
  const out: string[] = [];
  for (const l of p.lines) {
    const m = new RegExp(`^svid ${SERVER_ID} serial (\\w+)$`).exec(l);
    if (m !== null && out.at(-1) !== m[1]) out.push(m[1]!);
  }
  return out;
}

function servedSerial(out: string): string | undefined {
  return /server serial (\w+)/.exec(out)?.[1];
}

for (const proto of ['tls', 'https', 'grpc'] as const) {
  test.serial(`${proto}: two services complete mTLS; an unauthorised peer is refused; a rotation reaches new connections without a restart`, async (t) => {
    const server = stack.run(`${proto}-server.js`, { SVID_HINT: 'server', PEER_ID: CLIENT_ID });
    const port = (await server.waitFor(/^listening (\d+)$/))[1]!;
    const pid = server.proc.pid;
    const client = { PORT: port, PEER_ID: SERVER_ID, SVID_HINT: 'client' };

    const ok = await runToEnd(stack, `${proto}-client.js`, client);
    t.is(ok.code, 0, ok.out);
    t.true(ok.out.includes(`hello ${CLIENT_ID} from ${SERVER_ID}`), ok.out);
    const first = servedSerial(ok.out);
    t.truthy(first, ok.out);
    await server.waitFor(new RegExp(`^svid ${SERVER_ID} serial ${first}$`), 5000);

    // Same trust domain, valid SVID, but not the ID the server authorises.
    let mark = server.lines.length;
    const intruder = await runToEnd(stack, `${proto}-client.js`, { ...client, SVID_HINT: 'intruder' });
    t.is(intruder.code, 1, intruder.out);
    t.false(intruder.out.includes('hello'), intruder.out);
    await server.waitFor(/^refused ERR_PERMISSION_DENIED$/, 10_000, mark);

    // A client from another trust domain (which trusts us through federation): refused in the handshake.
    mark = server.lines.length;
    const foreign = partner.run(`${proto}-client.js`, client);
    t.is(await foreign.exited, 1, foreign.output);
    t.false(foreign.output.includes('hello'), foreign.output);
    await server.waitFor(/^refused /, 10_000, mark);

    // The client side refuses a server that is not the one it asked for.
    const picky = await runToEnd(stack, `${proto}-client.js`, { ...client, PEER_ID: 'spiffe://example.org/e2e/someone-else' });
    t.is(picky.code, 1, picky.out);
    t.regex(picky.out, /failed (ERR_PERMISSION_DENIED|14)/);

    // The agent rotates the short-lived server SVID; the running service takes it up.
    mark = server.lines.length;
    await server.waitFor(new RegExp(`^svid ${SERVER_ID} serial (?!${first}$)\\w+$`), SERVER_TTL_SECONDS * 2000, mark);
    const after = await runToEnd(stack, `${proto}-client.js`, client);
    t.is(after.code, 0, after.out);
    const second = servedSerial(after.out);
    t.truthy(second, after.out);
    t.not(second, first, 'a new connection after the rotation presents the new certificate');
    t.true(announcedSerials(server).includes(second!), `served ${second}, announced ${announcedSerials(server).join(',')}`);
    t.is(server.proc.pid, pid);
    t.is(server.proc.exitCode, null, 'the service was not restarted');
    await server.stop();
  });
}

test.serial('a JWT-SVID fetched by one service validates offline in the other and through ValidateJWTSVID', async (t) => {
  const fetcher = stack.run('jwt-fetch.js', { SVID_HINT: 'client', AUDIENCE: SERVER_ID });
  const fetched = { code: await fetcher.exited, out: fetcher.output };
  t.is(fetched.code, 0, fetched.out);
  const token = fetched.out.split('\n')[0]!.trim();
  t.regex(token, /^eyJ[\w-]+\.[\w-]+\.[\w-]+$/);

  const validator = stack.run('jwt-validate.js', { SVID_HINT: 'server', AUDIENCE: SERVER_ID }, token);
  const valid = { code: await validator.exited, out: validator.output };
  t.is(valid.code, 0, valid.out);
  t.true(valid.out.includes(`valid ${CLIENT_ID} for ${SERVER_ID}`), valid.out);
  // Offline: the validating service asked the agent for no JWT-SVID and made no ValidateJWTSVID
  // call (the agent logs both with the caller's pid, as it did for the fetching service).
  const jwtCallsOf = (pid: number | undefined): string[] =>
    stack.logs().split('\n').filter((l) => (l.includes('jwt svids sent') || l.includes('jwt svid validated')) && l.includes(`"peerPid":${String(pid)},`));
  t.is(jwtCallsOf(fetcher.proc.pid).length, 1);
  t.deepEqual(jwtCallsOf(validator.proc.pid), []);
  const wrongAudience = await runToEnd(stack, 'jwt-validate.js', { SVID_HINT: 'server', AUDIENCE: INTRUDER_ID }, token);
  t.is(wrongAudience.code, 1, wrongAudience.out);
  t.true(wrongAudience.out.includes('invalid audience-mismatch'), wrongAudience.out);

  // The same token through the agent (this test process is attested like the services).
  const api = new WorkloadApiClient({ address: stack.address });
  t.teardown(() => api.close());
  const checked = await api.validateJwtSvid(token, SERVER_ID);
  t.is(checked.id.toString(), CLIENT_ID);
  t.deepEqual(checked.audience, [SERVER_ID]);
  const refused = await t.throwsAsync(api.validateJwtSvid(token, INTRUDER_ID));
  t.true(isSigilError(refused, 'ERR_INVALID_JWT_SVID'), `${String(refused?.name)} ${(refused as { code?: string } | undefined)?.code}`);
  const tampered = `${token.slice(0, -4)}AAAA`;
  const bad = await t.throwsAsync(api.validateJwtSvid(tampered, SERVER_ID));
  t.true(isSigilError(bad, 'ERR_INVALID_JWT_SVID'));
});

test.serial('no key, JWT or join token in the agent or server logs', (t) => {
  t.deepEqual(secretLeaks(stack.logs(), stack.secrets), []);
  t.deepEqual(secretLeaks(stack.server.logLines.join('\n'), stack.secrets), []);
  t.deepEqual(secretLeaks(stack.server.auditLines.join('\n'), stack.secrets), []);
});
