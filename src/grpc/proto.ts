/**
 * Loads Sigil's .proto files at run time with @grpc/proto-loader. Field names stay as in
 * the .proto (snake_case, `keepCase`), 64-bit integers arrive as strings, bytes as Buffers,
 * and unset fields get their defaults, so handlers see the full message.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadPackageDefinition, type GrpcObject, type ServiceClientConstructor, type ServiceDefinition } from '@grpc/grpc-js';
import { loadSync, type Options } from '@grpc/proto-loader';

const LOADER_OPTIONS: Options = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

/** The folder holding the .proto files, found by walking up from this module to the package root. */
export function protoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'proto'))) return join(dir, 'proto');
    dir = dirname(dir);
  }
  throw new Error('proto folder not found above the grpc module');
}

const cache = new Map<string, GrpcObject>();

/** Loads one .proto file (path relative to proto/) and returns its gRPC object tree. */
export function loadProto(relativePath: string): GrpcObject {
  let obj = cache.get(relativePath);
  if (obj === undefined) {
    const root = protoRoot();
    obj = loadPackageDefinition(loadSync(join(root, relativePath), { ...LOADER_OPTIONS, includeDirs: [root] }));
    cache.set(relativePath, obj);
  }
  return obj;
}

/** Looks up a service constructor by its dotted name (e.g. `SpiffeWorkloadAPI`, `sigil.agent.v1.Agent`). */
export function serviceClient(relativePath: string, serviceName: string): ServiceClientConstructor {
  let node: unknown = loadProto(relativePath);
  for (const part of serviceName.split('.')) node = (node as Record<string, unknown> | undefined)?.[part];
  if (typeof node !== 'function' || !('service' in node)) throw new Error(`service ${serviceName} not found in ${relativePath}`);
  return node as ServiceClientConstructor;
}

/** The service definition (for `server.addService`) of a service in a .proto file. */
export function serviceDefinition(relativePath: string, serviceName: string): ServiceDefinition {
  return serviceClient(relativePath, serviceName).service;
}

/** The Workload API proto file, relative to proto/. */
export const WORKLOAD_PROTO = 'spiffe/workload/workload.proto';
/** The Workload API service name (no proto package). */
export const WORKLOAD_SERVICE = 'SpiffeWorkloadAPI';
/** Metadata key every Workload API call must carry with value `true`. */
export const WORKLOAD_HEADER = 'workload.spiffe.io';

/** A field of a message type as proto-loader describes it (google.protobuf.FieldDescriptorProto). */
interface FieldDescriptor {
  readonly name: string;
  readonly label: string;
  readonly type: string;
  readonly typeName: string;
}
/** A message type as proto-loader describes it (google.protobuf.DescriptorProto). */
interface MessageDescriptor {
  readonly name: string;
  readonly field: readonly FieldDescriptor[];
  readonly options: { readonly mapEntry?: boolean } | null;
}

const INT_RANGES: Readonly<Record<string, readonly [number, number]>> = {
  TYPE_INT32: [-0x80000000, 0x7fffffff],
  TYPE_SINT32: [-0x80000000, 0x7fffffff],
  TYPE_SFIXED32: [-0x80000000, 0x7fffffff],
  TYPE_UINT32: [0, 0xffffffff],
  TYPE_FIXED32: [0, 0xffffffff],
};

/** Every message type of a loaded proto file by dotted name (as the tree nests them). */
function messageTypesOf(relativePath: string): Map<string, MessageDescriptor> {
  const out = new Map<string, MessageDescriptor>();
  const walk = (node: unknown, prefix: string): void => {
    if (node === null || typeof node !== 'object') return;
    for (const [k, v] of Object.entries(node as Record<string, unknown>)) {
      const name = prefix === '' ? k : `${prefix}.${k}`;
      const def = v as { format?: unknown; type?: MessageDescriptor } | null;
      if (def !== null && typeof def === 'object' && typeof def.format === 'string' && def.format.includes('DescriptorProto') && def.type?.field !== undefined) {
        out.set(name, def.type);
      } else if (typeof v === 'object') walk(v, name);
    }
  };
  walk(loadProto(relativePath), '');
  return out;
}

const typeTables = new Map<string, Map<string, MessageDescriptor>>();

/**
 * Checks that every 32-bit integer field of `value`, a message of `messageType` (a dotted
 * name, or a method's `requestType` as proto-loader gives it) in `relativePath`, holds an integer in its range, nested messages and lists included. The
 * protobuf encoder would otherwise wrap 1e12 into -727379968 without a word, and the server
 * would judge a number the caller never sent. Returns the problems, `field: …` each; [] when none.
 */
export function int32FieldProblems(relativePath: string, messageType: string | { readonly type?: unknown }, value: unknown): string[] {
  let types = typeTables.get(relativePath);
  if (types === undefined) typeTables.set(relativePath, (types = messageTypesOf(relativePath)));
  const table = types;
  const find = (name: string): MessageDescriptor | undefined => {
    const n = name.replace(/^\./, '');
    const exact = table.get(n);
    if (exact !== undefined) return exact;
    for (const [k, v] of table) if (k.endsWith(`.${n}`) || n.endsWith(`.${k}`)) return v;
    return undefined;
  };
  const problems: string[] = [];
  const visit = (type: MessageDescriptor | undefined, msg: unknown, path: string, depth: number): void => {
    if (type === undefined || msg === null || typeof msg !== 'object' || depth > 32) return;
    for (const f of type.field) {
      const v = (msg as Record<string, unknown>)[f.name];
      if (v === undefined || v === null) continue;
      const where = path === '' ? f.name : `${path}.${f.name}`;
      const items = f.label === 'LABEL_REPEATED' && Array.isArray(v) ? v : [v];
      const range = INT_RANGES[f.type];
      items.forEach((item, i) => {
        const at = items === v ? `${where}[${i}]` : where;
        if (range !== undefined) {
          const n = typeof item === 'string' && item.trim() !== '' ? Number(item) : item;
          if (typeof n !== 'number' || !Number.isInteger(n) || n < range[0] || n > range[1]) {
            problems.push(`${at}: ${JSON.stringify(item)} is not an integer from ${range[0]} to ${range[1]}`);
          }
        } else if (f.type === 'TYPE_MESSAGE') {
          const sub = find(f.typeName);
          if (sub?.options?.mapEntry === true) {
            // A map field is an object of key → value here, not a list of entries.
            const valueField = sub.field.find((x) => x.name === 'value');
            if (valueField?.type === 'TYPE_MESSAGE' && typeof item === 'object' && item !== null) {
              for (const [k, mv] of Object.entries(item as Record<string, unknown>)) visit(find(valueField.typeName), mv, `${at}[${JSON.stringify(k)}]`, depth + 1);
            }
          } else visit(sub, item, at, depth + 1);
        }
      });
    }
  };
  visit(typeof messageType === 'string' ? find(messageType) : (messageType.type as MessageDescriptor | undefined), value, '', 0);
  return problems;
}
