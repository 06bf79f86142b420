/**
 * JSON → google.protobuf.Struct for ValidateJWTSVID claims, checked through the real
 * encoder: encoded with the Workload API's own message type and decoded back.
 */
import test from 'ava';
import { isSigilError } from '../../../src/common/errors.js';
import { loadProto } from '../../../src/grpc/proto.js';
import { WORKLOAD_PROTO } from '../../../src/grpc/proto.js';
import { jsonToStruct } from '../../../src/agent/workload-api/struct.js';

interface MessageType {
  serialize(value: unknown): Buffer;
  deserialize(bytes: Buffer): { spiffe_id: string; claims: unknown };
}

function validateResponseType(): MessageType {
  const svc = loadProto(WORKLOAD_PROTO).SpiffeWorkloadAPI as unknown as { service: Record<string, { responseSerialize(v: unknown): Buffer; responseDeserialize(b: Buffer): never }> };
  const method = svc.service.ValidateJWTSVID;
  if (method === undefined) throw new Error('ValidateJWTSVID missing');
  return { serialize: (v) => method.responseSerialize(v), deserialize: (b) => method.responseDeserialize(b) };
}

/** Turns a decoded Struct back into plain JSON (the inverse mapping, for the round trip). */
function fromStruct(s: unknown): unknown {
  const value = (v: Record<string, unknown>): unknown => {
    switch (v.kind) {
      case 'nullValue':
        return null;
      case 'numberValue':
      case 'stringValue':
      case 'boolValue':
        return v[v.kind];
      case 'structValue':
        return fromStruct(v.structValue);
      case 'listValue':
        return ((v.listValue as { values?: Array<Record<string, unknown>> }).values ?? []).map(value);
      default:
        throw new Error(`no kind in ${JSON.stringify(v)}`);
    }
  };
  const fields = (s as { fields: Record<string, Record<string, unknown>> }).fields;
  return Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, value(v)]));
}

test('claims survive the wire: every JSON kind, nesting, empty containers, odd keys', (t) => {
  const claims = {
    sub: 'spiffe://example.org/a',
    aud: ['x', 'y'],
    exp: 1767225600,
    ratio: -0.5,
    ok: true,
    no: false,
    nothing: null,
    nested: { deeper: { list: [1, 'two', [3], { four: 4 }], empty: {} }, none: [] },
    __proto__key: 1,
    '': 'empty key',
    'ünï': 'côdé',
  };
  const type = validateResponseType();
  const bytes = type.serialize({ spiffe_id: 'spiffe://example.org/a', claims: jsonToStruct(claims) });
  const back = type.deserialize(bytes);
  t.is(back.spiffe_id, 'spiffe://example.org/a');
  t.deepEqual(fromStruct(back.claims), claims);
});

test('a claim named __proto__ stays an ordinary field', (t) => {
  const claims = JSON.parse('{"__proto__": {"polluted": true}, "a": 1}') as Record<string, unknown>;
  const s = jsonToStruct(claims);
  t.deepEqual(Object.keys(s.fields).sort(), ['__proto__', 'a']);
  t.is(({} as Record<string, unknown>).polluted, undefined);
});

test('undefined members are dropped (as JSON does) and undefined list items become null', (t) => {
  const s = jsonToStruct({ a: undefined, b: [undefined] });
  t.deepEqual(Object.keys(s.fields), ['b']);
  t.deepEqual(s.fields.b, { listValue: { values: [{ nullValue: 'NULL_VALUE' }] } });
});

test('values a Struct cannot carry are refused with reason struct-value', (t) => {
  let deep: Record<string, unknown> = {};
  const root = deep;
  for (let i = 0; i < 100; i++) {
    const next: Record<string, unknown> = {};
    deep.x = next;
    deep = next;
  }
  for (const bad of [{ n: Number.NaN }, { n: Number.POSITIVE_INFINITY }, { b: 1n }, { f: () => 1 }, { s: Symbol('s') }, root]) {
    const err = t.throws(() => jsonToStruct(bad as Record<string, unknown>));
    t.true(isSigilError(err, 'ERR_INVALID_ARGUMENT'));
    t.is((err as { reason?: string }).reason, 'struct-value');
  }
});
