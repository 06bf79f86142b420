/**
 * The same path with the agent as its own process, `node bin/sigil.js agent run`, as it is
 * deployed: two services complete mTLS over node:tls through it, an unauthorised peer is
 * refused, a rotation reaches new connections, and a JWT-SVID crosses from one service to
 * the other. The agent's output must carry no key, JWT or join token.
 */
import test from 'ava';
import { runToEnd, secretLeaks, startStack, type Stack } from './support/stack.js';

const SERVER_ID = 'spiffe://example.org/e2e/server';
const CLIENT_ID = 'spiffe://example.org/e2e/client';
const SERVER_TTL_SECONDS = 6;

let stack: Stack;

test.before(async () => {
  stack = await startStack({ child: true });
  await stack.entry({ spiffeId: SERVER_ID, hint: 'server', x509SvidTtlSeconds: SERVER_TTL_SECONDS });
  await stack.entry({ spiffeId: CLIENT_ID, hint: 'client' });
  await stack.entry({ spiffeId: 'spiffe://example.org/e2e/intruder', hint: 'intruder' });
});

test.after.always(async () => {
  await stack?.close();
});

test.serial('through a `sigil agent run` child: mTLS over node:tls, a refusal, a rotation, a JWT-SVID between services', async (t) => {
  const server = stack.run('tls-server.js', { SVID_HINT: 'server', PEER_ID: CLIENT_ID });
  const port = (await server.waitFor(/^listening (\d+)$/, 30_000))[1]!;
  const client = { PORT: port, PEER_ID: SERVER_ID, SVID_HINT: 'client' };

  const ok = await runToEnd(stack, 'tls-client.js', client);
  t.is(ok.code, 0, ok.out);
  t.true(ok.out.includes(`hello ${CLIENT_ID} from ${SERVER_ID}`), ok.out);
  const first = /server serial (\w+)/.exec(ok.out)?.[1];
  t.truthy(first);

  let mark = server.lines.length;
  const intruder = await runToEnd(stack, 'tls-client.js', { ...client, SVID_HINT: 'intruder' });
  t.is(intruder.code, 1, intruder.out);
  await server.waitFor(/^refused ERR_PERMISSION_DENIED$/, 10_000, mark);

  mark = server.lines.length;
  await server.waitFor(new RegExp(`^svid ${SERVER_ID} serial (?!${first}$)\\w+$`), SERVER_TTL_SECONDS * 2000, mark);
  const after = await runToEnd(stack, 'tls-client.js', client);
  t.is(after.code, 0, after.out);
  t.not(/server serial (\w+)/.exec(after.out)?.[1], first);

  const fetched = await runToEnd(stack, 'jwt-fetch.js', { SVID_HINT: 'client', AUDIENCE: SERVER_ID });
  t.is(fetched.code, 0, fetched.out);
  const token = fetched.out.split('\n')[0]!.trim();
  const valid = await runToEnd(stack, 'jwt-validate.js', { SVID_HINT: 'server', AUDIENCE: SERVER_ID }, token);
  t.is(valid.code, 0, valid.out);
  t.true(valid.out.includes(`valid ${CLIENT_ID} for ${SERVER_ID}`), valid.out);
  await server.stop();

  t.deepEqual(secretLeaks(stack.logs(), [...stack.secrets, token]), []);
  t.true(stack.logs().includes('"msg":"X509-SVID cached"'));
});
