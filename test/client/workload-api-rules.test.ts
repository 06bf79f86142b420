/**
 * The client against a Workload API that breaks the rules: a fake server (real grpc-js on a
 * real Unix socket, test/helpers/fake-workload-api.ts) sends each defect, one case per rule,
 * named after the section of the standard that makes it a defect. For every defect the
 * source keeps its last good state, reports the bad update with a coded error, and applies
 * the next good update (the stream is still in use).
 * A fake on purpose: the real agent never sends these messages, so no test against it can
 * reach these paths; the behaviour tests of a well-formed agent run against the real one
 * (workload-api-client, sources, source-process).
 */
import test from 'ava';
import { once } from 'node:events';
import { connect as tlsConnect } from 'node:tls';
import { makeGenericClientConstructor, Server as GrpcServer, status } from '@grpc/grpc-js';
import { authorizeAny } from '../../src/client/authorizer.js';
import { BundleSource } from '../../src/client/bundle-source.js';
import { grpcChannelCredentials, serveGrpc } from '../../src/client/grpc.js';
import { JwtSource } from '../../src/client/jwt-source.js';
import { createTlsServer, tlsClientOptions } from '../../src/client/tls.js';
import { X509Source } from '../../src/client/x509-source.js';
import { ManualClock } from '../../src/common/clock.js';
import type { ErrorCode, SigilError } from '../../src/common/errors.js';
import { Bundle } from '../../src/spiffe/bundle.js';
import { TrustDomain } from '../../src/spiffe/spiffe-id.js';
import { FakeWorkloadApi, wireSvid, type WireBundlesResponse, type WireX509SvidResponse } from '../helpers/fake-workload-api.js';
import { createCa, createJwtKey, createLeaf, jwtClaims, signJwt, type TestJwtKey } from '../helpers/pki.js';
import { TestTrustDomain } from '../helpers/workload-source.js';

const HOUR = 3_600_000;
const FAST = { backoff: { initialMs: 20, maxMs: 200 } } as const;

let domain: TestTrustDomain;
let partner: TestTrustDomain;
test.before(async () => {
  domain = await TestTrustDomain.create('example.org');
  partner = await TestTrustDomain.create('partner.test');
});

function until<T>(pred: () => T | undefined, what: string, timeoutMs = 20_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const start = Date.now();
    const tick = (): void => {
      const v = pred();
      if (v !== undefined) resolve(v);
      else if (Date.now() - start > timeoutMs) reject(new Error(`${what}: not met in time`));
      else setTimeout(tick, 10);
    };
    tick();
  });
}

async function withFake(fn: (fake: FakeWorkloadApi) => Promise<void>): Promise<void> {
  const fake = await FakeWorkloadApi.start();
  try {
    await fn(fake);
  } finally {
    await fake.close();
  }
}

async function goodResponse(path = '/web'): Promise<WireX509SvidResponse> {
  return { svids: [wireSvid(domain, await domain.issue(path))] };
}

interface X509Case {
  readonly name: string;
  readonly bad: () => Promise<WireX509SvidResponse>;
  readonly code: ErrorCode;
  readonly reason: string;
}

const x509Cases: X509Case[] = [
  {
    name: 'Workload API §4.5, §5.2.1: an X509SVID with an empty spiffe_id is discarded',
    bad: async () => ({ svids: [{ ...wireSvid(domain, await domain.issue('/web')), spiffe_id: '' }] }),
    code: 'ERR_INVALID_X509_SVID',
    reason: 'missing-spiffe-id',
  },
  {
    name: 'Workload API §4.5, §5.2.1: an X509SVID with an empty bundle is discarded (the trust anchors stay)',
    bad: async () => ({ svids: [{ ...wireSvid(domain, await domain.issue('/web')), bundle: Buffer.alloc(0) }] }),
    code: 'ERR_INVALID_BUNDLE',
    reason: 'missing-bundle',
  },
  {
    name: 'Workload API §4.5, §5.2.1: an X509SVID with an empty x509_svid_key is discarded',
    bad: async () => ({ svids: [{ ...wireSvid(domain, await domain.issue('/web')), x509_svid_key: Buffer.alloc(0) }] }),
    code: 'ERR_INVALID_X509_SVID',
    reason: 'missing-x509-svid-key',
  },
  {
    name: 'Workload API §5.2.1: a response without svids is discarded',
    bad: () => Promise.resolve({ svids: [] }),
    code: 'ERR_NO_IDENTITY',
    reason: 'no-svids',
  },
  {
    name: 'Workload API §5.1 (X509SVID.spiffe_id) and X509-SVID §2: a spiffe_id that differs from the URI SAN is refused',
    bad: async () => ({ svids: [{ ...wireSvid(domain, await domain.issue('/web')), spiffe_id: 'spiffe://example.org/admin' }] }),
    code: 'ERR_INVALID_X509_SVID',
    reason: 'spiffe-id-mismatch',
  },
  {
    name: 'X509-SVID §5.1: a leaf whose signature does not verify with the bundle is refused',
    bad: async () => {
      // Same issuer name as the trust domain's root, another key: the name chains, the signature does not.
      const impostor = await createCa({ id: 'spiffe://example.org', name: 'CN=example.org root' });
      return { svids: [wireSvid(domain, await createLeaf({ issuer: impostor, id: 'spiffe://example.org/web' }))] };
    },
    code: 'ERR_INVALID_X509_SVID',
    reason: 'bad-signature',
  },
  {
    name: 'X509-SVID §5.1: a leaf that does not chain to the bundle in the same response is refused',
    bad: async () => {
      const other = await createCa({ id: 'spiffe://example.org', name: 'CN=another root' });
      return { svids: [{ ...wireSvid(domain, await domain.issue('/web')), bundle: Buffer.from(other.der) }] };
    },
    code: 'ERR_INVALID_X509_SVID',
    reason: 'untrusted',
  },
  {
    name: 'X509-SVID §5.1: an expired leaf is refused',
    bad: async () => {
      const now = Date.now();
      const cert = await createLeaf({ issuer: domain.root, id: 'spiffe://example.org/web', notBefore: new Date(now - 2 * HOUR), notAfter: new Date(now - HOUR) });
      return { svids: [wireSvid(domain, cert)] };
    },
    code: 'ERR_INVALID_X509_SVID',
    reason: 'expired',
  },
  {
    name: 'X509-SVID §5.1: a leaf not yet valid is refused',
    bad: async () => {
      const now = Date.now();
      const cert = await createLeaf({ issuer: domain.root, id: 'spiffe://example.org/web', notBefore: new Date(now + HOUR), notAfter: new Date(now + 2 * HOUR) });
      return { svids: [wireSvid(domain, cert)] };
    },
    code: 'ERR_INVALID_X509_SVID',
    reason: 'not-yet-valid',
  },
  {
    name: 'Workload API §5.1 (X509SVID.x509_svid_key): a private key that does not match the leaf is refused',
    bad: async () => {
      const a = wireSvid(domain, await domain.issue('/web'));
      const b = wireSvid(domain, await domain.issue('/web'));
      return { svids: [{ ...a, x509_svid_key: b.x509_svid_key }] };
    },
    code: 'ERR_INVALID_X509_SVID',
    reason: 'key-mismatch',
  },
];

for (const c of x509Cases) {
  test(c.name, async (t) => {
    await withFake(async (fake) => {
      const first = await goodResponse();
      fake.x509.set({ message: first });
      const source = await X509Source.create({ address: fake.address, ...FAST });
      try {
        const goodSerial = source.svid.serial;
        const errors: SigilError[] = [];
        source.on('watchError', (e) => errors.push(e));
        const gen = source.generation;
        fake.x509.set({ message: await c.bad() });
        const err = await until(() => errors[0], 'the bad update is reported');
        t.is(err.code, c.code);
        t.is(err.reason, c.reason);
        // Nothing of the bad message was applied: same SVID, same trust anchors.
        t.is(source.generation, gen);
        t.is(source.svid.serial, goodSerial);
        t.is(source.bundles.get('example.org')?.x509Authorities.length, 1);
        t.notThrows(() => tlsClientOptions({ source, authorizer: authorizeAny() }));
        // The stream is still in use: the next good update is applied.
        const next = await goodResponse();
        const updated = once(source, 'update');
        fake.x509.set({ message: next });
        await updated;
        t.not(source.svid.serial, goodSerial);
      } finally {
        await source.close();
      }
    });
  });
}

test('Workload API §4.5, §5.2.1: a defective first message is not applied, so create() waits for a good one', async (t) => {
  await withFake(async (fake) => {
    fake.x509.set({ message: { svids: [{ ...wireSvid(domain, await domain.issue('/web')), spiffe_id: '' }] } });
    const pending = X509Source.create({ address: fake.address, ...FAST });
    await until(() => (fake.x509.calls >= 1 ? true : undefined), 'the source called');
    const good = await goodResponse();
    fake.x509.set({ message: good });
    const source = await pending;
    t.is(source.svid.id.toString(), 'spiffe://example.org/web');
    await source.close();
  });
});

function jwks(...keys: readonly TestJwtKey[]): Buffer {
  return Buffer.from(Bundle.create(domain.td, { jwtAuthorities: keys.map((k) => [k.kid, k.publicKey] as const) }).jwtToJwksBytes());
}

function bundles(map: Record<string, Buffer>): { message: WireBundlesResponse } {
  return { message: { bundles: map } };
}

/** A JwtSource on a fake agent that first sends `first`; `errors` collects its watchError events. */
async function withJwtSource(first: Record<string, Buffer>, fn: (source: JwtSource, fake: FakeWorkloadApi, errors: SigilError[]) => Promise<void>): Promise<void> {
  await withFake(async (fake) => {
    fake.jwtBundles.set(bundles(first));
    const source = await JwtSource.create({ address: fake.address, ...FAST });
    const errors: SigilError[] = [];
    source.on('watchError', (e) => errors.push(e));
    try {
      await fn(source, fake, errors);
    } finally {
      await source.close();
    }
  });
}

test('Workload API §6.2.2: a JWTBundlesResponse without bundles is discarded, the last good bundles stay', async (t) => {
  const key = createJwtKey('ES256');
  await withJwtSource({ 'spiffe://example.org': jwks(key) }, async (source, fake, errors) => {
    fake.jwtBundles.set(bundles({}));
    const err = await until(() => errors[0], 'reported');
    t.is(err.code, 'ERR_INVALID_BUNDLE');
    t.is(err.reason, 'missing-bundles');
    const token = signJwt(key, jwtClaims('spiffe://example.org/web', 'db'));
    t.is((await source.validateJwtSvid(token, 'db')).id.toString(), 'spiffe://example.org/web');
  });
});

test('Workload API §5.2.2: an X509BundlesResponse without bundles is discarded, the last good bundles stay', async (t) => {
  await withFake(async (fake) => {
    fake.x509Bundles.set(bundles({ 'spiffe://example.org': Buffer.from(domain.root.der) }));
    fake.jwtBundles.set(bundles({ 'spiffe://example.org': jwks(domain.jwtKey) }));
    const source = await BundleSource.create({ address: fake.address, ...FAST });
    try {
      const errors: SigilError[] = [];
      source.on('watchError', (e) => errors.push(e));
      fake.x509Bundles.set(bundles({}));
      const err = await until(() => errors[0], 'reported');
      t.is(err.reason, 'missing-bundles');
      t.is(source.getX509BundleForTrustDomain(domain.td)?.x509Authorities.length, 1);
    } finally {
      await source.close();
    }
  });
});

interface JwtCase {
  readonly name: string;
  /** The JWT bundles the agent sends. */
  readonly bundles: () => Record<string, Buffer>;
  /** The token a peer presents. */
  readonly token: () => string;
  /** The validation error reason, or undefined when the token is valid. */
  readonly reason: string | undefined;
}

const ec = createJwtKey('ES256', 'ec');
const ec2 = createJwtKey('ES256', 'ec-2');
const rsa = createJwtKey('RS256', 'rsa');
const foreign = createJwtKey('ES256', 'foreign');
const claims = (): Record<string, unknown> => jwtClaims('spiffe://example.org/web', 'db');

const jwtCases: JwtCase[] = [
  {
    name: 'JWT-SVID §2.2: a token without kid validates with the key of its trust domain that fits its alg',
    bundles: () => ({ 'spiffe://example.org': jwks(rsa, ec2, ec) }),
    token: () => signJwt(ec, claims(), { header: { kid: undefined } }),
    reason: undefined,
  },
  {
    name: 'JWT-SVID §2.2: a token without kid is never checked against another trust domain\'s keys',
    bundles: () => ({ 'spiffe://example.org': jwks(ec), 'spiffe://partner.test': Buffer.from(Bundle.create(partner.td, { jwtAuthorities: [[foreign.kid, foreign.publicKey]] }).jwtToJwksBytes()) }),
    token: () => signJwt(foreign, claims(), { header: { kid: undefined } }),
    reason: 'bad-signature',
  },
  {
    name: 'JWT-SVID §2.1, §2.2: a token without kid whose alg fits no key of its trust domain is refused',
    bundles: () => ({ 'spiffe://example.org': jwks(ec) }),
    token: () => signJwt(rsa, claims(), { header: { kid: undefined } }),
    reason: 'no-fitting-key',
  },
  {
    name: 'JWT-SVID §2.2: a token with a kid is checked with that key only',
    bundles: () => ({ 'spiffe://example.org': jwks(ec, ec2) }),
    token: () => signJwt(ec, claims(), { header: { kid: ec2.kid } }),
    reason: 'bad-signature',
  },
];

for (const c of jwtCases) {
  test(c.name, async (t) => {
    await withJwtSource(c.bundles(), async (source) => {
      if (c.reason === undefined) t.is((await source.validateJwtSvid(c.token(), 'db')).id.toString(), 'spiffe://example.org/web');
      else {
        const err = (await t.throwsAsync(source.validateJwtSvid(c.token(), 'db'))) as SigilError;
        t.is(err.code, 'ERR_INVALID_JWT_SVID');
        t.is(err.reason, c.reason);
      }
    });
  });
}

test('JWT-SVID §6.1: a bundle key without kid is ignored (never used, not even for a token without kid); the keyed ones apply', async (t) => {
  const ec3 = createJwtKey('ES256', 'ec-3');
  await withJwtSource({ 'spiffe://example.org': jwks(ec) }, async (source, fake, errors) => {
    const keyless = { ...ec2.publicKey.export({ format: 'jwk' }), use: 'jwt-svid' };
    const keyed = JSON.parse(jwks(ec3).toString('utf8')) as { keys: object[] };
    fake.jwtBundles.set(bundles({ 'spiffe://example.org': Buffer.from(JSON.stringify({ keys: [keyless, ...keyed.keys] })) }));
    // The update applies with only the keyed key in it; nothing is reported as bad.
    const kids = await until(() => {
      const k = [...(source.getJwtBundleForTrustDomain(domain.td)?.jwtAuthorities.keys() ?? [])];
      return k.includes(ec3.kid) ? k : undefined;
    }, 'new bundle applied');
    t.deepEqual(kids, [ec3.kid]);
    t.deepEqual(errors, []);
    t.truthy(await source.validateJwtSvid(signJwt(ec3, claims()), 'db'));
    const err = (await t.throwsAsync(source.validateJwtSvid(signJwt(ec2, claims(), { header: { kid: undefined } }), 'db'))) as SigilError;
    t.is(err.reason, 'bad-signature');
  });
});

test('Workload API §5.2.1: PermissionDenied withdraws the SVID (svid throws, TLS refuses) and a later update restores it', async (t) => {
  await withFake(async (fake) => {
    fake.x509.set({ message: await goodResponse('/server') });
    const source = await X509Source.create({ address: fake.address, ...FAST });
    const server = createTlsServer({ source, authorizer: authorizeAny() }, (s) => s.end('hello'));
    const refused: unknown[] = [];
    server.on('tlsClientError', (e) => refused.push(e));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as { port: number }).port;
    const client = await createLeaf({ issuer: domain.root, id: 'spiffe://example.org/client' });
    const dial = async (): Promise<string> => {
      const sock = tlsConnect({ host: '127.0.0.1', port, cert: client.pem, key: client.key.pkcs8Pem, ca: domain.root.pem, checkServerIdentity: () => undefined });
      sock.on('error', () => undefined);
      let data = '';
      sock.on('data', (d: Buffer) => (data += d.toString()));
      await new Promise((resolve) => sock.once('close', resolve));
      return data;
    };
    try {
      t.is(await dial(), 'hello');
      const lost = once(source, 'identityLost');
      fake.x509.set({ status: status.PERMISSION_DENIED });
      t.is(((await lost)[0] as SigilError).reason, 'permission-denied');
      const err = t.throws(() => source.svid) as SigilError;
      t.is(err.code, 'ERR_NO_IDENTITY');
      t.is(err.reason, 'permission-denied');
      t.is((t.throws(() => tlsClientOptions({ source, authorizer: authorizeAny() })) as SigilError).code, 'ERR_NO_IDENTITY');
      const before = refused.length;
      t.is(await dial(), '');
      t.is(refused.length, before + 1);
      t.is((refused.at(-1) as SigilError).code, 'ERR_NO_IDENTITY');
      // The source kept retrying; an update restores the identity.
      const calls = fake.x509.calls;
      await until(() => (fake.x509.calls > calls ? true : undefined), 'retried after PermissionDenied');
      const restored = once(source, 'update');
      fake.x509.set({ message: await goodResponse('/server') });
      await restored;
      t.is(source.svid.id.toString(), 'spiffe://example.org/server');
      t.is(await dial(), 'hello');
    } finally {
      server.close();
      await source.close();
    }
  });
});

const echoService = {
  echo: {
    path: '/test.Echo/Echo',
    requestStream: false,
    responseStream: false,
    requestSerialize: (v: string) => Buffer.from(v),
    requestDeserialize: (b: Buffer) => b.toString(),
    responseSerialize: (v: string) => Buffer.from(v),
    responseDeserialize: (b: Buffer) => b.toString(),
  },
} as const;
const EchoClient = makeGenericClientConstructor(echoService, 'Echo');

test('Workload API §5.2.1: PermissionDenied leaves a new grpc-js channel without the withdrawn SVID', async (t) => {
  await withFake(async (serverAgent) => {
    await withFake(async (clientAgent) => {
      serverAgent.x509.set({ message: await goodResponse('/server') });
      clientAgent.x509.set({ message: await goodResponse('/client') });
      const serverSource = await X509Source.create({ address: serverAgent.address, ...FAST });
      const clientSource = await X509Source.create({ address: clientAgent.address, ...FAST });
      const server = new GrpcServer();
      server.addService(echoService, { echo: (call: { request: string }, cb: (e: null, v: string) => void) => cb(null, `echo ${call.request}`) });
      const listener = await serveGrpc(server, { source: serverSource, authorizer: authorizeAny() });
      const call = (): Promise<string> => {
        const client = new EchoClient(`127.0.0.1:${listener.port}`, grpcChannelCredentials({ source: clientSource, authorizer: authorizeAny() }));
        return new Promise<string>((resolve, reject) => {
          (client as unknown as { echo: (r: string, o: object, cb: (e: Error | null, v?: string) => void) => void }).echo('hi', { deadline: Date.now() + 3000 }, (e, v) => {
            client.close();
            if (e === null) resolve(v as string);
            else reject(e);
          });
        });
      };
      try {
        t.is(await call(), 'echo hi');
        const lost = once(clientSource, 'identityLost');
        clientAgent.x509.set({ status: status.PERMISSION_DENIED });
        await lost;
        const err = (await t.throwsAsync(call())) as { code?: number };
        t.true(err.code === status.UNAVAILABLE || err.code === status.DEADLINE_EXCEEDED, `code ${err.code}`);
        const restored = once(clientSource, 'update');
        clientAgent.x509.set({ message: await goodResponse('/client') });
        await restored;
        t.is(await call(), 'echo hi');
      } finally {
        await listener.close();
        server.forceShutdown();
        await clientSource.close();
        await serverSource.close();
      }
    });
  });
});

test('Workload API §6.2.2: PermissionDenied on FetchJWTBundles withdraws the JWT bundles until the next update', async (t) => {
  await withJwtSource({ 'spiffe://example.org': jwks(ec) }, async (source, fake, errors) => {
    fake.jwtBundles.set({ status: status.PERMISSION_DENIED });
    await until(() => errors[0], 'reported');
    const err = (await t.throwsAsync(source.validateJwtSvid(signJwt(ec, claims()), 'db'))) as SigilError;
    t.is(err.code, 'ERR_PERMISSION_DENIED');
    const restored = once(source, 'update');
    fake.jwtBundles.set(bundles({ 'spiffe://example.org': jwks(ec) }));
    await restored;
    t.truthy(await source.validateJwtSvid(signJwt(ec, claims()), 'db'));
  });
});

test('X509-SVID §5.1 (validity): an SVID past its notAfter is never presented, even when no update comes', async (t) => {
  await withFake(async (fake) => {
    const clock = new ManualClock(Date.now());
    fake.x509.set({ message: await goodResponse() });
    const source = await X509Source.create({ address: fake.address, clock, ...FAST });
    try {
      t.truthy(source.svid);
      t.true(source.hasIdentity);
      clock.advance(2 * HOUR); // the leaf lives one hour; the agent sent no successor
      const err = t.throws(() => source.svid) as SigilError;
      t.is(err.code, 'ERR_NO_IDENTITY');
      t.is(err.reason, 'svid-expired');
      t.false(source.hasIdentity);
      t.is((t.throws(() => tlsClientOptions({ source, authorizer: authorizeAny() })) as SigilError).reason, 'svid-expired');
    } finally {
      await source.close();
    }
  });
});

test('Workload API §5.1 (federated_bundles keys): a key that is not a trust domain ID discards the message', async (t) => {
  await withFake(async (fake) => {
    fake.x509.set({ message: await goodResponse() });
    const source = await X509Source.create({ address: fake.address, ...FAST });
    try {
      const errors: SigilError[] = [];
      source.on('watchError', (e) => errors.push(e));
      const bad = await goodResponse();
      fake.x509.set({ message: { ...bad, federated_bundles: { 'spiffe://partner.test/not-a-trust-domain': Buffer.from(partner.root.der) } } });
      t.is((await until(() => errors[0], 'reported')).reason, 'bad-bundle-key');
      t.is(source.bundles.get(TrustDomain.parse('partner.test').name), undefined);
      t.truthy(source.bundles.get('example.org'));
    } finally {
      await source.close();
    }
  });
});
