/**
 * The client library's done-when: two services in separate processes, each with its own
 * SVID from the Workload API, complete mTLS over node:tls, https and gRPC; unauthorised or
 * foreign peers are refused on both sides; a rotation pushed on the stream changes the
 * certificate new connections see, without a restart; a JWT-SVID fetched by one service
 * validates offline in another.
 */
import test from 'ava';
import { runExample, type ServiceProcess } from './service-process.js';
import { startTestAgent, TestTrustDomain, type TestAgent, type TestEntitlement } from '../helpers/workload-source.js';

let domain: TestTrustDomain;
let partner: TestTrustDomain;
let agent: TestAgent;
let partnerAgent: TestAgent;
const running: ServiceProcess[] = [];

test.before(async () => {
  domain = await TestTrustDomain.create('example.org');
  partner = await TestTrustDomain.create('partner.test');
  agent = await startTestAgent(domain);
  partnerAgent = await startTestAgent(partner);
});

test.after.always(async () => {
  await Promise.all(running.map((p) => p.stop()));
  await agent?.close();
  await partnerAgent?.close();
});

const SERVER_ID = 'spiffe://example.org/server';
const CLIENT_ID = 'spiffe://example.org/client';

async function own(path: string, d: TestTrustDomain = domain, federatesWith: TestTrustDomain[] = []): Promise<TestEntitlement> {
  return { identities: [{ domain: d, cert: await d.issue(path) }], federatesWith };
}

function serialOf(e: TestEntitlement): string {
  return e.identities[0]!.cert.x509.serialNumber;
}

async function runClient(name: string, a: TestAgent, ent: TestEntitlement, env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  const p = runExample(name, a, ent, env);
  running.push(p);
  const code = await p.exited;
  return { code, out: p.output };
}

for (const proto of ['tls', 'https', 'grpc'] as const) {
  test.serial(`${proto}: mutual TLS between two processes, refusals, and rotation without restart`, async (t) => {
    const serverEnt = await own('/server');
    const server = runExample(`${proto}-server.js`, agent, serverEnt, { PEER_ID: CLIENT_ID });
    running.push(server);
    const port = (await server.waitFor(/^listening (\d+)$/))[1]!;
    const env = { PORT: port, PEER_ID: SERVER_ID };

    // The authorised client gets through, and both sides see each other's SPIFFE ID.
    const ok = await runClient(`${proto}-client.js`, agent, await own('/client'), env);
    t.is(ok.code, 0, ok.out);
    t.true(ok.out.includes(`hello ${CLIENT_ID} from ${SERVER_ID}`), ok.out);
    t.true(ok.out.includes(`server serial ${serialOf(serverEnt)}`), ok.out);

    // A client of the right trust domain but not authorised: the server refuses it.
    let mark = server.lines.length;
    const intruder = await runClient(`${proto}-client.js`, agent, await own('/intruder'), env);
    t.is(intruder.code, 1, intruder.out);
    t.false(intruder.out.includes('hello'));
    await server.waitFor(/^refused ERR_PERMISSION_DENIED$/, 10_000, mark);

    // A client from another trust domain (which trusts us through federation): refused in the handshake.
    mark = server.lines.length;
    const foreign = await runClient(`${proto}-client.js`, partnerAgent, await own('/client', partner, [domain]), env);
    t.is(foreign.code, 1, foreign.out);
    t.false(foreign.out.includes('hello'));
    await server.waitFor(/^refused /, 10_000, mark);

    // The client refuses a server that is not the one it wants.
    const picky = await runClient(`${proto}-client.js`, agent, await own('/client'), { PORT: port, PEER_ID: 'spiffe://example.org/other' });
    t.is(picky.code, 1, picky.out);
    t.regex(picky.out, /failed (ERR_PERMISSION_DENIED|14)/);

    // Rotation: the agent pushes a new server SVID; the running server uses it for new connections.
    mark = server.lines.length;
    const rotated = await own('/server');
    agent.identities.set(`test:pid:${server.proc.pid}`, rotated);
    await server.waitFor(new RegExp(`^svid ${SERVER_ID} serial ${serialOf(rotated)}$`), 10_000, mark);
    const after = await runClient(`${proto}-client.js`, agent, await own('/client'), env);
    t.is(after.code, 0, after.out);
    t.true(after.out.includes(`server serial ${serialOf(rotated)}`), after.out);
    t.true(after.out.includes(`hello ${CLIENT_ID} from ${SERVER_ID}`), after.out);
    await server.stop();
  });
}

test.serial('a JWT-SVID fetched by one service validates offline in another', async (t) => {
  const fetched = await runClient('jwt-fetch.js', agent, await own('/client'), { AUDIENCE: SERVER_ID });
  t.is(fetched.code, 0, fetched.out);
  const token = fetched.out.split('\n')[0]!.trim();
  t.regex(token, /^eyJ[\w-]+\.[\w-]+\.[\w-]+$/);

  const before = agent.identities.jwtRequests;
  const validate = (aud: string): Promise<number | null> => {
    const p = runExample('jwt-validate.js', agent, { identities: [{ domain, cert: serverCert! }] }, { AUDIENCE: aud }, token);
    running.push(p);
    return p.exited.then((code) => {
      outputs.push(p.output);
      return code;
    });
  };
  const outputs: string[] = [];
  const serverCert = (await own('/server')).identities[0]?.cert;
  t.is(await validate(SERVER_ID), 0, outputs.join('\n'));
  t.true(outputs[0]!.includes(`valid ${CLIENT_ID} for ${SERVER_ID}`), outputs[0]);
  // Offline: validation asked the agent for no token and made no ValidateJWTSVID call of its own.
  t.is(agent.identities.jwtRequests, before);
  t.is(await validate('spiffe://example.org/someone-else'), 1);
  t.true(outputs[1]!.includes('invalid audience-mismatch'), outputs[1]);
});
