/**
 * The floor for benchmarks 4 and 5: a bare grpc-js server on a Unix socket serving the same
 * Workload API method with no attestation, no identity source, no checks. Each
 * FetchX509SVID call is answered at once with a fixed ~2 KB X509SVIDResponse and kept open;
 * `pushAll()` writes that message again to every open stream.
 */
import { randomBytes } from 'node:crypto';
import { Server, ServerCredentials, type ServerWritableStream } from '@grpc/grpc-js';
import { serviceDefinition, WORKLOAD_PROTO, WORKLOAD_SERVICE } from '../../src/grpc/proto.js';

/** The encoded size the floor's message aims at. */
export const FLOOR_MESSAGE_BYTES = 2048;

/** A running bare server. */
export interface FloorServer {
  /** `unix:///…` */
  readonly address: string;
  /** Streams currently open. */
  readonly open: number;
  /** Writes the message to every open stream. */
  pushAll(): void;
  close(): Promise<void>;
}

/** Starts the bare server on `socketPath`. */
export async function startFloorServer(socketPath: string): Promise<FloorServer> {
  // Field sizes of a P-256 SVID response, padded so the whole message is about 2 KB.
  const message = {
    svids: [
      {
        spiffe_id: 'spiffe://example.org/workload/bench',
        x509_svid: randomBytes(1100),
        x509_svid_key: randomBytes(138),
        bundle: randomBytes(740),
        hint: '',
      },
    ],
    crl: [],
    federated_bundles: {},
  };
  const streams = new Set<ServerWritableStream<unknown, unknown>>();
  const server = new Server();
  server.addService(serviceDefinition(WORKLOAD_PROTO, WORKLOAD_SERVICE), {
    FetchX509SVID(call: ServerWritableStream<unknown, unknown>) {
      streams.add(call);
      call.on('cancelled', () => streams.delete(call));
      call.on('error', () => streams.delete(call));
      call.write(message);
    },
  });
  const address = `unix://${socketPath}`;
  await new Promise<void>((resolve, reject) => server.bindAsync(address, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  return {
    address,
    get open() {
      return streams.size;
    },
    pushAll() {
      for (const s of streams) s.write(message);
    },
    close() {
      for (const s of streams) s.end();
      return new Promise<void>((resolve) => {
        server.tryShutdown(() => resolve());
        setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 2000).unref();
      });
    },
  };
}
