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
