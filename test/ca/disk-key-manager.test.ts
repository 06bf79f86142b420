/** The disk key manager: envelope encryption at rest, file modes, wrong KEKs, tampering, KEK rotation. */
import test, { type ExecutionContext } from 'ava';
import { createDecipheriv, createPrivateKey, createPublicKey, randomBytes, verify, type KeyObject } from 'node:crypto';
import { chmod, readFile, readdir, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isSigilError } from '../../src/common/errors.js';
import { Secret } from '../../src/common/secret.js';
import { DiskKeyManager, rewrapKeys } from '../../src/ca/key-manager/disk-key-manager.js';
import { generateKekFile, readKekFile } from '../../src/ca/key-manager/kek.js';
import { hashForKeyType, type KeyType } from '../../src/plugin/key-manager.js';
import { tempDir } from './helpers.js';

const TYPES: KeyType[] = ['ec-p256', 'ec-p384', 'rsa-2048'];

function reasonOf(err: unknown): string | undefined {
  return (err as { reason?: string } | undefined)?.reason;
}

interface Box {
  nonce: string;
  ciphertext: string;
  tag: string;
}

function openBox(key: Buffer, box: Box, aad: string): Buffer {
  const d = createDecipheriv('aes-256-gcm', key, Buffer.from(box.nonce, 'base64'));
  d.setAAD(Buffer.from(aad, 'utf8'));
  d.setAuthTag(Buffer.from(box.tag, 'base64'));
  return Buffer.concat([d.update(Buffer.from(box.ciphertext, 'base64')), d.final()]);
}

/** Decrypts a key file independently of the implementation, following the documented format. */
async function decryptByHand(path: string, kek: Buffer): Promise<{ pkcs8: Buffer; key: KeyObject }> {
  const f = JSON.parse(await readFile(path, 'utf8')) as { id: string; type: string; dataKey: Box; privateKey: Box };
  const dek = openBox(kek, f.dataKey, `sigil/dek/v1\0${f.id}\0${f.type}`);
  const pkcs8 = openBox(dek, f.privateKey, `sigil/key/v1\0${f.id}\0${f.type}`);
  return { pkcs8, key: createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }) };
}

async function setup(t: ExecutionContext): Promise<{ dir: string; kekPath: string; kek: Secret<Buffer> }> {
  const { dir: root, cleanup } = await tempDir('sigil-km-');
  t.teardown(cleanup);
  const kekPath = join(root, 'kek');
  await generateKekFile(kekPath);
  return { dir: join(root, 'keys'), kekPath, kek: await readKekFile(kekPath) };
}

test('keys are stored envelope-encrypted: no plaintext private key on disk, 0600 files in a 0700 dir', async (t) => {
  const { dir, kekPath, kek } = await setup(t);
  const km = await DiskKeyManager.open({ dir, kekPath });
  t.is((await stat(dir)).mode & 0o777, 0o700);
  for (const type of TYPES) await km.generateKey(`k-${type}`, type);
  const files = (await readdir(dir)).sort();
  t.deepEqual(files, TYPES.map((ty) => `k-${ty}.key.json`).sort());
  const contents = await Promise.all(files.map((f) => readFile(join(dir, f))));
  for (const [i, f] of files.entries()) {
    t.is((await stat(join(dir, f))).mode & 0o777, 0o600, f);
    const { pkcs8, key } = await decryptByHand(join(dir, f), kek.reveal());
    const managed = await km.getKey(f.replace('.key.json', ''));
    t.true(createPublicKey(key).equals(managed?.publicKey as KeyObject), f);
    const scalar = Buffer.from((key.export({ format: 'jwk' }) as { d: string }).d, 'base64url');
    for (const c of contents) {
      t.false(c.includes(pkcs8), `${f}: PKCS#8 DER found in a file`);
      t.false(c.includes(Buffer.from(pkcs8.toString('base64'))), `${f}: base64 PKCS#8 found in a file`);
      t.false(c.includes(scalar), `${f}: private scalar found in a file`);
      t.false(c.includes(Buffer.from('PRIVATE KEY')));
      t.false(c.includes(kek.reveal()));
    }
    // The key file itself must still hold the wrapped key (non-empty ciphertext), not nothing.
    t.true((contents[i]?.length ?? 0) > pkcs8.length, `${f}: key file is shorter than the key it should wrap`);
  }
});

test('reopening the same directory with the same KEK yields the same keys', async (t) => {
  const { dir, kekPath } = await setup(t);
  const km = await DiskKeyManager.open({ dir, kekPath });
  const data = Buffer.from('to be signed');
  const sigs = new Map<string, Buffer>();
  for (const type of TYPES) sigs.set(type, await (await km.generateKey(`k-${type}`, type)).sign(data));
  const again = await DiskKeyManager.open({ dir, kekPath });
  t.is((await again.listKeys()).length, TYPES.length);
  for (const type of TYPES) {
    const key = await again.getKey(`k-${type}`);
    t.is(key?.type, type);
    const before = await km.getKey(`k-${type}`);
    t.true(key?.publicKey.equals(before?.publicKey as KeyObject));
    // A signature made after the restart verifies with the key from before, and vice versa.
    const sig = await (key as NonNullable<typeof key>).sign(data);
    t.true(verify(hashForKeyType(type), data, before?.publicKey as KeyObject, sig));
    t.true(verify(hashForKeyType(type), data, key?.publicKey as KeyObject, sigs.get(type) as Buffer));
  }
  const p1363 = await (await again.getKey('k-ec-p256'))?.sign(data, { dsaEncoding: 'ieee-p1363' });
  t.is(p1363?.length, 64);
  await again.deleteKey('k-ec-p256');
  t.false((await readdir(dir)).includes('k-ec-p256.key.json'));
  t.is(await again.getKey('k-ec-p256'), undefined);
});

test('a KEK file readable by group or others is refused, naming the path and mode', async (t) => {
  const { kekPath } = await setup(t);
  for (const mode of [0o644, 0o640, 0o604]) {
    await chmod(kekPath, mode);
    const err = await t.throwsAsync(readKekFile(kekPath));
    t.true(isSigilError(err, 'ERR_CONFIG_INVALID'));
    t.is(reasonOf(err), 'insecure-kek-file');
    t.true(err?.message.includes(kekPath));
    t.true(err?.message.includes(`0${mode.toString(8)}`));
  }
  await chmod(kekPath, 0o400);
  await t.notThrowsAsync(readKekFile(kekPath));
  await chmod(kekPath, 0o600);
  await writeFile(kekPath, randomBytes(31));
  t.is(reasonOf(await t.throwsAsync(readKekFile(kekPath))), 'bad-kek-file');
  t.is(reasonOf(await t.throwsAsync(readKekFile(`${kekPath}.missing`))), 'kek-file-missing');
});

test('generateKekFile writes 32 random bytes 0600 and never overwrites', async (t) => {
  const { kekPath } = await setup(t);
  t.is((await stat(kekPath)).mode & 0o777, 0o600);
  t.is((await readFile(kekPath)).length, 32);
  const err = await t.throwsAsync(generateKekFile(kekPath));
  t.true(isSigilError(err, 'ERR_ALREADY_EXISTS'));
});

test('a key directory open to group or others is refused', async (t) => {
  const { dir, kekPath } = await setup(t);
  await DiskKeyManager.open({ dir, kekPath });
  await chmod(dir, 0o755);
  t.is(reasonOf(await t.throwsAsync(DiskKeyManager.open({ dir, kekPath }))), 'insecure-key-dir');
});

test('a wrong KEK is refused with a clear error', async (t) => {
  const { dir, kekPath } = await setup(t);
  const km = await DiskKeyManager.open({ dir, kekPath });
  await km.generateKey('k1', 'ec-p256');
  const err = await t.throwsAsync(DiskKeyManager.open({ dir, kek: new Secret(randomBytes(32)) }));
  t.true(isSigilError(err, 'ERR_CONFIG_INVALID'));
  t.is(reasonOf(err), 'wrong-kek');
});

test('tampered key files are refused', async (t) => {
  const { dir, kekPath } = await setup(t);
  const km = await DiskKeyManager.open({ dir, kekPath });
  await km.generateKey('k1', 'ec-p256');
  const path = join(dir, 'k1.key.json');
  const original = await readFile(path, 'utf8');
  const flip = (b64: string): string => {
    const b = Buffer.from(b64, 'base64');
    b[3] = (b[3] as number) ^ 0x40;
    return b.toString('base64');
  };
  const mutations: Array<[string, (f: Record<string, unknown> & { dataKey: Box; privateKey: Box }) => void, string]> = [
    ['private key ciphertext', (f) => void (f.privateKey.ciphertext = flip(f.privateKey.ciphertext)), 'key-file-tampered'],
    ['private key tag', (f) => void (f.privateKey.tag = flip(f.privateKey.tag)), 'key-file-tampered'],
    ['wrapped data key', (f) => void (f.dataKey.ciphertext = flip(f.dataKey.ciphertext)), 'key-file-tampered'],
    ['key type (bound by AAD)', (f) => void (f.type = 'ec-p384'), 'key-file-tampered'],
    ['public key', (f) => void (f.publicKey = flip(f.publicKey as string)), 'key-file-tampered'],
    ['key id', (f) => void (f.id = 'k2'), 'key-file-corrupt'],
  ];
  for (const [name, mutate, reason] of mutations) {
    const f = JSON.parse(original) as Record<string, unknown> & { dataKey: Box; privateKey: Box };
    mutate(f);
    await writeFile(path, JSON.stringify(f));
    const err = await t.throwsAsync(DiskKeyManager.open({ dir, kekPath }), undefined, name);
    t.is(reasonOf(err), reason, name);
  }
  // A file renamed to another key's ID fails the AAD binding as well.
  await writeFile(path, original);
  const f = JSON.parse(original) as Record<string, unknown>;
  f.id = 'k9';
  await writeFile(join(dir, 'k9.key.json'), JSON.stringify(f));
  await rename(path, join(dir, 'k1.bak'));
  t.is(reasonOf(await t.throwsAsync(DiskKeyManager.open({ dir, kekPath }))), 'key-file-tampered');
});

test('rotating the KEK re-wraps only the data keys; the new KEK opens them, the old one no longer does', async (t) => {
  const { dir, kekPath, kek } = await setup(t);
  const km = await DiskKeyManager.open({ dir, kekPath });
  for (const type of TYPES) await km.generateKey(`k-${type}`, type);
  const before = new Map<string, { privateKey: Box }>();
  for (const f of await readdir(dir)) before.set(f, JSON.parse(await readFile(join(dir, f), 'utf8')) as { privateKey: Box });

  const newKekPath = `${kekPath}.new`;
  await generateKekFile(newKekPath);
  const newKek = await readKekFile(newKekPath);
  // A wrong "old" KEK changes nothing.
  t.is(reasonOf(await t.throwsAsync(rewrapKeys(dir, new Secret(randomBytes(32)), newKek))), 'wrong-kek');
  const result = await rewrapKeys(dir, kek, newKek);
  t.deepEqual(result, { rewrapped: 3, alreadyCurrent: 0 });
  for (const f of await readdir(dir)) {
    const after = JSON.parse(await readFile(join(dir, f), 'utf8')) as { privateKey: Box; dataKey: Box };
    t.deepEqual(after.privateKey, before.get(f)?.privateKey, `${f}: private key ciphertext untouched`);
    t.is((await stat(join(dir, f))).mode & 0o777, 0o600);
  }
  // Repeating an interrupted rotation is harmless.
  t.deepEqual(await rewrapKeys(dir, kek, newKek), { rewrapped: 0, alreadyCurrent: 3 });

  const reopened = await DiskKeyManager.open({ dir, kekPath: newKekPath });
  for (const type of TYPES) t.true((await reopened.getKey(`k-${type}`))?.publicKey.equals((await km.getKey(`k-${type}`))?.publicKey as KeyObject));
  t.is(reasonOf(await t.throwsAsync(DiskKeyManager.open({ dir, kekPath }))), 'wrong-kek');

  // Through a running manager: keys generated afterwards use the newest KEK.
  const third = new Secret(randomBytes(32));
  t.is(reasonOf(await t.throwsAsync(reopened.rewrapKeys(kek, third))), 'wrong-kek');
  await reopened.rewrapKeys(newKek, third);
  await reopened.generateKey('later', 'ec-p256');
  const last = await DiskKeyManager.open({ dir, kek: third });
  t.is((await last.listKeys()).length, 4);
});

test('key IDs that are not safe file names are refused', async (t) => {
  const { dir, kekPath } = await setup(t);
  const km = await DiskKeyManager.open({ dir, kekPath });
  for (const id of ['../x', '.hidden', 'a/b', '', 'x'.repeat(129), 'sp ace']) {
    t.is(reasonOf(await t.throwsAsync(km.generateKey(id, 'ec-p256'))), 'bad-key-id', id);
  }
});
