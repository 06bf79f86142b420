import test from 'ava';
import { generateKeyPairSync } from 'node:crypto';
import { isSigilError } from '../../src/common/errors.js';
import {
  Tag,
  children,
  decodeOid,
  decodeTime,
  encodeLength,
  oid,
  readNode,
  readWhole,
  sequence,
  smallInteger,
  unsignedInteger,
  x509Time,
  contentOf,
} from '../../src/ca/der.js';
import { publicKeyFromSpki, spkiOf, subjectKeyIdentifier } from '../../src/ca/spki.js';
import { x509 } from '../../src/common/x509.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

test('lengths use the short form below 128 and minimal long forms above', (t) => {
  const vectors: Array<[number, string]> = [
    [0, '00'],
    [127, '7f'],
    [128, '8180'],
    [255, '81ff'],
    [256, '820100'],
    [65535, '82ffff'],
    [65536, '83010000'],
  ];
  for (const [n, want] of vectors) t.is(hex(encodeLength(n)), want, `length ${n}`);
});

test('integers are minimal and positive', (t) => {
  const vectors: Array<[string, string]> = [
    ['00', '020100'],
    ['0000', '020100'],
    ['7f', '02017f'],
    ['80', '02020080'],
    ['000080', '02020080'],
    ['00007f', '02017f'],
    ['ff01', '020300ff01'],
  ];
  for (const [magnitude, want] of vectors) t.is(hex(unsignedInteger(Buffer.from(magnitude, 'hex'))), want, magnitude);
  t.is(hex(smallInteger(2)), '020102');
  t.is(hex(smallInteger(256)), '02020100');
});

test('OIDs encode and decode (multi-byte arcs included)', (t) => {
  const vectors: Array<[string, string]> = [
    ['1.2.840.10045.4.3.2', '06082a8648ce3d040302'],
    ['2.5.29.17', '0603551d11'],
    ['1.3.6.1.5.5.7.3.1', '06082b06010505070301'],
    ['1.3.132.0.34', '06052b81040022'],
  ];
  for (const [dotted, want] of vectors) {
    t.is(hex(oid(dotted)), want, dotted);
    t.is(decodeOid(Buffer.from(want, 'hex').subarray(2)), dotted);
  }
});

test('times are UTCTime through 2049 and GeneralizedTime from 2050', (t) => {
  const vectors: Array<[string, number, string]> = [
    ['2026-01-01T00:00:00.999Z', Tag.utcTime, '260101000000Z'],
    ['1999-12-31T23:59:59Z', Tag.utcTime, '991231235959Z'],
    ['2049-12-31T23:59:59Z', Tag.utcTime, '491231235959Z'],
    ['2050-01-01T00:00:00Z', Tag.generalizedTime, '20500101000000Z'],
  ];
  for (const [iso, tag, text] of vectors) {
    const enc = x509Time(Date.parse(iso));
    t.is(enc[0], tag, iso);
    t.is(enc.subarray(2).toString('latin1'), text, iso);
    t.is(decodeTime(tag, enc.subarray(2)), Math.floor(Date.parse(iso) / 1000) * 1000);
  }
});

test('the reader walks what the writer wrote, including long lengths', (t) => {
  const big = Buffer.alloc(300, 7);
  const der = sequence(smallInteger(5), sequence(Buffer.from([0x04, 0x82, 0x01, 0x2c]), big));
  const root = readWhole(der);
  const [a, b] = children(der, root);
  t.is(a?.tag, Tag.integer);
  const [inner] = children(der, b as NonNullable<typeof b>);
  t.is(inner?.tag, Tag.octetString);
  t.deepEqual(contentOf(der, inner as NonNullable<typeof inner>), big);
});

const MALFORMED: Array<[string, string]> = [
  ['indefinite length', '3080'],
  ['non-minimal long length', '30810100'],
  ['leading zero length', '3082000100'],
  ['content past end', '3005020101'],
  ['high tag number', '1f0100'],
  ['truncated header', '30'],
];

for (const [name, bytes] of MALFORMED) {
  test(`the reader refuses ${name}`, (t) => {
    const err = t.throws(() => readNode(Buffer.from(bytes, 'hex'), 0));
    t.true(isSigilError(err, 'ERR_INVALID_ARGUMENT'));
    t.is((err as { reason?: string }).reason, 'bad-der');
  });
}

test('trailing bytes after the outer TLV are refused', (t) => {
  const err = t.throws(() => readWhole(Buffer.from('300000', 'hex')));
  t.is((err as { reason?: string }).reason, 'bad-der');
});

const KEYS = [
  ['ec P-256', () => generateKeyPairSync('ec', { namedCurve: 'P-256' })],
  ['ec P-384', () => generateKeyPairSync('ec', { namedCurve: 'P-384' })],
  ['ec P-521', () => generateKeyPairSync('ec', { namedCurve: 'P-521' })],
  ['rsa 2048', () => generateKeyPairSync('rsa', { modulusLength: 2048 })],
  ['rsa 3072 e=3', () => generateKeyPairSync('rsa', { modulusLength: 3072, publicExponent: 3 })],
  ['ed25519', () => generateKeyPairSync('ed25519')],
] as const;

for (const [name, gen] of KEYS) {
  test(`SPKI built from JWK equals OpenSSL's DER, and imports back (${name})`, (t) => {
    for (let i = 0; i < 8; i++) {
      const { publicKey } = gen();
      const der = publicKey.export({ format: 'der', type: 'spki' });
      t.is(hex(spkiOf(publicKey)), hex(der));
      const back = publicKeyFromSpki(der);
      t.is(hex(back.export({ format: 'der', type: 'spki' })), hex(der));
    }
  });
}

test('the SKI is the SHA-1 of the subjectPublicKey bits, as @peculiar/x509 computes it', async (t) => {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const spki = spkiOf(publicKey);
  const ext = await x509.SubjectKeyIdentifierExtension.create(new x509.PublicKey(spki));
  t.is(subjectKeyIdentifier(spki).toString('hex'), ext.keyId);
});
