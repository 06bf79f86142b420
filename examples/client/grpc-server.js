// A grpc-js server reachable only by PEER_ID, over SPIFFE mutual TLS.
import { Server } from '@grpc/grpc-js';
import { X509Source, authorizeId, grpcPeerSpiffeId, serveGrpc } from 'sigil/client';
import { greeterService } from './greeter.js';

// SVID_HINT picks our identity by its hint when the workload has several (e.g. one uid, several services).
const source = await X509Source.create(process.env.SVID_HINT ? { picker: { hint: process.env.SVID_HINT } } : {});
const announce = () => console.log(`svid ${source.svid.id} serial ${source.svid.serial}`);
announce(); // the SVID in use now, then each one a rotation brings
source.on('update', announce);

const server = new Server();
server.addService(greeterService, {
  hello: (call, callback) => callback(null, { text: `hello ${grpcPeerSpiffeId(call)} from ${source.svid.id}` }),
});
const listener = await serveGrpc(server, {
  source,
  authorizer: authorizeId(process.env.PEER_ID),
  port: Number(process.env.PORT ?? 0),
  onRefused: (err) => console.log(`refused ${err.code ?? err.message}`),
});
console.log(`listening ${listener.port}`);
process.on('SIGTERM', async () => {
  await listener.close();
  server.forceShutdown();
  await source.close();
});
