/**
 * The pkcs11 key manager against a real SoftHSM2 token (one fresh configuration and token per
 * test; serial, because SoftHSM reads SOFTHSM2_CONF when this process initialises the module).
 */
import test from 'ava';
import { createRequire } from 'node:module';
import { randomBytes, verify, type KeyObject } from 'node:crypto';
import { jwtVerify } from 'jose';
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as Pkcs11Types from 'pkcs11js';
import { DiskKeyManager, rewrapKeys } from '../../../src/ca/key-manager/disk-key-manager.js';
import { generateKekFile, readKekFile } from '../../../src/ca/key-manager/kek.js';
import { openKek, openKeyManager, type KeyManagerSpec } from '../../../src/ca/key-manager/open-key-manager.js';
import { tokenKekWrapper } from '../../../src/ca/key-manager/pkcs11-kek.js';
import { Pkcs11KeyManager } from '../../../src/ca/key-manager/pkcs11-key-manager.js';
import { Pkcs11Token } from '../../../src/ca/key-manager/pkcs11-token.js';
import { SigilError } from '../../../src/common/errors.js';
import { makeCsr, makeCa, opensslVerify, tempDir, TD } from '../helpers.js';
import { SOFTHSM_MODULE, softHsm, type SoftHsm } from '../../helpers/softhsm.js';

const lib = createRequire(import.meta.url)('pkcs11js') as typeof Pkcs11Types;

async function fresh(t: { teardown(fn: () => unknown): void }, label = 'sigil-test'): Promise<SoftHsm> {
  const h = await softHsm(label);
  h.use();
  t.teardown(() => h.remove());
  return h;
}

async function keyDir(t: { teardown(fn: () => unknown): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sigil-p11-keys-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return join(dir, 'keys');
}

function spec(h: SoftHsm, dir: string, mode: 'wrap' | 'sign', over: Partial<KeyManagerSpec['pkcs11']> = {}): KeyManagerSpec {
  return { type: 'pkcs11', dir, pkcs11: { module: SOFTHSM_MODULE, tokenLabel: h.label, pinFile: h.pinFile, mode, kekLabel: 'sigil-kek', sessions: 2, ...over } };
}

/** A second handle on the module from "outside" Sigil (same process, same library state), to inspect objects or inject faults. */
function inspector(h: SoftHsm): { p: Pkcs11Types.PKCS11; session: Pkcs11Types.Handle; slot: Pkcs11Types.Handle; close(): void } {
  const p = new lib.PKCS11();
  p.load(SOFTHSM_MODULE);
  try {
    p.C_Initialize({ flags: lib.CKF_OS_LOCKING_OK });
  } catch {
    // already initialised by the key manager: we share its state
  }
  const slot = p.C_GetSlotList(true).find((s) => p.C_GetTokenInfo(s).label.trim() === h.label);
  if (slot === undefined) throw new Error('token not found');
  const session = p.C_OpenSession(slot, lib.CKF_SERIAL_SESSION);
  return {
    p,
    session,
    slot,
    close: () => {
      try {
        p.C_CloseSession(session);
      } catch {
        // the key manager may have finalised the module first
      }
    },
  };
}

function attrs(p: Pkcs11Types.PKCS11, session: Pkcs11Types.Handle, cls: number): Array<{ label: string; sensitive: boolean; extractable: boolean; neverExtractable: boolean }> {
  p.C_FindObjectsInit(session, [{ type: lib.CKA_CLASS, value: cls }]);
  const handles = p.C_FindObjects(session, 100);
  p.C_FindObjectsFinal(session);
  return handles.map((o) => {
    const [label, sens, extr, never] = p.C_GetAttributeValue(session, o, [
      { type: lib.CKA_LABEL },
      { type: lib.CKA_SENSITIVE },
      { type: lib.CKA_EXTRACTABLE },
      { type: lib.CKA_NEVER_EXTRACTABLE },
    ]);
    return { label: label?.value.toString() ?? '', sensitive: sens?.value[0] === 1, extractable: extr?.value[0] === 1, neverExtractable: never?.value[0] === 1 };
  });
}

function labels(p: Pkcs11Types.PKCS11, session: Pkcs11Types.Handle, cls: number): string[] {
  p.C_FindObjectsInit(session, [{ type: lib.CKA_CLASS, value: cls }]);
  const handles = p.C_FindObjects(session, 100);
  p.C_FindObjectsFinal(session);
  return handles.map((o) => p.C_GetAttributeValue(session, o, [{ type: lib.CKA_LABEL }])[0]?.value.toString() ?? '').sort();
}

test.serial('wrap mode: a sensitive, non-extractable AES KEK in the token wraps the key files; they reopen with the same keys', async (t) => {
  const h = await fresh(t);
  const dir = await keyDir(t);
  const first = await openKeyManager(spec(h, dir, 'wrap'));
  const key = await first.keyManager.generateKey('x509-ca-1', 'ec-p256');
  const sig = await key.sign(Buffer.from('tbs'));
  t.true(verify('sha256', Buffer.from('tbs'), key.publicKey, sig));

  const look = inspector(h);
  const secrets = attrs(look.p, look.session, lib.CKO_SECRET_KEY);
  t.deepEqual(secrets, [{ label: 'sigil-kek', sensitive: true, extractable: false, neverExtractable: true }]);
  look.close();
  await first.close();

  // the key file carries only ciphertext; nothing of the private key
  for (const f of await readdir(dir)) {
    const text = await readFile(join(dir, f), 'utf8');
    t.false(text.includes('PRIVATE KEY'));
    t.false(text.includes(key.publicKey.export({ format: 'jwk' }).x as string) && text.includes('"d"'));
  }
  const second = await openKeyManager(spec(h, dir, 'wrap'));
  t.teardown(() => second.close());
  const again = await second.keyManager.getKey('x509-ca-1');
  t.truthy(again);
  t.true(again?.publicKey.equals(key.publicKey));
});

test.serial('wrong module, token label, slot and pin each fail naming which, never the pin', async (t) => {
  const h = await fresh(t);
  const dir = await keyDir(t);
  const cases: Array<[string, KeyManagerSpec, string]> = [
    ['module', spec(h, dir, 'wrap', { module: '/nonexistent/libnope.so' }), 'pkcs11-module-unusable'],
    ['label', spec(h, dir, 'wrap', { tokenLabel: 'no-such-token' }), 'pkcs11-token-not-found'],
    ['slot', { ...spec(h, dir, 'wrap'), pkcs11: { module: SOFTHSM_MODULE, slot: 424242, pinFile: h.pinFile, mode: 'wrap', kekLabel: 'sigil-kek', sessions: 1 } }, 'pkcs11-token-not-found'],
  ];
  const badPin = join(h.dir, 'bad-pin');
  await writeFile(badPin, 'not-the-pin-0000\n', { mode: 0o600 });
  cases.push(['pin', spec(h, dir, 'wrap', { pinFile: badPin }), 'pkcs11-pin-incorrect']);
  const loosePin = join(h.dir, 'loose-pin');
  await writeFile(loosePin, `${h.pin}\n`);
  await chmod(loosePin, 0o644);
  cases.push(['pin file mode', spec(h, dir, 'wrap', { pinFile: loosePin }), 'insecure-pin-file']);
  for (const [what, s, reason] of cases) {
    const err = await t.throwsAsync(openKeyManager(s), { instanceOf: SigilError }, what);
    t.is((err as SigilError).reason, reason, what);
    t.is((err as SigilError).code, 'ERR_CONFIG_INVALID', what);
    t.false(err?.message.includes(h.pin) ?? true, what);
    t.false(err?.message.includes('not-the-pin') ?? true, what);
    t.false(JSON.stringify(err).includes(h.pin), what);
  }
  t.regex((await t.throwsAsync(openKeyManager(cases[0]?.[1] as KeyManagerSpec)))?.message ?? '', /libnope\.so/);
  t.regex((await t.throwsAsync(openKeyManager(cases[1]?.[1] as KeyManagerSpec)))?.message ?? '', /no-such-token.*found: "sigil-test"/);
  t.regex((await t.throwsAsync(openKeyManager(cases[3]?.[1] as KeyManagerSpec)))?.message ?? '', /bad-pin is wrong for token "sigil-test"/);
  // the right settings still open (a failed attempt leaves nothing half-open)
  const ok = await openKeyManager(spec(h, dir, 'wrap'));
  await ok.close();
  t.pass();
});

test.serial('rewrap: KEK file → token → KEK file, same keys throughout; a file tampered under the token KEK is refused', async (t) => {
  const h = await fresh(t);
  const dir = await keyDir(t);
  const kekPath = join(h.dir, 'kek');
  await generateKekFile(kekPath);
  const onDisk = await DiskKeyManager.open({ dir, kekPath });
  const a = await onDisk.generateKey('x509-ca-a', 'ec-p256');
  const b = await onDisk.generateKey('jwt-b', 'rsa-2048');

  const token = await openKek(spec(h, dir, 'wrap'));
  t.deepEqual(await rewrapKeys(dir, await readKekFile(kekPath), token.kek), { rewrapped: 2, alreadyCurrent: 0 });
  // the KEK file no longer opens them; the token does, with the same keys
  await t.throwsAsync(DiskKeyManager.open({ dir, kekPath }), { instanceOf: SigilError, message: /different kek/ });
  await token.close();
  const viaToken = await openKeyManager(spec(h, dir, 'wrap'));
  t.true((await viaToken.keyManager.getKey('x509-ca-a'))?.publicKey.equals(a.publicKey));
  t.true((await viaToken.keyManager.getKey('jwt-b'))?.publicKey.equals(b.publicKey));
  await viaToken.close();

  // back to a (new) KEK file
  const kek2 = join(h.dir, 'kek2');
  await generateKekFile(kek2);
  const from = await openKek(spec(h, dir, 'wrap'));
  t.deepEqual(await rewrapKeys(dir, from.kek, await readKekFile(kek2)), { rewrapped: 2, alreadyCurrent: 0 });
  await from.close();
  const back = await DiskKeyManager.open({ dir, kekPath: kek2 });
  t.true((await back.getKey('x509-ca-a'))?.publicKey.equals(a.publicKey));
  t.true((await back.getKey('jwt-b'))?.publicKey.equals(b.publicKey));

  // a data key wrapped by the token but altered is "tampered", not a token fault
  const to = await openKek(spec(h, dir, 'wrap'));
  await rewrapKeys(dir, await readKekFile(kek2), to.kek);
  await to.close();
  const path = join(dir, 'jwt-b.key.json');
  const file = JSON.parse(await readFile(path, 'utf8')) as { dataKey: { tag: string } };
  const tag = Buffer.from(file.dataKey.tag, 'base64');
  tag[0] = (tag[0] as number) ^ 1;
  file.dataKey.tag = tag.toString('base64');
  await writeFile(path, JSON.stringify(file), { mode: 0o600 });
  const err = await t.throwsAsync(openKeyManager(spec(h, dir, 'wrap')), { instanceOf: SigilError });
  t.is((err as SigilError).reason, 'key-file-tampered');
});

test.serial('sign mode: keys generated in the token sign (ECDSA DER and P1363, RSA); private objects are sensitive and never extractable; deleted keys are gone from the token', async (t) => {
  const h = await fresh(t);
  const dir = await keyDir(t);
  const opened = await openKeyManager(spec(h, dir, 'sign'));
  t.teardown(() => opened.close());
  const km = opened.keyManager;
  const data = randomBytes(200);
  for (const type of ['ec-p256', 'ec-p384', 'rsa-2048'] as const) {
    const k = await km.generateKey(`x509-ca-${type}`, type);
    const hash = type === 'ec-p384' ? 'sha384' : 'sha256';
    t.true(verify(hash, data, k.publicKey, await k.sign(data)), type);
    if (type !== 'rsa-2048') {
      t.true(verify(hash, data, { key: k.publicKey, dsaEncoding: 'ieee-p1363' }, await k.sign(data, { dsaEncoding: 'ieee-p1363' })), type);
    }
  }
  // nothing was written to the key directory: the keys are only in the token
  t.deepEqual(await readdir(dir).catch(() => []), []);

  const look = inspector(h);
  t.teardown(() => look.close());
  const privates = attrs(look.p, look.session, lib.CKO_PRIVATE_KEY);
  t.is(privates.length, 3);
  for (const o of privates) t.like(o, { sensitive: true, extractable: false, neverExtractable: true }, o.label);

  // a fresh manager finds the same keys after a "restart"
  const second = await Pkcs11Token.open({ module: SOFTHSM_MODULE, tokenLabel: h.label, pinFile: h.pinFile });
  t.teardown(() => second.close());
  const reopened = await Pkcs11KeyManager.open(second);
  t.deepEqual((await reopened.listKeys()).map((k) => k.id).sort(), ['x509-ca-ec-p256', 'x509-ca-ec-p384', 'x509-ca-rsa-2048']);

  await km.deleteKey('x509-ca-ec-p384');
  t.deepEqual(
    attrs(look.p, look.session, lib.CKO_PRIVATE_KEY).map((o) => o.label).sort(),
    ['sigil/x509-ca-ec-p256', 'sigil/x509-ca-rsa-2048'],
  );
  t.deepEqual(labels(look.p, look.session, lib.CKO_PUBLIC_KEY), ['sigil/x509-ca-ec-p256', 'sigil/x509-ca-rsa-2048']);
  t.is(await km.getKey('x509-ca-ec-p384'), undefined);
});

test.serial('sessions closed under the manager (the module dropped them and the login): it logs in again and signs', async (t) => {
  const h = await fresh(t);
  const token = await Pkcs11Token.open({ module: SOFTHSM_MODULE, tokenLabel: h.label, pinFile: h.pinFile, sessions: 2 });
  t.teardown(() => token.close());
  const km = await Pkcs11KeyManager.open(token);
  const k = await km.generateKey('jwt-1', 'ec-p256');
  const wrapped = await tokenKekWrapper(token, 'sigil-kek', true);

  const look = inspector(h);
  look.close();
  // every session of the application is closed: the token also forgets the login
  look.p.C_CloseAllSessions(look.slot);
  const data = Buffer.from('after the reset');
  t.true(verify('sha256', data, k.publicKey, await k.sign(data)));
  t.true(token.available);
  const aad = Buffer.from('aad');
  const dek = randomBytes(32);
  look.p.C_CloseAllSessions(look.slot);
  const box = await wrapped.wrap(dek, aad);
  t.deepEqual(await wrapped.unwrap(box, aad), dek);
  // a burst larger than the pool shares the sessions without mixing operations
  const sigs = await Promise.all(Array.from({ length: 20 }, (_, i) => k.sign(Buffer.from(`m${i}`))));
  sigs.forEach((s, i) => t.true(verify('sha256', Buffer.from(`m${i}`), k.publicKey, s), `signature ${i}`));
});

test.serial('sign mode under the CA: SVIDs and JWT-SVIDs signed in the token verify; prepare → activate → taint → revoke; a retired key is destroyed in the token once its SVIDs have expired', async (t) => {
  const h = await fresh(t);
  const token = await Pkcs11Token.open({ module: SOFTHSM_MODULE, tokenLabel: h.label, pinFile: h.pinFile, sessions: 2 });
  t.teardown(() => token.close());
  const keyManager = await Pkcs11KeyManager.open(token);
  // signing threads configured: the token's keys cannot go to them, so the CA signs on the main thread
  const { ca, clock } = await makeCa({ keyManager, signingThreads: 2 });
  t.teardown(async () => {
    ca.stop();
    await ca.idle();
    await ca.close();
  });
  const { dir, cleanup } = await tempDir();
  t.teardown(cleanup);
  const look = inspector(h);
  t.teardown(() => look.close());
  const inToken = (): string[] => labels(look.p, look.session, lib.CKO_PRIVATE_KEY);
  const ca1 = ca.status().x509[0]?.id as string;
  const x509Key1 = (await keyManager.listKeys()).find((k) => k.id.startsWith('x509'))?.id as string;
  t.is(inToken().length, 2, 'the first CA key and JWT key are in the token');
  for (const o of attrs(look.p, look.session, lib.CKO_PRIVATE_KEY)) t.like(o, { sensitive: true, extractable: false, neverExtractable: true });

  const { csr } = await makeCsr();
  const first = await ca.signX509SvidFromCsr({ csr, spiffeId: TD.id('w') });
  t.regex(await opensslVerify(dir, first.chain, ca.x509Authorities(), clock.nowMs()), /: OK/);
  const jwt = await ca.mintJwtSvid({ spiffeId: TD.id('w'), audience: ['a'] });
  const jwk = ca.jwtAuthorities().find((k) => k.kid === jwt.kid);
  const { payload } = await jwtVerify(jwt.token, jwk?.publicKey as KeyObject, { audience: 'a', currentDate: clock.now() });
  t.is(payload.sub, 'spiffe://example.org/w');

  // prepare: the new authority's key is created in the token
  const p = await ca.prepare('x509');
  t.is(inToken().length, 3);
  await ca.activate('x509');
  const second = await ca.signX509SvidFromCsr({ csr, spiffeId: TD.id('w') });
  t.regex(await opensslVerify(dir, second.chain, ca.x509Authorities(), clock.nowMs()), /: OK/);
  t.not(second.chain[0]?.toString('hex'), first.chain[0]?.toString('hex'));
  await ca.taint('x509', ca1);
  t.true(inToken().includes(`sigil/${x509Key1}`), 'tainted: still trusted, key kept');
  await ca.revoke('x509', ca1);
  t.false(inToken().includes(`sigil/${x509Key1}`), 'revoked: the key object is gone from the token');
  t.is(inToken().length, 2);

  // the natural end of a key: the active CA (p) is replaced at 5/6 of its life and destroyed once its last SVID expired
  const pKey = (await keyManager.listKeys()).map((k) => k.id).find((id) => id.startsWith('x509')) as string;
  ca.start();
  const activatedAt = ca.status().x509.find((x) => x.id === p.id)?.notAfter.getTime() as number;
  clock.set(activatedAt - 4 * 60 * 60 * 1000 + 60_000);
  await ca.idle();
  t.deepEqual(ca.status().x509.map((x) => x.phase), ['old', 'active']);
  t.true(inToken().includes(`sigil/${pKey}`), 'old but its SVIDs may still be valid: kept');
  clock.set(activatedAt - 2 * 60 * 60 * 1000);
  await ca.idle();
  t.is(ca.status().x509.length, 1);
  t.false(inToken().includes(`sigil/${pKey}`), 'its SVIDs can have expired: destroyed in the token');
});

test.serial('rewrap between two tokens of one module: token A → token B, then A no longer opens the keys', async (t) => {
  const h = await fresh(t, 'token-a');
  await h.addToken('token-b');
  const dir = await keyDir(t);
  const a = await openKeyManager(spec(h, dir, 'wrap'));
  const key = await a.keyManager.generateKey('x509-ca-1', 'ec-p384');
  await a.close();
  const from = await openKek(spec(h, dir, 'wrap'));
  const to = await openKek(spec(h, dir, 'wrap', { tokenLabel: 'token-b' }));
  t.not(from.kek.fingerprint, to.kek.fingerprint);
  t.deepEqual(await rewrapKeys(dir, from.kek, to.kek), { rewrapped: 1, alreadyCurrent: 0 });
  await to.close();
  await from.close();
  const b = await openKeyManager(spec(h, dir, 'wrap', { tokenLabel: 'token-b' }));
  t.teardown(() => b.close());
  t.true((await b.keyManager.getKey('x509-ca-1'))?.publicKey.equals(key.publicKey));
  const err = await t.throwsAsync(openKeyManager(spec(h, dir, 'wrap')), { instanceOf: SigilError });
  t.is((err as SigilError).reason, 'wrong-kek');
});

test.serial('rewrap-keys refuses a sign-mode configuration: its keys cannot leave the token', async (t) => {
  const h = await fresh(t);
  const dir = await keyDir(t);
  const err = await t.throwsAsync(openKek(spec(h, dir, 'sign')), { instanceOf: SigilError });
  t.is((err as SigilError).code, 'ERR_FAILED_PRECONDITION');
  t.regex(err?.message ?? '', /sign-mode keys cannot leave their token/);
});
