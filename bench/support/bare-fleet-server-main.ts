/**
 * The bare server of benchmark 10's transport floor: grpc-js with the agent proto and nothing
 * of Sigil behind it. One port with server-only TLS (AttestAgent, as an agent's first
 * connection), one with mutual TLS (SyncEntries and BatchNewX509SVID, as its second), both
 * P-256 like Sigil's. Every answer is a sample taken from the Sigil server of the same run, so
 * what it costs is TLS, HTTP/2, gRPC framing and protobuf for the calls an agent makes, with
 * no signature, datastore or audit.
 */
import { Server, ServerCredentials, type sendUnaryData, type ServerDuplexStream, type ServerUnaryCall, type ServerWritableStream } from '@grpc/grpc-js';
import { serviceDefinition } from '../../src/grpc/proto.js';
import { makeTlsPair } from './tls-pair.js';
import { bundleFromSample, type BareFleetServerCommand, type BareFleetServerReply, type FleetSamples } from './bare-fleet-wire.js';

function reply(r: BareFleetServerReply): void {
  process.send?.(r);
}

const streams = new Set<ServerWritableStream<unknown, unknown>>();
let server: Server | undefined;

async function serve(samples: FleetSamples): Promise<void> {
  const tls = makeTlsPair();
  const bundle = bundleFromSample(samples.bundle);
  const chain = samples.svidChain.map((c) => Buffer.from(c, 'base64'));
  const svid = (spiffeId: string): Record<string, unknown> => ({ spiffe_id: spiffeId, cert_chain: chain, serial: '1f2e3d4c5b6a79880011223344556677', expires_at: Math.floor(Date.now() / 1000) + 3600 });
  const page = { kind: 'FULL', entries: samples.entries, deleted_entry_ids: [], bundle, federated_bundles: [], batch_complete: true, batch: 1 };
  // channelz off, as on Sigil's server: the floor is the least a Node server can spend
  const s = new Server({ 'grpc.max_send_message_length': 8 * 1024 * 1024, 'grpc.enable_channelz': 0 });
  s.addService(serviceDefinition('sigil/agent/v1/agent.proto', 'sigil.agent.v1.Agent'), {
    AttestAgent(call: ServerDuplexStream<unknown, unknown>) {
      call.once('data', () => {
        call.write({ result: { svid: svid('spiffe://bench.example.org/sigil/agent/join_token/bare'), bundle, can_reattest: false } });
        call.end();
      });
      call.on('error', () => undefined);
    },
    SyncEntries(call: ServerWritableStream<unknown, unknown>) {
      streams.add(call);
      call.on('cancelled', () => streams.delete(call));
      call.on('error', () => streams.delete(call));
      call.write(page);
    },
    BatchNewX509SVID(call: ServerUnaryCall<{ params: { entry_id: string }[] }, unknown>, callback: sendUnaryData<unknown>) {
      callback(null, { results: call.request.params.map((p) => ({ entry_id: p.entry_id, svid: svid('spiffe://bench.example.org/fleet/w'), status: { code: 0, message: '', sigil_code: '' } })) });
    },
  });
  const cert = Buffer.from(tls.certPem);
  const keyCert = [{ private_key: Buffer.from(tls.keyPem), cert_chain: cert }];
  const bind = (creds: ServerCredentials): Promise<number> => new Promise((resolve, reject) => s.bindAsync('127.0.0.1:0', creds, (err, port) => (err ? reject(err) : resolve(port))));
  const tlsPort = await bind(ServerCredentials.createSsl(null, keyCert, false));
  const mtlsPort = await bind(ServerCredentials.createSsl(cert, keyCert, true));
  server = s;
  reply({ type: 'listening', tlsTarget: `127.0.0.1:${tlsPort}`, mtlsTarget: `127.0.0.1:${mtlsPort}`, tls });
}

process.on('message', (m) => {
  const cmd = m as BareFleetServerCommand;
  if (cmd.type === 'serve') {
    serve(cmd.samples).catch((err: unknown) => reply({ type: 'error', error: err instanceof Error ? err.message : String(err) }));
  } else {
    for (const st of streams) st.end();
    server?.forceShutdown();
    process.exit(0);
  }
});
process.on('disconnect', () => process.exit(0));
