/**
 * JSON values to google.protobuf.Struct in the object form @grpc/proto-loader encodes
 * (field names as in struct.proto: `stringValue`, `structValue`, …), for the claims of
 * ValidateJWTSVID.
 */
import { SigilError } from '../../common/errors.js';

/** google.protobuf.Value as proto-loader takes it: exactly one kind set. */
export type StructValue =
  | { readonly nullValue: 'NULL_VALUE' }
  | { readonly numberValue: number }
  | { readonly stringValue: string }
  | { readonly boolValue: boolean }
  | { readonly structValue: StructMessage }
  | { readonly listValue: { readonly values: StructValue[] } };

/** google.protobuf.Struct as proto-loader takes it. */
export interface StructMessage {
  readonly fields: Record<string, StructValue>;
}

/** Deeper nesting than any real claim set; stops hostile input from exhausting the stack. */
const MAX_DEPTH = 64;

function unsupported(what: string): SigilError {
  return new SigilError('ERR_INVALID_ARGUMENT', `claims hold a value a protobuf struct cannot carry: ${what}`, { reason: 'struct-value' });
}

function toValue(value: unknown, depth: number): StructValue {
  if (depth > MAX_DEPTH) throw unsupported(`nesting deeper than ${MAX_DEPTH}`);
  if (value === null) return { nullValue: 'NULL_VALUE' };
  switch (typeof value) {
    case 'string':
      return { stringValue: value };
    case 'boolean':
      return { boolValue: value };
    case 'number':
      if (!Number.isFinite(value)) throw unsupported('non-finite number');
      return { numberValue: value };
    case 'object':
      if (Array.isArray(value)) return { listValue: { values: value.map((v: unknown) => toValue(v === undefined ? null : v, depth + 1)) } };
      return { structValue: toStructAt(value as Record<string, unknown>, depth + 1) };
    default:
      throw unsupported(typeof value);
  }
}

function toStructAt(obj: Record<string, unknown>, depth: number): StructMessage {
  if (depth > MAX_DEPTH) throw unsupported(`nesting deeper than ${MAX_DEPTH}`);
  // A null-prototype record so a claim named `__proto__` stays an ordinary field.
  const fields = Object.create(null) as Record<string, StructValue>;
  for (const [key, v] of Object.entries(obj)) {
    if (v === undefined) continue; // as JSON.stringify: absent
    fields[key] = toValue(v, depth);
  }
  return { fields };
}

/** Converts a JSON object (e.g. JWT claims) to a google.protobuf.Struct; throws ERR_INVALID_ARGUMENT on non-JSON values. */
export function jsonToStruct(obj: Readonly<Record<string, unknown>>): StructMessage {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) throw unsupported('top level is not an object');
  return toStructAt(obj as Record<string, unknown>, 0);
}
