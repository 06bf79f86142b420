/**
 * OBJECT IDENTIFIER decoding against openssl: each OID is encoded by `openssl asn1parse
 * -genstr`, and what both of Sigil's readers (src/spiffe/der.ts, and src/ca/der.ts on top of
 * it) make of that DER must be openssl's own dotted text, including 128-bit UUID arcs under
 * 2.25 and arcs just past 2^53, where Number arithmetic used to round; and the one encoder
 * (oidContent, under the CA's oid()) must write openssl's bytes.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { isSigilError } from '../../src/common/errors.js';
import { decodeOid, oid } from '../../src/ca/der.js';
import { DerError, oidContent, oidToString } from '../../src/spiffe/der.js';
import { SERVER_SVID_MARKER_OID } from '../../src/spiffe/reserved-id.js';

const execFileAsync = promisify(execFile);

/** The integer of a UUID (ITU-T X.667: the arc under 2.25). */
function uuidArc(uuid: string): string {
  return BigInt(`0x${uuid.replaceAll('-', '')}`).toString();
}

/** openssl's DER for `dotted` and openssl's dotted reading of that DER (an OID openssl has no name for). */
async function openssl(dir: string, dotted: string): Promise<{ der: Buffer; text: string }> {
  const file = join(dir, 'oid.der');
  await execFileAsync('openssl', ['asn1parse', '-genstr', `OID:${dotted}`, '-noout', '-out', file], { timeout: 10_000 });
  const { stdout } = await execFileAsync('openssl', ['asn1parse', '-inform', 'DER', '-in', file], { timeout: 10_000 });
  const m = /prim: OBJECT\s+:(\S+)/.exec(stdout);
  if (m === null) throw new Error(`unexpected asn1parse output: ${stdout}`);
  return { der: await readFile(file), text: m[1] as string };
}

test('OIDs with arcs past 2^53 decode exactly as openssl reads them', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sigil-oid-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const vectors = [
    `2.25.${uuidArc(randomUUID())}`,
    `2.25.${uuidArc('ffffffff-ffff-ffff-ffff-ffffffffffff')}`, // 2^128 - 1
    SERVER_SVID_MARKER_OID,
    '2.999.9007199254740993', // 2^53 + 1
    '1.3.6.1.4.1.9007199254740992.1', // 2^53
    '2.18446744073709551616.5', // 2^64 in the first subidentifier (80 + 2^64)
    '1.2.3.4.127.128.16383.16384', // small arcs at the one- and two-octet edges (openssl names no OID here)
    '0.39.1',
  ];
  for (const dotted of vectors) {
    const { der, text } = await openssl(dir, dotted);
    t.is(text, dotted, 'openssl reads back what it encoded');
    t.is(der[0], 0x06, dotted);
    const content = der.subarray(2);
    t.is(der[1], content.length, `${dotted}: short-form length`);
    t.is(oidToString(content), text, dotted);
    t.is(decodeOid(content), text, dotted);
    t.is(Buffer.from(oidContent(dotted)).toString('hex'), content.toString('hex'), `${dotted}: the encoder writes openssl's content octets`);
    t.is(oid(dotted).toString('hex'), der.toString('hex'), `${dotted}: the CA's encoder writes openssl's bytes`);
  }
});

test('empty, truncated and non-minimal OID contents are refused by both readers', (t) => {
  const vectors: Array<[string, string]> = [
    ['', 'empty'],
    ['2a86', 'truncated: last octet has the continuation bit'],
    ['2a8001', 'non-minimal: an arc starts with 0x80'],
    ['8001', 'non-minimal first subidentifier'],
    ['2a03808080808080808001', 'non-minimal long arc'],
  ];
  for (const [hex, what] of vectors) {
    const content = Buffer.from(hex, 'hex');
    t.throws(() => oidToString(content), { instanceOf: DerError }, what);
    const err = t.throws(() => decodeOid(content), undefined, what);
    t.true(isSigilError(err) && err.code === 'ERR_INVALID_ARGUMENT' && err.reason === 'bad-der', `${what}: ${String(err)}`);
  }
});
