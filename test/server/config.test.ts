import test from 'ava';
import { SigilError } from '../../src/common/errors.js';
import { resolveServerConfig } from '../../src/server/config.js';
import { startTestServer } from '../helpers/server.js';

const BASE = { trustDomain: 'example.org', dataDir: '/var/lib/sigil', keyManager: { type: 'memory' } };

test('defaults are filled, durations parsed, paths resolved, and the result frozen', (t) => {
  const c = resolveServerConfig(BASE);
  t.is(c.trustDomain.name, 'example.org');
  t.is(c.svid.defaultX509TtlMs, 3_600_000);
  t.is(c.svid.defaultJwtTtlMs, 300_000);
  t.is(c.ca.ttlMs, 86_400_000);
  t.is(c.nodeAttestors.joinToken?.defaultTtlMs, 600_000);
  t.deepEqual(c.agentApi, { host: '0.0.0.0', port: 8081 });
  t.is(c.adminApi.socketPath, '/var/lib/sigil/admin.sock');
  t.true(Object.isFrozen(c));
  t.true(Object.isFrozen(c.svid));
});

test('flags win over the file', (t) => {
  const c = resolveServerConfig({ ...BASE, agentApi: { address: '127.0.0.1:1' } }, { agentAddress: '127.0.0.1:2', trustDomain: 'other.org' });
  t.is(c.agentApi.port, 2);
  t.is(c.trustDomain.name, 'other.org');
});

test('every problem is reported at once with its key', (t) => {
  const err = t.throws(
    () => resolveServerConfig({ trustDomain: 'Bad Domain', dataDir: '/x', unknownTop: 1, svid: { defaultX509Ttl: 'soon', extra: true }, agentApi: { address: 'nohost' } }),
    { instanceOf: SigilError },
  );
  t.is(err?.code, 'ERR_CONFIG_INVALID');
  for (const key of ['trustDomain', 'unknownTop', 'svid.defaultX509Ttl', 'svid.extra', 'agentApi.address']) t.true(err?.message.includes(key), key);
});

test('the disk key manager needs a KEK file', (t) => {
  const err = t.throws(() => resolveServerConfig({ trustDomain: 'example.org', dataDir: '/x' }), { instanceOf: SigilError });
  t.true(err?.message.includes('keyManager.kekFile'));
});

test('ca.signingThreads: absent by default (one per core at start), 0 allowed, negative or fractional refused', (t) => {
  t.is(resolveServerConfig(BASE).ca.signingThreads, undefined);
  t.is(resolveServerConfig({ ...BASE, ca: { signingThreads: 0 } }).ca.signingThreads, 0);
  t.is(resolveServerConfig({ ...BASE, ca: { signingThreads: 3 } }).ca.signingThreads, 3);
  for (const bad of [-1, 1.5, 1000, '2']) {
    const err = t.throws(() => resolveServerConfig({ ...BASE, ca: { signingThreads: bad } }), { instanceOf: SigilError });
    t.is(err?.code, 'ERR_CONFIG_INVALID');
    t.true(err?.message.includes('ca.signingThreads'));
  }
});

test('ca.signingThreads reaches the running CA (0 = sign on the main thread)', async (t) => {
  const s = await startTestServer({ config: { ca: { signingThreads: 0 } } });
  t.teardown(() => s.destroy());
  t.is(s.server.ca.signingThreads, 0);
});

test('auditLog: retention 7d, ship interval 1s and cursor "default" by default; bounds and names checked with the key named', (t) => {
  const c = resolveServerConfig(BASE);
  t.deepEqual(c.auditLog, { path: '/var/lib/sigil/audit.log', retentionMs: 7 * 86_400_000, shipIntervalMs: 1000, cursor: 'default' });
  const set = resolveServerConfig({ ...BASE, auditLog: { path: '-', retention: '2h', shipInterval: '250ms', cursor: 'server-b' } });
  t.deepEqual(set.auditLog, { path: '-', retentionMs: 7_200_000, shipIntervalMs: 250, cursor: 'server-b' });
  for (const [key, bad] of [
    ['auditLog.retention', { retention: '30s' }],
    ['auditLog.retention', { retention: 'forever' }],
    ['auditLog.shipInterval', { shipInterval: '2h' }],
    ['auditLog.shipInterval', { shipInterval: '0s' }],
    ['auditLog.cursor', { cursor: 'has space' }],
    ['auditLog.cursor', { cursor: '' }],
    ['auditLog.extra', { extra: 1 }],
  ] as const) {
    const err = t.throws(() => resolveServerConfig({ ...BASE, auditLog: bad }), { instanceOf: SigilError });
    t.is(err?.code, 'ERR_CONFIG_INVALID');
    t.true(err?.message.includes(key), `${key}: ${err?.message}`);
  }
  // a bad duration is reported once, as a duration, not also as out of bounds
  const err = t.throws(() => resolveServerConfig({ ...BASE, auditLog: { retention: 'forever' } }), { instanceOf: SigilError });
  t.false(err?.message.includes('at least'), err?.message);
});

test('keyManager.type pkcs11: module, pinFile, mode and one of tokenLabel/slot required; paths resolved; defaults filled; misplaced keys named', (t) => {
  const c = resolveServerConfig(
    { trustDomain: 'example.org', dataDir: '/x', keyManager: { type: 'pkcs11', module: '/usr/lib/softhsm/libsofthsm2.so', tokenLabel: 'sigil', pinFile: 'pin', mode: 'wrap' } },
    {},
    '/etc/sigil',
  );
  t.deepEqual(c.keyManager.pkcs11, { module: '/usr/lib/softhsm/libsofthsm2.so', tokenLabel: 'sigil', pinFile: '/etc/sigil/pin', mode: 'wrap', kekLabel: 'sigil-kek', sessions: 4 });
  t.is(c.keyManager.dir, '/x/keys');
  const missing = t.throws(() => resolveServerConfig({ trustDomain: 'example.org', dataDir: '/x', keyManager: { type: 'pkcs11' } }), { instanceOf: SigilError });
  for (const key of ['keyManager.module', 'keyManager.pinFile', 'keyManager.mode', 'keyManager.tokenLabel']) t.true(missing?.message.includes(key), key);
  const both = t.throws(
    () => resolveServerConfig({ trustDomain: 'example.org', dataDir: '/x', keyManager: { type: 'pkcs11', module: 'm', pinFile: 'p', mode: 'sign', tokenLabel: 'a', slot: 1, kekLabel: 'k', kekFile: 'f' } }),
    { instanceOf: SigilError },
  );
  for (const key of ['keyManager.tokenLabel', 'keyManager.kekLabel', 'keyManager.kekFile']) t.true(both?.message.includes(key), key);
  const stray = t.throws(() => resolveServerConfig({ ...BASE, keyManager: { type: 'memory', pinFile: 'p' } }), { instanceOf: SigilError });
  t.true(stray?.message.includes('keyManager.pinFile'));
  // the PIN itself has no key: it only ever comes from the file
  const pin = t.throws(() => resolveServerConfig({ ...BASE, keyManager: { type: 'pkcs11', pin: '1234' } }), { instanceOf: SigilError });
  t.true(pin?.message.includes('keyManager.pin'));
  t.false(pin?.message.includes('1234'));
});

test('svid.jwtIssuer: an https URL in normal form is kept; anything else is refused naming the key', (t) => {
  t.is(resolveServerConfig(BASE).svid.jwtIssuer, undefined);
  for (const good of ['https://oidc.example.org', 'https://oidc.example.org/td/prod', 'https://oidc.example.org:8443']) {
    t.is(resolveServerConfig({ ...BASE, svid: { jwtIssuer: good } }).svid.jwtIssuer, good, good);
  }
  t.is(resolveServerConfig({ ...BASE, svid: { jwtIssuer: 'http://127.0.0.1:9', allowInsecureJwtIssuer: true } }).svid.jwtIssuer, 'http://127.0.0.1:9');
  const bad: Array<[Record<string, unknown>, string]> = [
    [{ jwtIssuer: 'http://oidc.example.org' }, 'https://'],
    [{ jwtIssuer: 'https://oidc.example.org/?x=1' }, 'query'],
    [{ jwtIssuer: 'https://oidc.example.org?' }, 'query'],
    [{ jwtIssuer: 'https://oidc.example.org#frag' }, 'fragment'],
    [{ jwtIssuer: 'https://user:pw@oidc.example.org' }, 'user name'],
    [{ jwtIssuer: 'https://OIDC.example.org' }, 'normal form'],
    [{ jwtIssuer: 'oidc.example.org' }, 'absolute URL'],
    [{ jwtIssuer: 'ftp://oidc.example.org', allowInsecureJwtIssuer: true }, 'http://'],
    [{ allowInsecureJwtIssuer: true }, 'svid.allowInsecureJwtIssuer'],
  ];
  for (const [svid, why] of bad) {
    const err = t.throws(() => resolveServerConfig({ ...BASE, svid }), { instanceOf: SigilError }, JSON.stringify(svid));
    t.is(err?.code, 'ERR_CONFIG_INVALID');
    t.true(err?.message.includes(svid.jwtIssuer === undefined ? 'svid.allowInsecureJwtIssuer' : 'svid.jwtIssuer'), err?.message);
    t.true(err?.message.includes(why), `${JSON.stringify(svid)}: ${err?.message}`);
  }
});
