/**
 * A fake SPIFFE Workload API for client tests: a real grpc-js server on a real Unix socket,
 * with the service definition loaded from proto/ by src/grpc, that sends whatever raw
 * messages (or status codes) the test scripts. Unlike the test agent (the real Workload API
 * server of src/agent), it can send every defect the standards tell a client to refuse:
 * empty mandatory fields, SVIDs that do not chain to their bundle, expired ones, a
 * spiffe_id that disagrees with the certificate, PermissionDenied on an open stream.
 *
 * Each streaming method has a script: the current message (sent at once to every new call
 * and pushed to the open ones when it changes) or a status code (open calls end with it,
 * new calls fail with it until a message is set again).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Server, ServerCredentials, status, type sendUnaryData, type ServerUnaryCall, type ServerWritableStream } from '@grpc/grpc-js';
import { serviceDefinition, WORKLOAD_HEADER, WORKLOAD_PROTO, WORKLOAD_SERVICE } from '../../src/grpc/proto.js';
import type { TestCert } from './pki.js';
import type { TestTrustDomain } from './workload-source.js';

/** One X509SVID message as it goes on the wire (proto field names). */
export interface WireX509Svid {
  spiffe_id: string;
  x509_svid: Buffer;
  x509_svid_key: Buffer;
  bundle: Buffer;
  hint?: string;
}

/** An X509SVIDResponse as it goes on the wire. */
export interface WireX509SvidResponse {
  svids: WireX509Svid[];
  federated_bundles?: Record<string, Buffer>;
}

/** A bundles response (X509BundlesResponse or JWTBundlesResponse). */
export interface WireBundlesResponse {
  bundles: Record<string, Buffer>;
}

/** What a stream is scripted to do: send a message, or fail with a status code. */
export type StreamScript<T> = { readonly message: T } | { readonly status: status };

/** The message a well-behaved agent sends for one SVID of `domain`. */
export function wireSvid(domain: TestTrustDomain, cert: TestCert, hint = ''): WireX509Svid {
  return {
    spiffe_id: cert.x509.subjectAltName?.replace(/^URI:/, '') ?? '',
    x509_svid: Buffer.from(cert.der),
    x509_svid_key: Buffer.from(cert.key.pkcs8Der),
    bundle: Buffer.from(domain.root.der),
    hint,
  };
}

class ScriptedStream<T> {
  #script: StreamScript<T> = { status: status.UNAVAILABLE };
  readonly #open = new Set<ServerWritableStream<unknown, T>>();
  /** Calls received so far. */
  calls = 0;

  set(script: StreamScript<T>): void {
    this.#script = script;
    for (const call of [...this.#open]) this.#apply(call);
  }

  handle(call: ServerWritableStream<unknown, T>): void {
    this.calls++;
    if (call.metadata.get(WORKLOAD_HEADER)[0] !== 'true') {
      call.emit('error', { code: status.INVALID_ARGUMENT, details: 'security header missing' });
      return;
    }
    this.#open.add(call);
    call.on('cancelled', () => this.#open.delete(call));
    this.#apply(call);
  }

  #apply(call: ServerWritableStream<unknown, T>): void {
    const s = this.#script;
    if ('message' in s) call.write(s.message);
    else {
      this.#open.delete(call);
      call.emit('error', { code: s.status, details: `scripted status ${s.status}` });
    }
  }

  closeAll(): void {
    for (const call of this.#open) call.end();
    this.#open.clear();
  }
}

/** A running fake Workload API. */
export class FakeWorkloadApi {
  /** `unix:///…` address of the socket. */
  readonly address: string;
  readonly x509 = new ScriptedStream<WireX509SvidResponse>();
  readonly x509Bundles = new ScriptedStream<WireBundlesResponse>();
  readonly jwtBundles = new ScriptedStream<WireBundlesResponse>();
  /** What FetchJWTSVID answers. */
  jwtSvids: { spiffe_id: string; svid: string; hint?: string }[] = [];
  readonly #server: Server;
  readonly #dir: string | undefined;

  private constructor(server: Server, address: string, dir: string | undefined) {
    this.#server = server;
    this.address = address;
    this.#dir = dir;
  }

  /** Serves on `socketPath`, or on a socket in a fresh temp dir. */
  static async start(socketPath?: string): Promise<FakeWorkloadApi> {
    const dir = socketPath === undefined ? mkdtempSync(join(tmpdir(), 'sigil-fake-wl-')) : undefined;
    const path = socketPath ?? join(dir as string, 'agent.sock');
    const server = new Server();
    const fake = new FakeWorkloadApi(server, `unix://${path}`, dir);
    server.addService(serviceDefinition(WORKLOAD_PROTO, WORKLOAD_SERVICE), {
      FetchX509SVID: (call: ServerWritableStream<unknown, WireX509SvidResponse>) => fake.x509.handle(call),
      FetchX509Bundles: (call: ServerWritableStream<unknown, WireBundlesResponse>) => fake.x509Bundles.handle(call),
      FetchJWTBundles: (call: ServerWritableStream<unknown, WireBundlesResponse>) => fake.jwtBundles.handle(call),
      FetchJWTSVID: (_call: ServerUnaryCall<unknown, unknown>, cb: sendUnaryData<unknown>) => cb(null, { svids: fake.jwtSvids }),
      ValidateJWTSVID: (_call: ServerUnaryCall<unknown, unknown>, cb: sendUnaryData<unknown>) => cb({ code: status.UNIMPLEMENTED }),
    });
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix:${path}`, ServerCredentials.createInsecure(), (err) => (err === null ? resolve() : reject(err))),
    );
    return fake;
  }

  /** Stops the server (open streams end) and removes its temp dir. */
  async close(): Promise<void> {
    this.x509.closeAll();
    this.x509Bundles.closeAll();
    this.jwtBundles.closeAll();
    await new Promise<void>((resolve) => this.#server.tryShutdown(() => resolve()));
    this.#server.forceShutdown();
    if (this.#dir !== undefined) rmSync(this.#dir, { recursive: true, force: true });
  }
}
